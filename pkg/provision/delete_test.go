package provision_test

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"

	"github.com/keyvend/keyvend/pkg/awserr"
	"github.com/keyvend/keyvend/pkg/awstest"
	"github.com/keyvend/keyvend/pkg/grants"
	"github.com/keyvend/keyvend/pkg/policy"
	"github.com/keyvend/keyvend/pkg/provision"
)

const allAccess = `["read-only","write-only","read-write","full"]`

// deleteRules: alice vends on *.example.com (create only); carol may
// delete any of those users; dave may delete only read-only ones; erin may
// delete and force-delete; bob has no rule.
const deleteRules = `{"rules":[
 {"principals":["` + testCaller + `"],"buckets":["*.example.com"],"access":` + allAccess + `},
 {"principals":["` + carolARN + `"],"buckets":["*.example.com"],"access":` + allAccess + `,"actions":["delete"]},
 {"principals":["` + daveARN + `"],"buckets":["*.example.com"],"access":["read-only"],"actions":["delete"]},
 {"principals":["` + erinARN + `"],"buckets":["*.example.com"],"access":` + allAccess + `,"actions":["delete","force-delete"]}
]}`

// aliceForceRules adds the force-delete action for alice.
const aliceForceRules = `{"rules":[
 {"principals":["` + testCaller + `"],"buckets":["*.example.com"],"access":` + allAccess + `},
 {"principals":["` + testCaller + `"],"buckets":["*.example.com"],"access":` + allAccess + `,"actions":["force-delete"]}
]}`

// vended creates a user through keyvend as alice and returns its name and key.
func vended(t *testing.T, e *env, grants ...policy.Grant) (string, string) {
	t.Helper()
	user := awstest.Name("del")
	res, err := e.svc.Create(ctx(), input(user, grants...))
	if err != nil {
		t.Fatalf("create %s: %v", user, err)
	}
	return user, res.AccessKeyID
}

// extras is what a test attached to a user by hand, outside keyvend.
type extras struct {
	foreignGroup string // a group at path /
	inline       string // an inline user policy
	attached     string // a managed policy ARN
}

const denyAllPolicy = `{"Version":"2012-10-17","Statement":[{"Effect":"Deny","Action":"*","Resource":"*"}]}`

// decorate attaches an inline policy, a managed policy and a foreign group
// membership to user, as an operator might by hand.
func decorate(t *testing.T, e *env, user string) extras {
	t.Helper()
	x := extras{foreignGroup: awstest.Name("ops"), inline: "hand-made"}
	mustGroup(t, e.iam, x.foreignGroup, "/")
	mustJoin(t, e.iam, user, x.foreignGroup)
	if _, err := e.iam.PutUserPolicy(ctx(), &iam.PutUserPolicyInput{UserName: &user, PolicyName: &x.inline, PolicyDocument: aws.String(denyAllPolicy)}); err != nil {
		t.Fatal(err)
	}
	pol, err := e.iam.CreatePolicy(ctx(), &iam.CreatePolicyInput{PolicyName: aws.String(awstest.Name("hand")), PolicyDocument: aws.String(denyAllPolicy)})
	if err != nil {
		t.Fatal(err)
	}
	x.attached = aws.ToString(pol.Policy.Arn)
	if _, err := e.iam.AttachUserPolicy(ctx(), &iam.AttachUserPolicyInput{UserName: &user, PolicyArn: &x.attached}); err != nil {
		t.Fatal(err)
	}
	return x
}

func delInput(p string, user string) provision.DeleteInput {
	return provision.DeleteInput{Principal: who(p), RequestID: "del-" + user, User: user}
}

// wantScheduled checks the user's secret is scheduled for deletion with the
// default 7-day window. moto reports DeletedDate as the date the secret
// will be deleted.
func wantScheduled(t *testing.T, e *env, user string, deletedAfter time.Time) {
	t.Helper()
	st := secretOf(t, e.sm, user)
	if !st.exists || st.deleted == nil {
		t.Fatalf("secret of %s: exists=%v deleted=%v, want scheduled for deletion", user, st.exists, st.deleted)
	}
	lo, hi := deletedAfter.Add(7*24*time.Hour-time.Minute), time.Now().Add(7*24*time.Hour+time.Minute)
	if st.deleted.Before(lo) || st.deleted.After(hi) {
		t.Errorf("secret of %s deleted on %s, want 7 days after the delete (%s..%s)", user, st.deleted, lo, hi)
	}
}

// wantIntact checks the user still exists with exactly these keys and
// groups, and its secret is not scheduled for deletion.
func wantIntact(t *testing.T, e *env, user string, keys, groups []string) {
	t.Helper()
	if !e.UserExists(t, user) {
		t.Fatalf("user %s was deleted", user)
	}
	if got := e.Keys(t, user); !slices.Equal(got, sortedCopy(keys)) {
		t.Errorf("keys of %s = %v, want %v", user, got, sortedCopy(keys))
	}
	if got := e.Groups(t, user, ""); !slices.Equal(got, sortedCopy(groups)) {
		t.Errorf("groups of %s = %v, want %v", user, got, sortedCopy(groups))
	}

	if st := secretOf(t, e.sm, user); st.exists && st.deleted != nil {
		t.Errorf("secret of %s scheduled for deletion", user)
	}
}

func TestDeleteRemovesEverythingInThreeRoundTrips(t *testing.T) {
	bothModes(t, testDeleteRemovesEverythingInThreeRoundTrips)
}

func testDeleteRemovesEverythingInThreeRoundTrips(t *testing.T, mode grants.Mode) {
	e := newEnvOn(t, "", deleteRules, grantMode(mode))
	a, b := rw(awstest.Name("a")+".example.com"), policy.Grant{Bucket: awstest.Name("b") + ".example.com", Access: policy.ReadOnly}
	user, key := vended(t, e, a, b)
	x := decorate(t, e, user)

	e.resetCounters()
	start := time.Now()
	if err := e.svc.Delete(ctx(), delInput(testCaller, user)); err != nil {
		t.Fatal(err)
	}

	// The recorder shows the calls as they start: round 1 reads all and
	// leases the user (marking it deleting), round 2 removes all, round 3
	// deletes the user (and, in grant mode group, the grant groups it leaves
	// empty), and last the record is removed with its history entry.
	calls := e.calls.Calls()
	// The requester deletes: the policies of its grant groups (grant mode
	// group) are read beside rounds 2 and 3, for the audit line only.
	var groupPolicyReads int
	calls = slices.DeleteFunc(calls, func(c awstest.Call) bool {
		if c.Operation == "GetGroupPolicy" {
			groupPolicyReads++
			return true
		}
		return false
	})
	if want := len(e.groupNames(a, b)); groupPolicyReads != want {
		t.Errorf("%d GetGroupPolicy calls, want %d", groupPolicyReads, want)
	}
	round1 := []string{"DescribeSecret", "GetUser", "GetUserPolicy", "ListAccessKeys", "ListAttachedUserPolicies", "ListGroupsForUser", "ListUserPolicies", "UpdateItem"}
	round2 := []string{"DeleteAccessKey", "DeleteSecret", "DeleteUserPolicy", "DeleteUserPolicy", "DetachUserPolicy", "RemoveUserFromGroup"}
	round3 := []string{"DeleteUser"}
	if mode == grants.Group {
		round2 = []string{"DeleteAccessKey", "DeleteSecret", "DeleteUserPolicy", "DetachUserPolicy", "RemoveUserFromGroup", "RemoveUserFromGroup", "RemoveUserFromGroup"}
		round3 = []string{"DeleteGroup", "DeleteGroup", "DeleteGroupPolicy", "DeleteGroupPolicy", "DeleteUser", "GetGroup", "GetGroup"}
	}
	if last := calls[len(calls)-1]; last.Operation != "TransactWriteItems" {
		t.Errorf("last call %s, want the record's removal (TransactWriteItems)", last)
	} else {
		calls = calls[:len(calls)-1]
	}
	if len(calls) != len(round1)+len(round2)+len(round3) {
		t.Fatalf("%d calls, want %d + %d + %d: %v", len(calls), len(round1), len(round2), len(round3), calls)
	}
	if got := sortedOps(calls[:len(round1)]); !slices.Equal(got, round1) {
		t.Errorf("round 1 = %v, want %v", got, round1)
	}
	if got := sortedOps(calls[len(round1) : len(round1)+len(round2)]); !slices.Equal(got, round2) {
		t.Errorf("round 2 = %v, want %v", got, round2)
	}
	if got := sortedOps(calls[len(round1)+len(round2):]); !slices.Equal(got, round3) {
		t.Errorf("round 3 = %v, want %v", got, round3)
	}

	// What round 2 removed, by input, and that it all succeeded before
	// DeleteUser completed.
	log := e.calls.Calls()
	if n := len(e.calls.Succeeded("DeleteUser")); n != 1 {
		t.Fatalf("%d successful DeleteUser calls, want 1", n)
	}
	var keys, groups, inline, attached []string
	var secretIn *secretsmanager.DeleteSecretInput
	for _, c := range log {
		if c.Err != nil && !(c.Operation == "GetUserPolicy" && mode == grants.Group && awserr.Code(c.Err) == "NoSuchEntity") {
			t.Errorf("%s failed: %v", c.Operation, c.Err)
		}
		switch in := c.Input.(type) {
		case *iam.DeleteAccessKeyInput:
			keys = append(keys, aws.ToString(in.AccessKeyId))
		case *iam.RemoveUserFromGroupInput:
			groups = append(groups, aws.ToString(in.GroupName))
		case *iam.DeleteUserPolicyInput:
			inline = append(inline, aws.ToString(in.PolicyName))
		case *iam.DetachUserPolicyInput:
			attached = append(attached, aws.ToString(in.PolicyArn))
		case *secretsmanager.DeleteSecretInput:
			secretIn = in
		}
	}
	if !slices.Equal(keys, []string{key}) {
		t.Errorf("deleted keys %v, want [%s]", keys, key)
	}
	if want := sortedCopy(append(e.groupNames(a, b), x.foreignGroup)); !slices.Equal(sortedCopy(groups), want) {
		t.Errorf("left groups %v, want %v", sortedCopy(groups), want)
	}
	wantInline := []string{x.inline}
	if mode == grants.Policy {
		wantInline = sortedCopy([]string{x.inline, policy.UserPolicyName})
	}
	if !slices.Equal(sortedCopy(inline), wantInline) || !slices.Equal(attached, []string{x.attached}) {
		t.Errorf("deleted inline %v, detached %v; want %v, [%s]", inline, attached, wantInline, x.attached)
	}
	if secretIn == nil || aws.ToString(secretIn.SecretId) != "keyvend/users/"+user ||
		aws.ToInt64(secretIn.RecoveryWindowInDays) != 7 || secretIn.ForceDeleteWithoutRecovery != nil {
		t.Errorf("DeleteSecret input = %+v, want keyvend/users/%s with a 7-day recovery window", secretIn, user)
	}

	if e.UserExists(t, user) {
		t.Error("user still exists")
	}
	wantScheduled(t, e, user, start)
	// The foreign group and the hand-made policy outlive the user; keyvend
	// grant groups it left empty do not (IAM allows 300 groups).
	if _, err := e.iam.GetGroup(ctx(), &iam.GetGroupInput{GroupName: aws.String(x.foreignGroup)}); err != nil {
		t.Errorf("group %s: %v", x.foreignGroup, err)
	}
	for _, g := range e.groupNames(a, b) {
		if _, err := e.iam.GetGroup(ctx(), &iam.GetGroupInput{GroupName: aws.String(g)}); awserr.Code(err) != "NoSuchEntity" {
			t.Errorf("empty grant group %s: %v, want it deleted", g, err)
		}
	}
	if _, err := e.iam.GetPolicy(ctx(), &iam.GetPolicyInput{PolicyArn: &x.attached}); err != nil {
		t.Errorf("managed policy: %v", err)
	}

	// Deleting again: the user is not there, and nothing is written.
	e.resetCounters()
	wantKind(t, e.svc.Delete(ctx(), delInput(testCaller, user)), provision.KindNotFound)
	if w := e.calls.Writes(); len(w) != 0 {
		t.Errorf("repeat delete wrote %v", w)
	}
}

// moto deletes a user that still has keys, groups and policies (AWS
// refuses with DeleteConflict), so stop before DeleteUser and look.
func TestDeleteDetachesEverythingBeforeDeletingTheUser(t *testing.T) {
	bothModes(t, func(t *testing.T, mode grants.Mode) {
		testDeleteDetachesEverything(t, newEnvOn(t, "", deleteRules, grantMode(mode)))
	})
}

func testDeleteDetachesEverything(t *testing.T, e *env) {
	user, _ := vended(t, e, rw(awstest.Name("a")+".example.com"))
	decorate(t, e, user)

	e.resetCounters()
	e.faults.FailNth("DeleteUser", 1)
	start := time.Now()
	if err := e.svc.Delete(ctx(), delInput(testCaller, user)); err == nil || e.faults.Fired() != 1 {
		t.Fatalf("delete with DeleteUser failing = %v (faults fired %d), want an error", err, e.faults.Fired())
	}
	if !e.UserExists(t, user) {
		t.Fatal("user gone although DeleteUser failed")
	}
	if k := e.Keys(t, user); len(k) != 0 {
		t.Errorf("keys left: %v", k)
	}
	if g := e.Groups(t, user, ""); len(g) != 0 {
		t.Errorf("groups left: %v", g)
	}
	inl, err := e.iam.ListUserPolicies(ctx(), &iam.ListUserPoliciesInput{UserName: &user})
	if err != nil {
		t.Fatal(err)
	}
	if len(inl.PolicyNames) != 0 {
		t.Errorf("inline policies left: %v", inl.PolicyNames)
	}
	att, err := e.iam.ListAttachedUserPolicies(ctx(), &iam.ListAttachedUserPoliciesInput{UserName: &user})
	if err != nil {
		t.Fatal(err)
	}
	if len(att.AttachedPolicies) != 0 {
		t.Errorf("%d attached policies left", len(att.AttachedPolicies))
	}
	wantScheduled(t, e, user, start)

	e.faults.Clear()
	if err := e.svc.Delete(ctx(), delInput(testCaller, user)); err != nil {
		t.Fatalf("retry: %v", err)
	}
	if e.UserExists(t, user) {
		t.Error("user still exists after the retry")
	}
	wantScheduled(t, e, user, start)
}

func TestDeleteForce(t *testing.T) {
	bothModes(t, func(t *testing.T, mode grants.Mode) {
		testDeleteForce(t, newEnvOn(t, "", deleteRules, grantMode(mode)))
	})
}

func testDeleteForce(t *testing.T, e *env) {
	grant := rw(awstest.Name("f") + ".example.com")

	t.Run("requester without a force-delete rule is forbidden", func(t *testing.T) {
		user, key := vended(t, e, grant)
		e.resetCounters()
		in := delInput(testCaller, user)
		in.Force = true
		wantKind(t, e.svc.Delete(ctx(), in), provision.KindForbidden)
		if w := e.calls.Writes(); len(w) != 0 {
			t.Errorf("forbidden force delete wrote %v", w)
		}
		wantIntact(t, e, user, []string{key}, e.groupNames(grant))
		e.assertGrants(t, user, grant)
		if !secretOf(t, e.sm, user).exists {
			t.Error("secret gone")
		}
	})

	for _, tc := range []struct {
		name, principal, rules string
	}{
		{"requester with a force-delete rule", testCaller, aliceForceRules},
		{"other principal with delete and force-delete", erinARN, deleteRules},
	} {
		t.Run(tc.name, func(t *testing.T) {
			user, _ := vended(t, e, grant)
			svc := e.service(t, tc.rules)
			e.resetCounters()
			in := delInput(tc.principal, user)
			in.Force = true
			if err := svc.Delete(ctx(), in); err != nil {
				t.Fatal(err)
			}
			if e.UserExists(t, user) {
				t.Error("user still exists")
			}
			if st := secretOf(t, e.sm, user); st.exists {
				t.Errorf("secret still exists (deleted date %v), want it gone at once", st.deleted)
			}
			for _, c := range e.calls.Succeeded("DeleteSecret") {
				in := c.Input.(*secretsmanager.DeleteSecretInput)
				if !aws.ToBool(in.ForceDeleteWithoutRecovery) || in.RecoveryWindowInDays != nil {
					t.Errorf("DeleteSecret input = %+v, want force without recovery", in)
				}
			}
		})
	}
}

func TestDeleteHalfMadeUsers(t *testing.T) {
	bothModes(t, func(t *testing.T, mode grants.Mode) {
		testDeleteHalfMadeUsers(t, newEnvOn(t, "", deleteRules, grantMode(mode)))
	})
}

func testDeleteHalfMadeUsers(t *testing.T, e *env) {
	grant := rw(awstest.Name("h") + ".example.com")

	byHand := func(t *testing.T, withKey bool) string {
		user := awstest.Name("half")
		mustCreateUser(t, e.iam, user, "/keyvend/", managedTags(testCaller))
		e.grant(t, user, grant)
		if withKey {
			mustCreateKey(t, e.iam, user)
		}
		return user
	}
	for _, tc := range []struct {
		name       string
		make       func(t *testing.T) string
		withSecret bool
	}{
		{"no key and no secret", func(t *testing.T) string { return byHand(t, false) }, false},
		{"a key but no secret", func(t *testing.T) string { return byHand(t, true) }, false},
		{"a secret but no key", func(t *testing.T) string {
			user, key := vended(t, e, grant)
			if _, err := e.iam.DeleteAccessKey(ctx(), &iam.DeleteAccessKeyInput{UserName: &user, AccessKeyId: &key}); err != nil {
				t.Fatal(err)
			}
			return user
		}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			user := tc.make(t)
			keys := e.Keys(t, user)
			e.resetCounters()
			start := time.Now()
			if err := e.svc.Delete(ctx(), delInput(testCaller, user)); err != nil {
				t.Fatal(err)
			}
			if e.UserExists(t, user) {
				t.Error("user still exists")
			}
			var deleted []string
			for _, c := range e.calls.Succeeded("DeleteAccessKey") {
				deleted = append(deleted, aws.ToString(c.Input.(*iam.DeleteAccessKeyInput).AccessKeyId))
			}
			if !slices.Equal(sortedCopy(deleted), keys) {
				t.Errorf("deleted keys %v, the user had %v", sortedCopy(deleted), keys)
			}
			removed, wantRemoved := "RemoveUserFromGroup", 1 // its grant group
			if e.mode == grants.Policy {
				removed = "DeleteUserPolicy" // its user policy
			}
			if n := len(e.calls.Succeeded(removed)); n != wantRemoved {
				t.Errorf("%d %s, want %d", n, removed, wantRemoved)
			}
			if tc.withSecret {
				wantScheduled(t, e, user, start)
			} else if secretOf(t, e.sm, user).exists {
				t.Error("a secret appeared")
			}
		})
	}
}

func TestDeleteUnknownOrUnmanagedUserIsNotFound(t *testing.T) {
	e := newEnvOn(t, "", deleteRules)
	grant := rw(awstest.Name("u") + ".example.com")
	mustGroup(t, e.iam, policy.GroupName(grant), "/keyvend/")

	unmanaged := func(t *testing.T, path string, tags bool) string {
		user := awstest.Name("other")
		var tg = managedTags(testCaller)
		if !tags {
			tg = nil
		}
		mustCreateUser(t, e.iam, user, path, tg)
		return user
	}
	for _, tc := range []struct {
		name string
		make func(t *testing.T) string
	}{
		{"unknown", func(t *testing.T) string { return awstest.Name("nobody") }},
		{"path / without tags", func(t *testing.T) string { return unmanaged(t, "/", false) }},
		{"path / with keyvend's tags", func(t *testing.T) string { return unmanaged(t, "/", true) }},
		{"under /keyvend/ without the managed-by tag", func(t *testing.T) string {
			user := awstest.Name("other")
			tags := managedTags(testCaller)[1:] // requester alice and the rest, no managed-by
			mustCreateUser(t, e.iam, user, "/keyvend/", tags)
			return user
		}},
		{"under /keyvend/ with managed-by another value", func(t *testing.T) string {
			user := awstest.Name("other")
			tags := managedTags(testCaller)
			tags[0].Value = aws.String("someone-else")
			mustCreateUser(t, e.iam, user, "/keyvend/", tags)
			return user
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			user := tc.make(t)
			exists := e.UserExists(t, user)
			var keys, groups []string
			if exists {
				keys = []string{mustCreateKey(t, e.iam, user)}
				mustJoin(t, e.iam, user, policy.GroupName(grant))
				groups = []string{policy.GroupName(grant)}
				if _, err := e.iam.PutUserPolicy(ctx(), &iam.PutUserPolicyInput{UserName: &user, PolicyName: aws.String("own"), PolicyDocument: aws.String(denyAllPolicy)}); err != nil {
					t.Fatal(err)
				}
			}
			// A secret of keyvend's name for it, which must survive too.
			if _, err := e.sm.CreateSecret(ctx(), &secretsmanager.CreateSecretInput{Name: aws.String("keyvend/users/" + user), SecretString: aws.String(`{}`)}); err != nil {
				t.Fatal(err)
			}
			for _, force := range []bool{false, true} {
				e.resetCounters()
				in := delInput(erinARN, user) // erin may delete and force-delete anything on *.example.com
				in.Force = force
				wantKind(t, e.svc.Delete(ctx(), in), provision.KindNotFound)
				wantKind(t, e.svc.Delete(ctx(), delInput(testCaller, user)), provision.KindNotFound)
				if w := e.calls.Writes(); len(w) != 0 {
					t.Errorf("force=%v: wrote %v", force, w)
				}
			}
			if exists {
				wantIntact(t, e, user, keys, groups)
				p, err := e.iam.ListUserPolicies(ctx(), &iam.ListUserPoliciesInput{UserName: &user})
				if err != nil {
					t.Fatal(err)
				}
				if !slices.Equal(p.PolicyNames, []string{"own"}) {
					t.Errorf("inline policies = %v, want [own]", p.PolicyNames)
				}
			}
			if st := secretOf(t, e.sm, user); !st.exists || st.deleted != nil {
				t.Errorf("secret: exists=%v deleted=%v, want untouched", st.exists, st.deleted)
			}
		})
	}

	t.Run("invalid name", func(t *testing.T) {
		e.resetCounters()
		wantKind(t, e.svc.Delete(ctx(), delInput(testCaller, "no/slashes")), provision.KindInvalid)
		if c := e.calls.Calls(); len(c) != 0 {
			t.Errorf("calls: %v", c)
		}
	})
}

func TestDeleteAuthorization(t *testing.T) {
	bothModes(t, func(t *testing.T, mode grants.Mode) {
		testDeleteAuthorization(t, newEnvOn(t, "", deleteRules, grantMode(mode)))
	})
}

// A caller who may not see the user (neither describe it nor delete it) is
// told it does not exist, as for a user that does not; no answer names the
// user's buckets or access levels.
func testDeleteAuthorization(t *testing.T, e *env) {
	grant := rw(awstest.Name("z") + ".example.com")

	for _, tc := range []struct {
		name, principal string
	}{
		{"other principal without a rule", bobARN},
		{"delete rule that does not cover the grant's access", daveARN},
		{"anonymous", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			user, key := vended(t, e, grant)
			e.resetCounters()
			err := e.svc.Delete(ctx(), delInput(tc.principal, user))
			wantKind(t, err, provision.KindNotFound)
			if strings.Contains(err.Error(), grant.Bucket) || strings.Contains(err.Error(), string(grant.Access)) {
				t.Errorf("refusal names the user's grant: %v", err)
			}
			if w := e.calls.Writes(); len(w) != 0 {
				t.Errorf("forbidden delete wrote %v", w)
			}
			wantIntact(t, e, user, []string{key}, e.groupNames(grant))
			e.assertGrants(t, user, grant)
		})
	}
	t.Run("may describe but not delete", func(t *testing.T) {
		user, key := vended(t, e, grant)
		svc := e.service(t, `{"rules":[{"principals":["`+bobARN+`"],"buckets":["*.example.com"],"access":`+allAccess+`,"actions":["describe"]}]}`)
		e.resetCounters()
		err := svc.Delete(ctx(), delInput(bobARN, user))
		wantKind(t, err, provision.KindForbidden)
		if strings.Contains(err.Error(), grant.Bucket) || strings.Contains(err.Error(), string(grant.Access)) {
			t.Errorf("refusal names the user's grant: %v", err)
		}
		if w := e.calls.Writes(); len(w) != 0 {
			t.Errorf("forbidden delete wrote %v", w)
		}
		wantIntact(t, e, user, []string{key}, e.groupNames(grant))
		e.assertGrants(t, user, grant)
	})
	for _, tc := range []struct {
		name, principal string
	}{
		{"requester", testCaller},
		{"rule with the delete action", carolARN},
	} {
		t.Run(tc.name, func(t *testing.T) {
			user, _ := vended(t, e, grant)
			start := time.Now()
			if err := e.svc.Delete(ctx(), delInput(tc.principal, user)); err != nil {
				t.Fatal(err)
			}
			if e.UserExists(t, user) {
				t.Error("user still exists")
			}
			wantScheduled(t, e, user, start)
		})
	}
}

// Every call Delete makes fails once, in turn; the failed delete reports an
// error and a retry converges: everything removed, then the user deleted.
func TestDeleteFaultAtEveryCallThenRetryConverges(t *testing.T) {
	bothModes(t, testDeleteFaultAtEveryCallThenRetryConverges)
}

func testDeleteFaultAtEveryCallThenRetryConverges(t *testing.T, mode grants.Mode) {
	e := newEnvOn(t, "", deleteRules, grantMode(mode))
	grant := rw(awstest.Name("fault") + ".example.com")

	user, _ := vended(t, e, grant)
	decorate(t, e, user)
	e.resetCounters()
	if err := e.svc.Delete(ctx(), delInput(testCaller, user)); err != nil {
		t.Fatal(err)
	}
	type nthCall struct {
		op  string
		nth int
	}
	var every []nthCall
	seen := map[string]int{}
	for _, c := range e.calls.Calls() {
		switch c.Operation {
		case "GetGroup", "DeleteGroupPolicy", "DeleteGroup":
			// deleting a grant group left empty is best effort, after the
			// user is gone: a failure there is logged, not the delete's
			continue
		case "GetGroupPolicy":
			// the requester deletes: its groups' policies are read for the
			// audit line only (TestDeleteByRuleNeedsItsGrants: a rule
			// holder's delete needs them)
			continue
		}
		seen[c.Operation]++
		every = append(every, nthCall{c.Operation, seen[c.Operation]})
	}
	if want := 16; len(every) != want { // 14 to IAM and Secrets Manager, the lease and the record's removal
		t.Fatalf("baseline made %d calls, want %d: %v", len(every), want, every)
	}

	// Each case has its own instrumented service, so they run in parallel.
	for _, fc := range every {
		t.Run(fmt.Sprintf("%s#%d", fc.op, fc.nth), func(t *testing.T) {
			t.Parallel()
			e := newEnvOn(t, "", deleteRules, grantMode(mode))
			grant := rw(awstest.Name("fault") + ".example.com") // its own: another case's delete drops a shared empty group
			user, key := vended(t, e, grant)
			x := decorate(t, e, user)
			start := time.Now()
			e.resetCounters()
			e.faults.FailNth(fc.op, fc.nth)
			err := e.svc.Delete(ctx(), delInput(testCaller, user))
			if err == nil || e.faults.Fired() != 1 {
				t.Fatalf("delete = %v with %d faults fired, want an error from the fault", err, e.faults.Fired())
			}
			if k := provision.KindOf(err); k != 0 {
				t.Errorf("error kind %d (%v), want an internal error", k, err)
			}
			e.faults.Clear()
			if err := e.svc.Delete(ctx(), delInput(testCaller, user)); err != nil {
				t.Fatalf("retry: %v", err)
			}
			if e.UserExists(t, user) {
				t.Fatal("user still exists")
			}
			wantScheduled(t, e, user, start)

			// Over both attempts, everything was removed before the user was.
			removed := map[string]bool{}
			for _, c := range e.calls.Calls() {
				if c.Err != nil {
					continue
				}
				switch in := c.Input.(type) {
				case *iam.DeleteAccessKeyInput:
					removed["key "+aws.ToString(in.AccessKeyId)] = true
				case *iam.RemoveUserFromGroupInput:
					removed["group "+aws.ToString(in.GroupName)] = true
				case *iam.DeleteUserPolicyInput:
					removed["inline "+aws.ToString(in.PolicyName)] = true
				case *iam.DetachUserPolicyInput:
					removed["attached "+aws.ToString(in.PolicyArn)] = true
				case *iam.DeleteUserInput:
					wants := []string{"key " + key, "group " + x.foreignGroup, "inline " + x.inline, "attached " + x.attached}
					if mode == grants.Group {
						wants = append(wants, "group "+policy.GroupName(grant))
					} else {
						wants = append(wants, "inline "+policy.UserPolicyName)
					}
					for _, want := range wants {
						if !removed[want] {
							t.Errorf("user deleted before %s was removed", want)
						}
					}
				}
			}
			if n := len(e.calls.Succeeded("DeleteUser")); n != 1 {
				t.Errorf("%d successful DeleteUser calls, want 1", n)
			}
		})
	}
}

// A secret of the user's name that is not tagged as keyvend's is not
// keyvend's to delete, even when the user is.
func TestDeleteLeavesAForeignSecretAlone(t *testing.T) {
	e := newEnvOn(t, "", deleteRules)
	user, _ := vended(t, e, rw(awstest.Name("f")+".example.com"))
	if _, err := e.sm.UntagResource(ctx(), &secretsmanager.UntagResourceInput{SecretId: aws.String(secretName(user)), TagKeys: []string{provision.TagManagedBy}}); err != nil {
		t.Fatal(err)
	}
	if err := e.svc.Delete(ctx(), delInput(testCaller, user)); err != nil {
		t.Fatal(err)
	}
	if e.UserExists(t, user) {
		t.Fatalf("user %s not deleted", user)
	}
	if st := secretOf(t, e.sm, user); !st.exists || st.deleted != nil {
		t.Fatalf("foreign secret: exists=%v deleted=%v; want it untouched", st.exists, st.deleted)
	}
	if n := e.calls.Count("DeleteSecret"); n != 0 {
		t.Fatalf("DeleteSecret called %d times", n)
	}
}

// TestDeleteByRuleNeedsItsGrants: a principal deleting by rule (not the
// requester) is allowed only on grants keyvend read exactly: when the
// policy of a grant group cannot be read, the delete fails and nothing is
// removed (fail closed); the requester's delete needs no grants and goes
// on.
func TestDeleteByRuleNeedsItsGrants(t *testing.T) {
	e := newEnvOn(t, "", deleteRules, grantMode(grants.Group))
	grant := rw(awstest.Name("byrule") + ".example.com")
	user, key := vended(t, e, grant)
	e.resetCounters()
	e.faults.FailNth("GetGroupPolicy", 1)
	err := e.svc.Delete(ctx(), delInput(carolARN, user))
	if err == nil || e.faults.Fired() != 1 {
		t.Fatalf("carol's delete with the grant unreadable = %v (faults %d), want an error", err, e.faults.Fired())
	}
	if w := e.calls.Writes(); len(w) != 0 {
		t.Errorf("the delete wrote %v", w)
	}
	wantIntact(t, e, user, []string{key}, e.groupNames(grant))

	e.resetCounters()
	e.faults.FailNth("GetGroupPolicy", 1)
	if err := e.svc.Delete(ctx(), delInput(testCaller, user)); err != nil {
		t.Fatalf("the requester's delete: %v", err)
	}
	if e.UserExists(t, user) {
		t.Error("user still exists")
	}
}
