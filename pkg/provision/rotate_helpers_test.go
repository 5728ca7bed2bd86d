package provision_test

// Helpers of the rotate and readiness tests. Names start with rot so they
// do not collide with main_test.go and create_test.go.

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsmiddleware "github.com/aws/aws-sdk-go-v2/aws/middleware"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	"github.com/aws/aws-sdk-go-v2/service/sts"
	"github.com/aws/smithy-go/middleware"

	"github.com/keyvend/keyvend/pkg/authz"
	"github.com/keyvend/keyvend/pkg/awstest"
	"github.com/keyvend/keyvend/pkg/caller"
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

// rotPrincipal is a caller with the given IAM ARN.
func rotPrincipal(arn string) caller.Principal { return caller.Principal{ID: arn, Raw: arn} }

var rotAlice = rotPrincipal(testCaller)

const rotBob = "arn:aws:iam::123456789012:user/bob"

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

// rotServiceWithRules is another Service on e's instrumented clients (so
// e.calls and e.faults see its calls) with its own rules and settings.
func rotServiceWithRules(t *testing.T, e *env, rules string, mutate ...func(*provision.Settings)) *provision.Service {
	t.Helper()
	return rotService(t, e.cfg, rules, mutate...)
}

// rotService is a Service on cfg with its own rules and settings.
func rotService(t *testing.T, cfg aws.Config, rules string, mutate ...func(*provision.Settings)) *provision.Service {
	t.Helper()
	rs, err := authz.Parse(strings.NewReader(rules))
	if err != nil {
		t.Fatal(err)
	}
	settings := provision.Settings{BoundaryARN: testBoundary, Region: awstest.Region}
	for _, m := range mutate {
		m(&settings)
	}
	awstest.RequireBoundary(t, &cfg, settings.BoundaryARN)
	if settings.Store == nil {
		settings.Store = awstest.Table(t, cfg)
	}
	svc, err := provision.New(iam.NewFromConfig(cfg), secretsmanager.NewFromConfig(cfg), rs, settings, slog.New(slog.NewJSONHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	return svc
}

// rotKeyIDs lists the user's access key ids, sorted.
func rotKeyIDs(t *testing.T, e *env, user string) []string {
	t.Helper()
	out, err := e.iam.ListAccessKeys(ctx(), &iam.ListAccessKeysInput{UserName: &user})
	if err != nil {
		t.Fatalf("list keys of %s: %v", user, err)
	}
	var ids []string
	for _, k := range out.AccessKeyMetadata {
		ids = append(ids, aws.ToString(k.AccessKeyId))
	}
	slices.Sort(ids)
	return ids
}

// rotSecret reads the current credential in the user's secret; ok is
// false when there is no secret (or it is scheduled for deletion).
func rotSecret(t *testing.T, e *env, user string) (cred provision.Credential, arn string, ok bool) {
	t.Helper()
	out, err := e.sm.GetSecretValue(ctx(), &secretsmanager.GetSecretValueInput{SecretId: aws.String("keyvend/users/" + user)})
	if err != nil {
		if strings.Contains(err.Error(), "ResourceNotFoundException") || strings.Contains(err.Error(), "InvalidRequestException") {
			return cred, "", false
		}
		t.Fatalf("read secret of %s: %v", user, err)
	}
	if err := json.Unmarshal([]byte(aws.ToString(out.SecretString)), &cred); err != nil {
		t.Fatalf("secret of %s is not a credential: %v", user, err)
	}
	return cred, aws.ToString(out.ARN), true
}

// rotMustSecret is rotSecret for a secret that must exist.
func rotMustSecret(t *testing.T, e *env, user string) provision.Credential {
	t.Helper()
	cred, _, ok := rotSecret(t, e, user)
	if !ok {
		t.Fatalf("user %s has no secret", user)
	}
	return cred
}

// rotAssertNoLeak checks the invariant of every rotation, failed or not:
// each key of the user is the one in its secret, or one that existed
// before (allowed). A key that is in no secret and that the rotation
// created is a leak.
func rotAssertNoLeak(t *testing.T, e *env, user string, allowed ...string) {
	t.Helper()
	cred, _, ok := rotSecret(t, e, user)
	for _, id := range rotKeyIDs(t, e, user) {
		if (ok && id == cred.AccessKeyID) || slices.Contains(allowed, id) {
			continue
		}
		t.Errorf("key %s of %s is neither in its secret (holds %q) nor one that existed before", id, user, cred.AccessKeyID)
	}
}

// rotAssertSettled checks the state after a successful rotation: exactly
// one key, and the secret holds it.
func rotAssertSettled(t *testing.T, e *env, user string) provision.Credential {
	t.Helper()
	cred := rotMustSecret(t, e, user)
	if keys := rotKeyIDs(t, e, user); len(keys) != 1 || keys[0] != cred.AccessKeyID {
		t.Fatalf("keys of %s = %v, want exactly the one in its secret, %s", user, keys, cred.AccessKeyID)
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

// rotBeforeFirst runs fn once, synchronously, just before the first call
// of operation op made through cfg: a deterministic interleaving point for
// "another process acts now".
func rotBeforeFirst(cfg *aws.Config, op string, fn func()) {
	var once sync.Once
	cfg.APIOptions = slices.Clone(cfg.APIOptions) // do not write into a shared backing array
	cfg.APIOptions = append(cfg.APIOptions, func(stack *middleware.Stack) error {
		return stack.Initialize.Add(middleware.InitializeMiddlewareFunc("rotBeforeFirst",
			func(ctx context.Context, in middleware.InitializeInput, next middleware.InitializeHandler) (middleware.InitializeOutput, middleware.Metadata, error) {
				if awsmiddleware.GetOperationName(ctx) == op {
					once.Do(fn)
				}
				return next.HandleInitialize(ctx, in)
			}), middleware.After)
	})
}
