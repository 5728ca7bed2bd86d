package provision_test

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"

	"github.com/keyvend/keyvend/pkg/awstest"
	"github.com/keyvend/keyvend/pkg/caller"
	"github.com/keyvend/keyvend/pkg/grants"
	"github.com/keyvend/keyvend/pkg/policy"
	"github.com/keyvend/keyvend/pkg/provision"
	"github.com/keyvend/keyvend/pkg/state"
)

// The races of issue 10, each between two services (two Lambda instances)
// on one moto and one state table, each forced: one request is held at a
// gate (awstest.HoldAll) at the step where the old code went wrong, the
// other runs to its answer, then the gate opens. Every service reaches
// moto through a strict proxy (awstest.Proxy.StrictSecrets) that refuses
// PutSecretValue on a secret scheduled for deletion, as AWS does and moto
// does not: without it the worst outcome (a rotation bringing back the
// secret of a deleted user) would stay invisible.

var owner = caller.Principal{ID: testCaller, Raw: testCaller}

// twoInstances returns two environments whose services share the table and
// reach moto through one strict proxy; holdA instruments A's clients.
func twoInstances(t *testing.T, mode grants.Mode, holdA func(*aws.Config)) (a, b *env) {
	t.Helper()
	proxy := awstest.NewProxy(t, awstest.Shared(t).URL)
	proxy.StrictSecrets()
	via := func(c *aws.Config) { c.BaseEndpoint = aws.String(proxy.URL) }
	a = newEnvWith(t, func(c *aws.Config) {
		via(c)
		if holdA != nil {
			holdA(c)
		}
	}, grantMode(mode))
	b = newEnvWith(t, via, grantMode(mode))
	return a, b
}

// async runs f and delivers its error.
func async(f func() error) <-chan error {
	ch := make(chan error, 1)
	go func() { ch <- f() }()
	return ch
}

// settled asserts what must hold of user once every request has answered:
// a live secret only for a live user, and every key of the user the one in
// its secret.
func settled(t *testing.T, e *env, user string) {
	t.Helper()
	sec := secretOf(t, e.sm, user)
	exists := e.UserExists(t, user)
	switch {
	case !exists && sec.exists && sec.deleted == nil:
		t.Fatalf("a live secret for user %s, which is gone", user)
	case !exists:
		if _, err := e.store.Get(ctx(), user); !errors.Is(err, state.ErrNotFound) {
			t.Errorf("the record of deleted user %s is still there (%v)", user, err)
		}
		return
	}
	ids := e.Keys(t, user)
	if r, err := e.store.Get(ctx(), user); err == nil && r.PrevKeyID != "" {
		// A rotation's previous key in its grace is not a leftover.
		ids = slices.DeleteFunc(ids, func(id string) bool { return id == r.PrevKeyID })
	}
	if len(ids) != 1 {
		t.Fatalf("user %s has keys %v, want exactly the one in its secret", user, ids)
	}
	if got := e.MustCredential(t, user).AccessKeyID; got != ids[0] {
		t.Fatalf("secret holds %s, the user's key is %s", got, ids[0])
	}
	rec, err := e.store.Get(ctx(), user)
	if err != nil {
		t.Fatalf("record of %s: %v", user, err)
	}
	if rec.Phase != state.Ready || rec.KeyID != ids[0] || rec.LeaseHolder != "" {
		t.Errorf("record of %s: phase %s, key %s, lease %q; want ready, %s, released", user, rec.Phase, rec.KeyID, rec.LeaseHolder, ids[0])
	}
}

// TestRaceRotateWhileDeleting: a delete arrives while a rotation holds the
// user (held at CreateAccessKey). Today's code: delete 204, then the
// rotation answers 200 with a key that no longer exists and its store step
// brings the deleted secret back. With the lease: the delete is told "in
// progress", the rotation completes, the user is whole.
func TestRaceRotateWhileDeleting(t *testing.T) {
	bothModes(t, func(t *testing.T, mode grants.Mode) {
		var gate *awstest.Gate
		a, b := twoInstances(t, mode, func(c *aws.Config) { gate = awstest.HoldAll(c, "CreateAccessKey") })
		user := awstest.Name("rotdel")
		if _, err := b.svc.Create(ctx(), input(user, rw(awstest.Name("rotdel")+".example.com"))); err != nil {
			t.Fatal(err)
		}
		rotated := make(chan *provision.RotateResult, 1)
		rotErr := async(func() error {
			r, err := a.svc.Rotate(ctx(), provision.RotateInput{Principal: owner, RequestID: "rot", User: user})
			rotated <- r
			return err
		})
		gate.Wait(t)
		delErr := b.svc.Delete(ctx(), provision.DeleteInput{Principal: owner, RequestID: "del", User: user})
		gate.Open()
		if pe := wantKind(t, delErr, provision.KindInProgress); pe.RetryAfter <= 0 {
			t.Errorf("RetryAfter = %v", pe.RetryAfter)
		}
		if err := <-rotErr; err != nil {
			t.Fatalf("rotate: %v", err)
		}
		r := <-rotated
		settled(t, a, user)
		if got := a.MustCredential(t, user).AccessKeyID; got != r.AccessKeyID {
			t.Errorf("the rotation answered key %s, the secret holds %s", r.AccessKeyID, got)
		}
	})
}

// TestRaceRotateAfterDeleteBegan: a rotation arrives while a delete holds
// the user (held at DeleteUser, its keys and secret already gone). Today's
// code: the rotation creates a key and restores the secret — a live secret
// with no user — or the delete fails on the new key (409) and the user
// survives with a key and no grants. With the lease: the rotation is told
// "in progress", the delete completes, nothing is left.
func TestRaceRotateAfterDeleteBegan(t *testing.T) {
	bothModes(t, func(t *testing.T, mode grants.Mode) {
		var gate *awstest.Gate
		a, b := twoInstances(t, mode, func(c *aws.Config) { gate = awstest.HoldAll(c, "DeleteUser") })
		user := awstest.Name("delrot")
		if _, err := a.svc.Create(ctx(), input(user, rw(awstest.Name("delrot")+".example.com"))); err != nil {
			t.Fatal(err)
		}
		delErr := async(func() error {
			return a.svc.Delete(ctx(), provision.DeleteInput{Principal: owner, RequestID: "del", User: user})
		})
		gate.Wait(t)
		_, rotErr := b.svc.Rotate(ctx(), provision.RotateInput{Principal: owner, RequestID: "rot", User: user})
		gate.Open()
		wantKind(t, rotErr, provision.KindInProgress)
		if err := <-delErr; err != nil {
			t.Fatalf("delete: %v", err)
		}
		if a.UserExists(t, user) {
			t.Fatal("the user survived its delete")
		}
		settled(t, a, user)
	})
}

// TestRaceDeleteWhileCreating: a delete arrives while the create is at its
// store step (held at CreateSecret). Today's code: delete 204, create 201
// handing out a key that was just deleted. With the lease: the delete is
// told "in progress", the create's key works, the user is whole.
func TestRaceDeleteWhileCreating(t *testing.T) {
	bothModes(t, func(t *testing.T, mode grants.Mode) {
		var gate *awstest.Gate
		a, b := twoInstances(t, mode, func(c *aws.Config) { gate = awstest.HoldAll(c, "CreateSecret") })
		user := awstest.Name("credel")
		created := make(chan *provision.CreateResult, 1)
		createErr := async(func() error {
			r, err := a.svc.Create(ctx(), input(user, rw(awstest.Name("credel")+".example.com")))
			created <- r
			return err
		})
		gate.Wait(t)
		delErr := b.svc.Delete(ctx(), provision.DeleteInput{Principal: owner, RequestID: "del", User: user})
		gate.Open()
		wantKind(t, delErr, provision.KindInProgress)
		if err := <-createErr; err != nil {
			t.Fatalf("create: %v", err)
		}
		r := <-created
		settled(t, a, user)
		ids := a.Keys(t, user)
		if len(ids) != 1 || ids[0] != r.AccessKeyID {
			t.Errorf("create answered key %s; the user has %v", r.AccessKeyID, ids)
		}
		// Once the create is done, the delete goes through.
		if err := b.svc.Delete(ctx(), provision.DeleteInput{Principal: owner, RequestID: "del2", User: user}); err != nil {
			t.Fatal(err)
		}
		settled(t, a, user)
	})
}

// TestRaceUpdateUpdate: two updates of one user's grants, the first held
// where it writes them. Today's code: both 200, and in grant mode group
// the user ends with the union of both sets — a set nobody asked for. With
// the lease: the second is told "in progress", the user holds exactly the
// first's grants, and the record says so.
func TestRaceUpdateUpdate(t *testing.T) {
	bothModes(t, func(t *testing.T, mode grants.Mode) {
		op := "PutUserPolicy"
		if mode == grants.Group {
			op = "AddUserToGroup"
		}
		var gate *awstest.Gate
		a, b := twoInstances(t, mode, func(c *aws.Config) { gate = awstest.HoldAll(c, op) })
		user := awstest.Name("upup")
		base := awstest.Name("upup")
		if _, err := b.svc.Create(ctx(), input(user, rw(base+"-0.example.com"))); err != nil {
			t.Fatal(err)
		}
		first, second := []policy.Grant{rw(base + "-1.example.com")}, []policy.Grant{rw(base + "-2.example.com")}
		upErr := async(func() error {
			_, err := a.svc.UpdateGrants(ctx(), provision.UpdateGrantsInput{Principal: owner, RequestID: "up1", User: user, Grants: first})
			return err
		})
		gate.Wait(t)
		_, err2 := b.svc.UpdateGrants(ctx(), provision.UpdateGrantsInput{Principal: owner, RequestID: "up2", User: user, Grants: second})
		gate.Open()
		wantKind(t, err2, provision.KindInProgress)
		if err := <-upErr; err != nil {
			t.Fatalf("first update: %v", err)
		}
		a.assertGrants(t, user, first...)
		rec, err := a.store.Get(ctx(), user)
		if err != nil {
			t.Fatal(err)
		}
		if len(rec.Grants) != 1 || rec.Grants[0] != first[0] {
			t.Errorf("record grants %v, want %v", rec.Grants, first)
		}
		settled(t, a, user)
	})
}

// TestUpdateIfMatch: an update naming the version it read (If-Match) is
// refused with KindPrecondition once another change moved the user on, and
// changes nothing; naming the current version it goes through.
func TestUpdateIfMatch(t *testing.T) {
	e := newEnv(t)
	user := awstest.Name("ifmatch")
	base := awstest.Name("ifmatch")
	if _, err := e.svc.Create(ctx(), input(user, rw(base+"-0.example.com"))); err != nil {
		t.Fatal(err)
	}
	d, err := e.svc.Describe(ctx(), owner, user)
	if err != nil {
		t.Fatal(err)
	}
	read := d.Version
	if read < 1 {
		t.Fatalf("version %d, want ≥ 1", read)
	}
	d2, err := e.svc.UpdateGrants(ctx(), provision.UpdateGrantsInput{Principal: owner, RequestID: "u1", User: user, Grants: []policy.Grant{rw(base + "-1.example.com")}, IfMatch: read})
	if err != nil {
		t.Fatal(err)
	}
	if d2.Version != read+1 {
		t.Errorf("version after update %d, want %d", d2.Version, read+1)
	}
	_, err = e.svc.UpdateGrants(ctx(), provision.UpdateGrantsInput{Principal: owner, RequestID: "u2", User: user, Grants: []policy.Grant{rw(base + "-2.example.com")}, IfMatch: read})
	wantKind(t, err, provision.KindPrecondition)
	e.assertGrants(t, user, rw(base+"-1.example.com"))
	err = e.svc.Delete(ctx(), provision.DeleteInput{Principal: owner, RequestID: "d1", User: user, IfMatch: read})
	wantKind(t, err, provision.KindPrecondition)
	if !e.UserExists(t, user) {
		t.Fatal("a refused delete deleted the user")
	}
	if rec, err := e.store.Get(ctx(), user); err != nil || rec.Phase != state.Ready || rec.LeaseHolder != "" {
		t.Errorf("after a refused delete the record is %+v (%v); want ready, released", rec, err)
	}
	if err := e.svc.Delete(ctx(), provision.DeleteInput{Principal: owner, RequestID: "d2", User: user, IfMatch: read + 1}); err != nil {
		t.Fatal(err)
	}
	settled(t, e, user)
}

// TestStaleLeaseTakenOver: a create whose instance dies mid-way (held at
// CreateAccessKey past its lease, then its context cancelled: the Lambda
// timeout killing it) is presumed dead once its lease is stale; a retry on
// another instance takes the lease over atomically and completes the
// user. The dead request's compensation finds the lease gone and undoes
// nothing of what the other made.
func TestStaleLeaseTakenOver(t *testing.T) {
	short := func(s *provision.Settings) { s.RepairAfter = time.Second }
	var gate *awstest.Gate
	a := newEnvWith(t, func(c *aws.Config) { gate = awstest.HoldAll(c, "CreateAccessKey") }, short)
	b := newEnv(t, short)
	user := awstest.Name("stale")
	grant := rw(awstest.Name("stale") + ".example.com")
	actx, kill := context.WithCancel(ctx())
	aErr := async(func() error { _, err := a.svc.Create(actx, input(user, grant)); return err })
	gate.Wait(t)
	time.Sleep(1500 * time.Millisecond) // A's lease goes stale (RepairAfter 1s)
	res, err := b.svc.Create(ctx(), input(user, grant))
	if err != nil {
		t.Fatalf("retry on another instance: %v", err)
	}
	kill()
	if err := <-aErr; err == nil {
		t.Fatal("the killed request succeeded")
	}
	settled(t, b, user)
	if got := b.MustCredential(t, user).AccessKeyID; got != res.AccessKeyID {
		t.Errorf("the retry answered key %s, the secret holds %s", res.AccessKeyID, got)
	}
	if n := a.calls.Count("DeleteUser") + a.calls.Count("DeleteAccessKey"); n != 0 {
		t.Errorf("the dead request's compensation deleted things (%d calls)", n)
	}
}
