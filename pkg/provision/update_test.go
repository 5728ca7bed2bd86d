package provision_test

import (
	"fmt"
	"net/url"
	"slices"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/iam"

	"github.com/keyvend/keyvend/pkg/awstest"
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

func updInput(p, user string, grants []policy.Grant) provision.UpdateInput {
	return provision.UpdateInput{Principal: who(p), RequestID: "upd-" + user, User: user, Grants: grants}
}

// wantGrants checks the user's keyvend groups are exactly those of grants,
// each under /keyvend/ with exactly its grant's policy.
func wantGrants(t *testing.T, e *lcEnv, user string, grants []policy.Grant) {
	t.Helper()
	if got, want := groupsOf(t, e.iam, user, true), groupNames(grants); !slices.Equal(got, want) {
		t.Fatalf("keyvend groups of %s = %v, want %v", user, got, want)
	}
	for _, g := range grants {
		name := policy.GroupName(g)
		grp, err := e.iam.GetGroup(ctx(), &iam.GetGroupInput{GroupName: &name})
		if err != nil {
			t.Fatal(err)
		}
		if p := aws.ToString(grp.Group.Path); p != "/keyvend/" {
			t.Errorf("group %s path %s", name, p)
		}
		pol, err := e.iam.GetGroupPolicy(ctx(), &iam.GetGroupPolicyInput{GroupName: &name, PolicyName: aws.String(policy.InlinePolicyName)})
		if err != nil {
			t.Fatalf("policy of %s: %v", name, err)
		}
		doc, _ := url.PathUnescape(aws.ToString(pol.PolicyDocument))
		want, _ := policy.Document("aws", g)
		if !jsonEqual(t, doc, want) {
			t.Errorf("policy of %s = %s, want %s", name, doc, want)
		}
	}
}

func TestUpdateReplacesGrants(t *testing.T) {
	e := newLCEnv(t, "", updateRules)
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
	if got := groupsOf(t, e.iam, user, false); !slices.Contains(got, foreign) {
		t.Errorf("groups %v lost %s", got, foreign)
	}
	// The key and the secret are unchanged.
	if got := keyIDsOf(t, e.iam, user); !slices.Equal(got, []string{key}) {
		t.Errorf("keys = %v, want [%s]", got, key)
	}
	if got := secretKeyID(t, e.sm, user); got != key {
		t.Errorf("secret holds %s, want %s", got, key)
	}

	// The answer describes the new state.
	var gotGroups []string
	for _, g := range d.Groups {
		gotGroups = append(gotGroups, g.Name)
	}
	if !slices.Equal(sortedCopy(gotGroups), groupNames(ch.after)) || len(d.Grants) != 3 {
		t.Errorf("description groups %v grants %v, want %v", gotGroups, d.Grants, groupNames(ch.after))
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

	// The calls: read the user and its state, make sure of the three
	// wanted groups (two new; the one the user is in is not read again),
	// join two, leave two.
	want := []string{"AddUserToGroup", "AddUserToGroup", "CreateGroup", "CreateGroup",
		"GetGroup", "GetGroup", "GetSecretValue", "GetUser", "ListAccessKeys", "ListGroupsForUser",
		"PutGroupPolicy", "PutGroupPolicy", "PutGroupPolicy", "RemoveUserFromGroup", "RemoveUserFromGroup"}
	if got := opsOf(updCalls); !slices.Equal(got, want) {
		t.Errorf("update calls = %v\nwant %v", got, want)
	}

	// The same grants again change no membership.
	e.resetCounters()
	if _, err := e.svc.UpdateGrants(ctx(), updInput(testCaller, user, ch.after)); err != nil {
		t.Fatal(err)
	}
	if n := e.calls.Count("AddUserToGroup") + e.calls.Count("RemoveUserFromGroup") + e.calls.Count("CreateGroup"); n != 0 {
		t.Errorf("repeated update made %d membership or group changes: %v", n, e.calls.Writes())
	}
	wantGrants(t, e, user, ch.after)
}

func sortedGrants(grants []policy.Grant) []policy.Grant {
	out := slices.Clone(grants)
	slices.SortFunc(out, func(a, b policy.Grant) int {
		switch x, y := policy.GroupName(a), policy.GroupName(b); {
		case x < y:
			return -1
		case x > y:
			return 1
		}
		return 0
	})
	return out
}

func TestUpdateValidationMakesNoCalls(t *testing.T) {
	e := newLCEnv(t, "", updateRules)
	ch := newGrantChange()
	user, _ := vended(t, e, ch.before...)

	eleven := make([]policy.Grant, 11)
	for i := range eleven {
		eleven[i] = policy.Grant{Bucket: fmt.Sprintf("b%d-%s", i, ch.after[0].Bucket), Access: policy.ReadOnly}
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
		{"11 grants", user, eleven},
		{"duplicates", user, []policy.Grant{ch.after[0], dup, dup}},
		{"no grants", user, nil},
		{"bad user name", "a/b", ch.after},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e.resetCounters()
			_, err := e.svc.UpdateGrants(ctx(), updInput(testCaller, tc.user, tc.grants))
			wantKind(t, err, provision.KindInvalid)
			if c := e.calls.Calls(); len(c) != 0 {
				t.Errorf("invalid update made calls: %v", c)
			}
		})
	}
	wantGrants(t, e, user, ch.before)
}

func TestUpdateAuthorization(t *testing.T) {
	e := newLCEnv(t, "", updateRules)

	for _, tc := range []struct {
		name, principal string
		other           bool // the new grants include one no rule allows
	}{
		{"new grants the rules deny", testCaller, true},
		{"other principal with create but no update rule", bobARN, false},
		{"update rule without create on the new grants", erinARN, false},
		{"anonymous", "", false},
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
			wantKind(t, err, provision.KindForbidden)
			if w := e.calls.Writes(); len(w) != 0 {
				t.Errorf("forbidden update wrote %v", w)
			}
			wantGrants(t, e, user, ch.before)
			if got := keyIDsOf(t, e.iam, user); !slices.Equal(got, []string{key}) {
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
		if g := groupsOf(t, e.iam, user, false); len(g) != 0 {
			t.Errorf("unmanaged user joined %v", g)
		}
	})
}

// Every call UpdateGrants makes fails once, in turn; the update reports an
// error and a retry converges to exactly the new grants, key unchanged.
func TestUpdateFaultAtEveryCallThenRetryConverges(t *testing.T) {
	e := newLCEnv(t, "", updateRules)

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
	for _, c := range e.calls.Calls() {
		seen[c.Operation]++
		every = append(every, nthCall{c.Operation, seen[c.Operation]})
	}
	if len(every) != 15 {
		t.Fatalf("baseline update made %d calls, want 15: %v", len(every), e.calls.Calls())
	}

	// Each case has its own instrumented service, so they run in parallel.
	for _, fc := range every {
		t.Run(fmt.Sprintf("%s#%d", fc.op, fc.nth), func(t *testing.T) {
			t.Parallel()
			e := newLCEnv(t, "", updateRules)
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
			if got := keyIDsOf(t, e.iam, user); !slices.Equal(got, []string{key}) {
				t.Errorf("keys = %v, want [%s]", got, key)
			}
			if got := secretKeyID(t, e.sm, user); got != key {
				t.Errorf("secret holds %s, want %s", got, key)
			}
		})
	}
}
