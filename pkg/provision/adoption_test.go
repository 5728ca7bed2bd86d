package provision_test

// keyvend never adopts a secret it did not make: a secret at
// keyvend/users/<user> is written only if it is tagged as keyvend's for
// that user, uses keyvend's KMS key, and has no resource policy.
//
// Old code (d068f18): a secret of the user's name was overwritten (and
// restored, if scheduled for deletion) when it carried the managed-by tag,
// whatever its user tag, KMS key or resource policy; rotate and the
// reaper's restock put a new version without looking at it at all. Each
// test below, ported there and run, fails: the conflict cases other than
// "not tagged as keyvend's" succeed (PutSecretValue, TagResource, and
// RestoreSecret for the scheduled ones), rotate succeeds, the reaper
// reports both foreign users repaired.

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	smtypes "github.com/aws/aws-sdk-go-v2/service/secretsmanager/types"

	"github.com/keyvend/keyvend/pkg/awstest"
	"github.com/keyvend/keyvend/pkg/grants"
	"github.com/keyvend/keyvend/pkg/provision"
)

// adoptOldKey is the key id a leftover secret holds.
const adoptOldKey = "AKIALEFTOVER00000001"

// TestCreateNeverAdoptsAForeignSecret: a create whose user name has a
// leftover secret reuses it only if keyvend made it for that user (the
// "keyvend's" cases); otherwise it is a KindConflict naming what is
// wrong, the secret keeps its versions, value, tags and policy (no
// PutSecretValue, RestoreSecret or TagResource: one scheduled for deletion
// stays so), and the new user is compensated: its new key deleted, the
// user gone.
func TestCreateNeverAdoptsAForeignSecret(t *testing.T) {
	bothModes(t, func(t *testing.T, mode grants.Mode) {
		withKey := newEnvOn(t, "", testRules, grantMode(mode), semWithKMS(semKMSKey))
		withoutKey := newEnvOn(t, "", testRules, grantMode(mode))
		for _, tc := range []struct {
			name   string
			e      *env
			spec   func(user string) semSecretSpec
			reason string // "" the secret is keyvend's: reused
		}{
			{"keyvend's", withKey, func(u string) semSecretSpec {
				return semSecretSpec{managed: true, userTag: u, kms: semKMSKey}
			}, ""},
			{"keyvend's, scheduled for deletion", withKey, func(u string) semSecretSpec {
				return semSecretSpec{managed: true, userTag: u, kms: semKMSKey, scheduled: true}
			}, ""},
			{"keyvend's, deployment without a KMS key", withoutKey, func(u string) semSecretSpec {
				return semSecretSpec{managed: true, userTag: u}
			}, ""},
			{"resource policy", withKey, func(u string) semSecretSpec {
				return semSecretSpec{managed: true, userTag: u, kms: semKMSKey, policy: true}
			}, "resource policy"},
			{"another KMS key", withKey, func(u string) semSecretSpec {
				return semSecretSpec{managed: true, userTag: u, kms: semOtherKMSKey}
			}, "another KMS key"},
			{"the account's default key, not keyvend's", withKey, func(u string) semSecretSpec {
				return semSecretSpec{managed: true, userTag: u}
			}, "another KMS key"},
			{"a KMS key, deployment without one", withoutKey, func(u string) semSecretSpec {
				return semSecretSpec{managed: true, userTag: u, kms: semOtherKMSKey}
			}, "another KMS key"},
			{"tagged for another user", withKey, func(u string) semSecretSpec {
				return semSecretSpec{managed: true, userTag: u + "-other", kms: semKMSKey}
			}, "another user"},
			{"without a user tag", withKey, func(u string) semSecretSpec {
				return semSecretSpec{managed: true, kms: semKMSKey}
			}, "another user"},
			{"not tagged as keyvend's", withKey, func(u string) semSecretSpec {
				return semSecretSpec{userTag: u, kms: semKMSKey}
			}, "not tagged as keyvend's"},
			{"scheduled for deletion, resource policy", withKey, func(u string) semSecretSpec {
				return semSecretSpec{managed: true, userTag: u, kms: semKMSKey, policy: true, scheduled: true}
			}, "resource policy"},
			{"scheduled for deletion, another user's", withKey, func(u string) semSecretSpec {
				return semSecretSpec{managed: true, userTag: "someone-else", kms: semKMSKey, scheduled: true}
			}, "another user"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				e := tc.e
				user := awstest.Name("adopt")
				grant := rw(semBucket("adopt"))
				spec := tc.spec(user)
				arn := semMakeSecret(t, e.sm, user, adoptOldKey, spec)
				before := semSecret(t, e.sm, user)

				e.resetCounters()
				res, err := e.svc.Create(ctx(), input(user, grant))
				if tc.reason == "" {
					if err != nil {
						t.Fatalf("keyvend's own leftover secret not reused: %v", err)
					}
					if res.SecretARN != arn || e.calls.Count("PutSecretValue") != 1 {
						t.Errorf("secret %s (leftover %s), PutSecretValue %d times", res.SecretARN, arn, e.calls.Count("PutSecretValue"))
					}
					if n := e.calls.Count("RestoreSecret"); (n == 1) != spec.scheduled {
						t.Errorf("RestoreSecret %d times for a secret scheduled=%v", n, spec.scheduled)
					}
					e.assertComplete(t, res, user, grant)
					return
				}
				pe := wantKind(t, err, provision.KindConflict)
				if !strings.Contains(pe.Detail, tc.reason) {
					t.Errorf("detail %q does not say %q", pe.Detail, tc.reason)
				}
				semNoSecretWrites(t, e.calls)
				if after := semSecret(t, e.sm, user); !after.equal(before) {
					t.Errorf("secret changed:\n%+v\nwas\n%+v", after, before)
				}
				if e.calls.Count("CreateAccessKey") != 1 {
					t.Errorf("CreateAccessKey %d times: %s", e.calls.Count("CreateAccessKey"), opsLine(e.calls.Calls()))
				}
				assertUndoneBeforeDeleteUser(t, e.calls.Calls()) // the new key deleted before the user
				if ids := e.Keys(t, user); len(ids) != 0 || e.UserExists(t, user) {
					t.Errorf("user or keys %v left", ids)
				}
			})
		}
	})
}

// TestRotateNeverWritesAForeignSecret: a user whose secret got a resource
// policy, or was re-tagged for another user, after keyvend made it is not
// rotated: KindConflict, no key created, the secret unchanged, the old key
// still in it and still the user's only key.
func TestRotateNeverWritesAForeignSecret(t *testing.T) {
	bothModes(t, func(t *testing.T, mode grants.Mode) {
		e := newEnvOn(t, "", testRules, grantMode(mode), semWithKMS(semKMSKey))
		for _, tc := range []struct {
			name, reason string
			do           func(t *testing.T, user string)
		}{
			{"resource policy", "resource policy", func(t *testing.T, user string) { semPutSecretPolicy(t, e.sm, user) }},
			{"tagged for another user", "another user", func(t *testing.T, user string) {
				if _, err := e.sm.TagResource(ctx(), &secretsmanager.TagResourceInput{SecretId: aws.String(secretName(user)),
					Tags: []smtypes.Tag{{Key: aws.String(provision.TagUser), Value: aws.String("someone-else")}}}); err != nil {
					t.Fatal(err)
				}
			}},
		} {
			t.Run(tc.name, func(t *testing.T) {
				user, key := vended(t, e, rw(semBucket("adopt")))
				tc.do(t, user)
				before := semSecret(t, e.sm, user)
				e.resetCounters()
				_, err := e.svc.Rotate(ctx(), provision.RotateInput{Principal: who(testCaller), RequestID: "rot", User: user})
				pe := wantKind(t, err, provision.KindConflict)
				if !strings.Contains(pe.Detail, tc.reason) {
					t.Errorf("detail %q does not say %q", pe.Detail, tc.reason)
				}
				semNoSecretWrites(t, e.calls)
				if n := e.calls.Count("CreateAccessKey") + e.calls.Count("DeleteAccessKey"); n != 0 {
					t.Errorf("refused rotation created or deleted keys: %s", opsLine(e.calls.Calls()))
				}
				if after := semSecret(t, e.sm, user); !after.equal(before) {
					t.Errorf("secret changed:\n%+v\nwas\n%+v", after, before)
				}
				if got := e.Keys(t, user); !slices.Equal(got, []string{key}) || e.MustCredential(t, user).AccessKeyID != key {
					t.Errorf("keys %v, secret holds %s, want only %s in both", got, e.MustCredential(t, user).AccessKeyID, key)
				}
				if semGroupExists(t, e.iam, "keyvend-lock_"+strings.ToLower(user)) {
					t.Error("repair lock left behind")
				}
			})
		}
	})
}

// TestReapNeverRestocksAForeignSecret: the reaper restocks a user whose
// secret holds no live key only if the secret is keyvend's for it; a
// secret with a resource policy or tagged for another user is reported as
// an error, gets no new version, and its user no key.
func TestReapNeverRestocksAForeignSecret(t *testing.T) {
	srv := awstest.Dedicated(t) // the reaper sees only this test's users
	clock := &settableClock{}
	e := newEnvOn(t, srv.URL, testRules, semWithKMS(semKMSKey), func(s *provision.Settings) { s.Now = clock.Now })
	dead := func() string { // a user whose secret holds a key it no longer has
		user, key := vended(t, e, rw(semBucket("reap")))
		if _, err := e.iam.DeleteAccessKey(ctx(), &iam.DeleteAccessKeyInput{UserName: &user, AccessKeyId: &key}); err != nil {
			t.Fatal(err)
		}
		return user
	}
	ok, withPolicy, retagged := dead(), dead(), dead()
	semPutSecretPolicy(t, e.sm, withPolicy)
	if _, err := e.sm.TagResource(ctx(), &secretsmanager.TagResourceInput{SecretId: aws.String(secretName(retagged)),
		Tags: []smtypes.Tag{{Key: aws.String(provision.TagUser), Value: aws.String("someone-else")}}}); err != nil {
		t.Fatal(err)
	}
	before := map[string]semSecretState{withPolicy: semSecret(t, e.sm, withPolicy), retagged: semSecret(t, e.sm, retagged)}

	clock.Set(time.Now().Add(provision.HalfMadeAfter + 5*time.Minute))
	e.resetCounters()
	rep, err := e.svc.Reap(ctx())
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(rep.Repaired, []string{ok}) {
		t.Errorf("repaired %v, want [%s]", rep.Repaired, ok)
	}
	errs := map[string]string{}
	for _, re := range rep.Errors {
		errs[re.User] = re.Error
	}
	if len(errs) != 2 || !strings.Contains(errs[withPolicy], "resource policy") || !strings.Contains(errs[retagged], "another user") {
		t.Errorf("errors %v, want %s (resource policy) and %s (another user)", rep.Errors, withPolicy, retagged)
	}
	if n := e.calls.Count("PutSecretValue"); n != 1 {
		t.Errorf("PutSecretValue %d times, want 1 (%s's)", n, ok)
	}
	for _, op := range []string{"RestoreSecret", "TagResource", "CreateSecret"} {
		if n := e.calls.Count(op); n != 0 {
			t.Errorf("%s %d times", op, n)
		}
	}
	for user, was := range before {
		if now := semSecret(t, e.sm, user); !now.equal(was) {
			t.Errorf("secret of %s changed:\n%+v\nwas\n%+v", user, now, was)
		}
		if got := e.Keys(t, user); len(got) != 0 {
			t.Errorf("%s got keys %v", user, got)
		}
	}
	if got := e.Keys(t, ok); len(got) != 1 || e.MustCredential(t, ok).AccessKeyID != got[0] {
		t.Errorf("restocked %s has keys %v, secret %s", ok, got, e.MustCredential(t, ok).AccessKeyID)
	}
}
