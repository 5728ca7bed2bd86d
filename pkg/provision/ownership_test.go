package provision_test

// Ownership is exact: the requester keyvend records is the caller exactly
// (an assumed-role session included), and only that caller owns the user.

import (
	"slices"
	"strings"
	"testing"

	"github.com/keyvend/keyvend/pkg/awstest"
	"github.com/keyvend/keyvend/pkg/caller"
	"github.com/keyvend/keyvend/pkg/grants"
	"github.com/keyvend/keyvend/pkg/policy"
	"github.com/keyvend/keyvend/pkg/provision"
	"github.com/keyvend/keyvend/pkg/provisiontest"
)

// ownRefused checks that p may do nothing to user, which it does not own
// and no rule lets it see: describe, rotate, delete and PUT grants are
// each told the user does not exist, and nothing changes.
func ownRefused(t *testing.T, e *env, svc *provision.Service, p caller.Principal, user string, gs []policy.Grant) {
	t.Helper()
	before := fenceIAMState(t, e, user)
	secretBefore := semSecret(t, e.sm, user)
	e.resetCounters()
	_, err := svc.Describe(ctx(), p, user)
	wantKind(t, err, provision.KindNotFound)
	_, err = svc.Rotate(ctx(), provision.RotateInput{Principal: p, RequestID: "rot", User: user})
	wantKind(t, err, provision.KindNotFound)
	wantKind(t, svc.Delete(ctx(), provision.DeleteInput{Principal: p, RequestID: "del", User: user}), provision.KindNotFound)
	_, err = svc.UpdateGrants(ctx(), provision.UpdateGrantsInput{Principal: p, RequestID: "upd", User: user, Grants: gs})
	wantKind(t, err, provision.KindNotFound)
	if w := e.calls.Writes(); len(w) != 0 {
		t.Errorf("refused requests of %s wrote: %s", p.Requester(), opsLine(w))
	}
	if after := fenceIAMState(t, e, user); after != before {
		t.Errorf("IAM state of %s changed:\n%s\nwas\n%s", user, after, before)
	}
	if !semSecret(t, e.sm, user).equal(secretBefore) {
		t.Errorf("the secret of %s changed", user)
	}
}

const (
	ownCommaARN      = "arn:aws:iam::123456789012:user/a,b"
	ownUnderscoreARN = "arn:aws:iam::123456789012:user/a_b"
)

// ownRules: a,b and a_b both vend on *.example.com (create only: each may
// act on a user only as its requester).
const ownRules = `{"rules":[{"principals":["` + ownCommaARN + `","` + ownUnderscoreARN + `"],"buckets":["*.example.com"],"access":` + allAccess + `}]}`

// TestRequesterIsRecordedLosslessly: user/a,b and user/a_b are two
// requesters. Each owns the users it vended and not the other's (describe
// 404, rotate, delete and PUT grants refused as 404, nothing changes), and
// describe answers each one's requester exactly as it called.
//
// Old code (d068f18): the requester tag wrote ',' as '_', so both were
// recorded as user/a_b: a_b owned a,b's user (its describe succeeded) and
// a,b's user was described with requester user/a_b. Ported there and run:
// fails at the first cross describe.
func TestRequesterIsRecordedLosslessly(t *testing.T) {
	bothModes(t, func(t *testing.T, mode grants.Mode) {
		e := newEnvOn(t, "", ownRules, grantMode(mode))
		vend := func(arn string) (string, []policy.Grant) {
			gs := []policy.Grant{rw(semBucket("own"))}
			in := input(awstest.Name("own"), gs...)
			in.Principal = who(arn)
			if _, err := e.svc.Create(ctx(), in); err != nil {
				t.Fatalf("create as %s: %v", arn, err)
			}
			return in.Request.User, gs
		}
		comma, commaGrants := vend(ownCommaARN)
		underscore, underscoreGrants := vend(ownUnderscoreARN)

		for _, c := range []struct{ arn, user string }{{ownCommaARN, comma}, {ownUnderscoreARN, underscore}} {
			d, err := e.svc.Describe(ctx(), who(c.arn), c.user)
			if err != nil {
				t.Fatalf("%s describing its own user: %v", c.arn, err)
			}
			if d.Requester != c.arn || d.Tags[provision.TagRequester] != c.arn {
				t.Errorf("requester %q (tag %q), want exactly %s", d.Requester, d.Tags[provision.TagRequester], c.arn)
			}
		}
		ownRefused(t, e, e.svc, who(ownUnderscoreARN), comma, commaGrants)
		ownRefused(t, e, e.svc, who(ownCommaARN), underscore, underscoreGrants)

		// Each still owns its own.
		for _, c := range []struct{ arn, user string }{{ownCommaARN, comma}, {ownUnderscoreARN, underscore}} {
			if _, err := e.svc.Rotate(ctx(), provision.RotateInput{Principal: who(c.arn), RequestID: "rot", User: c.user}); err != nil {
				t.Errorf("%s rotating its own user: %v", c.arn, err)
			}
			if err := e.svc.Delete(ctx(), delInput(c.arn, c.user)); err != nil {
				t.Errorf("%s deleting its own user: %v", c.arn, err)
			}
		}
	})
}

// TestRequesterTooLongForATagIsRefused: a principal whose requester, as
// the tag must hold it (',' and the like escaped), would exceed the 256
// characters of a tag value is refused — KindInvalid, by create and its
// precheck — before any AWS call. Its ARN itself fits in 256 characters.
//
// Old code (d068f18): the requester was cut to 256 characters (with ','
// as '_') and the user created. Ported there and run: Create succeeds.
func TestRequesterTooLongForATagIsRefused(t *testing.T) {
	long := "arn:aws:iam::123456789012:user/" + strings.Repeat("a,", 70) + "deployer"
	if len(long) > provision.MaxTagValueLen {
		t.Fatalf("the principal itself is %d characters", len(long))
	}
	e := newEnvOn(t, "", `{"rules":[{"principals":["`+long+`"],"buckets":["*.example.com"],"access":`+allAccess+`}]}`)
	in := input(awstest.Name("long"), rw(semBucket("long")))
	in.Principal = who(long)
	e.resetCounters()
	_, err := e.svc.Create(ctx(), in)
	pe := wantKind(t, err, provision.KindInvalid)
	if !strings.Contains(pe.Detail, "256") {
		t.Errorf("detail %q does not say the limit", pe.Detail)
	}
	wantKind(t, e.svc.CheckCreate(in), provision.KindInvalid)
	if c := e.calls.Calls(); len(c) != 0 {
		t.Errorf("refused create made calls: %s", opsLine(c))
	}
	if e.UserExists(t, in.Request.User) {
		t.Error("user created")
	}
}

const (
	ownRoleARN     = "arn:aws:iam::123456789012:role/deployer"
	ownAliceSess   = "arn:aws:sts::123456789012:assumed-role/deployer/alice"
	ownBobSess     = "arn:aws:sts::123456789012:assumed-role/deployer/bob"
	ownOtherRole   = "arn:aws:iam::123456789012:role/other"
	ownOtherSess   = "arn:aws:sts::123456789012:assumed-role/other/alice"
	ownRoleRules   = `{"rules":[{"principals":["` + ownRoleARN + `"],"buckets":["*.example.com"],"access":` + allAccess + `}]}`
	ownRoleDescVia = `{"rules":[{"principals":["` + ownRoleARN + `"],"buckets":["*.example.com"],"access":` + allAccess + `,"actions":["create","describe"]}]}`
)

// session is a caller who assumed role as the session sess, as the API
// Gateway resolver reports it.
func session(role, sess string) caller.Principal {
	return caller.Principal{ID: role, Raw: sess, Session: sess}
}

// TestSessionsOwnTheirUsers: rules name the role; alice's session of it
// vends a user. Bob's session of the same role does not own it (404 for
// describe, rotate, delete and PUT grants, nothing changes) unless a rule
// lets the role describe it; alice's session owns it. The recorded
// requester is alice's session, and so is the requester of the audit
// line of each change (principal: the role, as rules match it).
//
// Old code (d068f18): Principal had no Session (its Raw held the session)
// and keyvend recorded and compared the role (ID): bob's session owned
// alice's user. Ported there with Raw and run: bob's describe succeeds.
// The old audit line had no requester.
func TestSessionsOwnTheirUsers(t *testing.T) {
	bothModes(t, func(t *testing.T, mode grants.Mode) {
		e := newEnvOn(t, "", ownRoleRules, grantMode(mode))
		var log awstest.SyncBuffer
		svc := e.Another(t, provisiontest.Rules(ownRoleRules), provisiontest.LogTo(&log))
		alice, bob := session(ownRoleARN, ownAliceSess), session(ownRoleARN, ownBobSess)

		gs := []policy.Grant{rw(semBucket("sess"))}
		in := input(awstest.Name("sess"), gs...)
		in.Principal = alice
		if _, err := svc.Create(ctx(), in); err != nil {
			t.Fatal(err)
		}
		user := in.Request.User
		d, err := svc.Describe(ctx(), alice, user)
		if err != nil {
			t.Fatalf("alice's session describing its user: %v", err)
		}
		if d.Requester != ownAliceSess || d.Tags[provision.TagRequester] != ownAliceSess {
			t.Errorf("requester %q (tag %q), want %s", d.Requester, d.Tags[provision.TagRequester], ownAliceSess)
		}

		ownRefused(t, e, svc, bob, user, gs)
		if d, err := e.service(t, ownRoleDescVia).Describe(ctx(), bob, user); err != nil || d.Requester != ownAliceSess {
			t.Errorf("bob's session with a rule to describe: %+v, %v", d, err)
		}

		next := []policy.Grant{rw(semBucket("sess"))}
		if _, err := svc.UpdateGrants(ctx(), provision.UpdateGrantsInput{Principal: alice, RequestID: "upd", User: user, Grants: next}); err != nil {
			t.Errorf("alice's session updating its user: %v", err)
		}
		if _, err := svc.Rotate(ctx(), provision.RotateInput{Principal: alice, RequestID: "rot", User: user}); err != nil {
			t.Errorf("alice's session rotating its user: %v", err)
		}

		audits := map[string]map[string]any{}
		for _, l := range semLogLines(t, log.String()) {
			if l["msg"] == "audit" && l["result"] == "ok" {
				audits[l["action"].(string)] = l
			}
		}
		for _, action := range []string{"create", "update", "rotate"} {
			l := audits[action]
			if l == nil || l["requester"] != ownAliceSess || l["principal"] != ownRoleARN || l["user"] != user {
				t.Errorf("audit line of %s = %v, want requester %s, principal %s, user %s", action, l, ownAliceSess, ownRoleARN, user)
			}
		}
		if err := svc.Delete(ctx(), provision.DeleteInput{Principal: alice, RequestID: "del", User: user}); err != nil {
			t.Errorf("alice's session deleting its user: %v", err)
		}
	})
}

// TestRoleRecordedUsersStayOwnedBySessions: a user recorded before
// sessions were — its requester tag the role's ARN — stays owned by every
// session of that role (describe, rotate), and by no session of another
// role.
//
// This is a compatibility check: it passes on the old code too (which
// recorded and compared the role), and guards that exact ownership did
// not orphan the users vended before it.
func TestRoleRecordedUsersStayOwnedBySessions(t *testing.T) {
	bothModes(t, func(t *testing.T, mode grants.Mode) {
		e := newEnvOn(t, "", ownRoleRules, grantMode(mode))
		user := awstest.Name("legacy")
		g := rw(semBucket("legacy"))
		mustCreateUser(t, e.iam, user, "/keyvend/", managedTags(ownRoleARN))
		e.grant(t, user, g)
		e.makeManagedSecret(t, user, mustCreateKey(t, e.iam, user))

		for _, p := range []caller.Principal{session(ownRoleARN, ownAliceSess), session(ownRoleARN, ownBobSess), who(ownRoleARN)} {
			d, err := e.svc.Describe(ctx(), p, user)
			if err != nil {
				t.Fatalf("%s describing a user its role requested: %v", p.Requester(), err)
			}
			if d.Requester != ownRoleARN {
				t.Errorf("requester %q, want %s", d.Requester, ownRoleARN)
			}
		}
		r, err := e.svc.Rotate(ctx(), provision.RotateInput{Principal: session(ownRoleARN, ownBobSess), RequestID: "rot", User: user})
		if err != nil {
			t.Fatalf("bob's session rotating a user its role requested: %v", err)
		}
		if got := e.Keys(t, user); !slices.Equal(got, sortedPair(r.AccessKeyID, r.PreviousAccessKeyID)) {
			t.Errorf("keys %v after rotation to %s (the previous %s kept for its grace)", got, r.AccessKeyID, r.PreviousAccessKeyID)
		}
		// The other role may vend those grants (so PUT grants is refused
		// for the user, not for the grants), but owns nothing.
		both := `{"rules":[{"principals":["` + ownRoleARN + `","` + ownOtherRole + `"],"buckets":["*.example.com"],"access":` + allAccess + `}]}`
		ownRefused(t, e, e.service(t, both), session(ownOtherRole, ownOtherSess), user, []policy.Grant{g})
	})
}
