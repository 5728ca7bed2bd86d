package provision_test

import (
	"context"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsmiddleware "github.com/aws/aws-sdk-go-v2/aws/middleware"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	"github.com/aws/smithy-go/middleware"

	"github.com/keyvend/keyvend/pkg/awstest"
	"github.com/keyvend/keyvend/pkg/provision"
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

// reapReport is a ReapReport with sorted lists, for exact comparison.
type reapReport struct {
	checked                     int
	expired, halfMade, repaired []string
	strayKeys                   []string // user/key
	errors                      []string
}

func normalize(r *provision.ReapReport) reapReport {
	out := reapReport{checked: r.Checked, expired: sortedCopy(r.Expired), halfMade: sortedCopy(r.HalfMadeDeleted), repaired: sortedCopy(r.Repaired)}
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
	for _, l := range []*[]string{&want.expired, &want.halfMade, &want.repaired, &want.strayKeys, &want.errors} {
		*l = sortedCopy(*l)
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
		{"errors", g.errors, want.errors},
	} {
		if !slices.Equal(c.got, c.want) {
			t.Errorf("%s = %v, want %v", c.name, c.got, c.want)
		}
	}
}

// The reaper on a clock it is told: moto dates users by the real clock, so
// the half-made users are "young" when the clock is set 14 minutes past
// their creation and "old" at 16 minutes past it. Expiry is checked first,
// whatever the age.
func TestReap(t *testing.T) {
	srv := awstest.Dedicated(t)
	clock := &settableClock{}
	e := newLCEnv(t, srv.URL, testRules, func(s *provision.Settings) { s.Now = clock.Now })
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

	// Half-made: no secret (a key and a membership only).
	noSecret := awstest.Name("reap")
	mustCreateUser(t, e.iam, noSecret, "/keyvend/", managedTags(testCaller))
	e.grant(t, noSecret, grant)
	noSecretKey := mustCreateKey(t, e.iam, noSecret)
	// A valid secret and a stray key beside its key.
	stray, strayKeep := create("")
	strayKey := mustCreateKey(t, e.iam, stray)
	// A secret that holds a deleted key.
	dead, deadKey := create("")
	if _, err := e.iam.DeleteAccessKey(ctx(), &iam.DeleteAccessKeyInput{UserName: &dead, AccessKeyId: &deadKey}); err != nil {
		t.Fatal(err)
	}
	// Both: its secret's key deleted, another key not in the secret.
	deadStray, deadStrayOld := create("")
	deadStrayKey := mustCreateKey(t, e.iam, deadStray)
	if _, err := e.iam.DeleteAccessKey(ctx(), &iam.DeleteAccessKeyInput{UserName: &deadStray, AccessKeyId: &deadStrayOld}); err != nil {
		t.Fatal(err)
	}
	// Not keyvend's, though expired and without a secret.
	past := time.Now().Add(-time.Hour)
	untagged, outside := awstest.Name("reap-untagged"), awstest.Name("reap-outside")
	mustCreateUser(t, e.iam, untagged, "/keyvend/", managedTags(testCaller, expiryTag(past))[1:])
	mustCreateUser(t, e.iam, outside, "/", managedTags(testCaller, expiryTag(past)))
	foreignKeys := map[string]string{untagged: mustCreateKey(t, e.iam, untagged), outside: mustCreateKey(t, e.iam, outside)}
	setupEnd := time.Now()
	if setupEnd.Sub(setupStart) > 50*time.Second {
		t.Fatalf("setup took %s: the clock margins below need it under a minute", setupEnd.Sub(setupStart))
	}

	wantKeys := func(user string, keys ...string) {
		t.Helper()
		if got := keyIDsOf(t, e.iam, user); !slices.Equal(got, sortedCopy(keys)) {
			t.Errorf("keys of %s = %v, want %v", user, got, sortedCopy(keys))
		}
	}
	untouched := func() {
		t.Helper()
		wantKeys(unexpired, unexpiredKey)
		wantKeys(healthy, healthyKey)
		for u, k := range foreignKeys {
			wantKeys(u, k)
		}
		for _, u := range []string{unexpired, healthy} {
			if got := secretKeyID(t, e.sm, u); got != map[string]string{unexpired: unexpiredKey, healthy: healthyKey}[u] {
				t.Errorf("secret of %s now holds %s", u, got)
			}
		}
	}

	t.Run("young half-made users are left, the expired one deprovisioned", func(t *testing.T) {
		clock.Set(setupEnd.Add(14 * time.Minute))
		rep, err := e.svc.Reap(ctx())
		if err != nil {
			t.Fatal(err)
		}
		wantReport(t, rep, reapReport{checked: 7, expired: []string{expired}})
		if !rep.StartedAt.Equal(setupEnd.Add(14 * time.Minute).UTC()) {
			t.Errorf("started_at %s, want the clock's %s", rep.StartedAt, setupEnd.Add(14*time.Minute).UTC())
		}
		if userExists(t, e.iam, expired) {
			t.Error("expired user still exists")
		}
		wantScheduled(t, e, expired, setupStart)
		wantKeys(noSecret, noSecretKey)
		wantKeys(stray, strayKeep, strayKey)
		wantKeys(dead)
		wantKeys(deadStray, deadStrayKey)
		untouched()
	})

	t.Run("old half-made users are removed or repaired", func(t *testing.T) {
		clock.Set(setupEnd.Add(16 * time.Minute))
		rep, err := e.svc.Reap(ctx())
		if err != nil {
			t.Fatal(err)
		}
		wantReport(t, rep, reapReport{
			checked:   6,
			halfMade:  []string{noSecret},
			strayKeys: []string{stray + "/" + strayKey, deadStray + "/" + deadStrayKey},
			repaired:  []string{dead, deadStray},
		})
		if userExists(t, e.iam, noSecret) {
			t.Error("half-made user without a secret still exists")
		}
		if secretOf(t, e.sm, noSecret).exists {
			t.Error("a secret appeared for the removed user")
		}
		wantKeys(stray, strayKeep)
		if got := secretKeyID(t, e.sm, stray); got != strayKeep {
			t.Errorf("secret of %s holds %s, want %s", stray, got, strayKeep)
		}
		for _, u := range []string{dead, deadStray} {
			keys := keyIDsOf(t, e.iam, u)
			if len(keys) != 1 || keys[0] == deadKey || keys[0] == deadStrayOld || keys[0] == deadStrayKey {
				t.Errorf("keys of %s = %v, want one new key", u, keys)
				continue
			}
			if got := secretKeyID(t, e.sm, u); got != keys[0] {
				t.Errorf("secret of %s holds %s, the user has %s", u, got, keys[0])
			}
			e.assertGrants(t, u, grant)
		}
		untouched()
		groups, err := e.iam.ListGroups(ctx(), &iam.ListGroupsInput{})
		if err != nil {
			t.Fatal(err)
		}
		for _, g := range groups.Groups {
			if strings.HasPrefix(aws.ToString(g.GroupName), "keyvend-lock_") {
				t.Errorf("repair lock %s left behind", aws.ToString(g.GroupName))
			}
		}
	})

	t.Run("again: nothing more to do, nothing written", func(t *testing.T) {
		e.resetCounters()
		rep, err := e.svc.Reap(ctx())
		if err != nil {
			t.Fatal(err)
		}
		wantReport(t, rep, reapReport{checked: 5})
		if w := e.calls.Writes(); len(w) != 0 {
			t.Errorf("idle reap wrote %v", w)
		}
		untouched()
	})
}

// beforeFirst runs fn once, just before the first call of op made through
// cfg: a deterministic interleaving of two requests.
func beforeFirst(cfg *aws.Config, op string, fn func()) {
	var once sync.Once
	cfg.APIOptions = append(slices.Clone(cfg.APIOptions), func(stack *middleware.Stack) error {
		return stack.Initialize.Add(middleware.InitializeMiddlewareFunc("lifecycle.beforeFirst",
			func(ctx context.Context, in middleware.InitializeInput, next middleware.InitializeHandler) (middleware.InitializeOutput, middleware.Metadata, error) {
				if awsmiddleware.GetOperationName(ctx) == op {
					once.Do(fn)
				}
				return next.HandleInitialize(ctx, in)
			}), middleware.Before)
	})
}

// A rotation creates the new key, then stores it in the secret, then
// deletes the old key. A reaper that reads the user in between sees the new
// key outside the secret, a stray; it must leave it to the rotation, which
// holds the user's repair lock, or the user ends with its only key deleted.
func TestReapDuringRotationLeavesTheNewKey(t *testing.T) {
	srv := awstest.Dedicated(t)
	clock := &settableClock{}
	e := newLCEnv(t, srv.URL, testRules, func(s *provision.Settings) { s.Now = clock.Now })
	user, oldKey := vended(t, e, rw("rotating.example.com"))

	// The reaper's clock says the user is old enough to tidy up; its
	// RepairAfter says a lock taken just now is not stale.
	clock.Set(time.Now().Add(provision.HalfMadeAfter + time.Minute))
	reaper := e.service(t, testRules, func(s *provision.Settings) { s.RepairAfter = time.Hour })

	var rep *provision.ReapReport
	var reapErr error
	rotCfg := e.cfg.Copy()
	beforeFirst(&rotCfg, "PutSecretValue", func() { rep, reapErr = reaper.Reap(ctx()) })
	rotator := e.serviceOn(t, rotCfg, testRules, func(s *provision.Settings) { s.Now = time.Now })

	res, err := rotator.Rotate(ctx(), provision.RotateInput{Principal: who(testCaller), RequestID: "rot", User: user})
	if err != nil {
		t.Fatal(err)
	}
	if rep == nil || reapErr != nil {
		t.Fatalf("the reaper did not run during the rotation: %v", reapErr)
	}
	wantReport(t, rep, reapReport{checked: 1})
	if got := keyIDsOf(t, e.iam, user); !slices.Equal(got, []string{res.AccessKeyID}) || res.AccessKeyID == oldKey {
		t.Errorf("keys after the rotation = %v, want only the new key %s", got, res.AccessKeyID)
	}
	if got := secretKeyID(t, e.sm, user); got != res.AccessKeyID {
		t.Errorf("secret holds %s, want the new key %s", got, res.AccessKeyID)
	}
}
