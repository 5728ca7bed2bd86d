package provision_test

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/iam"

	"github.com/keyvend/keyvend/pkg/awstest"
	"github.com/keyvend/keyvend/pkg/grants"
	"github.com/keyvend/keyvend/pkg/policy"
	"github.com/keyvend/keyvend/pkg/provision"
)

// reapVictim is a user the reaper has work on, of one kind.
type reapVictim struct {
	name      string
	grant     policy.Grant
	stray     string // dead: the key outside its secret
	staleLock string // dead: GroupId of the lock a dead request left
}

// Kinds of reaper work on a user.
const (
	victimExpired  = "expired"   // past its expiry: deprovisioned
	victimHalfMade = "half-made" // old, no secret: deprovisioned
	// dead: old, its secret holds a deleted key, a stray key beside it, and
	// a stale repair lock: the lock is broken and taken, the stray deleted,
	// a new key stored (restock), the lock released.
	victimDead = "dead"
)

// reapStep is the text the reaper's error names for a failed call of a
// kind of work: the step, as an operator reads it.
func reapStep(kind, op, user string) string {
	switch op {
	case "ListUserTags":
		return "list tags of " + user
	case "ListAccessKeys":
		return "list access keys of user " + user
	case "GetSecretValue":
		return "read secret keyvend/users/" + user
	}
	if kind == victimDead {
		return map[string]string{
			"CreateGroup":       "take repair lock " + lockName(user),
			"GetGroup":          "read repair lock " + lockName(user),
			"DeleteGroup":       "break stale repair lock " + lockName(user),
			"DeleteAccessKey":   "delete stray access key",
			"DescribeSecret":    "describe existing secret keyvend/users/" + user,
			"GetResourcePolicy": "read resource policy of secret keyvend/users/" + user,
			"CreateAccessKey":   "create access key for " + user,
			"PutSecretValue":    "put new version of secret keyvend/users/" + user,
		}[op]
	}
	return map[string]string{ // deprovision: inventory, then detach, then DeleteUser
		"GetUser":                  "read user " + user,
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
// victim fails in turn — for each kind of work: an expired victim, a
// half-made one, a dead one (see the kinds). The calls are those of a clean
// run on the same kind of victim. The run finishes for the bystanders; its
// Errors name exactly the victim, with the failed step and the AWS error;
// whatever the victim got done before is reported; no lock the run took is
// left; and a second run without faults finishes the victim's work
// (deleted with all it had — the services' DeleteUser is refused while
// anything is left, as in AWS — or complete with one key, the secret's,
// and its grants) with Errors empty.
//
// Faulted once only: ListUserTags (the first call on every user), on the
// expired victim; the half-made victim's deprovision, the same calls as
// the expired one's, so only its state reads are faulted. Best effort,
// with its own case: the release of the dead victim's lock (its failure is
// logged; the run's work is done; the lock stays, and expires). Not
// faulted: the deletion of a grant group left empty (grant mode group),
// best effort and about the group, not the user.
func TestReapErrorPaths(t *testing.T) {
	bothModes(t, func(t *testing.T, mode grants.Mode) {
		t.Parallel() // each mode on its own moto
		testReapErrorPaths(t, mode)
	})
}

func testReapErrorPaths(t *testing.T, mode grants.Mode) {
	srv := awstest.Dedicated(t)
	e := newStrictEnv(t, srv.URL, grantMode(mode))
	clock := &settableClock{}
	reaperFor := func(tg *targeted) *provision.Service {
		cfg := e.cfg.Copy()
		tg.attach(&cfg)
		return e.serviceOn(t, cfg, testRules, func(s *provision.Settings) { s.Now = clock.Now })
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
		case victimHalfMade:
			v := reapVictim{name: awstest.Name("rv-half"), grant: rw(awstest.Name("rv-half") + ".example.com")}
			mustCreateUser(t, e.iam, v.name, "/keyvend/", managedTags(testCaller))
			e.grant(t, v.name, v.grant)
			mustCreateKey(t, e.iam, v.name)
			return v
		}
		user, grant, key := vend(t, "rv-dead", "")
		deleteKey(t, e.env, user, key)
		return reapVictim{name: user, grant: grant, stray: mustCreateKey(t, e.iam, user), staleLock: makeStaleLock(t, e.env, user)}
	}
	// bystanders: an expired user and one whose secret holds a deleted key.
	bystanders := func(t *testing.T) (expired, dead string, deadGrant policy.Grant) {
		t.Helper()
		expired, _, _ = vend(t, "rv-bexp", "1h")
		dead, deadGrant, key := vend(t, "rv-bdead", "")
		deleteKey(t, e.env, dead, key)
		return expired, dead, deadGrant
	}
	// cleanup deletes by hand what a case left, so that the next case's
	// runs see only their own users.
	cleanup := func(t *testing.T) {
		for _, u := range keyvendUsers(t, e) {
			// moto deletes a user with its keys and groups, not with an
			// inline policy.
			if _, err := e.iam.DeleteUserPolicy(ctx(), &iam.DeleteUserPolicyInput{UserName: &u, PolicyName: aws.String(policy.UserPolicyName)}); err != nil && awsCode(err) != "NoSuchEntity" {
				t.Fatal(err)
			}
			if _, err := e.iam.DeleteUser(ctx(), &iam.DeleteUserInput{UserName: &u}); err != nil {
				t.Fatal(err)
			}
			if lockGroupID(t, e.env, u) != "" {
				if _, err := e.iam.DeleteGroup(ctx(), &iam.DeleteGroupInput{GroupName: aws.String(lockName(u))}); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	reapAt := func() { clock.Set(time.Now().Add(2 * time.Hour)) }
	complete := func(t *testing.T, user string, grant policy.Grant, not ...string) {
		t.Helper()
		keys := keyIDsOf(t, e.iam, user)
		if got := secretKeyID(t, e.sm, user); len(keys) != 1 || keys[0] != got || slices.Contains(not, got) {
			t.Errorf("keys of %s = %v, secret holds %s: want one new key, the secret's", user, keys, got)
		}
		e.assertGrants(t, user, grant)
	}

	// Baselines: the victim's calls in a clean run, per kind.
	type reapCase struct {
		kind string
		call nthCall
		// strayDone: the dead victim's stray is deleted before the call.
		strayDone bool
	}
	var cases []reapCase
	var release reapCase
	for _, kind := range []string{victimExpired, victimHalfMade, victimDead} {
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
		lastDeleteGroup := slices.IndexFunc(calls, func(c nthCall) bool { return c == nthCall{"DeleteGroup", 2} })
		for i, c := range calls {
			rc := reapCase{kind: kind, call: c, strayDone: kind == victimDead && i > strayAt}
			switch {
			case kind == victimDead && i == lastDeleteGroup:
				release = rc
			case kind != victimExpired && c.op == "ListUserTags":
			case kind == victimHalfMade && c != nthCall{"ListAccessKeys", 1} && c != nthCall{"GetSecretValue", 1}:
			default:
				if reapStep(kind, c.op, v.name) == "" {
					t.Fatalf("no step text for %s of a %s victim", c, kind)
				}
				cases = append(cases, rc)
			}
		}
		switch kind {
		case victimHalfMade:
			if !slices.Contains(calls, nthCall{"GetSecretValue", 1}) || !slices.Contains(calls, nthCall{"ListAccessKeys", 1}) {
				t.Fatalf("the half-made victim's state was not read: %v", calls)
			}
		case victimDead:
			for _, op := range []string{"CreateGroup", "GetGroup", "DeleteAccessKey", "DescribeSecret", "GetResourcePolicy", "CreateAccessKey", "PutSecretValue"} {
				if !slices.ContainsFunc(calls, func(c nthCall) bool { return c.op == op }) {
					t.Fatalf("the dead victim's run made no %s: %v", op, calls)
				}
			}
			if lastDeleteGroup < 0 || strayAt < 0 {
				t.Fatalf("the dead victim's run did not break its stale lock, release it and delete its stray: %v", calls)
			}
		}
		cleanup(t)
	}
	cases = append(cases, release)

	for _, c := range cases {
		name := c.kind + "/" + c.call.String()
		if c == release {
			name += " (release)"
		}
		t.Run(name, func(t *testing.T) {
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
			want := reapReport{checked: 3, expired: []string{bExp}, repaired: []string{bDead}}
			if c.call.op == "ListUserTags" {
				want.checked = 2
			}
			if c.strayDone {
				want.strayKeys = []string{v.name + "/" + v.stray}
			}
			if c == release {
				want.repaired = append(want.repaired, v.name)
			}
			var errText string
			for _, re := range rep.Errors {
				if re.User == v.name {
					errText = re.Error
				}
			}
			if c != release {
				want.errors = []string{v.name + ": " + errText}
				step := reapStep(c.kind, c.call.op, v.name)
				if !strings.Contains(errText, step) || !strings.Contains(errText, awstest.InjectedCode) {
					t.Errorf("error of %s = %q, want it to name the step %q and the AWS error", v.name, errText, step)
				}
			}
			wantReport(t, rep, want)
			// The bystanders' work is done.
			if userExists(t, e.iam, bExp) {
				t.Errorf("expired bystander %s still exists", bExp)
			}
			complete(t, bDead, bDeadGrant)
			// No lock the run took is left (the dead victim's stale lock
			// may still be there when the run failed before breaking it).
			lock := lockGroupID(t, e.env, v.name)
			if c == release {
				if lock == "" || lock == v.staleLock {
					t.Fatalf("lock after a failed release = %q, want the one the run took", lock)
				}
			} else if lock != "" && lock != v.staleLock {
				t.Errorf("the run left the lock it took on %s", v.name)
			}

			// Again, without the fault: the victim's work is finished.
			tg.failNth("", 0)
			rep, err = reaper.Reap(ctx())
			if err != nil {
				t.Fatal(err)
			}
			want = reapReport{checked: 2}
			switch {
			case c == release:
			case c.kind == victimExpired:
				want.expired = []string{v.name}
			case c.kind == victimHalfMade:
				want.halfMade = []string{v.name}
			default:
				want.repaired = []string{v.name}
				if !c.strayDone {
					want.strayKeys = []string{v.name + "/" + v.stray}
				}
			}
			wantReport(t, rep, want)
			if c.kind == victimDead {
				complete(t, v.name, v.grant, v.stray)
				if id := lockGroupID(t, e.env, v.name); (id != "") != (c == release) {
					t.Errorf("lock after the second run: %q", id)
				}
				return
			}
			if userExists(t, e.iam, v.name) {
				t.Fatalf("victim %s still exists", v.name)
			}
			if m := e.groupMembers(t, policy.GroupName(v.grant)); len(m) != 0 {
				t.Errorf("group %s still has members %v", policy.GroupName(v.grant), m)
			}
			if st := secretOf(t, e.sm, v.name); c.kind == victimExpired && st.deleted == nil {
				t.Errorf("secret of %s not scheduled for deletion", v.name)
			}
		})
	}
}

// TestReapListUsersFails: a reaper whose ListUsers fails returns the
// error, and the report of what it did before: nothing when the first page
// fails; the users of the first page when the second fails (moto answers
// every user at once; a pager answers two a page). A run without the fault
// then does the rest. ListUsers is the same in both grant modes.
func TestReapListUsersFails(t *testing.T) {
	srv := awstest.Dedicated(t)
	e := newStrictEnv(t, srv.URL)
	clock := &settableClock{}
	pager := &pageUsers{size: 2}
	cfg := e.cfg.Copy()
	pager.attach(&cfg)
	reaper := e.serviceOn(t, cfg, testRules, func(s *provision.Settings) { s.Now = clock.Now })
	var users []string
	for range 4 {
		user := awstest.Name("rl")
		in := input(user, rw(awstest.Name("rl")+".example.com"))
		in.Request.ExpiresIn = "1h"
		if _, err := e.svc.Create(ctx(), in); err != nil {
			t.Fatal(err)
		}
		users = append(users, user)
	}
	clock.Set(time.Now().Add(2 * time.Hour))
	exist := func() []string {
		var out []string
		for _, u := range users {
			if userExists(t, e.iam, u) {
				out = append(out, u)
			}
		}
		return sortedCopy(out)
	}
	failed := func(rep *provision.ReapReport, err error) {
		t.Helper()
		if err == nil || awsCode(err) != awstest.InjectedCode || !strings.Contains(err.Error(), "list users under /keyvend/") {
			t.Errorf("Reap error = %v, want the failed ListUsers", err)
		}
		if rep == nil {
			t.Fatal("no report with the error")
		}
	}

	e.faults.FailNth("ListUsers", 1)
	rep, err := reaper.Reap(ctx())
	failed(rep, err)
	wantReport(t, rep, reapReport{})
	if got := exist(); !slices.Equal(got, sortedCopy(users)) {
		t.Errorf("users left %v, want all of %v", got, users)
	}

	e.resetCounters()
	e.faults.FailNth("ListUsers", 2)
	rep, err = reaper.Reap(ctx())
	failed(rep, err)
	pages := pager.answered()
	if len(pages) != 1 || len(pages[0]) != 2 {
		t.Fatalf("pages answered %v, want one of two users", pages)
	}
	wantReport(t, rep, reapReport{checked: 2, expired: pages[0]})
	rest := slices.DeleteFunc(slices.Clone(users), func(u string) bool { return slices.Contains(pages[0], u) })
	if got := exist(); !slices.Equal(got, sortedCopy(rest)) {
		t.Errorf("users left %v, want those of the unread page %v", got, rest)
	}

	e.resetCounters()
	rep, err = reaper.Reap(ctx())
	if err != nil {
		t.Fatal(err)
	}
	wantReport(t, rep, reapReport{checked: 2, expired: rest})
	if got := exist(); len(got) != 0 {
		t.Errorf("users left %v", got)
	}
}
