package policy_test

import (
	"slices"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/keyvend/keyvend/pkg/policy"
	"github.com/keyvend/keyvend/pkg/policy/policytest"
)

// FuzzDocument builds the policy of arbitrary grants. A grant Validate
// accepts must give a policy that keeps keyvend's contract
// (policytest.CheckDocument: nothing outside its bucket and prefix, no
// wildcard resource but the objects' trailing '*', within the inline size
// limit), a group name IAM accepts, and a group that ParseGroup turns back
// into the same grant. Validate names every problem it finds. Seeds:
// testdata/fuzz/FuzzDocument. The grant is also merged with others into a
// user document, which must keep the contract for all of them and parse
// back to exactly them.
func FuzzDocument(f *testing.F) {
	f.Add("site.example.com", "read-write", "")
	f.Add("assets.example.com", "write-only", "img/")
	f.Add("b.example.com", "full", "deploy/site/")
	f.Add("b.example.com", "read-only", "a*b")
	f.Add("b.example.com", "full", "${aws:username}/")
	f.Add("b.example.com", "read-write", "../other")
	f.Add("192.168.0.1", "read-only", "")
	f.Add("b.example.com", "read-only", strings.Repeat("x", 512))
	f.Fuzz(func(t *testing.T, bucket, access, prefix string) {
		g := policy.Grant{Bucket: bucket, Access: policy.Access(access), Prefix: prefix}
		errs := g.Validate()
		for _, e := range errs {
			if e.Field == "" || e.Detail == "" {
				t.Fatalf("%+v: unnamed problem %+v", g, e)
			}
		}
		if len(errs) > 0 {
			return // rejected: nothing is built from it
		}
		doc, err := policy.Document("aws", g)
		if err != nil {
			t.Fatalf("%+v is valid but has no policy: %v", g, err)
		}
		if err := policytest.CheckDocument(g, doc); err != nil {
			t.Fatalf("%+v: %v\npolicy: %s", g, err, doc)
		}
		name := policy.GroupName(g)
		if len(name) > 128 || strings.Trim(name, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+=,.@_-") != "" {
			t.Errorf("%+v: group name %q is not an IAM group name", g, name)
		}
		back, err := policy.ParseGroup("aws", name, doc)
		if err != nil || back != g {
			t.Errorf("%+v: ParseGroup(%s) = %+v, %v", g, name, back, err)
		}
		if !utf8.ValidString(doc) {
			t.Errorf("%+v: policy is not UTF-8", g)
		}
		// Merged with grants on the same and another bucket (grant mode
		// "policy"): the user document keeps the contract for all of them
		// and reads back as exactly them.
		gs := []policy.Grant{g, {Bucket: g.Bucket, Access: policy.ReadOnly, Prefix: "other/"}, {Bucket: "fuzz.example.com", Access: policy.Full, Prefix: g.Prefix}}
		if gs[1] == g {
			gs = gs[1:]
		}
		udoc, err := policy.UserDocument("aws-us-gov", gs)
		if err != nil {
			t.Fatalf("%+v: %v", gs, err)
		}
		if err := policytest.CheckUserDocument("aws-us-gov", gs, udoc, 1<<20); err != nil {
			t.Fatalf("%+v: %v\npolicy: %s", gs, err, udoc)
		}
		got, exact, err := policy.ParseUserDocument("aws-us-gov", udoc)
		policy.SortGrants(gs)
		if err != nil || !exact || !slices.Equal(got, gs) {
			t.Errorf("ParseUserDocument(UserDocument(%+v)) = %+v, exact %v, %v", gs, got, exact, err)
		}
	})
}
