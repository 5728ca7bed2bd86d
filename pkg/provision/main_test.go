package provision_test

import (
	"context"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"

	"github.com/keyvend/keyvend/pkg/awstest"
	"github.com/keyvend/keyvend/pkg/caller"
	"github.com/keyvend/keyvend/pkg/grants"
	"github.com/keyvend/keyvend/pkg/policy"
	"github.com/keyvend/keyvend/pkg/provision"
	"github.com/keyvend/keyvend/pkg/provisiontest"
	"github.com/keyvend/keyvend/pkg/state"
)

func TestMain(m *testing.M) { awstest.Main(m) }

const (
	testBoundary = provisiontest.Boundary
	testCaller   = provisiontest.Caller
	// testRules lets testCaller vend anything on *.example.com.
	testRules = provisiontest.DefaultRules
)

// env is a provisioning service on moto (provisiontest.Env: its
// uninstrumented read-back clients and helpers), whose clients are
// instrumented (their configuration is Env.Config): every call is recorded
// (calls, with its input) and can be faulted.
type env struct {
	*provisiontest.Env
	svc    *provision.Service
	iam    *iam.Client // uninstrumented, straight to moto
	sm     *secretsmanager.Client
	calls  *awstest.Recorder
	faults *awstest.Faults
	// store is the service's state table (shared by every env of the test
	// on the moto).
	store *state.Store
	// mode is the service's grant mode.
	mode grants.Mode
	// url is the moto's.
	url string
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

// newEnv is a service with testRules on the shared moto.
func newEnv(t *testing.T, mutate ...func(*provision.Settings)) *env {
	t.Helper()
	return newEnvWith(t, nil, mutate...)
}

// newEnvWith is newEnv with extra middleware on the service's clients:
// instrument, if not nil, is applied to their configuration after the
// recorders and the fault injector.
func newEnvWith(t *testing.T, instrument func(*aws.Config), mutate ...func(*provision.Settings)) *env {
	t.Helper()
	return build(t, "", testRules, instrument, mutate...)
}

// newEnvOn is a service with rulesJSON on the moto at url ("" is the
// package's shared moto).
func newEnvOn(t *testing.T, url, rulesJSON string, mutate ...func(*provision.Settings)) *env {
	t.Helper()
	return build(t, url, rulesJSON, nil, mutate...)
}

// build is newEnvOn with instrument (nil: none) after the recorders and
// the fault injector.
func build(t *testing.T, url, rulesJSON string, instrument func(*aws.Config), mutate ...func(*provision.Settings)) *env {
	t.Helper()
	e := &env{calls: &awstest.Recorder{}, faults: &awstest.Faults{}}
	attach := []func(*aws.Config){e.calls.Attach, e.faults.Attach}
	if instrument != nil {
		attach = append(attach, instrument)
	}
	e.Env = provisiontest.New(t, provisiontest.Endpoint(url), provisiontest.Rules(rulesJSON),
		provisiontest.Instrument(attach...), provisiontest.Settings(mutate...))
	e.svc, e.iam, e.sm, e.store, e.url = e.Service, e.IAM, e.SM, e.Store, e.URL
	e.mode = e.svc.GrantMode()
	return e
}

// service returns another Service on e's instrumented clients (so e.calls
// and e.faults see its calls) and state table, with rulesJSON and e's
// settings plus more.
func (e *env) service(t *testing.T, rulesJSON string, more ...func(*provision.Settings)) *provision.Service {
	t.Helper()
	return e.Another(t, provisiontest.Rules(rulesJSON), provisiontest.Settings(more...))
}

// resetCounters forgets recorded calls and injected faults.
func (e *env) resetCounters() {
	e.calls.Reset()
	e.faults.Clear()
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
