package provision_test

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"

	"github.com/keyvend/keyvend/pkg/awserr"
	"github.com/keyvend/keyvend/pkg/awstest"
	"github.com/keyvend/keyvend/pkg/grants"
	"github.com/keyvend/keyvend/pkg/policy"
	"github.com/keyvend/keyvend/pkg/provision"
	"github.com/keyvend/keyvend/pkg/provisiontest"
	"github.com/keyvend/keyvend/pkg/state"
)

// reapVictim is a user the reaper has work on, of one kind.
type reapVictim struct {
	name  string
	grant policy.Grant
	key   string // stale: the key in its secret, kept
	stray string // dead: the key outside its secret
}

// Kinds of reaper work on a user.
const (
	// expired: past its expiry (the table's expiry index): deprovisioned.
	victimExpired = "expired"
	// stale: complete, but its record left in creating by a create that
	// died (the expiry index, past state.StaleAfter): recorded ready.
	victimStale = "stale-creating"
	// half-made: vended before the table, old, no secret, no record (the
	// reconciliation): deprovisioned.
	victimHalfMade = "half-made"
	// dead: recorded, old, its secret holds a deleted key, a stray key
	// beside it, and its lease left stale by a request that died (the
	// reconciliation): the lease taken over, the stray deleted, a new key
	// stored (restock), the record committed with it.
	victimDead = "dead"
)

// reapStep is the text the reaper's error names for a failed call of a
// kind of work: the step, as an operator reads it.
func reapStep(kind, op, user string) string {
	reads := map[string]string{
		"ListUserTags":      "list tags of " + user,
		"ListAccessKeys":    "list access keys of user " + user,
		"GetSecretValue":    "read secret keyvend/users/" + user,
		"GetUserPolicy":     "read grants of user " + user,
		"ListGroupsForUser": "read grants of user " + user,
		"GetUser":           "read user " + user,
	}
	switch kind {
	case victimStale, victimHalfMade:
		return reads[op]
	case victimDead:
		if s, ok := map[string]string{
			"DeleteAccessKey":   "delete stray access key",
			"DescribeSecret":    "describe existing secret keyvend/users/" + user,
			"GetResourcePolicy": "read resource policy of secret keyvend/users/" + user,
			"CreateAccessKey":   "create access key for " + user,
			"PutSecretValue":    "put new version of secret keyvend/users/" + user,
		}[op]; ok {
			return s
		}
		return reads[op]
	}
	return map[string]string{ // deprovision: inventory, then detach, then DeleteUser
		"GetUser":                  "read user " + user,
		"ListAccessKeys":           "list access keys of user " + user,
		"ListGroupsForUser":        "list groups of user " + user,
		"ListUserPolicies":         "list inline policies of user " + user,
		"ListAttachedUserPolicies": "list attached policies of user " + user,
		"DescribeSecret":           "describe the secret of user " + user,
		"GetUserPolicy":            "read the grant policy of user " + user,
		"DeleteAccessKey":          "delete access key",
		"RemoveUserFromGroup":      "remove " + user + " from group",
		"DeleteUserPolicy":         "delete inline policy",
		"DeleteSecret":             "delete secret keyvend/users/" + user,
		"DeleteUser":               "delete user " + user,
	}[op]
}

// TestReapErrorPaths: the reaper, on its own moto and a clock two hours
// ahead, goes over a victim and two bystanders (an expired user, a user
// whose secret holds a deleted key), while each call it makes about the
// victim fails in turn — for each kind of work (see the kinds). The calls
// are those of a clean run on the same kind of victim. The run finishes
// for the bystanders; its Errors name exactly the victim, with the failed
// step and the AWS error; whatever the victim got done before is
// reported; the victim is not removed when its work was to keep it; no
// lease the run took is left held; and a second run without faults
// finishes the victim's work (deleted with all it had — the services'
// DeleteUser is refused while anything is left, as in AWS — and its record
// gone; or complete with one key, the secret's, its grants, and a ready
// record of that key) with Errors empty.
//
// Faulted: every call of the expired and the dead victims' work; the
// stale and half-made victims' reads (their deprovision, when they have
// one, is the expired victim's). Not faulted: the deletion of a grant
// group left empty (grant mode group), best effort and about the group,
// not the user; the table (DynamoDB) calls, TestReapCommitFails.
func TestReapErrorPaths(t *testing.T) {
	bothModes(t, func(t *testing.T, mode grants.Mode) {
		t.Parallel() // each mode on its own moto
		testReapErrorPaths(t, mode)
	})
}

func testReapErrorPaths(t *testing.T, mode grants.Mode) {
	srv := awstest.Dedicated(t)
	e := serialEnv(t, newStrictEnv(t, srv.URL, grantMode(mode)))
	store := tableOf(t, e)
	clock := &settableClock{}
	reaperFor := func(tg *targeted) *provision.Service {
		return e.Another(t, provisiontest.Instrument(tg.attach), provisiontest.Settings(func(s *provision.Settings) { s.Now = clock.Now }))
	}
	vend := func(t *testing.T, prefix, expiresIn string) (string, policy.Grant, string) {
		t.Helper()
		user, grant := awstest.Name(prefix), rw(awstest.Name(prefix)+".example.com")
		in := input(user, grant)
		in.Request.ExpiresIn = expiresIn
		res, err := e.svc.Create(ctx(), in)
		if err != nil {
			t.Fatal(err)
		}
		return user, grant, res.AccessKeyID
	}
	makeVictim := func(t *testing.T, kind string) reapVictim {
		t.Helper()
		switch kind {
		case victimExpired:
			user, grant, _ := vend(t, "rv-exp", "1h")
			return reapVictim{name: user, grant: grant}
		case victimStale:
			grant := rw(awstest.Name("rv-stale") + ".example.com")
			user, key := handMade(t, e, "rv-stale", grant)
			r := state.Record{Name: user, Phase: state.Creating, Grants: []policy.Grant{grant}, Requester: testCaller, CreatedAt: time.Now()}
			if _, err := store.Claim(ctx(), r, "create-that-died", time.Millisecond); err != nil {
				t.Fatal(err)
			}
			return reapVictim{name: user, grant: grant, key: key}
		case victimHalfMade:
			v := reapVictim{name: awstest.Name("rv-half"), grant: rw(awstest.Name("rv-half") + ".example.com")}
			mustCreateUser(t, e.iam, v.name, "/keyvend/", managedTags(testCaller))
			e.grant(t, v.name, v.grant)
			mustCreateKey(t, e.iam, v.name)
			return v
		}
		user, grant, key := vend(t, "rv-dead", "")
		deleteKey(t, e, user, key)
		if _, err := store.Lease(ctx(), user, "request-that-died", time.Millisecond, state.LeaseOpts{}); err != nil {
			t.Fatal(err)
		}
		return reapVictim{name: user, grant: grant, stray: mustCreateKey(t, e.iam, user)}
	}
	// bystanders: an expired user and one whose secret holds a deleted key.
	bystanders := func(t *testing.T) (expired, dead string, deadGrant policy.Grant) {
		t.Helper()
		expired, _, _ = vend(t, "rv-bexp", "1h")
		dead, deadGrant, key := vend(t, "rv-bdead", "")
		deleteKey(t, e, dead, key)
		return expired, dead, deadGrant
	}
	// cleanup deletes by hand what a case left — users, secrets, records —
	// so that the next case's runs see only their own. Its store's lease
	// clock is an hour ahead: it takes over any lease (one a failed
	// removal left, which expires by itself).
	sweeper := tableOf(t, e)
	sweeper.SetClock(func() time.Time { return time.Now().Add(time.Hour) })
	cleanup := func(t *testing.T) {
		for _, u := range keyvendUsers(t, e) {
			deleteByHand(t, e, u)
		}
		secrets, err := e.sm.ListSecrets(ctx(), &secretsmanager.ListSecretsInput{IncludePlannedDeletion: aws.Bool(true)})
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range secrets.SecretList {
			if _, err := e.sm.DeleteSecret(ctx(), &secretsmanager.DeleteSecretInput{SecretId: s.Name, ForceDeleteWithoutRecovery: aws.Bool(true)}); err != nil {
				t.Fatal(err)
			}
		}
		page, err := sweeper.List(ctx(), state.Query{Limit: 100})
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range page.Records {
			rec, err := sweeper.Lease(ctx(), r.Name, "cleanup", time.Minute, state.LeaseOpts{})
			if err != nil {
				t.Fatal(err)
			}
			if err := sweeper.Remove(ctx(), "cleanup", rec, nil); err != nil {
				t.Fatal(err)
			}
		}
	}
	reapAt := func() { clock.Set(time.Now().Add(2 * time.Hour)) }
	complete := func(t *testing.T, user string, grant policy.Grant, not ...string) string {
		t.Helper()
		keys := e.Keys(t, user)
		if got := e.MustCredential(t, user).AccessKeyID; len(keys) != 1 || keys[0] != got || slices.Contains(not, got) {
			t.Errorf("keys of %s = %v, secret holds %s: want one key, the secret's, not %v", user, keys, got, not)
			return ""
		}
		e.assertGrants(t, user, grant)
		wantReadyRecord(t, store, user, keys[0])
		return keys[0]
	}
	gone := func(t *testing.T, v reapVictim) {
		t.Helper()
		if e.UserExists(t, v.name) {
			t.Fatalf("victim %s still exists", v.name)
		}
		if m := e.groupMembers(t, policy.GroupName(v.grant)); len(m) != 0 {
			t.Errorf("group %s still has members %v", policy.GroupName(v.grant), m)
		}
		wantNoRecord(t, store, v.name)
	}

	// Baselines: the victim's calls in a clean run, per kind.
	type reapCase struct {
		kind string
		call nthCall
		// dead victim: its stray was deleted, its new key stored, before
		// the call.
		strayDone, restocked bool
	}
	var cases []reapCase
	readOps := []string{"ListUserTags", "GetUserPolicy", "ListGroupsForUser", "ListAccessKeys", "GetSecretValue", "GetUser"}
	for _, kind := range []string{victimExpired, victimStale, victimHalfMade, victimDead} {
		v := makeVictim(t, kind)
		bystanders(t)
		tg := newTargeted(v.name)
		reapAt()
		rep, err := reaperFor(tg).Reap(ctx())
		if err != nil {
			t.Fatal(err)
		}
		if len(rep.Errors) != 0 {
			t.Fatalf("clean run on a %s victim: errors %v", kind, rep.Errors)
		}
		calls := numbered(tg.calls())
		t.Logf("clean run, %s victim: %v", kind, calls)
		strayAt := slices.Index(calls, nthCall{"DeleteAccessKey", 1})
		putAt := slices.Index(calls, nthCall{"PutSecretValue", 1})
		for i, c := range calls {
			rc := reapCase{kind: kind, call: c, strayDone: kind == victimDead && i > strayAt, restocked: kind == victimDead && i > putAt}
			switch {
			case kind == victimStale && (c.nth != 1 || c.op == "ListUserTags" || !slices.Contains(readOps, c.op)):
			case kind == victimHalfMade && (c.nth != 1 || c.op == "GetUser" || !slices.Contains(readOps, c.op)):
			default:
				if reapStep(kind, c.op, v.name) == "" {
					t.Fatalf("no step text for %s of a %s victim", c, kind)
				}
				cases = append(cases, rc)
			}
		}
		switch kind {
		case victimStale:
			wantReadyRecord(t, store, v.name, v.key)
			for _, c := range []nthCall{{"GetUser", 1}, {"ListAccessKeys", 1}, {"GetSecretValue", 1}} {
				if !slices.Contains(calls, c) {
					t.Fatalf("the stale victim's run made no %s: %v", c, calls)
				}
			}
		case victimHalfMade:
			if !slices.Contains(calls, nthCall{"GetSecretValue", 1}) || !slices.Contains(calls, nthCall{"ListAccessKeys", 1}) {
				t.Fatalf("the half-made victim's state was not read: %v", calls)
			}
		case victimDead:
			for _, op := range []string{"ListUserTags", "DeleteAccessKey", "DescribeSecret", "GetResourcePolicy", "CreateAccessKey", "PutSecretValue"} {
				if !slices.ContainsFunc(calls, func(c nthCall) bool { return c.op == op }) {
					t.Fatalf("the dead victim's run made no %s: %v", op, calls)
				}
			}
			if strayAt < 0 || putAt < strayAt {
				t.Fatalf("the dead victim's run did not delete its stray, then restock: %v", calls)
			}
		}
		cleanup(t)
	}

	for _, c := range cases {
		t.Run(c.kind+"/"+c.call.String(), func(t *testing.T) {
			defer cleanup(t)
			v := makeVictim(t, c.kind)
			bExp, bDead, bDeadGrant := bystanders(t)
			if n := len(keyvendUsers(t, e)); n != 3 {
				t.Fatalf("%d users on the moto, want the victim and two bystanders", n)
			}
			tg := newTargeted(v.name)
			tg.failNth(c.call.op, c.call.nth)
			reaper := reaperFor(tg)
			reapAt()

			rep, err := reaper.Reap(ctx())
			if err != nil {
				t.Fatalf("Reap: %v", err)
			}
			if tg.firedCount() != 1 {
				t.Fatalf("the fault fired %d times", tg.firedCount())
			}
			want := reapReport{due: 1, checked: 2, expired: []string{bExp}, repaired: []string{bDead}}
			if c.kind == victimExpired || c.kind == victimStale {
				want.due++
			}
			if c.call.op == "ListUserTags" {
				want.checked--
			}
			if c.strayDone {
				want.strayKeys = []string{v.name + "/" + v.stray}
			}
			if c.restocked {
				want.repaired = append(want.repaired, v.name)
			}
			var errText string
			for _, re := range rep.Errors {
				if re.User == v.name {
					errText = re.Error
				}
			}
			want.errors = []string{v.name + ": " + errText}
			step := reapStep(c.kind, c.call.op, v.name)
			if !strings.Contains(errText, step) || !strings.Contains(errText, awstest.InjectedCode) {
				t.Errorf("error of %s = %q, want it to name the step %q and the AWS error", v.name, errText, step)
			}
			wantReport(t, rep, want)
			// The bystanders' work is done.
			if e.UserExists(t, bExp) {
				t.Errorf("expired bystander %s still exists", bExp)
			}
			complete(t, bDead, bDeadGrant)
			// No lease the run took is left held, and a user to keep is kept.
			if rec := recordOf(t, store, v.name); rec != nil && rec.Busy(time.Now()) {
				t.Errorf("the run left the lease of %s held by %s", v.name, rec.LeaseHolder)
			}
			if c.kind == victimStale || c.kind == victimDead {
				if !e.UserExists(t, v.name) {
					t.Fatalf("victim %s, a user to keep, was removed", v.name)
				}
			}
			if c.kind == victimStale {
				if keys := e.Keys(t, v.name); !slices.Equal(keys, []string{v.key}) {
					t.Errorf("keys of the stale victim %s = %v, want its own %s", v.name, keys, v.key)
				}
			}

			// Again, without the fault: the victim's work is finished.
			tg.failNth("", 0)
			rep, err = reaper.Reap(ctx())
			if err != nil {
				t.Fatal(err)
			}
			want = reapReport{checked: 2}
			switch c.kind {
			case victimExpired:
				want.due, want.checked, want.expired = 1, 1, []string{v.name}
			case victimStale:
				want.due, want.repaired = 1, []string{v.name}
			case victimHalfMade:
				want.halfMade = []string{v.name}
			case victimDead:
				if !c.restocked {
					want.repaired = []string{v.name}
				}
				if !c.strayDone {
					want.strayKeys = []string{v.name + "/" + v.stray}
				}
			}
			wantReport(t, rep, want)
			switch c.kind {
			case victimStale:
				if key := complete(t, v.name, v.grant); key != v.key {
					t.Errorf("the stale victim holds %s, want its own %s", key, v.key)
				}
			case victimDead:
				complete(t, v.name, v.grant, v.stray)
			default:
				gone(t, v)
			}
			if st := secretOf(t, e.sm, v.name); c.kind == victimExpired && st.deleted == nil {
				t.Errorf("secret of %s not scheduled for deletion", v.name)
			}
		})
	}
}

// TestReapCommitFails: a restock whose record commit fails (the table, not
// IAM) is an error naming the user; the key it stored stays the user's
// only key, and the next run records it: the record converges on what IAM
// and the secret hold.
func TestReapCommitFails(t *testing.T) {
	srv := awstest.Dedicated(t)
	e := serialEnv(t, newStrictEnv(t, srv.URL))
	store := tableOf(t, e)
	clock := &settableClock{}
	reaper := e.service(t, testRules, func(s *provision.Settings) { s.Now = clock.Now })
	user, key := vended(t, e, rw("commit.example.com"))
	deleteKey(t, e, user, key)
	clock.Set(time.Now().Add(2 * time.Hour))

	e.resetCounters()
	e.faults.FailNth("TransactWriteItems", 1)
	rep, err := reaper.Reap(ctx())
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Errors) != 1 || rep.Errors[0].User != user || !strings.Contains(rep.Errors[0].Error, "record the change of user "+user) ||
		!strings.Contains(rep.Errors[0].Error, awstest.InjectedCode) {
		t.Fatalf("errors %v, want %s's failed commit", rep.Errors, user)
	}
	keys := e.Keys(t, user)
	if len(keys) != 1 || e.MustCredential(t, user).AccessKeyID != keys[0] {
		t.Fatalf("keys of %s = %v, want one, in its secret", user, keys)
	}
	if rec := recordOf(t, store, user); rec == nil || rec.Busy(time.Now()) {
		t.Errorf("record of %s after the failed commit: %+v", user, rec)
	}

	e.resetCounters()
	rep, err = reaper.Reap(ctx())
	if err != nil {
		t.Fatal(err)
	}
	wantReport(t, rep, reapReport{checked: 1})
	wantReadyRecord(t, store, user, keys[0])
	if w := e.calls.Writes(); len(w) != 0 {
		t.Errorf("the run after wrote %v in IAM or Secrets Manager", w)
	}
}

// TestReapListUsersFails: ListUsers failing does not stop expiry (it comes
// from the table): the run deprovisions what is due, then returns the
// error with its report, and reconciles nothing. The walk over IAM users
// keeps its checkpoint: with slices of two users (a pager: moto ignores
// MaxItems), a run that fails after the first slice was done resumes, next
// time, at the second.
func TestReapListUsersFails(t *testing.T) {
	srv := awstest.Dedicated(t)
	e := serialEnv(t, newStrictEnv(t, srv.URL))
	clock := &settableClock{}
	pager := &pageUsers{}
	reaper := e.Another(t, provisiontest.Instrument(pager.attach), provisiontest.Settings(func(s *provision.Settings) { s.Now = clock.Now; s.ReconcileSlice = 2 }))
	var expiring, dead []string
	for range 4 {
		user := awstest.Name("rl-exp")
		in := input(user, rw(awstest.Name("rl")+".example.com"))
		in.Request.ExpiresIn = "1h"
		if _, err := e.svc.Create(ctx(), in); err != nil {
			t.Fatal(err)
		}
		expiring = append(expiring, user)
		u, key := vended(t, e, rw(awstest.Name("rl")+".example.com"))
		deleteKey(t, e, u, key)
		dead = append(dead, u)
	}
	clock.Set(time.Now().Add(2 * time.Hour))
	failed := func(rep *provision.ReapReport, err error) {
		t.Helper()
		if err == nil || awserr.Code(err) != awstest.InjectedCode || !strings.Contains(err.Error(), "list users under /keyvend/") {
			t.Errorf("Reap error = %v, want the failed ListUsers", err)
		}
		if rep == nil {
			t.Fatal("no report with the error")
		}
	}
	restocked := func(users []string) {
		t.Helper()
		for _, u := range dead {
			n := len(e.Keys(t, u))
			if want := map[bool]int{true: 1, false: 0}[slices.Contains(users, u)]; n != want {
				t.Errorf("%s has %d keys, want %d", u, n, want)
			}
		}
	}

	e.faults.FailNth("ListUsers", 1)
	rep, err := reaper.Reap(ctx())
	failed(rep, err)
	wantReport(t, rep, reapReport{due: 4, expired: expiring})
	for _, u := range expiring {
		if e.UserExists(t, u) {
			t.Errorf("expired %s still exists", u)
		}
	}
	restocked(nil)
	if rep.Reconciled != (provision.ReconcileProgress{}) {
		t.Errorf("reconciled %+v after the failed ListUsers", rep.Reconciled)
	}

	e.resetCounters()
	rep, err = reaper.Reap(ctx())
	if err != nil {
		t.Fatal(err)
	}
	pages := pager.answered()
	if len(pages) != 1 || len(pages[0]) != 2 {
		t.Fatalf("pages answered %v, want one of two users", pages)
	}
	wantReport(t, rep, reapReport{checked: 2, repaired: pages[0]})
	restocked(pages[0])

	e.faults.FailNth("ListUsers", 1)
	rep, err = reaper.Reap(ctx())
	failed(rep, err)
	wantReport(t, rep, reapReport{})
	restocked(pages[0])

	e.resetCounters()
	rep, err = reaper.Reap(ctx())
	if err != nil {
		t.Fatal(err)
	}
	pages = pager.answered()
	rest := slices.DeleteFunc(slices.Clone(dead), func(u string) bool { return slices.Contains(pages[0], u) })
	if len(pages) != 2 || !slices.Equal(pages[1], sortedCopy(rest)) {
		t.Fatalf("pages answered %v, want the second slice %v next", pages, rest)
	}
	wantReport(t, rep, reapReport{checked: 2, repaired: rest})
	if !rep.Reconciled.Users {
		t.Error("the walk over users did not reach its end")
	}
	restocked(dead)
}

// TestReapLegacyRestockFails: a user vended before the table whose secret
// holds a deleted key is adopted as a user to restock; a restock that
// fails leaves it recorded ready (not as a create that died, which the
// expiry index would have removed), and the next run restocks it.
func TestReapLegacyRestockFails(t *testing.T) {
	srv := awstest.Dedicated(t)
	e := serialEnv(t, newStrictEnv(t, srv.URL))
	store := tableOf(t, e)
	clock := &settableClock{}
	reaper := e.service(t, testRules, func(s *provision.Settings) { s.Now = clock.Now })
	grant := rw("legacy.example.com")
	user, key := handMade(t, e, "legacy", grant)
	deleteKey(t, e, user, key)
	clock.Set(time.Now().Add(2 * time.Hour))

	e.faults.FailNth("CreateAccessKey", 1)
	rep, err := reaper.Reap(ctx())
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Errors) != 1 || rep.Errors[0].User != user || !strings.Contains(rep.Errors[0].Error, "create access key for "+user) {
		t.Fatalf("errors %v, want %s's failed CreateAccessKey", rep.Errors, user)
	}
	if !slices.Equal(rep.Adopted, []string{user}) {
		t.Errorf("adopted %v, want [%s]", rep.Adopted, user)
	}
	if rec := recordOf(t, store, user); rec == nil || rec.Phase != state.Ready || rec.Busy(time.Now()) {
		t.Fatalf("record of %s: %+v, want ready, not held", user, rec)
	}

	e.resetCounters()
	rep, err = reaper.Reap(ctx())
	if err != nil {
		t.Fatal(err)
	}
	wantReport(t, rep, reapReport{checked: 1, repaired: []string{user}})
	keys := e.Keys(t, user)
	if len(keys) != 1 || e.MustCredential(t, user).AccessKeyID != keys[0] {
		t.Fatalf("%s: keys %v, want one new key in its secret", user, keys)
	}
	e.assertGrants(t, user, grant)
	wantReadyRecord(t, store, user, keys[0])
}
