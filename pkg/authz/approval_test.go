package authz_test

import (
	"strings"
	"testing"
	"time"

	"github.com/keyvend/keyvend/pkg/authz"
	"github.com/keyvend/keyvend/pkg/policy"
)

func TestApprovalValidation(t *testing.T) {
	rule := func(approval string) string {
		return `{"rules":[{"principals":["arn:aws:iam::123456789012:user/*"],"buckets":["a.example.com"],"access":["full"],"approval":` + approval + `}]}`
	}
	cases := []struct {
		name, doc, want string // want "" means valid
	}{
		{"minimal", rule(`{"approvers":["` + bob + `"]}`), ""},
		{"full", rule(`{"approvers":["arn:aws:iam::123456789012:role/sec*"],"min":2,"expires_in":"1h","distinct":"person"}`), ""},
		{"no approvers", rule(`{"approvers":[]}`), "at least one approver"},
		{"approvers missing", rule(`{}`), "at least one approver"},
		{"blank approver", rule(`{"approvers":[" "]}`), "without blanks"},
		{"padded approver", rule(`{"approvers":[" ` + bob + `"]}`), "without blanks"},
		{"negative min", rule(`{"approvers":["*"],"min":-1}`), "must be at least 1"},
		{"min above literal approvers", rule(`{"approvers":["` + bob + `","` + alice + `"],"min":3}`), "could never be given"},
		{"min with a glob", rule(`{"approvers":["arn:aws:iam::123456789012:user/*"],"min":3}`), ""},
		{"min with a group", rule(`{"approvers":["jwt-group:sec","arn:aws:iam::123456789012:role/ops"],"min":3}`), ""},
		{"bad expires_in", rule(`{"approvers":["` + bob + `"],"expires_in":"tomorrow"}`), "Go duration"},
		{"expires_in too short", rule(`{"approvers":["` + bob + `"],"expires_in":"1m"}`), "from 5m"},
		{"expires_in too long", rule(`{"approvers":["` + bob + `"],"expires_in":"721h"}`), "from 5m"},
		{"unknown distinct", rule(`{"approvers":["` + bob + `"],"distinct":"team"}`), `want "principal"`},
		{"unknown field", rule(`{"approvers":["` + bob + `"],"quorum":2}`), "unknown field"},
		{"other actions", `{"rules":[{"principals":["*"],"buckets":["a.example.com"],"access":["full"],"actions":["create","delete"],"approval":{"approvers":["` + bob + `"]}}]}`, "allows only the create action"},
		{"own only approver", `{"rules":[{"principals":["` + alice + `"],"buckets":["a.example.com"],"access":["full"],"approval":{"approvers":["` + alice + `"]}}]}`, "may not approve its own"},
		{"own and another", `{"rules":[{"principals":["` + alice + `"],"buckets":["a.example.com"],"access":["full"],"approval":{"approvers":["` + alice + `","` + bob + `"]}}]}`, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := authz.Parse(strings.NewReader(c.doc))
			switch {
			case c.want == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case c.want != "" && err == nil:
				t.Fatalf("accepted, want an error containing %q", c.want)
			case c.want != "" && !strings.Contains(err.Error(), c.want):
				t.Fatalf("error %q does not say %q", err, c.want)
			}
		})
	}
}

func TestApprovalIn(t *testing.T) {
	rs, err := authz.Parse(strings.NewReader(`{"rules":[
		{"principals":["arn:aws:iam::123456789012:user/*"],"buckets":["*.example.com"],"access":["read-only"]},
		{"principals":["arn:aws:iam::123456789012:user/*"],"buckets":["prod.example.com"],"access":["full"],"approval":{"approvers":["` + bob + `"],"expires_in":"2h"}},
		{"principals":["arn:aws:iam::123456789012:user/*"],"buckets":["prod.example.com"],"access":["full"],"approval":{"approvers":["jwt-group:sec"],"min":2,"distinct":"person","expires_in":"1h"}},
		{"principals":["` + alice + `"],"buckets":["dev.example.com"],"access":["full"]},
		{"principals":["arn:aws:iam::123456789012:user/*"],"buckets":["dev.example.com"],"access":["full"],"approval":{"approvers":["` + bob + `"]}}
	]}`))
	if err != nil {
		t.Fatal(err)
	}
	names := []string{alice}
	ro := policy.Grant{Bucket: "prod.example.com", Access: "read-only"}
	prodFull := policy.Grant{Bucket: "prod.example.com", Access: "full"}
	devFull := policy.Grant{Bucket: "dev.example.com", Access: "full"}
	if n := rs.ApprovalIn(names, "", []policy.Grant{ro}); n != nil {
		t.Errorf("read-only needs no approval, got %+v", n)
	}
	if n := rs.ApprovalIn(names, "", []policy.Grant{ro, devFull}); n != nil {
		t.Errorf("alice's own rule allows dev full without approval, got %+v", n)
	}
	n := rs.ApprovalIn(names, "", []policy.Grant{ro, prodFull})
	if n == nil || len(n.Grants) != 1 || n.Grants[0].Grant != prodFull {
		t.Fatalf("prod full needs approval, got %+v", n)
	}
	g := n.Grants[0]
	if g.Min != 2 || g.Distinct != authz.DistinctPerson || len(g.Approvers) != 2 || len(g.Rules) != 2 || n.Wait != time.Hour {
		t.Errorf("need = %+v (wait %s), want the strictest of both rules, the union of approvers, the shortest wait", g, n.Wait)
	}
	if !g.ApprovedBy([]string{bob}) || !g.ApprovedBy([]string{"x", "jwt-group:sec"}) || g.ApprovedBy([]string{alice}) {
		t.Errorf("ApprovedBy wrong for %v", g.Approvers)
	}
	// bob asks for dev full: only the approval rule covers him.
	if n := rs.ApprovalIn([]string{bob}, "", []policy.Grant{devFull}); n == nil || n.Wait != authz.DefaultApprovalWait || n.Grants[0].Min != 1 || n.Grants[0].Distinct != authz.DistinctPrincipal {
		t.Errorf("bob's dev full: need %+v", n)
	}
}
