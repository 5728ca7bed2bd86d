package provision_test

import (
	"context"
	"errors"
	"sync"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"

	"github.com/keyvend/keyvend/pkg/awstest"
	"github.com/keyvend/keyvend/pkg/grants"
	"github.com/keyvend/keyvend/pkg/provision"
	"github.com/keyvend/keyvend/pkg/state"
)

type outcome struct {
	res *provision.CreateResult
	err error
}

// race sends in from n goroutines, the i-th through services[i%len(services)].
// The services' configurations carry barrier (awstest.Barrier on
// CreateUser, n calls): no CreateUser is sent before all n requests have
// reached it, so they overlap at the claim whatever the scheduler does.
func race(n int, in provision.CreateInput, services ...*provision.Service) []outcome {
	out := make([]outcome, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r, err := services[i%len(services)].Create(ctx(), in)
			out[i] = outcome{r, err}
		}()
	}
	wg.Wait()
	return out
}

// TestConcurrentIdenticalRequestsAcrossInstances: 20 identical requests
// spread over 4 Services (4 Lambda instances) on one moto and one state
// table, all held at CreateUser until every one is there. The claim on the
// name in the table is the cross-process lock: one request holds it and
// creates the key; the others see the complete user (the same key) or are
// told the user is in progress. Never a second key, never a deleted one.
func TestConcurrentIdenticalRequestsAcrossInstances(t *testing.T) {
	bothModes(t, func(t *testing.T, mode grants.Mode) {
		const n = 20
		gate := awstest.Barrier("CreateUser", n)
		envs := make([]*env, 4)
		services := make([]*provision.Service, 4)
		for i := range envs {
			envs[i] = newEnvWith(t, gate.Attach, grantMode(mode))
			services[i] = envs[i].svc
		}
		testIdenticalRace(t, n, envs, services)
	})
}

// TestConcurrentIdenticalRequestsOneInstance: the same on one Service: its
// goroutines are as independent as instances (no in-process lock; the
// lease is the only one).
func TestConcurrentIdenticalRequestsOneInstance(t *testing.T) {
	bothModes(t, func(t *testing.T, mode grants.Mode) {
		const n = 20
		gate := awstest.Barrier("CreateUser", n)
		e := newEnvWith(t, gate.Attach, grantMode(mode))
		testIdenticalRace(t, n, []*env{e}, []*provision.Service{e.svc})
	})
}

func testIdenticalRace(t *testing.T, n int, envs []*env, services []*provision.Service) {
	e := envs[0]
	user := awstest.Name("race")
	grant := rw(awstest.Name("race") + ".example.com")
	outs := race(n, input(user, grant), services...)

	ids := e.Keys(t, user)
	if len(ids) != 1 {
		for i, o := range outs {
			t.Logf("request %d: %v", i, o.err)
		}
		t.Fatalf("keys = %v, want exactly one", ids)
	}
	key := ids[0]
	created, ok, inProgress := 0, 0, 0
	for i, o := range outs {
		if o.err != nil {
			var pe *provision.Error
			if !errors.As(o.err, &pe) || pe.Kind != provision.KindInProgress || pe.RetryAfter <= 0 {
				t.Errorf("request %d: %v", i, o.err)
				continue
			}
			inProgress++
			continue
		}
		ok++
		if o.res.AccessKeyID != key {
			t.Errorf("request %d got key %s, the user has %s", i, o.res.AccessKeyID, key)
		}
		if o.res.Created {
			created++
		}
	}
	t.Logf("outcomes: %d created, %d replayed, %d in progress", created, ok-created, inProgress)
	if created != 1 {
		t.Errorf("%d requests say Created, want exactly 1", created)
	}
	total := 0
	for _, x := range envs {
		total += x.calls.Count("CreateAccessKey")
		if n := x.calls.Count("DeleteAccessKey"); n != 0 {
			t.Errorf("a request deleted %d keys", n)
		}
	}
	if total != 1 {
		t.Errorf("CreateAccessKey called %d times, want 1", total)
	}
	var res *provision.CreateResult
	for _, o := range outs {
		if o.err == nil {
			res = o.res
		}
	}
	e.assertComplete(t, res, user, grant)
}

// TestRequestDuringAnotherInstancesCompensation: instance A's saga fails
// and compensates (deleting the user it created) while instance B asks for
// the same user. B must answer "in progress, retry" — A holds the user's
// lease — and never see a half-made user as its own; A's compensation
// leaves no trace (no user, no key, no secret, no record), and B's retry
// succeeds. The interleaving is forced with hooks, not timing.
func TestRequestDuringAnotherInstancesCompensation(t *testing.T) {
	bothModes(t, testRequestDuringAnotherInstancesCompensation)
}

func testRequestDuringAnotherInstancesCompensation(t *testing.T, mode grants.Mode) {
	aAtKey := make(chan struct{})    // A has created its key and waits
	bAnswered := make(chan struct{}) // B has answered
	a := newEnvWith(t, func(cfg *aws.Config) {
		awstest.AfterSuccess(cfg, "CreateAccessKey", func(context.Context) {
			close(aAtKey)
			<-bAnswered
		})
	}, grantMode(mode))
	b := newEnv(t, grantMode(mode))
	user := awstest.Name("vanish")
	grant := rw(awstest.Name("vanish") + ".example.com")
	a.faults.FailNth("CreateSecret", 1)

	aErr := make(chan error, 1)
	go func() {
		_, err := a.svc.Create(ctx(), input(user, grant))
		aErr <- err
	}()
	select {
	case <-aAtKey:
	case err := <-aErr: // A failed before its key: the hooks never fire
		t.Fatalf("A ended before creating its key: %v", err)
	}
	_, err := b.svc.Create(ctx(), input(user, grant))
	close(bAnswered)
	if pe := wantKind(t, err, provision.KindInProgress); pe.RetryAfter <= 0 {
		t.Errorf("RetryAfter = %v", pe.RetryAfter)
	}
	if err := <-aErr; err == nil {
		t.Fatal("A succeeded despite the fault")
	}
	t.Logf("B: %s", opsLine(b.calls.Calls()))
	a.assertNoTrace(t, user)
	if _, err := a.store.Get(ctx(), user); !errors.Is(err, state.ErrNotFound) {
		t.Errorf("record after compensation: %v, want none", err)
	}

	// The retry the client is told to make succeeds.
	res, err := b.svc.Create(ctx(), input(user, grant))
	if err != nil {
		t.Fatal(err)
	}
	b.assertComplete(t, res, user, grant)
}

// TestRequestWhileAnotherInstanceJoinsGroups (grant mode group): instance
// A has stored its key (the user is complete) but not yet joined its group
// — memberships run alongside the store. Instance B, asked for the same
// user, must answer "in progress, retry", not "exists with different
// grants"; once A is done, B's retry gets A's key. The interleaving is
// forced with hooks. (In grant mode policy there is no such window: the
// key is stored only once the user policy is in place.)
func TestRequestWhileAnotherInstanceJoinsGroups(t *testing.T) {
	stored := make(chan struct{}) // A's key is in the secret
	bAnswered := make(chan struct{})
	a := newEnvWith(t, func(cfg *aws.Config) {
		awstest.AfterSuccess(cfg, "CreateSecret", func(context.Context) { close(stored) })
		awstest.BeforeSend(cfg, "AddUserToGroup", func(context.Context) { <-bAnswered })
	}, grantMode(grants.Group))
	b := newEnv(t, grantMode(grants.Group))
	user := awstest.Name("joining")
	grant := rw(awstest.Name("joining") + ".example.com")

	aOut := make(chan outcome, 1)
	go func() {
		r, err := a.svc.Create(ctx(), input(user, grant))
		aOut <- outcome{r, err}
	}()
	select {
	case <-stored:
	case o := <-aOut: // A ended before storing its key: the hooks never fire
		t.Fatalf("A ended before storing its key: %+v, %v", o.res, o.err)
	}
	_, err := b.svc.Create(ctx(), input(user, grant))
	close(bAnswered)
	if pe := wantKind(t, err, provision.KindInProgress); pe.RetryAfter <= 0 {
		t.Errorf("RetryAfter = %v", pe.RetryAfter)
	}
	o := <-aOut
	if o.err != nil {
		t.Fatal(o.err)
	}
	res, err := b.svc.Create(ctx(), input(user, grant))
	if err != nil {
		t.Fatal(err)
	}
	if res.Created || res.AccessKeyID != o.res.AccessKeyID {
		t.Errorf("retry: Created=%v key %s, want A's key %s", res.Created, res.AccessKeyID, o.res.AccessKeyID)
	}
	b.assertComplete(t, res, user, grant)
}
