package authz_test

import (
	"reflect"
	"strings"
	"testing"

	"github.com/keyvend/keyvend/pkg/authz"
	"github.com/keyvend/keyvend/pkg/policy"
)

func TestMaxUsersValidation(t *testing.T) {
	rule := func(v string) string {
		return `{"rules":[{"principals":["p"],"buckets":["b-*"],"access":["read-only"],"max_users":` + v + `}]}`
	}
	for _, v := range []string{"-1", "1.5", "2.0", "1e3", `"3"`, "null", "true", "99999999999"} {
		_, err := authz.Parse(strings.NewReader(rule(v)))
		if err == nil || !strings.Contains(err.Error(), "max_users must be a whole number") {
			t.Errorf("max_users %s: err = %v, want a clear refusal", v, err)
		}
	}
	for v, want := range map[string]int{"0": 0, "1": 1, "25": 25} {
		rs, err := authz.Parse(strings.NewReader(rule(v)))
		if err != nil {
			t.Fatalf("max_users %s: %v", v, err)
		}
		if got := rs.Max(0); got != want {
			t.Errorf("max_users %s: Max = %d", v, got)
		}
	}
}

func TestLimits(t *testing.T) {
	rs, err := authz.Parse(strings.NewReader(`{"rules":[
		{"principals":["dev"],"buckets":["dev-*"],"access":["read-only","read-write"],"max_users":3},
		{"principals":["dev"],"buckets":["dev-logs"],"access":["read-only"]},
		{"principals":["dev"],"buckets":["dev-*"],"access":["read-write"],"max_users":5},
		{"principals":["dev"],"buckets":["shared"],"access":["read-only"],"max_users":1},
		{"principals":["ops"],"buckets":["*"],"all_buckets":true,"access":["full"]}]}`))
	if err != nil {
		t.Fatal(err)
	}
	dev := []string{"dev"}
	cases := []struct {
		name   string
		grants []policy.Grant
		want   authz.CreateLimits
	}{
		{"unlimited rule covers all", []policy.Grant{grant("dev-logs", policy.ReadOnly)}, authz.CreateLimits{Unlimited: true}},
		{"two limited rules", []policy.Grant{grant("dev-a", policy.ReadWrite)}, authz.CreateLimits{Rules: []int{0, 2}, Split: -1}},
		{"one limited rule", []policy.Grant{grant("dev-a", policy.ReadOnly)}, authz.CreateLimits{Rules: []int{0}, Split: -1}},
		{"covering one limited rule, the other grant free", []policy.Grant{grant("dev-a", policy.ReadOnly), grant("dev-logs", policy.ReadOnly)}, authz.CreateLimits{Rules: []int{0}, Split: -1}},
		{"split across limited rules", []policy.Grant{grant("dev-a", policy.ReadOnly), grant("shared", policy.ReadOnly)}, authz.CreateLimits{Split: 0}},
	}
	for _, c := range cases {
		if got := rs.Limits(dev, "", c.grants); !reflect.DeepEqual(got, c.want) {
			t.Errorf("%s: Limits = %+v, want %+v", c.name, got, c.want)
		}
	}
	if got := rs.Limits([]string{"ops"}, "", []policy.Grant{grant("dev-a", policy.Full)}); !got.Unlimited {
		t.Errorf("ops: %+v, want unlimited", got)
	}
	if !rs.Counts(0, []policy.Grant{grant("dev-a", policy.ReadOnly), grant("dev-b", policy.ReadWrite)}) {
		t.Error("rule 0 covers both grants: the user counts")
	}
	if rs.Counts(0, []policy.Grant{grant("dev-a", policy.ReadOnly), grant("shared", policy.ReadOnly)}) {
		t.Error("rule 0 does not cover shared: the user does not count")
	}
	if rs.Counts(2, []policy.Grant{grant("dev-a", policy.ReadOnly)}) {
		t.Error("rule 2 does not cover read-only")
	}
	if !rs.AskLimits() {
		t.Error("AskLimits false")
	}
}
