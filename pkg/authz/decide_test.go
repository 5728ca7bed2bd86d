package authz_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/keyvend/keyvend/pkg/authz"
	"github.com/keyvend/keyvend/pkg/policy"
)

const actionRules = `{"rules":[
 {"principals":["arn:aws:iam::1:user/*"],"buckets":["*.example.com"],"access":["read-only","read-write"]},
 {"principals":["arn:aws:iam::1:role/ops"],"buckets":["*.example.com"],"access":["read-only","read-write"],"actions":["list","rotate","delete"]},
 {"principals":["jwt-group:admins"],"buckets":["*"],"all_buckets":true,"access":["full"],"actions":["create","force-delete"],"max_ttl":"720h","require_expiry":true},
 {"principals":["jwt:svc-*"],"buckets":["ci.example.com"],"access":["write-only"],"max_ttl":"24h"},
 {"principals":["jwt:svc-*"],"buckets":["ci.example.com"],"access":["write-only"],"max_ttl":"48h"}
]}`

func mustParse(t *testing.T, doc string) *authz.Rules {
	t.Helper()
	rs, err := authz.Parse(strings.NewReader(doc))
	if err != nil {
		t.Fatal(err)
	}
	return rs
}

func TestDecideActions(t *testing.T) {
	rs := mustParse(t, actionRules)
	rw := policy.Grant{Bucket: "site.example.com", Access: policy.ReadWrite}
	full := policy.Grant{Bucket: "anything", Access: policy.Full}
	cases := []struct {
		name   string
		names  []string
		action authz.Action
		grants []policy.Grant
		allow  bool
	}{
		{"rule without actions allows create", []string{"arn:aws:iam::1:user/alice"}, authz.Create, []policy.Grant{rw}, true},
		{"rule without actions does not allow rotate", []string{"arn:aws:iam::1:user/alice"}, authz.Rotate, []policy.Grant{rw}, false},
		{"rule without actions does not allow list", []string{"arn:aws:iam::1:user/alice"}, authz.List, []policy.Grant{rw}, false},
		{"actions rule allows rotate", []string{"arn:aws:iam::1:role/ops"}, authz.Rotate, []policy.Grant{rw}, true},
		{"list implies describe", []string{"arn:aws:iam::1:role/ops"}, authz.Describe, []policy.Grant{rw}, true},
		{"actions rule without create denies create", []string{"arn:aws:iam::1:role/ops"}, authz.Create, []policy.Grant{rw}, false},
		{"actions rule does not allow update", []string{"arn:aws:iam::1:role/ops"}, authz.Update, []policy.Grant{rw}, false},
		{"jwt group alias matches", []string{"jwt:bob", "jwt-group:admins"}, authz.Create, []policy.Grant{full}, true},
		{"jwt group alias force-delete", []string{"jwt:bob", "jwt-group:admins"}, authz.ForceDelete, []policy.Grant{full}, true},
		{"jwt without the group", []string{"jwt:bob", "jwt-group:devs"}, authz.Create, []policy.Grant{full}, false},
		{"one uncovered grant denies all", []string{"arn:aws:iam::1:role/ops"}, authz.Rotate, []policy.Grant{rw, full}, false},
		{"no names", nil, authz.Create, []policy.Grant{rw}, false},
		{"no grants: a rule with the action for the caller", []string{"arn:aws:iam::1:role/ops"}, authz.Delete, nil, true},
		{"no grants: no rule with the action", []string{"arn:aws:iam::1:user/alice"}, authz.Delete, nil, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := rs.Decide(c.names, c.action, c.grants)
			if (err == nil) != c.allow {
				t.Fatalf("Decide = %v, want allow=%v", err, c.allow)
			}
			var d *authz.ActionDenial
			if err != nil && !errors.As(err, &d) {
				t.Fatalf("denial is %T, want *authz.ActionDenial", err)
			}
		})
	}
}

func TestExpiryLimits(t *testing.T) {
	rs := mustParse(t, actionRules)
	cases := []struct {
		name   string
		names  []string
		grants []policy.Grant
		want   authz.ExpiryLimit
	}{
		{"no limit", []string{"arn:aws:iam::1:user/alice"}, []policy.Grant{{Bucket: "a.example.com", Access: policy.ReadOnly}}, authz.ExpiryLimit{}},
		{"required with cap", []string{"jwt-group:admins"}, []policy.Grant{{Bucket: "x", Access: policy.Full}}, authz.ExpiryLimit{MaxTTL: 720 * time.Hour, Required: true}},
		{"most permissive covering rule counts", []string{"jwt:svc-build"}, []policy.Grant{{Bucket: "ci.example.com", Access: policy.WriteOnly}}, authz.ExpiryLimit{MaxTTL: 48 * time.Hour}},
		{"strictest grant wins", []string{"jwt:svc-build", "jwt-group:admins"}, []policy.Grant{{Bucket: "ci.example.com", Access: policy.WriteOnly}, {Bucket: "x", Access: policy.Full}}, authz.ExpiryLimit{MaxTTL: 48 * time.Hour, Required: true}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := rs.Expiry(c.names, c.grants); got != c.want {
				t.Fatalf("Expiry = %+v, want %+v", got, c.want)
			}
		})
	}
}

func TestParseRejectsBadActionsAndTTL(t *testing.T) {
	for name, doc := range map[string]string{
		"unknown action":   `{"rules":[{"principals":["p"],"buckets":["b*"],"access":["full"],"actions":["destroy"]}]}`,
		"ttl not a string": `{"rules":[{"principals":["p"],"buckets":["b*"],"access":["full"],"max_ttl":720}]}`,
		"ttl garbage":      `{"rules":[{"principals":["p"],"buckets":["b*"],"access":["full"],"max_ttl":"a month"}]}`,
		"ttl negative":     `{"rules":[{"principals":["p"],"buckets":["b*"],"access":["full"],"max_ttl":"-1h"}]}`,
	} {
		if _, err := authz.Parse(strings.NewReader(doc)); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}
