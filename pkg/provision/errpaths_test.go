package provision_test

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/keyvend/keyvend/pkg/awserr"
	"github.com/keyvend/keyvend/pkg/awstest"
	"github.com/keyvend/keyvend/pkg/grants"
	"github.com/keyvend/keyvend/pkg/policy"
	"github.com/keyvend/keyvend/pkg/provision"
)

// compLeft is what a compensation that failed at one call leaves of the
// user it was undoing.
type compLeft struct {
	user   bool // the user exists
	key    bool // with the key the request created (in no secret)
	member bool // in its grant group (grant mode group)
	policy bool // with its user policy
}

// TestCompensationErrorPaths: a provision whose CreateSecret fails is
// compensated; each call the compensation makes fails in turn. The request
// fails with the CreateSecret error; what the compensation leaves is
// exactly what its failed call could not undo (nothing hides a key: the
// services' DeleteUser is refused as AWS refuses it, awstest.DeleteConflicts,
// so a user left with a key stays visible); and whatever is left, a later
// request (RepairAfter passed) leaves the user complete, and the reaper
// (its clock past HalfMadeAfter) removes it with all it has.
//
// The compensation's calls are taken from a run where only CreateSecret
// fails, so a call added to the compensation fails this test until it has
// its case. DeleteSecret is reached only when the key was stored before
// the saga failed: in grant mode group, a membership that fails alongside
// the store (its own case below); in grant mode policy the key is stored
// only after every other step succeeded, so no single fault reaches it.
func TestCompensationErrorPaths(t *testing.T) {
	bothModes(t, testCompensationErrorPaths)
}

func testCompensationErrorPaths(t *testing.T, mode grants.Mode) {
	srv := awstest.Dedicated(t) // the reaper below goes over every user of its moto
	clock := &settableClock{}
	e := newStrictEnv(t, srv.URL, grantMode(mode))
	late := e.service(t, testRules, repairAfter(time.Nanosecond))
	reaper := e.service(t, testRules, func(s *provision.Settings) { s.Now = clock.Now })
	group := mode == grants.Group

	// The baseline: only CreateSecret fails; the compensation undoes all.
	e.resetCounters()
	user := awstest.Name("comp")
	e.faults.FailNth("CreateSecret", 1)
	if _, err := e.svc.Create(ctx(), input(user, rw(awstest.Name("comp")+".example.com"))); err == nil {
		t.Fatal("Create succeeded despite the fault")
	}
	calls := e.calls.Calls()
	assertUndoneBeforeDeleteUser(t, calls)
	e.assertNoTrace(t, user)
	at := slices.IndexFunc(calls, func(c awstest.Call) bool { return c.Operation == "CreateSecret" })
	var comp []nthCall
	for i, c := range numbered(opsInOrder(calls)) {
		// Memberships and new groups' policies run alongside the store
		// and may start after CreateSecret: they are the saga's.
		// The state table's calls (the lease taken back to undo, the
		// record removed) are the compensation's too, but not faulted here.
		if i > at && c.op != "AddUserToGroup" && c.op != "PutGroupPolicy" && c.op != "UpdateItem" && c.op != "TransactWriteItems" {
			comp = append(comp, c)
		}
	}
	want := []string{"DeleteAccessKey", "DeleteUser", "DeleteUserPolicy", "ListAccessKeys", "ListGroupsForUser"}
	if group {
		want = sorted(append(want, "RemoveUserFromGroup")...)
	}
	if got := sortedOpsOf(comp); !slices.Equal(got, want) {
		t.Fatalf("the compensation made %v, want %v (calls: %s)", comp, want, opsLine(calls))
	}

	left := map[string]compLeft{
		// The listing fails: the compensation falls back to the key it
		// recorded, so nothing is left in grant mode policy. In grant mode
		// group it does not know the membership, and DeleteUser is refused
		// for it (moto would delete the user with the membership).
		"ListAccessKeys":    {},
		"ListGroupsForUser": {user: group, member: group},
		// The key is not deleted, so the user is kept for a repair.
		"DeleteAccessKey":     {user: true, key: true},
		"RemoveUserFromGroup": {user: true, member: true},
		// In grant mode group there is no user policy, but a failure to
		// delete one (other than NoSuchEntity) still keeps the user.
		"DeleteUserPolicy": {user: true, policy: !group},
		"DeleteUser":       {user: true},
	}
	type failCase struct {
		primary, comp nthCall
		left          compLeft
		secretLeft    bool // a secret holding the deleted key stays
	}
	var cases []failCase
	for _, c := range comp {
		l, ok := left[c.op]
		if !ok {
			t.Fatalf("no expectation for the compensation's %s", c)
		}
		cases = append(cases, failCase{primary: nthCall{"CreateSecret", 1}, comp: c, left: l})
	}
	if group {
		// The membership fails after the key is stored: the compensation
		// also schedules the secret for deletion. Make sure it does, then
		// fail that.
		e.resetCounters()
		u := awstest.Name("comp")
		e.faults.FailNth("AddUserToGroup", 1)
		if _, err := e.svc.Create(ctx(), input(u, rw(awstest.Name("comp")+".example.com"))); err == nil {
			t.Fatal("Create succeeded despite the fault")
		}
		if e.calls.Count("CreateSecret") != 1 || e.calls.Count("DeleteSecret") != 1 {
			t.Fatalf("a membership failing after the store: %s; want the secret created, then deleted", opsLine(e.calls.Calls()))
		}
		e.assertNoTrace(t, u)
		cases = append(cases, failCase{primary: nthCall{"AddUserToGroup", 1}, comp: nthCall{"DeleteSecret", 1}, secretLeft: true})
	}

	for _, c := range cases {
		// fail runs the create with both faults and checks what it left.
		fail := func(t *testing.T) (string, policy.Grant, []string) {
			t.Helper()
			e.resetCounters()
			user, grant := awstest.Name("comp"), rw(awstest.Name("comp")+".example.com")
			e.faults.FailNth(c.primary.op, c.primary.nth)
			e.faults.FailNth(c.comp.op, c.comp.nth)
			_, err := e.svc.Create(ctx(), input(user, grant))
			calls := e.calls.Calls()
			t.Logf("failed run: %s", opsLine(calls))
			fired := e.faults.Fired()
			e.faults.Clear()
			if err == nil {
				t.Fatal("Create succeeded despite the faults")
			}
			if fired != 2 {
				t.Fatalf("%d faults fired, want %s and %s", fired, c.primary, c.comp)
			}
			if awserr.Code(err) != awstest.InjectedCode || !strings.Contains(err.Error(), "injected fault in "+c.primary.op) || provision.KindOf(err) != 0 {
				t.Errorf("error = %v (kind %d), want the internal error of the failed %s", err, provision.KindOf(err), c.primary.op)
			}
			var keys []string
			got := compLeft{user: e.UserExists(t, user)}
			if got.user {
				keys = e.Keys(t, user)
				got.key = len(keys) > 0
				got.member = len(e.Groups(t, user, "")) > 0
				_, got.policy = e.UserPolicy(t, user)
			}
			if got != c.left {
				t.Errorf("left %+v (keys %v), want %+v", got, keys, c.left)
			}
			if len(keys) > 1 {
				t.Errorf("%d keys left: %v", len(keys), keys)
			}
			if !got.user {
				// Gone: every key and membership was removed before.
				assertUndoneBeforeDeleteUser(t, calls)
				if m := e.groupMembers(t, policy.GroupName(grant)); len(m) != 0 {
					t.Errorf("group %s still has members %v", policy.GroupName(grant), m)
				}
			} else if n := len(e.calls.Succeeded("DeleteUser")); n != 0 {
				t.Errorf("%d DeleteUser succeeded, yet the user exists", n)
			}
			cred, _, hasSecret := e.Credential(t, user)
			switch {
			case hasSecret != c.secretLeft:
				t.Errorf("a readable secret left: %v, want %v", hasSecret, c.secretLeft)
			case hasSecret && (got.user || slices.Contains(keys, cred.AccessKeyID)):
				t.Errorf("the secret left holds %s; want a deleted key of a deleted user", cred.AccessKeyID)
			}
			return user, grant, keys
		}

		t.Run(c.comp.String()+"/then a later request", func(t *testing.T) {
			user, grant, keys := fail(t)
			res, err := late.Create(ctx(), input(user, grant))
			if err != nil {
				t.Fatalf("later request: %v", err)
			}
			if res.Repaired != c.left.user || !res.Created {
				t.Errorf("Created=%v Repaired=%v, want Created and Repaired=%v", res.Created, res.Repaired, c.left.user)
			}
			if slices.Contains(keys, res.AccessKeyID) {
				t.Errorf("the later request kept the leftover key %s", res.AccessKeyID)
			}
			e.assertComplete(t, res, user, grant)
		})

		t.Run(c.comp.String()+"/then the reaper", func(t *testing.T) {
			user, grant, _ := fail(t)
			users := keyvendUsers(t, e)
			clock.Set(time.Now().Add(provision.HalfMadeAfter + time.Minute))
			defer clock.Set(time.Time{})
			e.resetCounters()
			rep, err := reaper.Reap(ctx())
			if err != nil {
				t.Fatal(err)
			}
			// Every other user on this moto was left complete (or gone) by
			// an earlier case: the reaper has nothing to do but this one.
			want := reapReport{checked: len(users)}
			if c.left.user {
				// Its record, left creating, is due: deprovisioned from the
				// expiry index before the reconciliation walks IAM.
				want.halfMade = []string{user}
				want.checked--
				want.due = 1
			}
			if c.secretLeft {
				// The user is gone, and so is its record: the secret the
				// failed compensation left is an orphan, which the
				// reconciliation schedules for deletion.
				want.orphanSecrets = []string{"keyvend/users/" + user}
			}
			wantReport(t, rep, want)
			if e.UserExists(t, user) {
				t.Fatalf("user %s still exists after the reaper", user)
			}
			if m := e.groupMembers(t, policy.GroupName(grant)); len(m) != 0 {
				t.Errorf("group %s still has members %v", policy.GroupName(grant), m)
			}
		})
	}
}

// opsInOrder is the operation names of calls, in recorded order.
func opsInOrder(calls []awstest.Call) []string {
	out := make([]string, len(calls))
	for i, c := range calls {
		out[i] = c.Operation
	}
	return out
}

// sortedOpsOf is the sorted operation names of cs.
func sortedOpsOf(cs []nthCall) []string {
	out := make([]string, len(cs))
	for i, c := range cs {
		out[i] = c.op
	}
	return sorted(out...)
}
