package provision_test

// Grant modes: how a deployment's grants reach IAM (one user policy, or
// one group per grant), their limits, and users vended in one mode served
// by a deployment in the other.
//
// On the code before the change (d068f18) there was no grant mode: every
// grant was a group, Settings had no GrantMode and no user policy was ever
// written or read. Each test says how it fails there.

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

// TestPolicyModeCarriesGrantsInOneUserPolicy: in grant mode policy (the
// default) a provision puts exactly one inline policy on the user —
// keyvend-grants, the canonical policy.UserDocument of its grants — and
// touches no group; PUT grants replaces that policy with one
// PutUserPolicy and nothing else that carries grants.
//
// Old code: the provision joined one group per grant and put no user
// policy (PutUserPolicy 0 times, AddUserToGroup twice): fails at the first
// check. Ported to d068f18 (without grantMode) and run: it fails there.
func TestPolicyModeCarriesGrantsInOneUserPolicy(t *testing.T) {
	e := newEnvOn(t, "", updateRules) // no grant mode: policy, the default
	a := rw(semBucket("pm"))
	b := semPrefixed("pm")
	user := awstest.Name("pm")

	e.resetCounters()
	res, err := e.svc.Create(ctx(), input(user, a, b))
	if err != nil {
		t.Fatal(err)
	}
	want, err := policy.UserDocument("aws", []policy.Grant{a, b})
	if err != nil {
		t.Fatal(err)
	}
	puts := e.calls.Succeeded("PutUserPolicy")
	if len(puts) != 1 {
		t.Fatalf("%d PutUserPolicy, want 1: %s", len(puts), opsLine(e.calls.Calls()))
	}
	in := puts[0].Input.(*iam.PutUserPolicyInput)
	if aws.ToString(in.UserName) != user || aws.ToString(in.PolicyName) != policy.UserPolicyName || aws.ToString(in.PolicyDocument) != want {
		t.Errorf("PutUserPolicy(%s, %s, %s), want (%s, %s, %s)", aws.ToString(in.UserName), aws.ToString(in.PolicyName), aws.ToString(in.PolicyDocument), user, policy.UserPolicyName, want)
	}
	for _, op := range []string{"GetGroup", "CreateGroup", "PutGroupPolicy", "AddUserToGroup", "GetGroupPolicy"} {
		if n := e.calls.Count(op); n != 0 {
			t.Errorf("grant mode policy called %s %d times", op, n)
		}
	}
	if res.GrantMode != grants.Policy || len(res.Groups) != 0 {
		t.Errorf("result grant_mode %q groups %v, want policy and none", res.GrantMode, res.Groups)
	}
	if got := e.UserPolicyNames(t, user); !slices.Equal(got, []string{policy.UserPolicyName}) {
		t.Errorf("inline policies of %s = %v, want exactly [%s]", user, got, policy.UserPolicyName)
	}
	if got := e.Groups(t, user, ""); len(got) != 0 {
		t.Errorf("user %s is in groups %v", user, got)
	}
	e.assertComplete(t, res, user, a, b) // the user policy is exactly the canonical document

	c := policy.Grant{Bucket: semBucket("pm"), Access: policy.WriteOnly, Prefix: "in/"}
	e.resetCounters()
	d, err := e.svc.UpdateGrants(ctx(), updInput(testCaller, user, []policy.Grant{a, c}))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := sortedOps(e.calls.Writes()), []string{"PutUserPolicy", "TagUser"}; !slices.Equal(got, want) {
		t.Errorf("PUT grants wrote %v, want %v (one PutUserPolicy, and the fingerprint tag)", got, want)
	}
	want, _ = policy.UserDocument("aws", []policy.Grant{a, c})
	if puts := e.calls.Succeeded("PutUserPolicy"); len(puts) != 1 || aws.ToString(puts[0].Input.(*iam.PutUserPolicyInput).PolicyDocument) != want {
		t.Errorf("PUT grants did not put the canonical document of the new grants once")
	}
	if d.GrantMode != grants.Policy || len(d.Groups) != 0 || !d.GrantsIntact {
		t.Errorf("answer grant_mode %q groups %v intact %v", d.GrantMode, d.Groups, d.GrantsIntact)
	}
	e.assertGrants(t, user, a, c)
	if got := e.UserPolicyNames(t, user); !slices.Equal(got, []string{policy.UserPolicyName}) {
		t.Errorf("inline policies after PUT grants = %v", got)
	}
}

// semBigGrants are 6 grants with long prefixes: their merged user policy
// is over IAM's 2,048 characters per user, while each one's group policy
// is far under the 5,120 of a group.
func semBigGrants(t *testing.T) []policy.Grant {
	t.Helper()
	var gs []policy.Grant
	for range 6 {
		gs = append(gs, policy.Grant{Bucket: semBucket("big"), Access: policy.ReadWrite, Prefix: strings.Repeat("p", 200) + "/"})
	}
	doc, err := policy.UserDocument("aws", gs)
	if err != nil {
		t.Fatal(err)
	}
	if n := policy.Chars(doc); n <= policy.MaxUserInlineChars {
		t.Fatalf("test grants need a user policy of %d characters, want over %d", n, policy.MaxUserInlineChars)
	}
	for _, g := range gs {
		if doc, _ := policy.Document("aws", g); policy.Chars(doc) > 5120/2 {
			t.Fatalf("group policy of %v is %d characters", g, policy.Chars(doc))
		}
	}
	return gs
}

// TestUserPolicySizeIsCheckedBeforeAnyCall: grants whose merged user
// policy is over 2,048 characters are refused in grant mode policy before
// the first AWS call — KindInvalid with a field error on grants naming
// 2048, for create, its precheck and PUT grants — and accepted in grant
// mode group, where each grant has a group policy of its own.
//
// Old code: no grant mode policy; create in groups succeeded. The policy
// subtest, ported to d068f18, fails there (Create succeeds, with calls).
func TestUserPolicySizeIsCheckedBeforeAnyCall(t *testing.T) {
	bothModes(t, func(t *testing.T, mode grants.Mode) {
		e := newEnvOn(t, "", updateRules, grantMode(mode))
		gs := semBigGrants(t)
		user := awstest.Name("big")
		e.resetCounters()
		res, err := e.svc.Create(ctx(), input(user, gs...))
		if mode == grants.Group {
			if err != nil {
				t.Fatalf("grant mode group refused grants whose groups fit: %v", err)
			}
			e.assertComplete(t, res, user, gs...)
			return
		}
		wantOver := func(what string, err error) {
			t.Helper()
			pe := wantKind(t, err, provision.KindInvalid)
			if len(pe.Fields) != 1 || pe.Fields[0].Field != "grants" || !strings.Contains(pe.Fields[0].Detail, "2048") {
				t.Errorf("%s: field errors %+v, want one on grants naming 2048", what, pe.Fields)
			}
			if c := e.calls.Calls(); len(c) != 0 {
				t.Errorf("%s made AWS calls: %s", what, opsLine(c))
			}
		}
		wantOver("create", err)
		if e.UserExists(t, user) {
			t.Errorf("user %s exists", user)
		}
		wantOver("precheck", e.svc.CheckCreate(input(user, gs...)))

		small := rw(semBucket("big"))
		other, _ := vended(t, e, small)
		e.resetCounters()
		_, err = e.svc.UpdateGrants(ctx(), updInput(testCaller, other, gs))
		wantOver("PUT grants", err)
		e.assertGrants(t, other, small)
	})
}

// TestGroupQuotaIsAConflict: IAM refuses a new group with LimitExceeded
// once the account holds its quota of groups. In grant mode group that is
// a KindConflict whose detail names the group quota (retrying does not
// help), not an internal error; a create leaves nothing behind and PUT
// grants changes nothing.
//
// Old code: CreateGroup's error came back wrapped, KindOf 0 (an internal
// error, HTTP 502). Ported to d068f18 and run: it fails at wantKind.
func TestGroupQuotaIsAConflict(t *testing.T) {
	e := newEnvOn(t, "", updateRules, grantMode(grants.Group))
	wantQuota := func(t *testing.T, err error) {
		t.Helper()
		pe := wantKind(t, err, provision.KindConflict)
		if !strings.Contains(pe.Detail, "quota of groups") {
			t.Errorf("detail %q does not name IAM's group quota", pe.Detail)
		}
		if e.faults.Fired() != 1 {
			t.Errorf("%d faults fired, want 1", e.faults.Fired())
		}
	}

	t.Run("create", func(t *testing.T) {
		user := awstest.Name("quota")
		grant := rw(semBucket("quota"))
		e.resetCounters()
		e.faults.FailNthWith("CreateGroup", 1, "LimitExceeded")
		_, err := e.svc.Create(ctx(), input(user, grant))
		wantQuota(t, err)
		e.assertNoTrace(t, user)
		assertUndoneBeforeDeleteUser(t, e.calls.Calls())
		if semGroupExists(t, e.iam, policy.GroupName(grant)) {
			t.Errorf("group of %v exists", grant)
		}
	})
	t.Run("PUT grants", func(t *testing.T) {
		had := rw(semBucket("quota"))
		user, key := vended(t, e, had)
		next := rw(semBucket("quota"))
		e.resetCounters()
		e.faults.FailNthWith("CreateGroup", 1, "LimitExceeded")
		_, err := e.svc.UpdateGrants(ctx(), updInput(testCaller, user, []policy.Grant{had, next}))
		wantQuota(t, err)
		for _, op := range []string{"AddUserToGroup", "RemoveUserFromGroup", "TagUser", "PutUserPolicy", "DeleteUserPolicy"} {
			if n := e.calls.Count(op); n != 0 {
				t.Errorf("refused update called %s %d times", op, n)
			}
		}
		e.assertGrants(t, user, had)
		if got := e.Keys(t, user); !slices.Equal(got, []string{key}) {
			t.Errorf("keys = %v, want [%s]", got, key)
		}
	})
}

// TestEmptyGrantGroupsAreDeleted: in grant mode group, a grant group whose
// last member leaves — by delete or by PUT grants — is deleted; a group
// another user is still in is kept, with its policy.
//
// Old code: groups were never deleted (they were shared and "carry no
// credentials"). Ported to d068f18 and run: it fails at the first check
// (the group of own still exists after u1's delete).
func TestEmptyGrantGroupsAreDeleted(t *testing.T) {
	e := newEnvOn(t, "", updateRules, grantMode(grants.Group))
	shared, own, next := rw(semBucket("shared")), semPrefixed("own"), rw(semBucket("next"))
	u1, _ := vended(t, e, shared, own)
	u2, _ := vended(t, e, shared)
	u3, _ := vended(t, e, shared)
	wantGroup := func(t *testing.T, g policy.Grant, members ...string) {
		t.Helper()
		name := policy.GroupName(g)
		if len(members) == 0 {
			if semGroupExists(t, e.iam, name) {
				t.Errorf("group %s has no member left and still exists", name)
			}
			return
		}
		if !semGroupExists(t, e.iam, name) {
			t.Fatalf("group %s was deleted, but %v are in it", name, members)
		}
		if got := sortedCopy(e.groupMembers(t, name)); !slices.Equal(got, sortedCopy(members)) {
			t.Errorf("members of %s = %v, want %v", name, got, sortedCopy(members))
		}
		if doc, _ := policy.Document("aws", g); !jsonEqual(t, e.groupPolicy(t, name), doc) {
			t.Errorf("policy of kept group %s = %s, want %s", name, e.groupPolicy(t, name), doc)
		}
	}

	if err := e.svc.Delete(ctx(), delInput(testCaller, u1)); err != nil {
		t.Fatal(err)
	}
	wantGroup(t, own)
	wantGroup(t, shared, u2, u3)

	if _, err := e.svc.UpdateGrants(ctx(), updInput(testCaller, u2, []policy.Grant{next})); err != nil {
		t.Fatal(err)
	}
	wantGroup(t, shared, u3)
	wantGroup(t, next, u2)

	if _, err := e.svc.UpdateGrants(ctx(), updInput(testCaller, u3, []policy.Grant{next})); err != nil {
		t.Fatal(err)
	}
	wantGroup(t, shared)
	wantGroup(t, next, u2, u3)

	if err := e.svc.Delete(ctx(), delInput(testCaller, u2)); err != nil {
		t.Fatal(err)
	}
	wantGroup(t, next, u3)
	if err := e.svc.Delete(ctx(), delInput(testCaller, u3)); err != nil {
		t.Fatal(err)
	}
	wantGroup(t, next)
}

// modesRules: alice vends on *.example.com; carol may also describe, list,
// rotate, update and delete those users (by rule, not as their requester:
// so what she may do rests on the grants keyvend reads).
const modesRules = `{"rules":[
 {"principals":["` + testCaller + `"],"buckets":["*.example.com"],"access":` + allAccess + `},
 {"principals":["` + carolARN + `"],"buckets":["*.example.com"],"access":` + allAccess + `,"actions":["create","list","rotate","update","delete"]}
]}`

// TestExistingDeploymentsAcrossModes: a deployment that changes grant mode
// keeps serving the users it vended before. A user vended in grant mode
// group is described (its grants read from its groups, grant_mode
// "group", intact), listed, rotated, deleted and reaped by a service in
// grant mode policy — by a rule holder, so each decision rests on the
// grants read — and PUT grants through that service moves it to a user
// policy and out of its groups. The reverse: a grant mode policy user
// updated by a grant mode group service ends in groups, without a user
// policy.
//
// Old code: there was no grant mode policy (Settings.GrantMode did not
// exist), so the policy-mode service cannot be built. The reverse half,
// ported to d068f18 with a user holding a hand-put keyvend-grants policy,
// fails there: the update joins the groups but leaves the user policy.
func TestExistingDeploymentsAcrossModes(t *testing.T) {
	srv := awstest.Dedicated(t) // the reaper and the listing see only this test's users
	clock := &settableClock{}
	g := newEnvOn(t, srv.URL, modesRules, grantMode(grants.Group), func(s *provision.Settings) { s.Now = clock.Now })
	p := g.service(t, modesRules, grantMode(grants.Policy))
	carol := who(carolARN)

	x, y, z := rw(semBucket("x")), semPrefixed("y"), rw(semBucket("z"))
	uA, keyA := vended(t, g, x, y)
	uB, _ := vended(t, g, x)
	rIn := input(awstest.Name("reaped"), rw(semBucket("r")))
	rIn.Request.ExpiresIn = "1h"
	if _, err := g.svc.Create(ctx(), rIn); err != nil {
		t.Fatal(err)
	}
	uR, rGrant := rIn.Request.User, rIn.Request.Grants[0]

	t.Run("describe", func(t *testing.T) {
		d, err := p.Describe(ctx(), carol, uA)
		if err != nil {
			t.Fatal(err)
		}
		if d.GrantMode != grants.Group || !d.GrantsIntact || !slices.Equal(d.Grants, sortedGrants([]policy.Grant{x, y})) {
			t.Errorf("grant_mode %q intact %v grants %v, want group, intact, %v", d.GrantMode, d.GrantsIntact, d.Grants, sortedGrants([]policy.Grant{x, y}))
		}
		var names []string
		for _, r := range d.Groups {
			names = append(names, r.Name)
		}
		if want := groupNames([]policy.Grant{x, y}); !slices.Equal(sortedCopy(names), want) {
			t.Errorf("groups %v, want %v", names, want)
		}
	})
	t.Run("list", func(t *testing.T) {
		res, err := p.List(ctx(), provision.ListInput{Principal: carol, Bucket: y.Bucket})
		if err != nil {
			t.Fatal(err)
		}
		if len(res.Users) != 1 || res.Users[0].User != uA || !slices.Equal(res.Users[0].Grants, sortedGrants([]policy.Grant{x, y})) {
			t.Errorf("listing of bucket %s = %+v, want %s with grants %v", y.Bucket, res.Users, uA, sortedGrants([]policy.Grant{x, y}))
		}
	})
	t.Run("rotate", func(t *testing.T) {
		r, err := p.Rotate(ctx(), provision.RotateInput{Principal: carol, RequestID: "rot-" + uA, User: uA})
		if err != nil {
			t.Fatal(err)
		}
		if r.PreviousAccessKeyID != keyA || r.PreviousKeyDeletesAt == nil || r.AccessKeyID == keyA {
			t.Errorf("rotation %+v of key %s", r, keyA)
		}
		if got := g.Keys(t, uA); !slices.Equal(got, sortedPair(r.AccessKeyID, keyA)) || g.MustCredential(t, uA).AccessKeyID != r.AccessKeyID {
			t.Errorf("keys %v, secret %s, want %s and the previous %s in its grace", got, g.MustCredential(t, uA).AccessKeyID, r.AccessKeyID, keyA)
		}
		g.assertGrants(t, uA, x, y) // still in its groups, no user policy
	})
	t.Run("PUT grants moves it to a user policy", func(t *testing.T) {
		d, err := p.UpdateGrants(ctx(), updInput(carolARN, uB, []policy.Grant{x, z}))
		if err != nil {
			t.Fatal(err)
		}
		if d.GrantMode != grants.Policy || len(d.Groups) != 0 {
			t.Errorf("answer grant_mode %q groups %v, want policy and none", d.GrantMode, d.Groups)
		}
		want, _ := policy.UserDocument("aws", []policy.Grant{x, z})
		if doc, ok := g.UserPolicy(t, uB); !ok || doc != want {
			t.Errorf("user policy of %s = %q (%v), want %s", uB, doc, ok, want)
		}
		if got := g.Groups(t, uB, "/keyvend/"); len(got) != 0 {
			t.Errorf("%s still in keyvend groups %v", uB, got)
		}
		if !semGroupExists(t, g.iam, policy.GroupName(x)) {
			t.Errorf("group of %v deleted, but %s is still in it", x, uA)
		}
		if d, err := p.Describe(ctx(), carol, uB); err != nil || d.GrantMode != grants.Policy || !d.GrantsIntact {
			t.Errorf("describe after the move: %+v, %v", d, err)
		}
	})
	t.Run("delete", func(t *testing.T) {
		if err := p.Delete(ctx(), delInput(carolARN, uA)); err != nil {
			t.Fatal(err)
		}
		if g.UserExists(t, uA) {
			t.Fatalf("%s not deleted", uA)
		}
		for _, gr := range []policy.Grant{x, y} { // uA was their last member
			if semGroupExists(t, g.iam, policy.GroupName(gr)) {
				t.Errorf("group %s left empty and not deleted", policy.GroupName(gr))
			}
		}
	})
	t.Run("reap", func(t *testing.T) {
		clock.Set(time.Now().Add(2 * time.Hour))
		defer clock.Set(time.Time{})
		rep, err := p.Reap(ctx())
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(rep.Expired, []string{uR}) || len(rep.Errors) != 0 {
			t.Errorf("reaper expired %v errors %v, want [%s] and none", rep.Expired, rep.Errors, uR)
		}
		if g.UserExists(t, uR) || semGroupExists(t, g.iam, policy.GroupName(rGrant)) {
			t.Errorf("expired %s or its grant group is still there", uR)
		}
	})
	t.Run("reverse: grant mode group moves a policy user into groups", func(t *testing.T) {
		w, v := rw(semBucket("w")), semPrefixed("v")
		pIn := input(awstest.Name("rev"), w)
		if _, err := p.Create(ctx(), pIn); err != nil {
			t.Fatal(err)
		}
		uC := pIn.Request.User
		d, err := g.svc.Describe(ctx(), carol, uC)
		if err != nil || d.GrantMode != grants.Policy || !d.GrantsIntact || !slices.Equal(d.Grants, []policy.Grant{w}) {
			t.Fatalf("group-mode describe of a policy user: %+v, %v", d, err)
		}
		if _, err := g.svc.UpdateGrants(ctx(), updInput(testCaller, uC, []policy.Grant{w, v})); err != nil {
			t.Fatal(err)
		}
		g.assertGrants(t, uC, w, v) // in grant mode group: exactly the groups, no user policy
		if got := g.UserPolicyNames(t, uC); len(got) != 0 {
			t.Errorf("inline policies of %s = %v, want none", uC, got)
		}
	})
}

// semGovBoundary is a boundary in the AWS GovCloud (US) partition.
const semGovBoundary = "arn:aws-us-gov:iam::123456789012:policy/keyvend/keyvend-boundary"

// TestPartitionComesFromTheBoundary: a deployment whose boundary is in
// aws-us-gov writes arn:aws-us-gov:s3::: ARNs in the policies that carry
// grants — the user policy, or the group policies — never arn:aws:, on
// create and on PUT grants, and reads them back intact.
//
// Old code: no user policy was written, so the policy subtest fails there
// (ported to d068f18: no keyvend-grants policy at all). The group subtest
// passes on the old code: its group policies already took the boundary's
// partition; it is here so both modes are covered.
func TestPartitionComesFromTheBoundary(t *testing.T) {
	bothModes(t, func(t *testing.T, mode grants.Mode) {
		e := newEnvOn(t, "", updateRules, grantMode(mode), func(s *provision.Settings) { s.BoundaryARN = semGovBoundary })
		a, b := rw(semBucket("gov")), semPrefixed("gov")
		user, _ := vended(t, e, a, b)
		check := func(t *testing.T, gs ...policy.Grant) {
			t.Helper()
			docs := map[string][]string{} // policy → the buckets it must name
			if mode == grants.Policy {
				doc, ok := e.UserPolicy(t, user)
				want, _ := policy.UserDocument("aws-us-gov", gs)
				if !ok || doc != want {
					t.Errorf("user policy = %q (%v), want %s", doc, ok, want)
				}
				for _, g := range gs {
					docs[doc] = append(docs[doc], g.Bucket)
				}
			} else {
				for _, g := range gs {
					doc := e.groupPolicy(t, policy.GroupName(g))
					if want, _ := policy.Document("aws-us-gov", g); !jsonEqual(t, doc, want) {
						t.Errorf("policy of group %s = %s, want %s", policy.GroupName(g), doc, want)
					}
					docs[doc] = append(docs[doc], g.Bucket)
				}
			}
			for doc, buckets := range docs {
				if strings.Contains(doc, "arn:aws:") {
					t.Errorf("policy names partition aws: %s", doc)
				}
				for _, b := range buckets {
					if !strings.Contains(doc, "arn:aws-us-gov:s3:::"+b) {
						t.Errorf("policy does not name arn:aws-us-gov:s3:::%s: %s", b, doc)
					}
				}
			}
			d, err := e.svc.Describe(ctx(), alice(), user)
			if err != nil {
				t.Fatal(err)
			}
			if !d.GrantsIntact || !slices.Equal(d.Grants, sortedGrants(gs)) {
				t.Errorf("described grants %v intact %v, want %v intact", d.Grants, d.GrantsIntact, sortedGrants(gs))
			}
		}
		check(t, a, b)
		c := policy.Grant{Bucket: semBucket("gov"), Access: policy.Full}
		if _, err := e.svc.UpdateGrants(ctx(), updInput(testCaller, user, []policy.Grant{a, c})); err != nil {
			t.Fatal(err)
		}
		check(t, a, c)
	})
}
