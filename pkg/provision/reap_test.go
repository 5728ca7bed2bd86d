package provision_test

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsmiddleware "github.com/aws/aws-sdk-go-v2/aws/middleware"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	smtypes "github.com/aws/aws-sdk-go-v2/service/secretsmanager/types"
	"github.com/aws/smithy-go/middleware"

	"github.com/keyvend/keyvend/pkg/awserr"
	"github.com/keyvend/keyvend/pkg/awstest"
	"github.com/keyvend/keyvend/pkg/policy"
	"github.com/keyvend/keyvend/pkg/provision"
	"github.com/keyvend/keyvend/pkg/provisiontest"
	"github.com/keyvend/keyvend/pkg/state"
)

// settableClock is the service's clock: the real time until Set.
type settableClock struct {
	mu sync.Mutex
	at time.Time
}

func (c *settableClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.at.IsZero() {
		return time.Now()
	}
	return c.at
}

func (c *settableClock) Set(t time.Time) {
	c.mu.Lock()
	c.at = t
	c.mu.Unlock()
}

// reapReport is a ReapReport with sorted lists, for exact comparison. Every
// field is compared: a want that leaves one out wants it zero or empty.
type reapReport struct {
	due, checked                int
	expired, halfMade, repaired []string
	strayKeys                   []string // user/key
	adopted, recordsRemoved     []string
	orphanSecrets               []string // secret names
	errors                      []string // user: error
}

func normalize(r *provision.ReapReport) reapReport {
	out := reapReport{due: r.Due, checked: r.Checked, expired: sortedCopy(r.Expired), halfMade: sortedCopy(r.HalfMadeDeleted),
		repaired: sortedCopy(r.Repaired), adopted: sortedCopy(r.Adopted), recordsRemoved: sortedCopy(r.RecordsRemoved),
		orphanSecrets: sortedCopy(r.OrphanSecretsDeleted)}
	out.strayKeys = []string{}
	for _, k := range r.StrayKeysDeleted {
		out.strayKeys = append(out.strayKeys, k.User+"/"+k.AccessKeyID)
	}
	out.strayKeys = sortedCopy(out.strayKeys)
	out.errors = []string{}
	for _, e := range r.Errors {
		out.errors = append(out.errors, e.User+": "+e.Error)
	}
	return out
}

func wantReport(t *testing.T, got *provision.ReapReport, want reapReport) {
	t.Helper()
	g := normalize(got)
	if g.due != want.due {
		t.Errorf("due %d, want %d", g.due, want.due)
	}
	if g.checked != want.checked {
		t.Errorf("checked %d, want %d", g.checked, want.checked)
	}
	for _, c := range []struct {
		name      string
		got, want []string
	}{
		{"expired_deleted", g.expired, want.expired},
		{"half_made_deleted", g.halfMade, want.halfMade},
		{"stray_keys_deleted", g.strayKeys, want.strayKeys},
		{"repaired", g.repaired, want.repaired},
		{"adopted", g.adopted, want.adopted},
		{"records_removed", g.recordsRemoved, want.recordsRemoved},
		{"orphan_secrets_deleted", g.orphanSecrets, want.orphanSecrets},
		{"errors", g.errors, want.errors},
	} {
		if w := sortedCopy(c.want); !slices.Equal(c.got, w) {
			t.Errorf("%s = %v, want %v", c.name, c.got, w)
		}
	}
}

// serialTable makes the DynamoDB calls through cfg one at a time, with
// those of every configuration on the same endpoint it was applied to.
// moto's TransactWriteItems deep-copies the table without a lock: a write
// beside it makes it fail with a 500 (RuntimeError: dictionary changed
// size during iteration), and its rollback restores the copy over what
// the other write did. AWS has no such limit, and the reaper's workers
// write the table concurrently: the reaper tests serialize them.
func serialTable(cfg *aws.Config) {
	endpoint := aws.ToString(cfg.BaseEndpoint)
	tableLocks.Lock()
	mu := tableLocks.m[endpoint]
	if mu == nil {
		if tableLocks.m == nil {
			tableLocks.m = map[string]*sync.Mutex{}
		}
		mu = &sync.Mutex{}
		tableLocks.m[endpoint] = mu
	}
	tableLocks.Unlock()
	cfg.APIOptions = append(slices.Clone(cfg.APIOptions), func(stack *middleware.Stack) error {
		return stack.Initialize.Add(middleware.InitializeMiddlewareFunc("reap.serialTable",
			func(ctx context.Context, in middleware.InitializeInput, next middleware.InitializeHandler) (middleware.InitializeOutput, middleware.Metadata, error) {
				if awsmiddleware.GetServiceID(ctx) != "DynamoDB" {
					return next.HandleInitialize(ctx, in)
				}
				mu.Lock()
				defer mu.Unlock()
				return next.HandleInitialize(ctx, in)
			}), middleware.After)
	})
}

var tableLocks struct {
	sync.Mutex
	m map[string]*sync.Mutex
}

// serialEnv applies serialTable to e's service configuration and remakes
// e.svc on it.
func serialEnv(t *testing.T, e *env) *env {
	t.Helper()
	serialTable(&e.Config)
	e.svc = e.service(t, testRules)
	e.Service = e.svc
	return e
}

// tableOf is a store on e's state table through clients that record and
// fault nothing, for a test to read records and take leases as another
// request would.
func tableOf(t *testing.T, e *env) *state.Store {
	t.Helper()
	return awstest.Table(t, awstest.Config(t, e.url))
}

// recordOf returns user's record, nil when it has none.
func recordOf(t *testing.T, store *state.Store, user string) *state.Record {
	t.Helper()
	rec, err := store.Get(ctx(), user)
	switch {
	case errors.Is(err, state.ErrNotFound):
		return nil
	case err != nil:
		t.Fatalf("record of %s: %v", user, err)
	}
	return rec
}

// wantReadyRecord fails unless user's record is ready, holds key, and
// nobody holds its lease.
func wantReadyRecord(t *testing.T, store *state.Store, user, key string) *state.Record {
	t.Helper()
	rec := recordOf(t, store, user)
	switch {
	case rec == nil:
		t.Errorf("%s has no record", user)
	case rec.Phase != state.Ready || rec.KeyID != key || rec.Busy(time.Now()):
		t.Errorf("record of %s: phase %s, key %s, lease %q until %s; want ready, key %s, not held", user, rec.Phase, rec.KeyID, rec.LeaseHolder, rec.LeaseUntil, key)
	}
	return rec
}

func wantNoRecord(t *testing.T, store *state.Store, user string) {
	t.Helper()
	if rec := recordOf(t, store, user); rec != nil {
		t.Errorf("%s still has a record (phase %s)", user, rec.Phase)
	}
}

// wantHistory fails unless user's history has an entry of action made by
// the reaper.
func wantHistory(t *testing.T, store *state.Store, user, action string) {
	t.Helper()
	page, err := store.History(ctx(), user, 50, "")
	if err != nil {
		t.Fatalf("history of %s: %v", user, err)
	}
	var got []string
	for _, h := range page.Entries {
		if h.Action == action && h.Principal == provision.ReaperPrincipal {
			return
		}
		got = append(got, h.Action+" by "+h.Principal)
	}
	t.Errorf("history of %s has no %s by the reaper: %v", user, action, got)
}

// handMade makes a complete keyvend user by hand in IAM and Secrets
// Manager, as a keyvend without the state table left it: tagged user,
// grant, one key, a secret holding it. No record.
func handMade(t *testing.T, e *env, prefix string, grant policy.Grant) (user, key string) {
	t.Helper()
	user = awstest.Name(prefix)
	mustCreateUser(t, e.iam, user, "/keyvend/", managedTags(testCaller))
	e.grant(t, user, grant)
	key = mustCreateKey(t, e.iam, user)
	e.makeManagedSecret(t, user, key)
	return user, key
}

// deleteByHand deletes user from IAM outside keyvend (moto deletes a user
// with its keys and groups, not with an inline policy).
func deleteByHand(t *testing.T, e *env, user string) {
	t.Helper()
	if _, err := e.iam.DeleteUserPolicy(ctx(), &iam.DeleteUserPolicyInput{UserName: &user, PolicyName: aws.String(policy.UserPolicyName)}); err != nil && awserr.Code(err) != "NoSuchEntity" {
		t.Fatal(err)
	}
	if _, err := e.iam.DeleteUser(ctx(), &iam.DeleteUserInput{UserName: &user}); err != nil {
		t.Fatal(err)
	}
}

// The reaper on a clock it is told: moto dates users by the real clock, so
// the half-made users are "young" when the clock is set 14 minutes past
// their creation and "old" at 16 minutes past it. Expiry comes from the
// table, whatever the age.
func TestReap(t *testing.T) {
	srv := awstest.Dedicated(t)
	clock := &settableClock{}
	e := serialEnv(t, newEnvOn(t, srv.URL, testRules, func(s *provision.Settings) { s.Now = clock.Now }))
	store := tableOf(t, e)
	grant := rw("reaped.example.com")

	setupStart := time.Now()
	create := func(expiresIn string) (string, string) {
		user := awstest.Name("reap")
		in := input(user, grant)
		in.Request.ExpiresIn = expiresIn
		res, err := e.svc.Create(ctx(), in)
		if err != nil {
			t.Fatal(err)
		}
		return user, res.AccessKeyID
	}
	expired, _ := create("10m")
	unexpired, unexpiredKey := create("1h")
	healthy, healthyKey := create("")

	// Half-made, vended before the table: no secret (a key and a grant
	// only), no record.
	noSecret := awstest.Name("reap")
	mustCreateUser(t, e.iam, noSecret, "/keyvend/", managedTags(testCaller))
	e.grant(t, noSecret, grant)
	noSecretKey := mustCreateKey(t, e.iam, noSecret)
	// Complete, made by hand (or vended before the table): no record.
	byHand, byHandKey := handMade(t, e, "reap-hand", grant)
	// A valid secret and a stray key beside its key.
	stray, strayKeep := create("")
	strayKey := mustCreateKey(t, e.iam, stray)
	// A secret that holds a deleted key.
	dead, deadKey := create("")
	deleteKey(t, e, dead, deadKey)
	// Both: its secret's key deleted, another key not in the secret.
	deadStray, deadStrayOld := create("")
	deadStrayKey := mustCreateKey(t, e.iam, deadStray)
	deleteKey(t, e, deadStray, deadStrayOld)
	// Deleted outside keyvend: its record and its secret are left.
	gone, _ := create("")
	deleteByHand(t, e, gone)
	// Not keyvend's, though expired and without a secret.
	past := time.Now().Add(-time.Hour)
	untagged, outside := awstest.Name("reap-untagged"), awstest.Name("reap-outside")
	mustCreateUser(t, e.iam, untagged, "/keyvend/", managedTags(testCaller, expiryTag(past))[1:])
	mustCreateUser(t, e.iam, outside, "/", managedTags(testCaller, expiryTag(past)))
	foreignKeys := map[string]string{untagged: mustCreateKey(t, e.iam, untagged), outside: mustCreateKey(t, e.iam, outside)}
	// Secrets: keyvend's, of a user that never existed (an orphan); of a
	// user that exists but is not keyvend's (left alone); and one at
	// keyvend's prefix that keyvend did not make (left alone).
	orphan := awstest.Name("reap-orphan")
	e.makeManagedSecret(t, orphan, "AKIAORPHAN0000000001")
	e.makeManagedSecret(t, outside, foreignKeys[outside])
	foreign := awstest.Name("reap-foreign")
	if _, err := e.sm.CreateSecret(ctx(), &secretsmanager.CreateSecretInput{Name: aws.String(secretName(foreign)), SecretString: aws.String("{}"),
		Tags: []smtypes.Tag{{Key: aws.String(provision.TagUser), Value: aws.String(foreign)}}}); err != nil {
		t.Fatal(err)
	}
	setupEnd := time.Now()
	if setupEnd.Sub(setupStart) > 50*time.Second {
		t.Fatalf("setup took %s: the clock margins below need it under a minute", setupEnd.Sub(setupStart))
	}

	wantKeys := func(user string, keys ...string) {
		t.Helper()
		if got := e.Keys(t, user); !slices.Equal(got, sortedCopy(keys)) {
			t.Errorf("keys of %s = %v, want %v", user, got, sortedCopy(keys))
		}
	}
	untouched := func() {
		t.Helper()
		wantKeys(unexpired, unexpiredKey)
		wantKeys(healthy, healthyKey)
		wantKeys(byHand, byHandKey)
		for u, k := range foreignKeys {
			wantKeys(u, k)
		}
		for u, k := range map[string]string{unexpired: unexpiredKey, healthy: healthyKey, byHand: byHandKey} {
			if got := e.MustCredential(t, u).AccessKeyID; got != k {
				t.Errorf("secret of %s now holds %s", u, got)
			}
		}
		for _, u := range []string{outside, foreign} {
			if st := secretOf(t, e.sm, u); !st.exists || st.deleted != nil {
				t.Errorf("secret of %s (not keyvend's to delete) deleted: %+v", u, st)
			}
		}
	}

	t.Run("young half-made users are left, the expired one deprovisioned, a complete user without a record adopted", func(t *testing.T) {
		clock.Set(setupEnd.Add(14 * time.Minute))
		rep, err := e.svc.Reap(ctx())
		if err != nil {
			t.Fatal(err)
		}
		wantReport(t, rep, reapReport{due: 1, checked: 7, expired: []string{expired}, adopted: []string{byHand}})
		if !rep.StartedAt.Equal(setupEnd.Add(14 * time.Minute).UTC()) {
			t.Errorf("started_at %s, want the clock's %s", rep.StartedAt, setupEnd.Add(14*time.Minute).UTC())
		}
		if rep.Reconciled != (provision.ReconcileProgress{Users: true, Records: true, Secrets: true}) {
			t.Errorf("reconciled %+v, want every walk complete (one slice holds all)", rep.Reconciled)
		}
		if e.UserExists(t, expired) {
			t.Error("expired user still exists")
		}
		wantScheduled(t, e, expired, setupStart)
		wantNoRecord(t, store, expired)
		wantHistory(t, store, expired, "reap-expired")
		deleted, err := store.Deleted(ctx(), 100)
		if err != nil {
			t.Fatal(err)
		}
		if slices.Contains(deleted, expired) {
			t.Errorf("the history of %s was not given its retention", expired)
		}
		rec := wantReadyRecord(t, store, byHand, byHandKey)
		if rec != nil && (rec.Requester != testCaller || !slices.Equal(rec.Grants, []policy.Grant{grant})) {
			t.Errorf("adopted record of %s: requester %q grants %v", byHand, rec.Requester, rec.Grants)
		}
		wantHistory(t, store, byHand, "adopt")
		wantKeys(noSecret, noSecretKey)
		wantNoRecord(t, store, noSecret)
		wantKeys(stray, strayKeep, strayKey)
		wantKeys(dead)
		wantKeys(deadStray, deadStrayKey)
		if recordOf(t, store, gone) == nil || !secretOf(t, e.sm, gone).exists || secretOf(t, e.sm, gone).deleted != nil {
			t.Errorf("the record or the secret of %s went while it was young", gone)
		}
		if st := secretOf(t, e.sm, orphan); st.deleted != nil {
			t.Errorf("orphan secret deleted while it was young")
		}
		untouched()
	})

	t.Run("old half-made users are removed or repaired, records and secrets of users gone removed", func(t *testing.T) {
		clock.Set(setupEnd.Add(16 * time.Minute))
		rep, err := e.svc.Reap(ctx())
		if err != nil {
			t.Fatal(err)
		}
		wantReport(t, rep, reapReport{
			checked:        7,
			halfMade:       []string{noSecret},
			strayKeys:      []string{stray + "/" + strayKey, deadStray + "/" + deadStrayKey},
			repaired:       []string{dead, deadStray},
			recordsRemoved: []string{gone},
			orphanSecrets:  []string{secretName(orphan), secretName(gone)},
		})
		if e.UserExists(t, noSecret) {
			t.Error("half-made user without a secret still exists")
		}
		if secretOf(t, e.sm, noSecret).exists {
			t.Error("a secret appeared for the removed user")
		}
		wantNoRecord(t, store, noSecret)
		wantHistory(t, store, noSecret, "reap-half-made")
		wantKeys(stray, strayKeep)
		if got := e.MustCredential(t, stray).AccessKeyID; got != strayKeep {
			t.Errorf("secret of %s holds %s, want %s", stray, got, strayKeep)
		}
		wantReadyRecord(t, store, stray, strayKeep)
		for _, u := range []string{dead, deadStray} {
			keys := e.Keys(t, u)
			if len(keys) != 1 || keys[0] == deadKey || keys[0] == deadStrayOld || keys[0] == deadStrayKey {
				t.Errorf("keys of %s = %v, want one new key", u, keys)
				continue
			}
			if got := e.MustCredential(t, u).AccessKeyID; got != keys[0] {
				t.Errorf("secret of %s holds %s, the user has %s", u, got, keys[0])
			}
			e.assertGrants(t, u, grant)
			wantReadyRecord(t, store, u, keys[0])
			wantHistory(t, store, u, "repair")
		}
		wantNoRecord(t, store, gone)
		wantHistory(t, store, gone, "reconcile-user-gone")
		for _, u := range []string{gone, orphan} {
			if st := secretOf(t, e.sm, u); st.deleted == nil {
				t.Errorf("orphan secret of %s not scheduled for deletion: %+v", u, st)
			}
		}
		untouched()
	})

	t.Run("again: nothing more to do, nothing written", func(t *testing.T) {
		e.resetCounters()
		rep, err := e.svc.Reap(ctx())
		if err != nil {
			t.Fatal(err)
		}
		wantReport(t, rep, reapReport{checked: 6})
		if w := e.calls.Writes(); len(w) != 0 {
			t.Errorf("idle reap wrote %v", w)
		}
		untouched()
	})

	t.Run("later: the next expiry", func(t *testing.T) {
		clock.Set(setupEnd.Add(2 * time.Hour))
		rep, err := e.svc.Reap(ctx())
		if err != nil {
			t.Fatal(err)
		}
		wantReport(t, rep, reapReport{due: 1, checked: 5, expired: []string{unexpired}})
		if e.UserExists(t, unexpired) {
			t.Error("expired user still exists")
		}
		wantNoRecord(t, store, unexpired)
		wantHistory(t, store, unexpired, "reap-expired")
	})
}

// isTableOp reports whether op is a DynamoDB operation (the state table).
func isTableOp(op string) bool {
	switch op {
	case "GetItem", "PutItem", "UpdateItem", "DeleteItem", "Query", "Scan", "TransactWriteItems", "BatchWriteItem":
		return true
	}
	return false
}

// dueQueries counts the Query calls on the expiry index among calls.
func dueQueries(calls []awstest.Call) int {
	n := 0
	for _, c := range calls {
		if q, ok := c.Input.(*dynamodb.QueryInput); ok && aws.ToString(q.IndexName) == state.IndexByExpiry {
			n++
		}
	}
	return n
}

// TestReapCostsWhatIsDue: expiry is one query of the table's expiry
// index, not a walk over IAM. With six users and a reconciliation slice of
// two, a run with nothing due makes one Due query and, in IAM and Secrets
// Manager, only the slice's calls (ListUsers, ListUserTags of two users,
// ListSecrets: all young, so nothing more); a run with one user due adds
// only the calls about that user.
func TestReapCostsWhatIsDue(t *testing.T) {
	srv := awstest.Dedicated(t)
	clock := &settableClock{}
	e := serialEnv(t, newEnvOn(t, srv.URL, testRules))
	var soon string
	for i := range 6 {
		user := awstest.Name("cost")
		in := input(user, rw("cost.example.com"))
		in.Request.ExpiresIn = "1h"
		if i == 0 {
			in.Request.ExpiresIn, soon = "10m", user
		}
		if _, err := e.svc.Create(ctx(), in); err != nil {
			t.Fatal(err)
		}
	}
	reaper := e.Another(t, provisiontest.Instrument((&pageUsers{}).attach), provisiontest.Settings(func(s *provision.Settings) { s.Now = clock.Now; s.ReconcileSlice = 2 }))
	about := newTargeted(soon)
	outsideSlice := func(calls []awstest.Call) (other, ofSoon []string) {
		other, ofSoon = []string{}, []string{}
		for _, c := range calls {
			switch {
			case isTableOp(c.Operation):
			case about.about(c.Input):
				ofSoon = append(ofSoon, c.Operation)
			default:
				other = append(other, c.Operation)
			}
		}
		return sortedCopy(other), ofSoon
	}
	slice := []string{"ListSecrets", "ListUserTags", "ListUserTags", "ListUsers"}

	e.resetCounters()
	rep, err := reaper.Reap(ctx())
	if err != nil {
		t.Fatal(err)
	}
	wantReport(t, rep, reapReport{checked: 2})
	calls := e.calls.Calls()
	if n := dueQueries(calls); n != 1 {
		t.Errorf("%d queries of the expiry index, want 1", n)
	}
	if other, ofSoon := outsideSlice(calls); !slices.Equal(sortedCopy(append(other, ofSoon...)), slice) {
		t.Errorf("IAM and Secrets Manager calls with nothing due: %v, and %v about %s; want only the slice's %v", other, ofSoon, soon, slice)
	}
	if w := e.calls.Writes(); len(w) != 0 {
		t.Errorf("a run with nothing due wrote %v", w)
	}

	clock.Set(time.Now().Add(11 * time.Minute)) // soon expired; every user still young
	e.resetCounters()
	rep, err = reaper.Reap(ctx())
	if err != nil {
		t.Fatal(err)
	}
	wantReport(t, rep, reapReport{due: 1, checked: 2, expired: []string{soon}})
	calls = e.calls.Calls()
	if n := dueQueries(calls); n != 1 {
		t.Errorf("%d queries of the expiry index, want 1", n)
	}
	other, ofSoon := outsideSlice(calls) // soon is gone before the slice is listed
	if !slices.Equal(other, slice) {
		t.Errorf("IAM and Secrets Manager calls about other users: %v, want only the slice's %v", other, slice)
	}
	if !slices.Contains(ofSoon, "DeleteUser") {
		t.Errorf("calls about %s: %v, want its deprovision", soon, ofSoon)
	}
}

// TestReapLeavesAUserARequestHolds: a user whose lease another request
// holds is neither expired nor repaired, and the run reports no error; the
// run after the request lets go does both.
func TestReapLeavesAUserARequestHolds(t *testing.T) {
	srv := awstest.Dedicated(t)
	clock := &settableClock{}
	e := serialEnv(t, newEnvOn(t, srv.URL, testRules, func(s *provision.Settings) { s.Now = clock.Now }))
	store := tableOf(t, e)
	in := input(awstest.Name("held-exp"), rw("held.example.com"))
	in.Request.ExpiresIn = "1h"
	if _, err := e.svc.Create(ctx(), in); err != nil {
		t.Fatal(err)
	}
	expiring := in.Request.User
	dead, deadKey := vended(t, e, rw("held.example.com"))
	deleteKey(t, e, dead, deadKey)
	for _, u := range []string{expiring, dead} {
		if _, err := store.Lease(ctx(), u, "another-request", time.Minute, state.LeaseOpts{}); err != nil {
			t.Fatal(err)
		}
	}
	clock.Set(time.Now().Add(2 * time.Hour))

	rep, err := e.svc.Reap(ctx())
	if err != nil {
		t.Fatal(err)
	}
	wantReport(t, rep, reapReport{due: 1, checked: 2})
	if !e.UserExists(t, expiring) {
		t.Fatalf("%s, held by a request, was deleted", expiring)
	}
	if keys := e.Keys(t, dead); len(keys) != 0 {
		t.Errorf("%s, held by a request, got keys %v", dead, keys)
	}
	for _, u := range []string{expiring, dead} {
		rec := recordOf(t, store, u)
		if rec == nil || rec.Phase != state.Ready || rec.LeaseHolder != "another-request" {
			t.Fatalf("record of %s: %+v; want ready, still held by the request", u, rec)
		}
		if err := store.Release(ctx(), u, "another-request"); err != nil {
			t.Fatal(err)
		}
	}

	rep, err = e.svc.Reap(ctx())
	if err != nil {
		t.Fatal(err)
	}
	wantReport(t, rep, reapReport{due: 1, checked: 1, expired: []string{expiring}, repaired: []string{dead}})
	if e.UserExists(t, expiring) {
		t.Errorf("%s still exists", expiring)
	}
	wantNoRecord(t, store, expiring)
	keys := e.Keys(t, dead)
	if len(keys) != 1 || e.MustCredential(t, dead).AccessKeyID != keys[0] {
		t.Fatalf("%s: keys %v, want one, its secret's", dead, keys)
	}
	wantReadyRecord(t, store, dead, keys[0])
}

// TestReapStaleRecords: records a request that died left in creating or
// deleting, for longer than state.StaleAfter, are finished by the reaper:
// creating with its user complete → recorded ready (the record was all it
// missed); creating with its user half-made → deprovisioned; deleting →
// deprovisioned.
func TestReapStaleRecords(t *testing.T) {
	srv := awstest.Dedicated(t)
	clock := &settableClock{}
	e := serialEnv(t, newEnvOn(t, srv.URL, testRules, func(s *provision.Settings) { s.Now = clock.Now }))
	store := tableOf(t, e)
	grant := rw("stale.example.com")
	// died leaves user's record in creating, its lease stale at once.
	died := func(user string) {
		t.Helper()
		r := state.Record{Name: user, Phase: state.Creating, Grants: []policy.Grant{grant}, Requester: testCaller, RequestID: "req-died", CreatedAt: time.Now()}
		if _, err := store.Claim(ctx(), r, "request-that-died", time.Millisecond); err != nil {
			t.Fatal(err)
		}
	}
	complete, completeKey := handMade(t, e, "stale-ok", grant)
	died(complete)
	halfMade := awstest.Name("stale-half")
	mustCreateUser(t, e.iam, halfMade, "/keyvend/", managedTags(testCaller))
	e.grant(t, halfMade, grant)
	mustCreateKey(t, e.iam, halfMade)
	died(halfMade)
	// A delete that died after marking its user deleting.
	deleting, _ := vended(t, e, grant)
	if _, err := store.Lease(ctx(), deleting, "delete-that-died", time.Millisecond, state.LeaseOpts{SetPhase: state.Deleting}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(5 * time.Millisecond) // every lease stale

	clock.Set(time.Now().Add(state.StaleAfter - time.Minute))
	rep, err := e.svc.Reap(ctx())
	if err != nil {
		t.Fatal(err)
	}
	wantReport(t, rep, reapReport{checked: 3})
	for _, u := range []string{complete, halfMade, deleting} {
		if !e.UserExists(t, u) {
			t.Errorf("%s removed before its record was stale", u)
		}
	}

	clock.Set(time.Now().Add(2 * time.Hour))
	rep, err = e.svc.Reap(ctx())
	if err != nil {
		t.Fatal(err)
	}
	// All three come from the expiry index: a lease that marks a record
	// deleting (or creating) puts it there StaleAfter later.
	wantReport(t, rep, reapReport{due: 3, checked: 1, repaired: []string{complete}, halfMade: []string{halfMade, deleting}})
	wantKeys := e.Keys(t, complete)
	if !slices.Equal(wantKeys, []string{completeKey}) || e.MustCredential(t, complete).AccessKeyID != completeKey {
		t.Errorf("%s: keys %v, want its own %s, in its secret", complete, wantKeys, completeKey)
	}
	wantReadyRecord(t, store, complete, completeKey)
	wantHistory(t, store, complete, "repair")
	for _, u := range []string{halfMade, deleting} {
		if e.UserExists(t, u) {
			t.Errorf("%s still exists", u)
		}
		wantNoRecord(t, store, u)
		wantHistory(t, store, u, "reap-half-made")
	}

	rep, err = e.svc.Reap(ctx())
	if err != nil {
		t.Fatal(err)
	}
	wantReport(t, rep, reapReport{checked: 1})
}

// TestReapCheckpoint: each run reconciles one slice (ReconcileSlice) of
// each walk and resumes where the last stopped. Five users, slices of two:
// three runs cover every user once, and only the third says the walks are
// complete; the fourth starts over.
func TestReapCheckpoint(t *testing.T) {
	srv := awstest.Dedicated(t)
	e := serialEnv(t, newEnvOn(t, srv.URL, testRules))
	var users []string
	for range 5 {
		u, _ := vended(t, e, rw("ckpt.example.com"))
		users = append(users, u)
	}
	pager := &pageUsers{}
	reaper := e.Another(t, provisiontest.Instrument(pager.attach), provisiontest.Settings(func(s *provision.Settings) { s.ReconcileSlice = 2 }))

	var seen []string
	for run, complete := range []bool{false, false, true, false} {
		rep, err := reaper.Reap(ctx())
		if err != nil {
			t.Fatal(err)
		}
		pages := pager.answered()
		page := pages[len(pages)-1]
		if len(pages) != run+1 || len(page) > 2 {
			t.Fatalf("run %d: pages %v, want one more of at most two users", run+1, pages)
		}
		wantReport(t, rep, reapReport{checked: len(page)})
		want := provision.ReconcileProgress{Users: complete, Records: complete, Secrets: complete}
		if rep.Reconciled != want {
			t.Errorf("run %d: reconciled %+v, want %+v", run+1, rep.Reconciled, want)
		}
		if run < 3 {
			seen = append(seen, page...)
		} else if !slices.Equal(page, pages[0]) {
			t.Errorf("run 4 read %v, want the first slice again %v", page, pages[0])
		}
	}
	if !slices.Equal(sortedCopy(seen), sortedCopy(users)) {
		t.Errorf("three runs reconciled %v, want each of %v once", seen, users)
	}
}

// A rotation creates the new key, then stores it in the secret, then
// deletes the old key. A reaper that reads the user in between sees the new
// key outside the secret, a stray; it must leave it to the rotation, which
// holds the user's lease, or the user ends with its only key deleted.
func TestReapDuringRotationLeavesTheNewKey(t *testing.T) {
	srv := awstest.Dedicated(t)
	clock := &settableClock{}
	e := newEnvOn(t, srv.URL, testRules, func(s *provision.Settings) { s.Now = clock.Now })
	user, oldKey := vended(t, e, rw("rotating.example.com"))

	// The reaper's clock says the user is old enough to tidy up; its
	// RepairAfter says a lease taken just now is not stale.
	clock.Set(time.Now().Add(provision.HalfMadeAfter + time.Minute))
	reaper := e.service(t, testRules, func(s *provision.Settings) { s.RepairAfter = time.Hour })

	var rep *provision.ReapReport
	var reapErr error
	rotator := e.Another(t, provisiontest.Instrument(func(c *aws.Config) {
		beforeFirst(c, "PutSecretValue", func() { rep, reapErr = reaper.Reap(ctx()) })
	}), provisiontest.Settings(func(s *provision.Settings) { s.Now = time.Now }))

	res, err := rotator.Rotate(ctx(), provision.RotateInput{Principal: who(testCaller), RequestID: "rot", User: user})
	if err != nil {
		t.Fatal(err)
	}
	if rep == nil || reapErr != nil {
		t.Fatalf("the reaper did not run during the rotation: %v", reapErr)
	}
	wantReport(t, rep, reapReport{checked: 1})
	if got := e.Keys(t, user); !slices.Equal(got, sortedPair(res.AccessKeyID, oldKey)) || res.AccessKeyID == oldKey {
		t.Errorf("keys after the rotation = %v, want the new key %s and the old %s, kept for its grace", got, res.AccessKeyID, oldKey)
	}
	if got := e.MustCredential(t, user).AccessKeyID; got != res.AccessKeyID {
		t.Errorf("secret holds %s, want the new key %s", got, res.AccessKeyID)
	}
}
