package provision_test

import (
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"

	"github.com/keyvend/keyvend/pkg/awstest"
	"github.com/keyvend/keyvend/pkg/policy"
	"github.com/keyvend/keyvend/pkg/provision"
)

// removeUserByHand deletes user the way AWS requires (keys and memberships
// first; moto would also delete it with them attached), leaving its secret.
func (e *env) removeUserByHand(t *testing.T, user string) {
	t.Helper()
	ids := e.Keys(t, user)
	for _, id := range ids {
		if _, err := e.iam.DeleteAccessKey(ctx(), &iam.DeleteAccessKeyInput{UserName: &user, AccessKeyId: aws.String(id)}); err != nil {
			t.Fatal(err)
		}
	}
	for _, g := range e.Groups(t, user, "") {
		if _, err := e.iam.RemoveUserFromGroup(ctx(), &iam.RemoveUserFromGroupInput{UserName: &user, GroupName: aws.String(g)}); err != nil {
			t.Fatal(err)
		}
	}
	if _, ok := e.UserPolicy(t, user); ok {
		if _, err := e.iam.DeleteUserPolicy(ctx(), &iam.DeleteUserPolicyInput{UserName: &user, PolicyName: aws.String(policy.UserPolicyName)}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := e.iam.DeleteUser(ctx(), &iam.DeleteUserInput{UserName: &user}); err != nil {
		t.Fatal(err)
	}
}

// TestStaleSecretIsReused: a managed secret left from an earlier user of the
// same name is taken over: the new user's key becomes its current version.
//
// moto diverges from AWS here, so the test checks the calls as well as the
// outcome:
//   - CreateSecret over a secret scheduled for deletion: AWS answers
//     InvalidRequestException, moto ResourceExistsException (storeKey
//     treats both as "exists").
//   - PutSecretValue on a secret scheduled for deletion: AWS refuses
//     (InvalidRequestException), moto accepts it. So a missing RestoreSecret
//     would not fail against moto; the test asserts RestoreSecret was
//     called and that the secret is no longer scheduled for deletion.
//
// RestoreSecret and PutSecretValue themselves behave as in AWS.
func TestStaleSecretIsReused(t *testing.T) {
	for _, scheduled := range []bool{false, true} {
		name := "left in place"
		if scheduled {
			name = "scheduled for deletion"
		}
		t.Run(name, func(t *testing.T) {
			e := newEnv(t)
			user := awstest.Name("stale")
			grant := rw(awstest.Name("stale") + ".example.com")
			old, err := e.svc.Create(ctx(), input(user, grant))
			if err != nil {
				t.Fatal(err)
			}
			e.removeUserByHand(t, user)
			if scheduled {
				if _, err := e.sm.DeleteSecret(ctx(), &secretsmanager.DeleteSecretInput{SecretId: aws.String(secretName(user)), RecoveryWindowInDays: aws.Int64(7)}); err != nil {
					t.Fatal(err)
				}
				desc, err := e.sm.DescribeSecret(ctx(), &secretsmanager.DescribeSecretInput{SecretId: aws.String(secretName(user))})
				if err != nil || desc.DeletedDate == nil {
					t.Fatalf("secret not scheduled for deletion: %v", err)
				}
			}

			e.calls.Reset()
			in := input(user, grant)
			in.RequestID = "req-second"
			res, err := e.svc.Create(ctx(), in)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("calls: %s", opsLine(e.calls.Calls()))
			if !res.Created || res.AccessKeyID == old.AccessKeyID {
				t.Errorf("result %+v", res)
			}
			if res.SecretARN != old.SecretARN {
				t.Errorf("secret ARN %s, the stale secret is %s", res.SecretARN, old.SecretARN)
			}
			wantRestore := 0
			if scheduled {
				wantRestore = 1
			}
			if n := e.calls.Count("RestoreSecret"); n != wantRestore {
				t.Errorf("RestoreSecret called %d times, want %d", n, wantRestore)
			}
			if e.calls.Count("PutSecretValue") != 1 {
				t.Errorf("PutSecretValue not called once")
			}
			desc, err := e.sm.DescribeSecret(ctx(), &secretsmanager.DescribeSecretInput{SecretId: aws.String(secretName(user))})
			if err != nil {
				t.Fatal(err)
			}
			if desc.DeletedDate != nil {
				t.Error("secret is still scheduled for deletion")
			}
			tags := map[string]string{}
			for _, tg := range desc.Tags {
				tags[aws.ToString(tg.Key)] = aws.ToString(tg.Value)
			}
			if tags[provision.TagRequestID] != "req-second" || tags[provision.TagManagedBy] != "keyvend" || tags[provision.TagUser] != user {
				t.Errorf("secret tags = %v", tags)
			}
			e.assertComplete(t, res, user, grant)
		})
	}
}

// TestUnmanagedSecretIsNotTaken: a secret of the user's name that keyvend
// did not make is a 409; the new user is compensated and the secret keeps
// its value.
func TestUnmanagedSecretIsNotTaken(t *testing.T) {
	e := newEnv(t)
	user := awstest.Name("theirs")
	grant := rw(awstest.Name("theirs") + ".example.com")
	if _, err := e.sm.CreateSecret(ctx(), &secretsmanager.CreateSecretInput{Name: aws.String(secretName(user)), SecretString: aws.String("their value")}); err != nil {
		t.Fatal(err)
	}
	_, err := e.svc.Create(ctx(), input(user, grant))
	wantKind(t, err, provision.KindConflict)
	assertUndoneBeforeDeleteUser(t, e.calls.Calls())
	if ids := e.Keys(t, user); len(ids) != 0 || e.UserExists(t, user) {
		t.Errorf("user or keys left: %v", ids)
	}
	if m := e.groupMembers(t, policy.GroupName(grant)); len(m) != 0 {
		t.Errorf("group members left: %v", m)
	}
	out, err := e.sm.GetSecretValue(ctx(), &secretsmanager.GetSecretValueInput{SecretId: aws.String(secretName(user))})
	if err != nil || aws.ToString(out.SecretString) != "their value" {
		t.Errorf("their secret changed: %v", err)
	}
	if n := e.calls.Count("PutSecretValue") + e.calls.Count("TagResource"); n != 0 {
		t.Errorf("%d writes to their secret", n)
	}
}

// TestScheduledSecretPolicyAsAWSAnswers: AWS refuses GetResourcePolicy on
// a secret scheduled for deletion (InvalidRequestException; moto answers
// it, so the test injects AWS's answer). keyvend still reuses its own
// scheduled secret — restored, its policy read then — and a scheduled
// secret found to carry a resource policy once restored is scheduled for
// deletion again and refused (409), never written.
func TestScheduledSecretPolicyAsAWSAnswers(t *testing.T) {
	for _, withPolicy := range []bool{false, true} {
		name := "own secret reused"
		if withPolicy {
			name = "secret with a resource policy refused"
		}
		t.Run(name, func(t *testing.T) {
			e := newEnv(t)
			user := awstest.Name("sched")
			grant := rw(awstest.Name("sched") + ".example.com")
			old, err := e.svc.Create(ctx(), input(user, grant))
			if err != nil {
				t.Fatal(err)
			}
			e.removeUserByHand(t, user)
			if withPolicy {
				if _, err := e.sm.PutResourcePolicy(ctx(), &secretsmanager.PutResourcePolicyInput{SecretId: aws.String(secretName(user)),
					ResourcePolicy: aws.String(`{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::999999999999:root"},"Action":"secretsmanager:GetSecretValue","Resource":"*"}]}`)}); err != nil {
					t.Fatal(err)
				}
			}
			if _, err := e.sm.DeleteSecret(ctx(), &secretsmanager.DeleteSecretInput{SecretId: aws.String(secretName(user)), RecoveryWindowInDays: aws.Int64(7)}); err != nil {
				t.Fatal(err)
			}
			e.calls.Reset()
			e.faults.FailNthWith("GetResourcePolicy", 1, "InvalidRequestException") // AWS, for a scheduled secret
			res, err := e.svc.Create(ctx(), input(user, grant))
			desc, derr := e.sm.DescribeSecret(ctx(), &secretsmanager.DescribeSecretInput{SecretId: aws.String(secretName(user))})
			if derr != nil {
				t.Fatal(derr)
			}
			if !withPolicy {
				if err != nil {
					t.Fatalf("own scheduled secret not reused: %v (%s)", err, opsLine(e.calls.Calls()))
				}
				if res.SecretARN != old.SecretARN || desc.DeletedDate != nil {
					t.Errorf("secret %s (deleted %v), want the restored %s", res.SecretARN, desc.DeletedDate, old.SecretARN)
				}
				e.assertComplete(t, res, user, grant)
				return
			}
			wantKind(t, err, provision.KindConflict)
			if n := e.calls.Count("PutSecretValue") + e.calls.Count("TagResource"); n != 0 {
				t.Errorf("the foreign secret was written: %s", opsLine(e.calls.Calls()))
			}
			if desc.DeletedDate == nil {
				t.Error("the secret with a resource policy was left restored, not scheduled for deletion again")
			}
			e.assertNoTrace(t, user)
		})
	}
}
