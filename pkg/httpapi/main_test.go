package httpapi_test

import (
	"io"
	"log/slog"
	"net/http"
	"testing"

	"github.com/keyvend/keyvend/pkg/awstest"
	"github.com/keyvend/keyvend/pkg/caller"
	"github.com/keyvend/keyvend/pkg/httpapi"
	"github.com/keyvend/keyvend/pkg/provisiontest"
)

func TestMain(m *testing.M) { awstest.Main(m) }

const (
	testBoundary = provisiontest.Boundary
	testCaller   = provisiontest.Caller
	// testRules lets testCaller vend anything on *.example.com.
	testRules = provisiontest.DefaultRules
)

// apiEnv is keyvend's real HTTP handler over a real provisioning service on
// the shared moto. Every AWS call the service makes is recorded.
type apiEnv struct {
	h     http.Handler
	calls *awstest.Recorder
}

// newAPI wires the handler over a provisiontest service, with who as the
// caller resolver and opts for the handler.
func newAPI(t *testing.T, who caller.Resolver, opts ...httpapi.Option) *apiEnv {
	t.Helper()
	e := &apiEnv{calls: &awstest.Recorder{}}
	svc := provisiontest.New(t, provisiontest.Instrument(e.calls.Attach)).Service
	e.h = httpapi.New(svc, who, slog.New(slog.NewJSONHandler(io.Discard, nil)), opts...)
	return e
}
