package httpapi_test

import (
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/service/iam"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"

	"github.com/keyvend/keyvend/pkg/authz"
	"github.com/keyvend/keyvend/pkg/awstest"
	"github.com/keyvend/keyvend/pkg/caller"
	"github.com/keyvend/keyvend/pkg/httpapi"
	"github.com/keyvend/keyvend/pkg/provision"
)

func TestMain(m *testing.M) { awstest.Main(m) }

const (
	testBoundary = "arn:aws:iam::123456789012:policy/keyvend/keyvend-boundary"
	testCaller   = "arn:aws:iam::123456789012:user/alice"
)

// testRules lets testCaller vend anything on *.example.com.
const testRules = `{"rules":[{"principals":["` + testCaller + `"],"buckets":["*.example.com"],"access":["read-only","write-only","read-write","full"]}]}`

// apiEnv is keyvend's real HTTP handler over a real provisioning service on
// the shared moto. Every AWS call the service makes is recorded.
type apiEnv struct {
	h     http.Handler
	calls *awstest.Recorder
}

// newAPI wires the handler as pkg/provision's tests wire the service, with
// who as the caller resolver and opts for the handler.
func newAPI(t *testing.T, who caller.Resolver, opts ...httpapi.Option) *apiEnv {
	t.Helper()
	srv := awstest.Shared(t)
	cfg := awstest.Config(t, srv.URL)
	e := &apiEnv{calls: &awstest.Recorder{}}
	awstest.Table(t, cfg) // the state table, made before calls are recorded
	svcCfg := cfg.Copy()
	e.calls.Attach(&svcCfg)
	awstest.RequireBoundary(t, &svcCfg, testBoundary)
	rules, err := authz.Parse(strings.NewReader(testRules))
	if err != nil {
		t.Fatal(err)
	}
	discard := slog.New(slog.NewJSONHandler(io.Discard, nil))
	svc, err := provision.New(iam.NewFromConfig(svcCfg), secretsmanager.NewFromConfig(svcCfg), rules,
		provision.Settings{Store: awstest.Table(t, svcCfg), BoundaryARN: testBoundary, Region: awstest.Region}, discard)
	if err != nil {
		t.Fatal(err)
	}
	e.h = httpapi.New(svc, who, discard, opts...)
	return e
}
