package provision_test

import (
	"slices"
	"testing"
	"time"

	"github.com/keyvend/keyvend/pkg/awserr"
	"github.com/keyvend/keyvend/pkg/awstest"
	"github.com/keyvend/keyvend/pkg/grants"
	"github.com/keyvend/keyvend/pkg/policy"
	"github.com/keyvend/keyvend/pkg/provision"
	"github.com/keyvend/keyvend/pkg/state"
)

// halfMadeForRepair builds the half-made user that makes a repair take
// every step: keyvend's user with no grant, a secret holding a key the
// user no longer has, a stray key, and a record whose lease is stale (a
// request died holding it). It returns the stray key.
func halfMadeForRepair(t *testing.T, e *env, user string) (stray string) {
	t.Helper()
	e.makeManagedUser(t, user)
	gone := e.handKey(t, user)
	e.makeManagedSecret(t, user, gone)
	deleteKey(t, e, user, gone)
	if _, err := e.store.Claim(ctx(), state.Record{Name: user, Phase: state.Creating, Requester: testCaller}, "dead-request", time.Millisecond); err != nil {
		t.Fatal(err)
	}
	time.Sleep(5 * time.Millisecond)
	return e.handKey(t, user)
}

// TestRepairFaultAtEveryCallThenRetryConverges: a half-made user is
// repaired by a request whose RepairAfter has passed, while each AWS call
// of that request fails in turn. The calls are those of a clean repair of
// the same state (the claim refused, the stale lease taken over, the state
// read, the stray deleted, a key made and stored in the existing secret,
// the grants given, the record committed). With the fault, the request
// answers an internal error carrying the failed call's error; no key it
// created is outside the secret (the user's keys are the secret's, or the
// stray that was there before); the lease is not left held; and the same
// request without the fault repairs the user completely.
//
// One call is best effort and has its own case: the tags of the reused
// secret, written once the key is in it: failing then would delete a key
// that is in its secret, so the request succeeds with the secret's old
// requester tags.
func TestRepairFaultAtEveryCallThenRetryConverges(t *testing.T) {
	bothModes(t, testRepairFaultAtEveryCallThenRetryConverges)
}

func testRepairFaultAtEveryCallThenRetryConverges(t *testing.T, mode grants.Mode) {
	e := newEnv(t, repairAfter(time.Nanosecond), grantMode(mode))
	user := awstest.Name("RepErr")
	grant := rw(awstest.Name("reperr") + ".example.com")
	halfMadeForRepair(t, e, user)
	e.calls.Reset()
	res, err := e.svc.Create(ctx(), input(user, grant))
	if err != nil {
		t.Fatal(err)
	}
	if !res.Repaired {
		t.Fatalf("baseline not repaired: %+v", res)
	}
	e.assertComplete(t, res, user, grant)
	calls := e.calls.Calls()
	t.Logf("clean repair: %s", opsLine(calls))
	every := numbered(opsInOrder(calls))
	// The steps this state must make a repair take, so that each is faulted.
	for _, op := range []string{"PutItem", "UpdateItem", "DeleteAccessKey", "CreateAccessKey",
		"CreateSecret", "DescribeSecret", "GetResourcePolicy", "PutSecretValue", "TagResource", "TransactWriteItems"} {
		if !slices.ContainsFunc(every, func(c nthCall) bool { return c.op == op }) {
			t.Fatalf("the clean repair made no %s: %s", op, opsLine(calls))
		}
	}
	for _, fc := range every {
		t.Run(fc.String(), func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, repairAfter(time.Nanosecond), grantMode(mode))
			user := awstest.Name("RepErr")
			grant := rw(awstest.Name("reperr") + ".example.com") // its own group: cases run in parallel
			stray := halfMadeForRepair(t, e, user)
			e.faults.FailNth(fc.op, fc.nth)
			res, err := e.svc.Create(ctx(), input(user, grant))
			t.Logf("run: %s", opsLine(e.calls.Calls()))
			if e.faults.Fired() != 1 {
				t.Fatalf("the fault fired %d times", e.faults.Fired())
			}
			e.faults.Clear()

			if fc.op == "TagResource" {
				if err != nil {
					t.Fatalf("failing to update the secret's tags failed the request: %v", err)
				}
				e.assertComplete(t, res, user, grant) // the key is the one in the secret
				return
			}
			if err == nil {
				t.Fatalf("the request succeeded despite the fault: %+v", res)
			}
			if k := provision.KindOf(err); k != 0 || awserr.Code(err) != awstest.InjectedCode {
				t.Errorf("error = %v (kind %d), want an internal error carrying the injected fault", err, k)
			}
			// No key leaked: each key is the secret's, or the stray that was
			// there before (a retry deletes it).
			cred, _, hasSecret := e.Credential(t, user)
			keys := e.Keys(t, user)
			for _, id := range keys {
				if id != stray && (!hasSecret || id != cred.AccessKeyID) {
					t.Errorf("key %s is neither in the secret (%s) nor the stray %s", id, cred.AccessKeyID, stray)
				}
			}
			if len(keys) > 2 {
				t.Errorf("keys %v", keys)
			}
			if rotLockHeld(t, e, user) {
				t.Error("the failed request left the user's lease held")
			}

			res, err = e.svc.Create(ctx(), input(user, grant))
			if err != nil {
				t.Fatalf("retry: %v", err)
			}
			if !res.Repaired || res.AccessKeyID == stray {
				t.Errorf("retry: Repaired=%v key %s (stray %s)", res.Repaired, res.AccessKeyID, stray)
			}
			e.assertComplete(t, res, user, grant)
			if rotLockHeld(t, e, user) {
				t.Error("lease left held after the retry")
			}
			if mode == grants.Group {
				if m := e.groupMembers(t, policy.GroupName(grant)); !slices.Equal(m, []string{user}) {
					t.Errorf("members of %s = %v", policy.GroupName(grant), m)
				}
			}
		})
	}
}
