package grants_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/keyvend/keyvend/pkg/grants"
	"github.com/keyvend/keyvend/pkg/policy"
)

// The carriers' IAM behaviour is tested against moto through
// pkg/provision (both modes); these are the parts that need no AWS.

func TestParseMode(t *testing.T) {
	for in, want := range map[string]grants.Mode{"": grants.Policy, "policy": grants.Policy, "group": grants.Group} {
		if got, err := grants.ParseMode(in); err != nil || got != want {
			t.Errorf("ParseMode(%q) = %q, %v", in, got, err)
		}
	}
	for _, bad := range []string{"groups", "POLICY", "user", " "} {
		if _, err := grants.ParseMode(bad); err == nil {
			t.Errorf("ParseMode(%q) accepted", bad)
		}
	}
}

// TestCheckLimitsPerMode: grant mode policy is limited by the size of the
// one user policy (IAM: 2,048 characters), grant mode group by IAM's 10
// groups per user; each refusal names the limit on the grants field.
func TestCheckLimitsPerMode(t *testing.T) {
	policyMode := grants.New(nil, grants.Config{Mode: grants.Policy, Partition: "aws", Path: "/keyvend/"}, nil)
	groupMode := grants.New(nil, grants.Config{Mode: grants.Group, Partition: "aws", Path: "/keyvend/"}, nil)
	many := func(n int, prefix string) []policy.Grant {
		var gs []policy.Grant
		for i := range n {
			gs = append(gs, policy.Grant{Bucket: fmt.Sprintf("b%02d.example.com", i), Access: policy.ReadWrite, Prefix: prefix})
		}
		return gs
	}
	cases := []struct {
		name   string
		c      *grants.Carrier
		gs     []policy.Grant
		refuse string // a word the refusal names, "" for accepted
	}{
		{"policy: 11 whole-bucket grants fit", policyMode, many(11, ""), ""},
		{"policy: grants over 2,048 characters", policyMode, many(4, strings.Repeat("p", 300)+"/"), "2048"},
		{"group: 10 grants", groupMode, many(10, ""), ""},
		{"group: 11 grants", groupMode, many(11, ""), "10 groups"},
		{"group: long prefixes are each their own group", groupMode, many(4, strings.Repeat("p", 300)+"/"), ""},
	}
	for _, c := range cases {
		fields := c.c.Check(c.gs)
		switch {
		case c.refuse == "" && len(fields) != 0:
			t.Errorf("%s: refused: %v", c.name, fields)
		case c.refuse != "" && (len(fields) != 1 || fields[0].Field != "grants" || !strings.Contains(fields[0].Detail, c.refuse)):
			t.Errorf("%s: %v, want one refusal of grants naming %q", c.name, fields, c.refuse)
		}
	}
}

func TestHeld(t *testing.T) {
	a := policy.Grant{Bucket: "a.example.com", Access: policy.ReadWrite}
	b := policy.Grant{Bucket: "b.example.com", Access: policy.ReadOnly}
	h := &grants.Held{Grants: []policy.Grant{a}, Intact: true, Policy: true, PolicyExact: true, GroupsIntact: true}
	if !h.Same([]policy.Grant{a}) || h.Same([]policy.Grant{a, b}) || !h.Within([]policy.Grant{a, b}) || h.Within([]policy.Grant{b}) {
		t.Error("Same/Within")
	}
	h.Intact = false
	if h.Same([]policy.Grant{a}) {
		t.Error("grants that are not intact are never the same as a request")
	}
	for want, held := range map[grants.Mode]*grants.Held{
		grants.Policy: {Policy: true},
		grants.Group:  {Groups: []grants.GroupRef{{Name: "g"}}},
		"mixed":       {Policy: true, Groups: []grants.GroupRef{{Name: "g"}}},
		"":            {},
	} {
		if got := held.Mode(); got != want {
			t.Errorf("Mode() = %q, want %q", got, want)
		}
	}
}
