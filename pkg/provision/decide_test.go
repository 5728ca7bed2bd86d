package provision

import (
	"testing"

	"github.com/keyvend/keyvend/pkg/grants"
	"github.com/keyvend/keyvend/pkg/policy"
)

// TestDecide is the table of docs/architecture.md ("Existing users"):
// what a create request does with a keyvend user that already exists,
// decided from what the user holds and what the request asks, without AWS.
func TestDecide(t *testing.T) {
	a := policy.Grant{Bucket: "a.example.com", Access: policy.ReadWrite}
	b := policy.Grant{Bucket: "b.example.com", Access: policy.ReadOnly}
	held := func(gs ...policy.Grant) *grants.Held {
		return &grants.Held{Grants: gs, Intact: len(gs) > 0, Policy: true, PolicyExact: true, GroupsIntact: true}
	}
	drifted := &grants.Held{Grants: []policy.Grant{a}, Intact: false, Policy: true, PolicyExact: false, GroupsIntact: true}
	brokenGroup := &grants.Held{Grants: []policy.Grant{a}, Intact: false, GroupsIntact: false,
		Groups: []grants.GroupRef{{Name: policy.GroupName(a), Grant: a}}}
	want := []policy.Grant{a}
	twin := func(h *grants.Held) existingUser {
		return existingUser{held: h, want: want, young: true, madeFor: true, bare: true, byAsker: true, claimed: true}
	}
	with := func(e existingUser, f func(*existingUser)) existingUser { f(&e); return e }
	cases := []struct {
		name string
		e    existingUser
		want verdict
	}{
		{"complete, exactly the grants", existingUser{complete: true, held: held(a), want: want}, replay},
		{"complete, exactly the grants, old", existingUser{complete: true, held: held(a), want: want, young: false}, replay},
		{"complete, its policy says more than the grants", existingUser{complete: true, held: drifted, want: want}, putAgain},
		{"complete, a grant group changed: not taken as the same", existingUser{complete: true, held: brokenGroup, want: want}, taken},
		{"complete, young, made for these, holding part", existingUser{complete: true, held: held(a), want: []policy.Grant{a, b}, young: true, madeFor: true}, inProgress},
		{"complete, young, not made for these", existingUser{complete: true, held: held(a), want: []policy.Grant{a, b}, young: true}, taken},
		{"complete, old, holding part", existingUser{complete: true, held: held(a), want: []policy.Grant{a, b}, madeFor: true}, taken},
		{"complete, other grants", existingUser{complete: true, held: held(b), want: want, young: true, madeFor: true}, taken},
		{"complete, more grants", existingUser{complete: true, held: held(a, b), want: want}, taken},
		{"half-made, a grant outside the request", existingUser{held: held(b), want: want}, taken},
		{"half-made, young", existingUser{held: held(a), want: want, young: true}, inProgress},
		{"half-made, young, no grant yet", existingUser{held: held(), want: want, young: true}, inProgress},
		{"half-made, old", existingUser{held: held(a), want: want}, repairIt},
		{"half-made, old, no grant yet", existingUser{held: held(), want: want}, repairIt},

		// A record this request took over: nobody else is making the user.
		{"took over, complete, young, made for these, holding part", existingUser{complete: true, held: held(a), want: []policy.Grant{a, b}, young: true, madeFor: true, tookOver: true}, taken},
		{"took over, half-made, young", existingUser{held: held(a), want: want, young: true, tookOver: true}, repairIt},
		{"took over, complete, exactly the grants", existingUser{complete: true, held: held(a), want: want, young: true, tookOver: true}, replay},

		// The twin request: same requester and grants, its CreateUser won
		// in IAM while this request won the claim.
		{"twin, bare, young, claimed", twin(held(a)), finishTwin},
		{"twin, no grant yet", twin(held()), finishTwin},
		{"twin, a grant outside the request", twin(held(b)), taken},
		{"twin, old", with(twin(held(a)), func(e *existingUser) { e.young = false }), repairIt},
		{"twin, under a record taken over", with(twin(held(a)), func(e *existingUser) { e.tookOver = true }), repairIt},
		{"twin, not claimed by this request", with(twin(held(a)), func(e *existingUser) { e.claimed = false }), inProgress},
		{"twin, another requester", with(twin(held(a)), func(e *existingUser) { e.byAsker = false }), inProgress},
		{"twin, made for other grants", with(twin(held(a)), func(e *existingUser) { e.madeFor = false }), inProgress},
		{"twin, has a key already", with(twin(held(a)), func(e *existingUser) { e.bare = false }), inProgress},
	}
	for _, c := range cases {
		if got := decide(c.e); got != c.want {
			t.Errorf("%s: verdict %d, want %d", c.name, got, c.want)
		}
	}
}
