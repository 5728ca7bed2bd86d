package provision_test

import (
	"context"
	"errors"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"

	"github.com/keyvend/keyvend/pkg/awserr"
	"github.com/keyvend/keyvend/pkg/awstest"
	"github.com/keyvend/keyvend/pkg/grants"
	"github.com/keyvend/keyvend/pkg/policy"
	"github.com/keyvend/keyvend/pkg/state"
)

// TestFaultAtEveryCallOfProvision fails, in turn, each AWS call the create
// saga makes. The request must fail and leave no user, key or secret
// behind; the same request retried without faults must then succeed and
// leave exactly the state of a clean run.
//
// Faults are injected before the request is sent, so the failed call had no
// effect at moto; a call that fails after AWS applied it is covered by the
// compensation listing every key and membership (rollback.go).
// provisionFault is a fault at the nth call of op in a provision of a
// user with grants grants.
type provisionFault struct {
	op     string
	nth    int
	grants int
}

func TestFaultAtEveryCallOfProvision(t *testing.T) {
	type fault = provisionFault
	cases := map[grants.Mode][]fault{
		grants.Policy: {
			{"CreateUser", 1, 1},
			{"PutUserPolicy", 1, 1},
			{"CreateAccessKey", 1, 1},
			{"CreateSecret", 1, 1},
			// Two grants, one policy: the policy is put and must be undone.
			{"CreateSecret", 1, 2},
		},
		grants.Group: {
			{"GetGroup", 1, 1},
			{"CreateGroup", 1, 1},
			{"PutGroupPolicy", 1, 1},
			{"CreateUser", 1, 1},
			{"AddUserToGroup", 1, 1},
			{"CreateAccessKey", 1, 1},
			{"CreateSecret", 1, 1},
			// Two grants: the first membership succeeds and must be undone.
			{"AddUserToGroup", 2, 2},
		},
	}
	bothModes(t, func(t *testing.T, mode grants.Mode) { testFaultAtEveryCallOfProvision(t, mode, cases[mode]) })
}

func testFaultAtEveryCallOfProvision(t *testing.T, mode grants.Mode, cases []provisionFault) {
	e := newEnv(t, grantMode(mode))
	for _, c := range cases {
		name := c.op
		if c.grants > 1 {
			name += "-2nd-of-2"
		}
		t.Run(name, func(t *testing.T) {
			e.faults.Clear()
			e.calls.Reset()
			user := awstest.Name("fault")
			var grants []policy.Grant
			for range c.grants {
				grants = append(grants, rw(awstest.Name("fault")+".example.com"))
			}
			e.faults.FailNth(c.op, c.nth)
			_, err := e.svc.Create(ctx(), input(user, grants...))
			if err == nil {
				t.Fatal("Create succeeded despite the fault")
			}
			if e.faults.Fired() != 1 {
				t.Fatalf("fault fired %d times", e.faults.Fired())
			}
			if awserr.Code(err) != awstest.InjectedCode {
				t.Errorf("error = %v, want the injected fault", err)
			}
			t.Logf("failed run: %s", opsLine(e.calls.Calls()))
			assertUndoneBeforeDeleteUser(t, e.calls.Calls())
			e.assertNoTrace(t, user)
			// moto lets DeleteUser succeed with keys and memberships still
			// attached (AWS answers DeleteConflict), so "the user is gone"
			// proves nothing about them: check the groups' side explicitly
			// (assertNoTrace checked the keys before the user).
			for _, g := range grants {
				if members := e.groupMembers(t, policy.GroupName(g)); len(members) != 0 {
					t.Errorf("group %s still has members %v", policy.GroupName(g), members)
				}
			}

			e.faults.Clear()
			res, err := e.svc.Create(ctx(), input(user, grants...))
			if err != nil {
				t.Fatalf("retry: %v", err)
			}
			if !res.Created || res.Repaired {
				t.Errorf("retry result Created=%v Repaired=%v, want a clean create", res.Created, res.Repaired)
			}
			e.assertComplete(t, res, user, grants...)
		})
	}
}

// TestCompensationFailureIsRepairedLater: CreateSecret fails and then a
// step of the compensation fails too, leaving a managed user that is not
// complete: no secret, and, depending on the step, a key or a membership
// left. A request within RepairAfter is told to retry (another request may
// be creating that user); a request once the user is older than
// RepairAfter repairs it into a complete user with exactly one key, the one
// in its secret.
func TestCompensationFailureIsRepairedLater(t *testing.T) {
	bothModes(t, testCompensationFailureIsRepairedLater)
}

func testCompensationFailureIsRepairedLater(t *testing.T, mode grants.Mode) {
	type leftover struct {
		op         string
		keysLeft   int  // keys the failed compensation leaves on the user
		groupsLeft int  // memberships it leaves
		policyLeft bool // whether it leaves the user policy
	}
	cases := []leftover{
		// The key and the grants are gone; only the user is left.
		{op: "DeleteUser"},
		// The key could not be deleted, so the user is kept (deleting it
		// would fail in AWS anyway): the repair deletes the key.
		{op: "DeleteAccessKey", keysLeft: 1},
	}
	if mode == grants.Group {
		cases = append(cases, leftover{op: "RemoveUserFromGroup", groupsLeft: 1})
	} else {
		cases = append(cases, leftover{op: "DeleteUserPolicy", policyLeft: true})
	}
	e := newEnv(t, grantMode(mode))
	for _, c := range cases {
		t.Run(c.op, func(t *testing.T) {
			e.faults.Clear()
			e.calls.Reset()
			user := awstest.Name("halfdone")
			grant := rw(awstest.Name("halfdone") + ".example.com")
			e.faults.FailNth("CreateSecret", 1)
			e.faults.FailNth(c.op, 0)
			if _, err := e.svc.Create(ctx(), input(user, grant)); err == nil {
				t.Fatal("Create succeeded despite the fault")
			}
			t.Logf("failed run: %s", opsLine(e.calls.Calls()))
			if e.faults.Fired() != 2 {
				t.Fatalf("faults fired %d times, want CreateSecret and %s", e.faults.Fired(), c.op)
			}
			if !e.UserExists(t, user) {
				t.Fatal("user is gone although its compensation failed")
			}
			left := e.Keys(t, user)
			if len(left) != c.keysLeft {
				t.Errorf("keys left %v, want %d", left, c.keysLeft)
			}
			if g := e.Groups(t, user, ""); len(g) != c.groupsLeft {
				t.Errorf("memberships left %v, want %d", g, c.groupsLeft)
			}
			if _, ok := e.UserPolicy(t, user); ok != c.policyLeft {
				t.Errorf("user policy left: %v, want %v", ok, c.policyLeft)
			}
			if _, _, ok := e.Credential(t, user); ok {
				t.Error("a secret exists")
			}
			e.faults.Clear()

			// The failed request gave its lease back, and its record still
			// says creating: nobody is making the user, whatever its age
			// (the default RepairAfter is 60s). The next request, on the
			// same instance, takes the lease and repairs it at once.
			rec, err := e.store.Get(ctx(), user)
			if err != nil || rec.Phase != state.Creating || rec.LeaseHolder != "" {
				t.Fatalf("record after the failed compensation: %+v (%v), want creating and released", rec, err)
			}
			res, err := e.svc.Create(ctx(), input(user, grant))
			if err != nil {
				t.Fatal(err)
			}
			if !res.Repaired {
				t.Error("result does not say Repaired")
			}
			for _, id := range left {
				if id == res.AccessKeyID {
					t.Errorf("repair kept the leftover key %s", id)
				}
			}
			e.assertComplete(t, res, user, grant)
		})
	}
}

// TestCancelledContextAfterCreateAccessKey cancels the request's context
// the moment CreateAccessKey has succeeded. The saga cannot store the key,
// and the compensation, on a context detached from the request's, must
// still delete it.
func TestCancelledContextAfterCreateAccessKey(t *testing.T) {
	bothModes(t, testCancelledContextAfterCreateAccessKey)
}

func testCancelledContextAfterCreateAccessKey(t *testing.T, mode grants.Mode) {
	reqCtx, cancel := context.WithCancel(context.Background())
	defer cancel()
	e := newEnvWith(t, func(cfg *aws.Config) {
		awstest.AfterSuccess(cfg, "CreateAccessKey", func(context.Context) { cancel() })
	}, grantMode(mode))
	user := awstest.Name("cancel")
	grant := rw(awstest.Name("cancel") + ".example.com")
	_, err := e.svc.Create(reqCtx, input(user, grant))
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("error = %v, want context.Canceled", err)
	}
	if reqCtx.Err() == nil {
		t.Fatal("the hook did not cancel the request")
	}
	t.Logf("calls: %s", opsLine(e.calls.Calls()))
	// The compensation's DeleteAccessKey ran and succeeded after the cancel.
	deleted := false
	for _, c := range e.calls.Calls() {
		if c.Operation == "DeleteAccessKey" && c.Err == nil {
			deleted = true
		}
	}
	if !deleted {
		t.Error("no successful DeleteAccessKey: compensation did not run on a live context")
	}
	assertUndoneBeforeDeleteUser(t, e.calls.Calls())
	e.assertNoTrace(t, user)
	// AddUserToGroup runs alongside CreateAccessKey; when the cancel catches
	// it in flight the client sees an error but moto may still apply it.
	// The compensation lists memberships, so it is undone either way.
	if m := e.groupMembers(t, policy.GroupName(grant)); len(m) != 0 {
		t.Errorf("group still has members %v", m)
	}
	if _, ok := e.UserPolicy(t, user); ok {
		t.Error("the user policy is left")
	}

	res, err := e.svc.Create(ctx(), input(user, grant))
	if err != nil {
		t.Fatalf("retry: %v", err)
	}
	e.assertComplete(t, res, user, grant)
}
