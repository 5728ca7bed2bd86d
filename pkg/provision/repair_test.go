package provision_test

import (
	"errors"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/iam"

	"github.com/keyvend/keyvend/pkg/awstest"
	"github.com/keyvend/keyvend/pkg/grants"
	"github.com/keyvend/keyvend/pkg/policy"
	"github.com/keyvend/keyvend/pkg/provision"
	"github.com/keyvend/keyvend/pkg/state"
)

// Half-made users, as a crash at each point of the saga leaves them, are
// built by hand with the SDK; RepairAfter is set to 1ns so they count as
// abandoned. User names have capitals: the state table keys a record by the
// lowercased user name (IAM names are case-insensitive).

func (e *env) handKey(t *testing.T, user string) string {
	t.Helper()
	out, err := e.iam.CreateAccessKey(ctx(), &iam.CreateAccessKeyInput{UserName: &user})
	if err != nil {
		t.Fatal(err)
	}
	return aws.ToString(out.AccessKey.AccessKeyId)
}

func TestRepairHalfMadeUsers(t *testing.T) {
	bothModes(t, testRepairHalfMadeUsers)
}

func testRepairHalfMadeUsers(t *testing.T, mode grants.Mode) {
	cases := []struct {
		name string
		// build makes the half-made state of user with grant and returns
		// the access keys it left (all must be gone after the repair).
		build func(t *testing.T, e *env, user string, grant policy.Grant) (stray []string)
		// member: the user already holds the grant (grant mode group: is in
		// its group, so the repair must not call AddUserToGroup).
		member bool
		// staleLock: the repair must find the user's lease stale and take
		// it over (then any request repairs at once, whatever the age).
		staleLock bool
	}{
		{"its grants, no key, no secret", func(t *testing.T, e *env, user string, g policy.Grant) []string {
			e.makeManagedUser(t, user)
			e.grant(t, user, g)
			return nil
		}, true, false},
		{"stray key, no secret", func(t *testing.T, e *env, user string, g policy.Grant) []string {
			e.makeManagedUser(t, user)
			return []string{e.handKey(t, user)}
		}, false, false},
		{"secret holds a deleted key, plus a stray key", func(t *testing.T, e *env, user string, g policy.Grant) []string {
			e.makeManagedUser(t, user)
			gone := e.handKey(t, user)
			e.makeManagedSecret(t, user, gone)
			if _, err := e.iam.DeleteAccessKey(ctx(), &iam.DeleteAccessKeyInput{UserName: &user, AccessKeyId: &gone}); err != nil {
				t.Fatal(err)
			}
			return []string{gone, e.handKey(t, user)}
		}, false, false},
		{"stale lease", func(t *testing.T, e *env, user string, g policy.Grant) []string {
			// A request that died holding the user: its record says
			// creating, its lease has run out.
			e.makeManagedUser(t, user)
			if _, err := e.store.Claim(ctx(), state.Record{Name: user, Phase: state.Creating, Requester: testCaller, Grants: []policy.Grant{g}}, "dead-request", time.Millisecond); err != nil {
				t.Fatal(err)
			}
			time.Sleep(5 * time.Millisecond)
			return []string{e.handKey(t, user)}
		}, false, true},
	}
	young := newEnv(t, grantMode(mode))
	old := newEnv(t, repairAfter(time.Nanosecond), grantMode(mode))
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			user := awstest.Name("Repair")
			grant := rw(awstest.Name("repair") + ".example.com")
			stray := c.build(t, old, user, grant)
			secretBefore, _, hadSecret := old.Credential(t, user)
			keysBefore := old.Keys(t, user)

			// Default RepairAfter: a young half-made user with no record may
			// be the work in progress of a keyvend from before the table.
			// Nothing is touched, and the claim it wrote is taken back.
			if !c.staleLock {
				young.calls.Reset()
				_, err := young.svc.Create(ctx(), input(user, grant))
				if pe := wantKind(t, err, provision.KindInProgress); pe.RetryAfter <= 0 {
					t.Errorf("RetryAfter = %v", pe.RetryAfter)
				}
				for _, w := range young.calls.SucceededWrites() {
					if w.Operation != "PutGroupPolicy" && w.Operation != "CreateGroup" {
						t.Errorf("in-progress answer wrote %s", w)
					}
				}
				if ids := old.Keys(t, user); !sameStrings(ids, keysBefore) {
					t.Errorf("keys changed from %v to %v", keysBefore, ids)
				}
				if _, err := old.store.Get(ctx(), user); !errors.Is(err, state.ErrNotFound) {
					t.Errorf("the in-progress answer left a record (%v)", err)
				}
			}

			old.calls.Reset()
			res, err := old.svc.Create(ctx(), input(user, grant))
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("repair: %s", opsLine(old.calls.Calls()))
			if !res.Repaired || !res.Created {
				t.Errorf("Repaired=%v Created=%v, want both", res.Repaired, res.Created)
			}
			for _, id := range stray {
				if id == res.AccessKeyID {
					t.Errorf("repair kept stray key %s", id)
				}
			}
			if c.staleLock {
				taken := false
				for _, call := range old.calls.Calls() {
					taken = taken || call.Operation == "PutItem" && call.Code() == "ConditionalCheckFailedException"
				}
				if !taken || old.calls.Count("UpdateItem") != 1 { // the claim fails, the stale lease is taken over
					t.Errorf("stale lease not found and taken over: %s", opsLine(old.calls.Calls()))
				}
			}
			if c.member && old.calls.Count("AddUserToGroup") != 0 {
				t.Error("repair re-added an existing membership")
			}
			if hadSecret {
				// The secret is reused, with a new current version.
				if old.calls.Count("PutSecretValue") != 1 || secretBefore.AccessKeyID == res.AccessKeyID {
					t.Errorf("secret not overwritten: %s", opsLine(old.calls.Calls()))
				}
			}
			old.assertComplete(t, res, user, grant)
			if rotLockHeld(t, old, user) {
				t.Error("lease not released")
			}
			if rec, err := old.store.Get(ctx(), user); err != nil || rec.Phase != state.Ready || rec.KeyID != res.AccessKeyID {
				t.Errorf("record after repair: %+v (%v)", rec, err)
			}

			// And the repaired user now replays.
			again, err := old.svc.Create(ctx(), input(user, grant))
			if err != nil {
				t.Fatal(err)
			}
			if again.Created || again.Repaired || again.AccessKeyID != res.AccessKeyID {
				t.Errorf("replay after repair = %+v", again)
			}
		})
	}
}

// TestRepairRespectsLiveLease: a half-made user old enough to repair, whose
// record another request holds (a live lease), is answered "in progress"
// and left alone.
func TestRepairRespectsLiveLease(t *testing.T) {
	e := newEnv(t, repairAfter(time.Nanosecond))
	user := awstest.Name("Locked")
	grant := rw(awstest.Name("locked") + ".example.com")
	e.makeManagedUser(t, user)
	stray := e.handKey(t, user)
	if _, err := e.store.Claim(ctx(), state.Record{Name: user, Phase: state.Creating, Requester: testCaller, Grants: []policy.Grant{grant}}, "live-request", time.Minute); err != nil {
		t.Fatal(err)
	}
	e.calls.Reset()
	_, err := e.svc.Create(ctx(), input(user, grant))
	wantKind(t, err, provision.KindInProgress)
	if w := e.calls.SucceededWrites(); len(w) != 0 {
		t.Errorf("in-progress answer wrote %s", opsLine(w))
	}
	if ids := e.Keys(t, user); len(ids) != 1 || ids[0] != stray {
		t.Errorf("keys = %v, want the untouched %s", ids, stray)
	}
	rec, err := e.store.Get(ctx(), user)
	if err != nil || rec.LeaseHolder != "live-request" {
		t.Errorf("record %+v (%v), want still held by the live request", rec, err)
	}
}

// TestRepairRefusesExtraGroups: a half-made user holding a grant the
// request does not ask for was made for other grants: 409, untouched.
func TestRepairRefusesExtraGroups(t *testing.T) {
	bothModes(t, func(t *testing.T, mode grants.Mode) {
		testRepairRefusesExtraGrants(t, newEnv(t, repairAfter(time.Nanosecond), grantMode(mode)))
	})
}

func testRepairRefusesExtraGrants(t *testing.T, e *env) {
	user := awstest.Name("Extra")
	grant := rw(awstest.Name("extra") + ".example.com")
	other := rw(awstest.Name("extra") + ".example.com")
	e.makeManagedUser(t, user)
	e.grant(t, user, other)
	stray := e.handKey(t, user)
	_, err := e.svc.Create(ctx(), input(user, grant))
	wantKind(t, err, provision.KindConflict)
	if ids := e.Keys(t, user); len(ids) != 1 || ids[0] != stray {
		t.Errorf("keys = %v", ids)
	}
	e.assertGrants(t, user, other)
}
