package provision_test

// Helpers of the rotate and readiness tests. Names start with rot so they
// do not collide with main_test.go and create_test.go.

import (
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	iamtypes "github.com/aws/aws-sdk-go-v2/service/iam/types"
	"github.com/aws/aws-sdk-go-v2/service/sts"

	"github.com/keyvend/keyvend/pkg/awstest"
	"github.com/keyvend/keyvend/pkg/provision"
)

// rotClock is a settable clock for Settings.Now: real time plus an offset,
// so "older than RepairAfter" can be reached without sleeping.
type rotClock struct {
	mu  sync.Mutex
	off time.Duration
}

func (c *rotClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return time.Now().Add(c.off)
}

func (c *rotClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.off += d
	c.mu.Unlock()
}

func rotWithClock(c *rotClock) func(*provision.Settings) {
	return func(s *provision.Settings) { s.Now = c.Now }
}

var rotAlice = who(testCaller)

// rotRotate rotates user as alice, its requester.
func rotRotate(e *env, user string) (*provision.RotateResult, error) {
	return e.svc.Rotate(ctx(), provision.RotateInput{Principal: rotAlice, RequestID: "rot-" + user, User: user})
}

// rotCreate vends user with one plain read-write grant and returns the result.
func rotCreate(t *testing.T, e *env, user string) *provision.CreateResult {
	t.Helper()
	res, err := e.svc.Create(ctx(), input(user, rw(awstest.Name("rot")+".example.com")))
	if err != nil {
		t.Fatalf("create %s: %v", user, err)
	}
	return res
}

// rotAssertNoLeak checks the invariant of every rotation, failed or not:
// each key of the user is the one in its secret, or one that existed
// before (allowed). A key that is in no secret and that the rotation
// created is a leak.
func rotAssertNoLeak(t *testing.T, e *env, user string, allowed ...string) {
	t.Helper()
	cred, _, ok := e.Credential(t, user)
	for _, id := range e.Keys(t, user) {
		if (ok && id == cred.AccessKeyID) || slices.Contains(allowed, id) {
			continue
		}
		t.Errorf("key %s of %s is neither in its secret (holds %q) nor one that existed before", id, user, cred.AccessKeyID)
	}
}

// rotAssertSettled checks the state after a successful rotation: the key
// in the secret, and at most the previous one, which the record names as
// in its grace — no other.
func rotAssertSettled(t *testing.T, e *env, user string) provision.Credential {
	t.Helper()
	cred := e.MustCredential(t, user)
	want := []string{cred.AccessKeyID}
	// Read through a plain client: the test's recorder and faults see the service's calls only.
	rec, err := tableOf(t, e).Get(ctx(), user)
	if err == nil && rec.PrevKeyID != "" {
		if rec.PrevKeyID == cred.AccessKeyID || rec.PrevKeyDeletesAt.IsZero() {
			t.Fatalf("record of %s keeps previous key %s until %v; the secret holds %s", user, rec.PrevKeyID, rec.PrevKeyDeletesAt, cred.AccessKeyID)
		}
		want = append(want, rec.PrevKeyID)
	}
	slices.Sort(want)
	if keys := e.Keys(t, user); !slices.Equal(keys, want) {
		t.Fatalf("keys of %s = %v, want the one in its secret, %s, and the previous one in its grace (%v)", user, keys, cred.AccessKeyID, want)
	}
	return cred
}

// rotIdentity returns the ARN STS on moto reports for the key. moto
// answers an unknown (e.g. deleted) key with its default identity, not
// the user's, so comparing with the user's ARN tells a live key.
func rotIdentity(t *testing.T, id, secret string) string {
	t.Helper()
	srv := awstest.Shared(t)
	out, err := sts.NewFromConfig(awstest.ConfigWithKeys(t, srv.URL, id, secret)).GetCallerIdentity(ctx(), &sts.GetCallerIdentityInput{})
	if err != nil {
		t.Fatalf("GetCallerIdentity with %s: %v", id, err)
	}
	return aws.ToString(out.Arn)
}

// rotUserARN returns the user's ARN.
func rotUserARN(t *testing.T, e *env, user string) string {
	t.Helper()
	out, err := e.iam.GetUser(ctx(), &iam.GetUserInput{UserName: &user})
	if err != nil {
		t.Fatal(err)
	}
	return aws.ToString(out.User.Arn)
}

// rotOps counts the recorded calls by operation: how many times rotate
// made each call.
func rotOps(calls []awstest.Call) map[string]int {
	n := map[string]int{}
	for _, c := range calls {
		n[c.Operation]++
	}
	return n
}

// rotKeyStatus is the IAM status of user's key id ("" when it is gone).
func rotKeyStatus(t *testing.T, e *env, user, id string) iamtypes.StatusType {
	t.Helper()
	out, err := e.iam.ListAccessKeys(ctx(), &iam.ListAccessKeysInput{UserName: &user})
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range out.AccessKeyMetadata {
		if aws.ToString(k.AccessKeyId) == id {
			return k.Status
		}
	}
	return ""
}
