package provision_test

// Authorization never fails open: a user whose grants keyvend cannot all
// read is its requester's alone.

import (
	"slices"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/iam"

	"github.com/keyvend/keyvend/pkg/authz"
	"github.com/keyvend/keyvend/pkg/awserr"
	"github.com/keyvend/keyvend/pkg/grants"
	"github.com/keyvend/keyvend/pkg/policy"
	"github.com/keyvend/keyvend/pkg/provision"
)

// fenceRules: alice vends on *.example.com and may force-delete those
// users; carol may do everything to them by rule.
const fenceRules = `{"rules":[
 {"principals":["` + testCaller + `"],"buckets":["*.example.com"],"access":` + allAccess + `,"actions":["create","force-delete"]},
 {"principals":["` + carolARN + `"],"buckets":["*.example.com"],"access":` + allAccess + `,"actions":["create","describe","list","rotate","update","delete","force-delete"]}
]}`

// A tampering makes a vended user's grants unreadable, outside keyvend.
type fenceTampering struct {
	name string
	mode grants.Mode
	do   func(t *testing.T, e *env, user string, plain, prefixed policy.Grant)
}

var fenceTamperings = []fenceTampering{
	{"user policy with an extra statement", grants.Policy, func(t *testing.T, e *env, user string, _, _ policy.Grant) {
		doc, _ := e.UserPolicy(t, user)
		fencePutUserPolicy(t, e, user, strings.Replace(doc, `"Statement":[`, `"Statement":[{"Sid":"Extra","Effect":"Allow","Action":"s3:*","Resource":["*"]},`, 1))
	}},
	{"user policy keyvend cannot parse", grants.Policy, func(t *testing.T, e *env, user string, plain, _ policy.Grant) {
		fencePutUserPolicy(t, e, user, `{"Version":"2012-10-17","Statement":[{"Sid":"ReadWriteObjects","Effect":"Allow","Action":"s3:*","Resource":"*"},{"Sid":"Location","Effect":"Allow","Action":"s3:GetBucketLocation","Resource":"arn:aws:s3:::`+plain.Bucket+`"}]}`)
	}},
	{"user policy deleted", grants.Policy, func(t *testing.T, e *env, user string, _, _ policy.Grant) {
		if _, err := e.iam.DeleteUserPolicy(ctx(), &iam.DeleteUserPolicyInput{UserName: &user, PolicyName: aws.String(policy.UserPolicyName)}); err != nil {
			t.Fatal(err)
		}
	}},
	{"grant group's policy deleted", grants.Group, func(t *testing.T, e *env, _ string, _, prefixed policy.Grant) {
		if _, err := e.iam.DeleteGroupPolicy(ctx(), &iam.DeleteGroupPolicyInput{GroupName: aws.String(policy.GroupName(prefixed)), PolicyName: aws.String(policy.InlinePolicyName)}); err != nil {
			t.Fatal(err)
		}
	}},
	// A group's name says its grant, not what its policy was rewritten to
	// allow: the policy of every grant group is read and must be exact.
	{"unprefixed grant group's policy widened", grants.Group, func(t *testing.T, e *env, _ string, plain, _ policy.Grant) {
		if _, err := e.iam.PutGroupPolicy(ctx(), &iam.PutGroupPolicyInput{GroupName: aws.String(policy.GroupName(plain)), PolicyName: aws.String(policy.InlinePolicyName),
			PolicyDocument: aws.String(`{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"*","Resource":"*"}]}`)}); err != nil {
			t.Fatal(err)
		}
	}},
	{"grant group's policy rewritten", grants.Group, func(t *testing.T, e *env, _ string, _, prefixed policy.Grant) {
		if _, err := e.iam.PutGroupPolicy(ctx(), &iam.PutGroupPolicyInput{GroupName: aws.String(policy.GroupName(prefixed)), PolicyName: aws.String(policy.InlinePolicyName),
			PolicyDocument: aws.String(`{"Version":"2012-10-17","Statement":[{"Sid":"ReadOnlyObjects","Effect":"Allow","Action":"s3:*","Resource":"*"}]}`)}); err != nil {
			t.Fatal(err)
		}
	}},
}

func fencePutUserPolicy(t *testing.T, e *env, user, doc string) {
	t.Helper()
	if _, err := e.iam.PutUserPolicy(ctx(), &iam.PutUserPolicyInput{UserName: &user, PolicyName: aws.String(policy.UserPolicyName), PolicyDocument: &doc}); err != nil {
		t.Fatal(err)
	}
}

// fenceIAMState is what a refused request must not change: the user's
// keys, inline policies (with keyvend's document), groups (with their
// policies) and tags.
func fenceIAMState(t *testing.T, e *env, user string) string {
	t.Helper()
	var b strings.Builder
	b.WriteString("keys " + strings.Join(e.Keys(t, user), ",") + "\n")
	b.WriteString("policies " + strings.Join(e.UserPolicyNames(t, user), ",") + "\n")
	if doc, ok := e.UserPolicy(t, user); ok {
		b.WriteString("user policy " + doc + "\n")
	}
	for _, g := range e.Groups(t, user, "") {
		doc := "(no policy)"
		out, err := e.iam.GetGroupPolicy(ctx(), &iam.GetGroupPolicyInput{GroupName: &g, PolicyName: aws.String(policy.InlinePolicyName)})
		switch {
		case err == nil:
			doc = aws.ToString(out.PolicyDocument)
		case awserr.Code(err) != "NoSuchEntity":
			t.Fatal(err)
		}
		b.WriteString("group " + g + " " + doc + "\n")
	}
	out, err := e.iam.ListUserTags(ctx(), &iam.ListUserTagsInput{UserName: &user})
	if err != nil {
		t.Fatal(err)
	}
	for _, tg := range out.Tags {
		b.WriteString("tag " + aws.ToString(tg.Key) + "=" + aws.ToString(tg.Value) + "\n")
	}
	return b.String()
}

// TestUnreadableGrantsAreTheRequestersAlone: a user whose grants cannot
// all be read — its user policy replaced with one that is not keyvend's,
// or deleted; in grant mode group, the policy of one of its grant groups
// deleted or rewritten — may understate what it can do, so no rule
// reaches it: carol, whose rule allows every action on the user's
// (nominal) buckets, is told it does not exist (describe, rotate, delete,
// force delete, PUT grants) and nothing changes. Its requester alice may
// still describe it (grants_intact false), rotate it and delete it; force
// delete needs a rule, and alice's force-delete rule cannot apply to
// grants keyvend cannot read, so it is refused.
//
// Old code (d068f18): unreadable grants were no grants (a group without
// its policy, or whose policy did not parse, was skipped, and user
// policies were not read at all), and a rule allows an action on no
// grants, so carol's describe succeeded. Ported there — the group cases
// as they are, the policy cases as a hand-made user whose only grant
// carrier is the tampered user policy — every case fails at carol's
// describe.
//
// The widened unprefixed group is the case a first version of the fence
// missed: it read a group's policy only when the name did not say the
// grant (a prefix), so a rewritten policy went unseen.
func TestUnreadableGrantsAreTheRequestersAlone(t *testing.T) {
	for _, tc := range fenceTamperings {
		t.Run(string(tc.mode)+": "+tc.name, func(t *testing.T) {
			e := newEnvOn(t, "", fenceRules, grantMode(tc.mode))
			plain, prefixed := rw(semBucket("fence")), semPrefixed("fence")
			user, key := vended(t, e, plain, prefixed)
			tc.do(t, e, user, plain, prefixed)
			carol, alice := who(carolARN), who(testCaller)

			// Intact before the tampering, carol could: see that the
			// refusal is the tampering's, with a user made the same way.
			control, _ := vended(t, e, rw(semBucket("fence")), semPrefixed("fence"))
			if _, err := e.svc.Describe(ctx(), carol, control); err != nil {
				t.Fatalf("carol may not describe an intact user: %v", err)
			}

			before := fenceIAMState(t, e, user)
			secretBefore := semSecret(t, e.sm, user)
			e.resetCounters()
			_, err := e.svc.Describe(ctx(), carol, user)
			wantKind(t, err, provision.KindNotFound)
			for _, a := range []authz.Action{authz.Describe, authz.Rotate, authz.Delete} {
				wantKind(t, e.svc.CheckOnUser(ctx(), carol, a, user), provision.KindNotFound)
			}
			_, err = e.svc.Rotate(ctx(), provision.RotateInput{Principal: carol, RequestID: "rot", User: user})
			wantKind(t, err, provision.KindNotFound)
			wantKind(t, e.svc.Delete(ctx(), delInput(carolARN, user)), provision.KindNotFound)
			force := delInput(carolARN, user)
			force.Force = true
			wantKind(t, e.svc.Delete(ctx(), force), provision.KindNotFound)
			_, err = e.svc.UpdateGrants(ctx(), updInput(carolARN, user, []policy.Grant{plain, prefixed}))
			wantKind(t, err, provision.KindNotFound)
			if w := e.calls.Writes(); len(w) != 0 {
				t.Errorf("refused requests wrote: %s", opsLine(w))
			}
			if after := fenceIAMState(t, e, user); after != before {
				t.Errorf("IAM state changed:\n%s\nwas\n%s", after, before)
			}
			if !semSecret(t, e.sm, user).equal(secretBefore) {
				t.Error("the secret changed")
			}

			d, err := e.svc.Describe(ctx(), alice, user)
			if err != nil {
				t.Fatalf("requester's describe: %v", err)
			}
			if d.GrantsIntact || d.Requester != testCaller {
				t.Errorf("described grants_intact %v requester %q, want false and %s", d.GrantsIntact, d.Requester, testCaller)
			}

			r, err := e.svc.Rotate(ctx(), provision.RotateInput{Principal: alice, RequestID: "rot", User: user})
			if err != nil {
				t.Fatalf("requester's rotate: %v", err)
			}
			// The new key, and the previous one kept for its grace.
			if got := e.Keys(t, user); r.AccessKeyID == key || !slices.Equal(got, sortedPair(r.AccessKeyID, key)) || e.MustCredential(t, user).AccessKeyID != r.AccessKeyID {
				t.Errorf("after rotation keys %v, secret %s, new key %s", got, e.MustCredential(t, user).AccessKeyID, r.AccessKeyID)
			}

			e.resetCounters()
			force = delInput(testCaller, user)
			force.Force = true
			wantKind(t, e.svc.Delete(ctx(), force), provision.KindForbidden)
			if w := e.calls.Writes(); len(w) != 0 {
				t.Errorf("refused force delete wrote: %s", opsLine(w))
			}
			if st := secretOf(t, e.sm, user); !st.exists || st.deleted != nil {
				t.Errorf("secret after a refused force delete: %+v", st)
			}

			if err := e.svc.Delete(ctx(), delInput(testCaller, user)); err != nil {
				t.Fatalf("requester's delete: %v", err)
			}
			if e.UserExists(t, user) {
				t.Error("user not deleted")
			}
		})
	}
}
