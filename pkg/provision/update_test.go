package provision_test

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/service/iam"

	"github.com/keyvend/keyvend/pkg/awserr"
	"github.com/keyvend/keyvend/pkg/awstest"
	"github.com/keyvend/keyvend/pkg/grants"
	"github.com/keyvend/keyvend/pkg/policy"
	"github.com/keyvend/keyvend/pkg/provision"
)

// updateRules: alice and bob vend on *.example.com (create only); dave may
// also update those users; erin may update but not create.
const updateRules = `{"rules":[
 {"principals":["` + testCaller + `","` + bobARN + `"],"buckets":["*.example.com"],"access":` + allAccess + `},
 {"principals":["` + daveARN + `"],"buckets":["*.example.com"],"access":` + allAccess + `,"actions":["create","update"]},
 {"principals":["` + erinARN + `"],"buckets":["*.example.com"],"access":` + allAccess + `,"actions":["update"]}
]}`

// grantChange is a user's grants before an update and after it: one grant
// kept (d), one dropped (b), one changed from read-write to full (a), one
// added with a prefix (c).
type grantChange struct {
	before, after []policy.Grant
}

func newGrantChange() grantChange {
	a, b, c, d := awstest.Name("a")+".example.com", awstest.Name("b")+".example.com", awstest.Name("c")+".example.com", awstest.Name("d")+".example.com"
	return grantChange{
		before: []policy.Grant{
			{Bucket: a, Access: policy.ReadWrite},
			{Bucket: b, Access: policy.ReadOnly},
			{Bucket: d, Access: policy.ReadOnly},
		},
		after: []policy.Grant{
			{Bucket: a, Access: policy.Full},
			{Bucket: c, Access: policy.WriteOnly, Prefix: "logs/2026/"},
			{Bucket: d, Access: policy.ReadOnly},
		},
	}
}

func groupNames(grants []policy.Grant) []string {
	var out []string
	for _, g := range grants {
		out = append(out, policy.GroupName(g))
	}
	return sortedCopy(out)
}

func updInput(p, user string, grants []policy.Grant) provision.UpdateGrantsInput {
	return provision.UpdateGrantsInput{Principal: who(p), RequestID: "upd-" + user, User: user, Grants: grants}
}

// wantGrants checks the user holds exactly grants, as its env's grant
// mode carries them (env.assertGrants).
func wantGrants(t *testing.T, e *env, user string, grants []policy.Grant) {
	t.Helper()
	e.assertGrants(t, user, grants...)
}

func TestUpdateReplacesGrants(t *testing.T) {
	bothModes(t, func(t *testing.T, mode grants.Mode) {
		testUpdateReplacesGrants(t, newEnvOn(t, "", updateRules, grantMode(mode)))
	})
}

func testUpdateReplacesGrants(t *testing.T, e *env) {
	ch := newGrantChange()
	user, key := vended(t, e, ch.before...)
	foreign := awstest.Name("ops")
	mustGroup(t, e.iam, foreign, "/")
	mustJoin(t, e.iam, user, foreign)

	e.resetCounters()
	d, err := e.svc.UpdateGrants(ctx(), updInput(testCaller, user, ch.after))
	if err != nil {
		t.Fatal(err)
	}
	updCalls := e.calls.Calls()
	wantGrants(t, e, user, ch.after)
	// A group keyvend does not manage is left alone.
	if got := e.Groups(t, user, ""); !slices.Contains(got, foreign) {
		t.Errorf("groups %v lost %s", got, foreign)
	}
	// The key and the secret are unchanged.
	if got := e.Keys(t, user); !slices.Equal(got, []string{key}) {
		t.Errorf("keys = %v, want [%s]", got, key)
	}
	if got := e.MustCredential(t, user).AccessKeyID; got != key {
		t.Errorf("secret holds %s, want %s", got, key)
	}

	// The answer describes the new state.
	var gotGroups []string
	for _, g := range d.Groups {
		gotGroups = append(gotGroups, g.Name)
	}
	if !slices.Equal(sortedCopy(gotGroups), sortedCopy(e.groupNames(ch.after...))) || len(d.Grants) != 3 || d.GrantMode != e.mode {
		t.Errorf("description groups %v grants %v mode %q, want %v in %q", gotGroups, d.Grants, d.GrantMode, e.groupNames(ch.after...), e.mode)
	}
	if len(d.AccessKeys) != 1 || d.AccessKeys[0].AccessKeyID != key || !d.AccessKeys[0].InSecret || !d.Complete {
		t.Errorf("description keys %+v complete %v", d.AccessKeys, d.Complete)
	}
	desc, err := e.svc.Describe(ctx(), who(testCaller), user)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.EqualFunc(desc.Grants, sortedGrants(ch.after), func(a, b policy.Grant) bool { return a == b }) {
		t.Errorf("describe grants %v, want %v", desc.Grants, sortedGrants(ch.after))
	}

	// The calls: read the user and its state in one round; grant mode
	// policy puts the new user policy; grant mode group makes sure of the
	// three wanted groups (two new; the one the user is in is not read
	// again, only its policy put), leaves two, joins two, and deletes the
	// two it left, now empty, alongside the new fingerprint tag.
	// The state table: the lease first (UpdateItem), the record committed
	// with the new grants last (TransactWriteItems).
	reads := []string{"GetSecretValue", "GetUser", "GetUserPolicy", "ListAccessKeys", "ListGroupsForUser", "UpdateItem", "TransactWriteItems"}
	want := append(slices.Clone(reads), "PutUserPolicy", "TagUser")
	if e.mode == grants.Group {
		want = append(slices.Clone(reads), "GetGroupPolicy", "GetGroupPolicy", "GetGroupPolicy", "TagUser", "GetGroup", "GetGroup", "CreateGroup", "CreateGroup",
			"PutGroupPolicy", "PutGroupPolicy", "PutGroupPolicy", "RemoveUserFromGroup", "RemoveUserFromGroup",
			"AddUserToGroup", "AddUserToGroup", "GetGroup", "GetGroup", "DeleteGroupPolicy", "DeleteGroupPolicy", "DeleteGroup", "DeleteGroup")
	}
	if got := sortedOps(updCalls); !slices.Equal(got, sortedCopy(want)) {
		t.Errorf("update calls = %v\nwant %v", got, sortedCopy(want))
	}
	for _, g := range e.groupNames(ch.before[0], ch.before[1]) { // left, and nobody else was in them
		if _, err := e.iam.GetGroup(ctx(), &iam.GetGroupInput{GroupName: &g}); awserr.Code(err) != "NoSuchEntity" {
			t.Errorf("group %s left empty: %v, want it deleted", g, err)
		}
	}

	// The same grants again change no membership.
	e.resetCounters()
	if _, err := e.svc.UpdateGrants(ctx(), updInput(testCaller, user, ch.after)); err != nil {
		t.Fatal(err)
	}
	if n := e.calls.Count("AddUserToGroup") + e.calls.Count("RemoveUserFromGroup") + e.calls.Count("CreateGroup") + e.calls.Count("PutUserPolicy") + e.calls.Count("TagUser"); n != 0 {
		t.Errorf("repeated update made %d membership, group, policy or tag changes: %v", n, e.calls.Writes())
	}
	wantGrants(t, e, user, ch.after)
}

func sortedGrants(gs []policy.Grant) []policy.Grant {
	out := slices.Clone(gs)
	policy.SortGrants(out)
	return out
}

func TestUpdateValidationMakesNoCalls(t *testing.T) {
	bothModes(t, func(t *testing.T, mode grants.Mode) {
		testUpdateValidationMakesNoCalls(t, newEnvOn(t, "", updateRules, grantMode(mode)))
	})
}

func testUpdateValidationMakesNoCalls(t *testing.T, e *env) {
	ch := newGrantChange()
	user, _ := vended(t, e, ch.before...)

	// Over the grant mode's limit: 11 grants in grant mode group (10
	// groups per user); in grant mode policy, grants whose user policy is
	// over IAM's 2,048 characters.
	over := make([]policy.Grant, 11)
	for i := range over {
		over[i] = policy.Grant{Bucket: fmt.Sprintf("b%d-%s", i, ch.after[0].Bucket), Access: policy.ReadOnly}
		if e.mode == grants.Policy {
			over[i].Prefix = strings.Repeat("p", 100) + "/"
		}
	}
	many := make([]policy.Grant, provision.MaxGrants+1)
	for i := range many {
		many[i] = policy.Grant{Bucket: fmt.Sprintf("b%d-%s", i, ch.after[0].Bucket), Access: policy.ReadOnly}
	}
	dup := ch.after[1]
	for _, tc := range []struct {
		name   string
		user   string
		grants []policy.Grant
	}{
		{"bad bucket", user, []policy.Grant{{Bucket: "Bad_Bucket", Access: policy.ReadOnly}}},
		{"IP-address bucket", user, []policy.Grant{{Bucket: "192.168.1.1", Access: policy.ReadOnly}}},
		{"unknown access", user, []policy.Grant{{Bucket: ch.after[0].Bucket, Access: "admin"}}},
		{"over the grant mode's limit", user, over},
		{"more grants than any mode takes", user, many},
		{"duplicates", user, []policy.Grant{ch.after[0], dup, dup}},
		{"no grants", user, nil},
		{"bad user name", "a/b", ch.after},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e.resetCounters()
			_, err := e.svc.UpdateGrants(ctx(), updInput(testCaller, tc.user, tc.grants))
			pe := wantKind(t, err, provision.KindInvalid)
			if tc.name == "over the grant mode's limit" && (len(pe.Fields) != 1 || pe.Fields[0].Field != "grants" ||
				!strings.Contains(pe.Fields[0].Detail, map[grants.Mode]string{grants.Policy: "2048", grants.Group: "10 groups"}[e.mode])) {
				t.Errorf("errors %+v: want one naming the limit", pe.Fields)
			}
			if c := e.calls.Calls(); len(c) != 0 {
				t.Errorf("invalid update made calls: %v", c)
			}
		})
	}
	wantGrants(t, e, user, ch.before)
}

func TestUpdateAuthorization(t *testing.T) {
	bothModes(t, func(t *testing.T, mode grants.Mode) {
		testUpdateAuthorization(t, newEnvOn(t, "", updateRules, grantMode(mode)))
	})
}

// The new grants need create (refused naming the caller's own grant); the
// user needs its requester or an update rule on its current grants — who
// may not see the user at all is told it does not exist, never its grants.
func testUpdateAuthorization(t *testing.T, e *env) {
	for _, tc := range []struct {
		name, principal string
		other           bool // the new grants include one no rule allows
		want            provision.Kind
	}{
		{"new grants the rules deny", testCaller, true, provision.KindForbidden},
		{"other principal with create but no update rule", bobARN, false, provision.KindNotFound},
		{"update rule without create on the new grants", erinARN, false, provision.KindForbidden},
		{"anonymous", "", false, provision.KindForbidden},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ch := newGrantChange()
			user, key := vended(t, e, ch.before...)
			after := ch.after
			if tc.other {
				after = append(slices.Clone(after), policy.Grant{Bucket: awstest.Name("x") + ".example.org", Access: policy.ReadOnly})
			}
			e.resetCounters()
			_, err := e.svc.UpdateGrants(ctx(), updInput(tc.principal, user, after))
			wantKind(t, err, tc.want)
			requested := map[string]bool{}
			for _, g := range after {
				requested[g.Bucket] = true
			}
			for _, g := range ch.before {
				if !requested[g.Bucket] && strings.Contains(err.Error(), g.Bucket) {
					t.Errorf("refusal names the user's grant on %s: %v", g.Bucket, err)
				}
			}
			if w := e.calls.Writes(); len(w) != 0 {
				t.Errorf("forbidden update wrote %v", w)
			}
			wantGrants(t, e, user, ch.before)
			if got := e.Keys(t, user); !slices.Equal(got, []string{key}) {
				t.Errorf("keys = %v", got)
			}
		})
	}
	t.Run("rule with create and update", func(t *testing.T) {
		ch := newGrantChange()
		user, _ := vended(t, e, ch.before...)
		if _, err := e.svc.UpdateGrants(ctx(), updInput(daveARN, user, ch.after)); err != nil {
			t.Fatal(err)
		}
		wantGrants(t, e, user, ch.after)
	})
	t.Run("unmanaged user", func(t *testing.T) {
		user := awstest.Name("other")
		mustCreateUser(t, e.iam, user, "/keyvend/", managedTags(testCaller)[1:])
		e.resetCounters()
		_, err := e.svc.UpdateGrants(ctx(), updInput(testCaller, user, newGrantChange().after))
		wantKind(t, err, provision.KindNotFound)
		if w := e.calls.Writes(); len(w) != 0 {
			t.Errorf("update of an unmanaged user wrote %v", w)
		}
		if g := e.Groups(t, user, ""); len(g) != 0 {
			t.Errorf("unmanaged user joined %v", g)
		}
	})
}

// Every call UpdateGrants makes fails once, in turn; the update reports an
// error and a retry converges to exactly the new grants, key unchanged.
func TestUpdateFaultAtEveryCallThenRetryConverges(t *testing.T) {
	bothModes(t, testUpdateFaultAtEveryCallThenRetryConverges)
}

func testUpdateFaultAtEveryCallThenRetryConverges(t *testing.T, mode grants.Mode) {
	e := newEnvOn(t, "", updateRules, grantMode(mode))

	ch := newGrantChange()
	user, _ := vended(t, e, ch.before...)
	e.resetCounters()
	if _, err := e.svc.UpdateGrants(ctx(), updInput(testCaller, user, ch.after)); err != nil {
		t.Fatal(err)
	}
	type nthCall struct {
		op  string
		nth int
	}
	var every []nthCall
	seen := map[string]int{}
	joined := false
	for _, c := range e.calls.Calls() {
		joined = joined || c.Operation == "AddUserToGroup"
		if joined && (c.Operation == "GetGroup" || c.Operation == "DeleteGroupPolicy" || c.Operation == "DeleteGroup") {
			continue // deleting the groups left empty is best effort
		}
		seen[c.Operation]++
		every = append(every, nthCall{c.Operation, seen[c.Operation]})
	}
	want := map[grants.Mode]int{grants.Policy: 9, grants.Group: 22}[mode] // the lease and the commit included
	if len(every) != want {
		t.Fatalf("baseline update made %d calls, want %d: %v", len(every), want, e.calls.Calls())
	}

	// Each case has its own instrumented service, so they run in parallel.
	for _, fc := range every {
		t.Run(fmt.Sprintf("%s#%d", fc.op, fc.nth), func(t *testing.T) {
			t.Parallel()
			e := newEnvOn(t, "", updateRules, grantMode(mode))
			ch := newGrantChange()
			user, key := vended(t, e, ch.before...)
			e.resetCounters()
			e.faults.FailNth(fc.op, fc.nth)
			_, err := e.svc.UpdateGrants(ctx(), updInput(testCaller, user, ch.after))
			if err == nil || e.faults.Fired() != 1 {
				t.Fatalf("update = %v with %d faults fired, want an error from the fault", err, e.faults.Fired())
			}
			if k := provision.KindOf(err); k != 0 {
				t.Errorf("error kind %d (%v), want an internal error", k, err)
			}
			e.faults.Clear()
			if _, err := e.svc.UpdateGrants(ctx(), updInput(testCaller, user, ch.after)); err != nil {
				t.Fatalf("retry: %v", err)
			}
			wantGrants(t, e, user, ch.after)
			if got := e.Keys(t, user); !slices.Equal(got, []string{key}) {
				t.Errorf("keys = %v, want [%s]", got, key)
			}
			if got := e.MustCredential(t, user).AccessKeyID; got != key {
				t.Errorf("secret holds %s, want %s", got, key)
			}
		})
	}
}
