package provision_test

import (
	"context"
	"io"
	"log/slog"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"

	"github.com/keyvend/keyvend/pkg/authz"
	"github.com/keyvend/keyvend/pkg/awstest"
	"github.com/keyvend/keyvend/pkg/caller"
	"github.com/keyvend/keyvend/pkg/grants"
	"github.com/keyvend/keyvend/pkg/policy"
	"github.com/keyvend/keyvend/pkg/provision"
	"github.com/keyvend/keyvend/pkg/state"
)

func TestMain(m *testing.M) { awstest.Main(m) }

const (
	testBoundary = "arn:aws:iam::123456789012:policy/keyvend/keyvend-boundary"
	testCaller   = "arn:aws:iam::123456789012:user/alice"
)

// testRules lets testCaller vend anything on *.example.com.
const testRules = `{"rules":[{"principals":["arn:aws:iam::123456789012:user/alice"],"buckets":["*.example.com"],"access":["read-only","write-only","read-write","full"]}]}`

// env is a provisioning service on the shared moto, instrumented.
type env struct {
	svc    *provision.Service
	iam    *iam.Client
	sm     *secretsmanager.Client
	calls  *awstest.Recorder
	faults *awstest.Faults
	cfg    aws.Config
	// store is the service's state table (shared by every env on the moto).
	store *state.Store
	// mode is the service's grant mode (policy unless a test says group).
	mode grants.Mode
}

// grantMode sets Settings.GrantMode.
func grantMode(m grants.Mode) func(*provision.Settings) {
	return func(s *provision.Settings) { s.GrantMode = m }
}

// bothModes runs f once per grant mode, as subtests: policy (the default)
// and group.
func bothModes(t *testing.T, f func(t *testing.T, mode grants.Mode)) {
	for _, m := range []grants.Mode{grants.Policy, grants.Group} {
		t.Run(string(m), func(t *testing.T) { f(t, m) })
	}
}

func newEnv(t *testing.T, mutate ...func(*provision.Settings)) *env {
	t.Helper()
	return newEnvWith(t, nil, mutate...)
}

// newEnvWith is newEnv with extra middleware on the service's clients:
// instrument, if not nil, is applied to their configuration after the
// recorder and the fault injector.
func newEnvWith(t *testing.T, instrument func(*aws.Config), mutate ...func(*provision.Settings)) *env {
	t.Helper()
	srv := awstest.Shared(t)
	cfg := awstest.Config(t, srv.URL)
	e := &env{calls: &awstest.Recorder{}, faults: &awstest.Faults{}}
	// Verification clients are uninstrumented; the service's are not.
	e.iam = iam.NewFromConfig(cfg)
	e.sm = secretsmanager.NewFromConfig(cfg)
	svcCfg := cfg.Copy()
	e.calls.Attach(&svcCfg)
	e.faults.Attach(&svcCfg)
	if instrument != nil {
		instrument(&svcCfg)
	}
	e.cfg = svcCfg
	rules, err := authz.Parse(strings.NewReader(testRules))
	if err != nil {
		t.Fatal(err)
	}
	settings := provision.Settings{BoundaryARN: testBoundary, Region: awstest.Region}
	for _, m := range mutate {
		m(&settings)
	}
	e.mode = settings.GrantMode
	if e.mode == "" {
		e.mode = grants.Policy
	}
	// Every CreateUser the service makes must carry its boundary (moto
	// drops it, so only the request can show it).
	awstest.RequireBoundary(t, &svcCfg, settings.BoundaryARN)
	if settings.Store == nil {
		settings.Store = awstest.Table(t, svcCfg)
	}
	e.store = settings.Store
	svc, err := provision.New(iam.NewFromConfig(svcCfg), secretsmanager.NewFromConfig(svcCfg), rules, settings, slog.New(slog.NewJSONHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	e.svc = svc
	return e
}

func input(user string, grants ...policy.Grant) provision.CreateInput {
	return provision.CreateInput{
		Principal: caller.Principal{ID: testCaller, Raw: testCaller},
		RequestID: "req-" + user,
		Request:   provision.CreateRequest{User: user, Grants: grants, Reason: "test deploys"},
	}
}

func rw(bucket string) policy.Grant {
	return policy.Grant{Bucket: bucket, Access: policy.ReadWrite}
}

func ctx() context.Context { return context.Background() }
