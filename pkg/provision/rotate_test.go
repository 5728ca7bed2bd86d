package provision_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	iamtypes "github.com/aws/aws-sdk-go-v2/service/iam/types"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"

	"github.com/keyvend/keyvend/pkg/awstest"
	"github.com/keyvend/keyvend/pkg/policy"
	"github.com/keyvend/keyvend/pkg/provision"
	"github.com/keyvend/keyvend/pkg/provisiontest"
	"github.com/keyvend/keyvend/pkg/state"
)

func TestRotateReplacesTheKeyAndNeverReturnsTheSecretKey(t *testing.T) {
	e := newEnv(t)
	user := awstest.Name("rot")
	created := rotCreate(t, e, user)
	before := e.MustCredential(t, user)
	if before.AccessKeyID != created.AccessKeyID {
		t.Fatalf("secret holds %s, create returned %s", before.AccessKeyID, created.AccessKeyID)
	}

	e.calls.Reset()
	start := time.Now()
	res, err := rotRotate(e, user)
	if err != nil {
		t.Fatal(err)
	}
	if res.AccessKeyID == "" || res.AccessKeyID == created.AccessKeyID {
		t.Fatalf("new key id %q, old %s", res.AccessKeyID, created.AccessKeyID)
	}
	// The previous key stays active for the grace (1h by default).
	if res.PreviousAccessKeyID != created.AccessKeyID || res.PreviousKeyDeleted || res.PreviousKeyDeletesAt == nil {
		t.Fatalf("previous = %q deleted=%v deletes at %v, want %s kept for its grace", res.PreviousAccessKeyID, res.PreviousKeyDeleted, res.PreviousKeyDeletesAt, created.AccessKeyID)
	}
	if at := *res.PreviousKeyDeletesAt; at.Before(start.Add(time.Hour-time.Second)) || at.After(time.Now().Add(time.Hour)) {
		t.Errorf("previous key deletes at %v, want an hour after the rotation (%v)", at, start)
	}
	if res.User != user || res.SecretName != "keyvend/users/"+user || res.SecretARN != created.SecretARN || !strings.Contains(res.CredentialProcess, res.SecretARN) {
		t.Errorf("result = %+v", res)
	}
	if res.Ready != nil || res.ReadyHint != "" {
		t.Errorf("readiness reported without wait: %+v", res.Readiness)
	}

	after := rotAssertSettled(t, e, user)
	if after.AccessKeyID != res.AccessKeyID || after.Version != 1 || after.SecretAccessKey == "" {
		t.Fatalf("secret holds %s (version %d), rotate returned %s", after.AccessKeyID, after.Version, res.AccessKeyID)
	}
	if st := rotKeyStatus(t, e, user, created.AccessKeyID); st != iamtypes.StatusTypeActive {
		t.Errorf("previous key %s is %q, want Active during its grace", created.AccessKeyID, st)
	}
	if rec, _ := e.Record(t, user); rec.PrevKeyID != created.AccessKeyID || !rec.PrevKeyDeletesAt.Equal(*res.PreviousKeyDeletesAt) {
		t.Errorf("record keeps previous key %q until %v, want %s until %v", rec.PrevKeyID, rec.PrevKeyDeletesAt, created.AccessKeyID, res.PreviousKeyDeletesAt)
	}
	if w, want := fmt.Sprint(e.calls.Writes()), "[IAM:CreateAccessKey Secrets Manager:PutSecretValue]"; w != want {
		t.Errorf("writes = %s, want %s", w, want)
	}

	out, err := json.Marshal(res)
	if err != nil {
		t.Fatal(err)
	}
	for _, secret := range []string{after.SecretAccessKey, before.SecretAccessKey} {
		if len(secret) < 16 {
			t.Fatalf("implausible secret access key %q: the check below would prove nothing", secret)
		}
		if strings.Contains(string(out), secret) {
			t.Errorf("the rotate result contains a secret access key: %s", out)
		}
	}

	// The new key is live as the user; so is the previous one, in its grace.
	arn := rotUserARN(t, e, user)
	if got := rotIdentity(t, after.AccessKeyID, after.SecretAccessKey); got != arn {
		t.Errorf("new key authenticates as %s, want %s", got, arn)
	}
	if got := rotIdentity(t, before.AccessKeyID, before.SecretAccessKey); got != arn {
		t.Errorf("previous key, in its grace, authenticates as %s, want %s", got, arn)
	}
}

func TestRotateDeletesAStrayKeyFirst(t *testing.T) {
	e := newEnv(t)
	user := awstest.Name("rot-stray")
	created := rotCreate(t, e, user)
	stray, err := e.iam.CreateAccessKey(ctx(), &iam.CreateAccessKeyInput{UserName: &user})
	if err != nil {
		t.Fatal(err)
	}
	strayID := aws.ToString(stray.AccessKey.AccessKeyId)
	if n := len(e.Keys(t, user)); n != 2 {
		t.Fatalf("setup: %d keys, want 2 (IAM's limit, so a new key needs room)", n)
	}

	e.calls.Reset()
	res, err := rotRotate(e, user)
	if err != nil {
		t.Fatal(err)
	}
	cred := rotAssertSettled(t, e, user)
	if cred.AccessKeyID != res.AccessKeyID || res.AccessKeyID == created.AccessKeyID || res.AccessKeyID == strayID {
		t.Fatalf("secret %s, result %s, old %s, stray %s", cred.AccessKeyID, res.AccessKeyID, created.AccessKeyID, strayID)
	}
	if res.PreviousAccessKeyID != created.AccessKeyID || res.PreviousKeyDeletesAt == nil {
		t.Errorf("previous = %q deletes at %v, want the key that was in the secret, %s, kept for its grace", res.PreviousAccessKeyID, res.PreviousKeyDeletesAt, created.AccessKeyID)
	}
	// The stray went before the new key was made (moto, like IAM, refuses a third key).
	writes := fmt.Sprint(e.calls.Writes())
	if want := "[IAM:DeleteAccessKey IAM:CreateAccessKey Secrets Manager:PutSecretValue]"; writes != want {
		t.Errorf("writes = %s, want %s", writes, want)
	}
}

// TestRotateUnderAFailingStoreKeepsTheOldKey: when the new key cannot be
// stored, it is deleted and the old key keeps working from the secret.
func TestRotateUnderAFailingStoreKeepsTheOldKey(t *testing.T) {
	e := newEnv(t)
	user := awstest.Name("rot-put")
	rotCreate(t, e, user)
	old := e.MustCredential(t, user)

	e.calls.Reset()
	e.faults.FailNth("PutSecretValue", 0)
	if _, err := rotRotate(e, user); err == nil {
		t.Fatal("rotate succeeded with PutSecretValue failing")
	}
	if e.faults.Fired() == 0 {
		t.Fatal("the fault never fired")
	}
	if n := e.calls.Count("CreateAccessKey"); n != 1 {
		t.Fatalf("CreateAccessKey called %d times, want 1: the test needs a new key to have been made", n)
	}
	if keys := e.Keys(t, user); !slices.Equal(keys, []string{old.AccessKeyID}) {
		t.Fatalf("keys = %v, want only the old key %s (the new one deleted)", keys, old.AccessKeyID)
	}
	if now := e.MustCredential(t, user); now != old {
		t.Fatalf("secret now holds %s, want the old key %s unchanged", now.AccessKeyID, old.AccessKeyID)
	}
	if got, want := rotIdentity(t, old.AccessKeyID, old.SecretAccessKey), rotUserARN(t, e, user); got != want {
		t.Fatalf("old key authenticates as %s, want %s", got, want)
	}
}

// TestRotateUnderAFailingCreateSecret: a user whose secret was deleted has
// no key anyone can read, so rotate removes its key as a stray and creates
// the secret anew. When that fails, the new key is deleted too: no key
// exists outside a secret, and a retry completes the user.
func TestRotateUnderAFailingCreateSecret(t *testing.T) {
	clock := &rotClock{}
	e := newEnv(t, rotWithClock(clock))
	user := awstest.Name("rot-cs")
	created := rotCreate(t, e, user)
	if _, err := e.sm.DeleteSecret(ctx(), &secretsmanager.DeleteSecretInput{SecretId: aws.String("keyvend/users/" + user), ForceDeleteWithoutRecovery: aws.Bool(true)}); err != nil {
		t.Fatal(err)
	}
	// Past RepairAfter, so a user without a secret is not "being created".
	clock.Advance(2 * time.Minute)

	e.calls.Reset()
	e.faults.FailNth("CreateSecret", 0)
	if _, err := rotRotate(e, user); err == nil {
		t.Fatal("rotate succeeded with CreateSecret failing")
	}
	if e.faults.Fired() == 0 || e.calls.Count("CreateAccessKey") != 1 {
		t.Fatalf("fault fired %d times, CreateAccessKey called %d times; want both", e.faults.Fired(), e.calls.Count("CreateAccessKey"))
	}
	if keys := e.Keys(t, user); len(keys) != 0 {
		t.Fatalf("keys = %v, want none: the old key is in no secret, the new one could not be stored", keys)
	}
	if _, _, ok := e.Credential(t, user); ok {
		t.Fatal("a secret exists after CreateSecret failed")
	}

	e.faults.Clear()
	res, err := rotRotate(e, user)
	if err != nil {
		t.Fatalf("retry: %v", err)
	}
	cred := rotAssertSettled(t, e, user)
	if cred.AccessKeyID != res.AccessKeyID || res.AccessKeyID == created.AccessKeyID || res.PreviousAccessKeyID != "" {
		t.Fatalf("retry result %+v, secret holds %s", res, cred.AccessKeyID)
	}
	if got, want := rotIdentity(t, cred.AccessKeyID, cred.SecretAccessKey), rotUserARN(t, e, user); got != want {
		t.Fatalf("new key authenticates as %s, want %s", got, want)
	}
}

// rotScenario is a user state rotate starts from.
type rotScenario struct {
	name string
	// advanced: the clock starts past RepairAfter (needed for a user
	// without a secret).
	advanced bool
	// setup makes the user and returns the keys it has before rotating.
	setup func(t *testing.T, e *env, user string) []string
	// hasSecret: the secret holds one of the user's keys before rotating.
	hasSecret bool
}

var rotScenarios = []rotScenario{
	{
		// Two grants, one with a prefix: its grant is read from the group
		// policy, so GetGroupPolicy is among the calls.
		name: "plain", hasSecret: true,
		setup: func(t *testing.T, e *env, user string) []string {
			in := input(user, rw(awstest.Name("rot")+".example.com"),
				policy.Grant{Bucket: awstest.Name("rot") + ".example.com", Access: policy.ReadOnly, Prefix: "logs/"})
			if _, err := e.svc.Create(ctx(), in); err != nil {
				t.Fatal(err)
			}
			return e.Keys(t, user)
		},
	},
	{
		name: "stray key", hasSecret: true,
		setup: func(t *testing.T, e *env, user string) []string {
			rotCreate(t, e, user)
			if _, err := e.iam.CreateAccessKey(ctx(), &iam.CreateAccessKeyInput{UserName: &user}); err != nil {
				t.Fatal(err)
			}
			return e.Keys(t, user)
		},
	},
	{
		name: "secret deleted", advanced: true,
		setup: func(t *testing.T, e *env, user string) []string {
			rotCreate(t, e, user)
			if _, err := e.sm.DeleteSecret(ctx(), &secretsmanager.DeleteSecretInput{SecretId: aws.String("keyvend/users/" + user), ForceDeleteWithoutRecovery: aws.Bool(true)}); err != nil {
				t.Fatal(err)
			}
			return e.Keys(t, user)
		},
	},
}

func (sc rotScenario) env(t *testing.T) (*env, *rotClock) {
	clock := &rotClock{}
	if sc.advanced {
		clock.Advance(2 * time.Minute)
	}
	return newEnv(t, rotWithClock(clock)), clock
}

// TestRotateFaultAtEveryCall records the calls a successful rotate makes
// from each starting state, then fails each of them in turn. After every
// failure no key exists that is neither in the user's secret nor one the
// user had before, the old key is still in the secret, the repair lock is
// released, and a retry completes the rotation.
func TestRotateFaultAtEveryCall(t *testing.T) {
	for _, sc := range rotScenarios {
		t.Run(sc.name, func(t *testing.T) {
			e, _ := sc.env(t)
			user := awstest.Name("rot-rec")
			sc.setup(t, e, user)
			e.calls.Reset()
			if _, err := rotRotate(e, user); err != nil {
				t.Fatalf("recording run: %v", err)
			}
			rotAssertSettled(t, e, user)
			calls := e.calls.Calls()
			t.Logf("rotate (%s) makes %d calls: %v; writes in order: %v", sc.name, len(calls), calls, e.calls.Writes())
			counts := rotOps(calls)
			ops := make([]string, 0, len(counts))
			for op := range counts {
				ops = append(ops, op)
			}
			sort.Strings(ops)
			for _, op := range ops {
				for nth := 1; nth <= counts[op]; nth++ {
					t.Run(fmt.Sprintf("%s#%d", op, nth), func(t *testing.T) {
						rotFaultCase(t, sc, op, nth)
					})
				}
			}
		})
	}
}

func rotFaultCase(t *testing.T, sc rotScenario, op string, nth int) {
	e, _ := sc.env(t)
	user := awstest.Name("rot-f")
	before := sc.setup(t, e, user)
	var old provision.Credential
	if sc.hasSecret {
		old = e.MustCredential(t, user)
	}

	e.faults.FailNth(op, nth)
	res, err := rotRotate(e, user)
	if e.faults.Fired() != 1 {
		t.Fatalf("fault fired %d times, want 1", e.faults.Fired())
	}
	e.faults.Clear()
	rotAssertNoLeak(t, e, user, before...)
	lockHeld := rotLockHeld(t, e, user)

	switch {
	case err != nil:
		if sc.hasSecret {
			if now := e.MustCredential(t, user); now != old {
				t.Errorf("after a failed rotate the secret holds %s, want the old key %s", now.AccessKeyID, old.AccessKeyID)
			}
			if !slices.Contains(e.Keys(t, user), old.AccessKeyID) {
				t.Errorf("after a failed rotate the old key %s is gone", old.AccessKeyID)
			}
		}
		if lockHeld {
			t.Error("a failed rotate left its lease held")
		}
	case (op == "DeleteAccessKey" || op == "TransactWriteItems") && res.PreviousAccessKeyID != "":
		// Deleting the previous key is best effort, reported in the
		// result; so is recording the new key (TransactWriteItems): then
		// the previous key is kept and the record still names it.
		// Deleting the previous key is best effort, reported in the
		// result; the key is left for the next rotation or the reaper.
		if res.PreviousKeyDeleted {
			t.Errorf("previous key %s reported deleted though its deletion failed", res.PreviousAccessKeyID)
		}
		cred := e.MustCredential(t, user)
		if keys := e.Keys(t, user); cred.AccessKeyID != res.AccessKeyID || !slices.Equal(keys, sortedPair(res.AccessKeyID, res.PreviousAccessKeyID)) {
			t.Errorf("keys %v, secret %s; want the new key %s in the secret and the previous %s left", keys, cred.AccessKeyID, res.AccessKeyID, res.PreviousAccessKeyID)
		}
	case op == "TransactWriteItems":
		// No previous key: recording the new one failed, the rotation stands.
		rotAssertSettled(t, e, user)
	default:
		t.Fatalf("rotate succeeded although %s#%d failed: %+v", op, nth, res)
	}

	res, err = rotRotate(e, user)
	if err != nil {
		t.Fatalf("retry after %s#%d failed: %v", op, nth, err)
	}
	cred := rotAssertSettled(t, e, user)
	if cred.AccessKeyID != res.AccessKeyID || slices.Contains(before, res.AccessKeyID) {
		t.Errorf("retry: result %s, secret %s, keys before %v", res.AccessKeyID, cred.AccessKeyID, before)
	}
	if rotLockHeld(t, e, user) {
		t.Error("the retry left its lease held")
	}
}

func sortedPair(a, b string) []string {
	s := []string{a, b}
	slices.Sort(s)
	return s
}

// rotLockHeld reports whether someone holds the user's lease.
func rotLockHeld(t *testing.T, e *env, user string) bool {
	t.Helper()
	rec, err := e.store.Get(ctx(), user)
	if errors.Is(err, state.ErrNotFound) {
		return false
	}
	if err != nil {
		t.Fatalf("read record of %s: %v", user, err)
	}
	return rec.Busy(time.Now())
}

func TestRotateAuthorization(t *testing.T) {
	e := newEnv(t)
	user := awstest.Name("rot-authz")
	rotCreate(t, e, user)

	bobIn := provision.RotateInput{Principal: who(bobARN), RequestID: "bob", User: user}
	rule := func(buckets, actions string) string {
		return `{"rules":[{"principals":["` + bobARN + `"],"buckets":[` + buckets + `],"access":["read-write"],"actions":[` + actions + `]}]}`
	}
	// Who may not see the user (no rule on its grants) is told it does
	// not exist; who may see it but not rotate it is refused. Neither
	// answer names the user's buckets or access levels.
	for _, c := range []struct {
		name  string
		rules string
		who   provision.RotateInput
		want  provision.Kind
	}{
		{"another principal without a rule", testRules, bobIn, provision.KindNotFound},
		{"a rule without the rotate action", rule(`"*.example.com"`, `"describe","update"`), bobIn, provision.KindForbidden},
		{"a rotate rule on other buckets", rule(`"*.other.com"`, `"rotate"`), bobIn, provision.KindNotFound},
		{"anonymous", testRules, provision.RotateInput{User: user}, provision.KindNotFound},
	} {
		t.Run(c.name, func(t *testing.T) {
			svc := e.service(t, c.rules)
			keys := e.Keys(t, user)
			secret := e.MustCredential(t, user)
			e.calls.Reset()
			_, err := svc.Rotate(ctx(), c.who)
			if provision.KindOf(err) != c.want {
				t.Fatalf("err = %v, want kind %d", err, c.want)
			}
			if strings.Contains(err.Error(), "example.com") || strings.Contains(err.Error(), "read-write") {
				t.Errorf("refusal names the user's grant: %v", err)
			}
			if w := e.calls.Writes(); len(w) != 0 {
				t.Errorf("a refused rotate made writes: %v", w)
			}
			if now := e.Keys(t, user); !slices.Equal(now, keys) {
				t.Errorf("keys %v, were %v", now, keys)
			}
			if now := e.MustCredential(t, user); now != secret {
				t.Errorf("secret changed to %s", now.AccessKeyID)
			}
		})
	}

	t.Run("the requester", func(t *testing.T) {
		prev := e.MustCredential(t, user)
		res, err := rotRotate(e, user)
		if err != nil {
			t.Fatal(err)
		}
		if res.PreviousAccessKeyID != prev.AccessKeyID || rotAssertSettled(t, e, user).AccessKeyID != res.AccessKeyID {
			t.Fatalf("result %+v, secret had %s", res, prev.AccessKeyID)
		}
	})
	t.Run("a rule with the rotate action", func(t *testing.T) {
		svc := e.service(t, rule(`"*.example.com"`, `"rotate"`))
		prev := e.MustCredential(t, user)
		res, err := svc.Rotate(ctx(), bobIn)
		if err != nil {
			t.Fatal(err)
		}
		if res.PreviousAccessKeyID != prev.AccessKeyID || rotAssertSettled(t, e, user).AccessKeyID != res.AccessKeyID {
			t.Fatalf("result %+v, secret had %s", res, prev.AccessKeyID)
		}
	})
}

func TestRotateUnknownOrUnmanagedUserIsNotFound(t *testing.T) {
	e := newEnv(t)
	mk := func(path string, tags ...iamtypes.Tag) string {
		name := awstest.Name("rot-other")
		if _, err := e.iam.CreateUser(ctx(), &iam.CreateUserInput{UserName: &name, Path: &path, Tags: tags}); err != nil {
			t.Fatal(err)
		}
		if _, err := e.iam.CreateAccessKey(ctx(), &iam.CreateAccessKeyInput{UserName: &name}); err != nil {
			t.Fatal(err)
		}
		return name
	}
	managed := iamtypes.Tag{Key: aws.String(provision.TagManagedBy), Value: aws.String("keyvend")}
	mine := iamtypes.Tag{Key: aws.String(provision.TagRequester), Value: aws.String(testCaller)}
	for _, c := range []struct{ name, user string }{
		{"unknown", awstest.Name("rot-nobody")},
		{"under the path, untagged", mk("/keyvend/", mine)},
		{"tagged, outside the path", mk("/", managed, mine)},
		{"tagged by someone else", mk("/keyvend/", iamtypes.Tag{Key: aws.String(provision.TagManagedBy), Value: aws.String("other")}, mine)},
	} {
		t.Run(c.name, func(t *testing.T) {
			var keys []string
			if !strings.HasPrefix(c.user, "rot-nobody") {
				keys = e.Keys(t, c.user)
			}
			e.calls.Reset()
			_, err := rotRotate(e, c.user)
			if provision.KindOf(err) != provision.KindNotFound {
				t.Fatalf("err = %v, want KindNotFound", err)
			}
			if w := e.calls.Writes(); len(w) != 0 {
				t.Errorf("writes: %v", w)
			}
			if keys != nil && !slices.Equal(e.Keys(t, c.user), keys) {
				t.Error("the unmanaged user's keys changed")
			}
		})
	}
}

// TestRotateConcurrentRotationInAnotherProcess: two keyvend processes
// (two Services) rotate the same user. A rotation that arrives while the
// first holds the user's lease (held right after taking it) is told "in
// progress" and changes nothing; one that comes after the first is done
// rotates from the first one's key. No key is left that is not in the
// secret.
func TestRotateConcurrentRotationInAnotherProcess(t *testing.T) {
	e := newEnv(t)
	user := awstest.Name("rot-race")
	rotCreate(t, e, user)

	var otherErr error
	a := e.Another(t, provisiontest.Instrument(func(c *aws.Config) {
		beforeFirst(c, "GetUser", func() { _, otherErr = rotRotate(e, user) })
	}), provisiontest.Settings(func(s *provision.Settings) { s.Store = e.store }))

	res, err := a.Rotate(ctx(), provision.RotateInput{Principal: rotAlice, RequestID: "a", User: user})
	if err != nil {
		t.Fatal(err)
	}
	wantKind(t, otherErr, provision.KindInProgress)
	cred := rotAssertSettled(t, e, user)
	if cred.AccessKeyID != res.AccessKeyID {
		t.Fatalf("secret holds %s, the rotation returned %s", cred.AccessKeyID, res.AccessKeyID)
	}
	later, err := rotRotate(e, user)
	if err != nil {
		t.Fatal(err)
	}
	if later.PreviousAccessKeyID != res.AccessKeyID || later.PreviousKeyDeletesAt == nil {
		t.Errorf("previous = %s deletes at %v, want the first rotation's key %s in its grace", later.PreviousAccessKeyID, later.PreviousKeyDeletesAt, res.AccessKeyID)
	}
	rotAssertSettled(t, e, user)
}
