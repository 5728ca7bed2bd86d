package app_test

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb"

	"github.com/keyvend/keyvend/pkg/app"
	"github.com/keyvend/keyvend/pkg/awstest"
	"github.com/keyvend/keyvend/pkg/caller"
	"github.com/keyvend/keyvend/pkg/chatops"
	"github.com/keyvend/keyvend/pkg/idempotency"
	"github.com/keyvend/keyvend/pkg/provisiontest"
	"github.com/keyvend/keyvend/pkg/state"
)

// stateTable creates a state table on the shared moto.
func stateTable(t *testing.T) (endpoint, table string) {
	t.Helper()
	srv := awstest.Shared(t)
	table = awstest.Name("state")
	if err := state.CreateTable(context.Background(), dynamodb.NewFromConfig(awstest.Config(t, srv.URL)), table); err != nil {
		t.Fatal(err)
	}
	return srv.URL, table
}

func postKeyed(h http.Handler, body, key string) *httptest.ResponseRecorder {
	r := httptest.NewRequest(http.MethodPost, "/v1/users", strings.NewReader(body))
	r.Header.Set("Content-Type", "application/json")
	r.Header.Set("Idempotency-Key", key)
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w
}

// TestHandlerKeepsIdempotencyKeys: the HTTP API (app.API, and app.Serve's
// here, for a static caller) keeps idempotency keys in the table
// KEYVEND_TABLE names; without one, keyvend does not start.
func TestHandlerKeepsIdempotencyKeys(t *testing.T) {
	endpoint, table := stateTable(t)
	cfg := awstest.Production(t, endpoint)
	awstest.RequireBoundary(t, &cfg, provisiontest.Boundary)
	rules := filepath.Join(t.TempDir(), "rules.json")
	if err := os.WriteFile(rules, []byte(provisiontest.DefaultRules), 0o600); err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewJSONHandler(io.Discard, nil))
	body := createBody(awstest.Name("app-idem"), "site.example.com")

	srv, err := app.Serve(app.Config{RulesPath: rules, BoundaryARN: provisiontest.Boundary, Table: table}, cfg, caller.Static{ARN: provisiontest.Caller}, log)
	if err != nil {
		t.Fatal(err)
	}
	h := srv.Handler
	first := postKeyed(h, body, "app-key")
	again := postKeyed(h, body, "app-key")
	if first.Code != http.StatusCreated || again.Code != http.StatusCreated || again.Header().Get("Idempotency-Replayed") != "true" || again.Body.String() != first.Body.String() {
		t.Errorf("with KEYVEND_TABLE: %d, then %d replayed=%q", first.Code, again.Code, again.Header().Get("Idempotency-Replayed"))
	}

	// The table is required: without it keyvend does not start.
	if _, err := app.Serve(app.Config{RulesPath: rules, BoundaryARN: provisiontest.Boundary}, cfg, caller.Static{ARN: provisiontest.Caller}, log); err == nil || !strings.Contains(err.Error(), "KEYVEND_TABLE") {
		t.Errorf("without KEYVEND_TABLE: %v, want a refusal naming it", err)
	}
}

// TestWorkerKeepsIdempotencyKeys: the worker function keeps its
// jobs' idempotency keys in KEYVEND_TABLE's table; without the setting it
// keeps none.
func TestWorkerKeepsIdempotencyKeys(t *testing.T) {
	endpoint, table := stateTable(t)
	log := slog.New(slog.NewJSONHandler(io.Discard, nil))
	rotateFunctionEnv(t)
	t.Setenv("AWS_ENDPOINT_URL", endpoint)
	t.Setenv("KEYVEND_BOUNDARY_ARN", provisiontest.Boundary)
	t.Setenv("KEYVEND_TABLE", table)
	w, err := workerFromEnv(log)
	if err != nil {
		t.Fatal(err)
	}
	if w.Idempotency == nil {
		t.Fatal("the worker keeps no idempotency keys")
	}
	// The store is on that table: a key can be claimed in it.
	c, err := w.Idempotency.Begin(context.Background(), "slack:T0KEYVEND/U0ALICE", "job-1", []byte("job"))
	if err != nil || c.Outcome != idempotency.Proceed {
		t.Errorf("claim a key in %s: %v %v", table, c, err)
	}

	t.Setenv("KEYVEND_TABLE", "")
	if _, err := workerFromEnv(log); err == nil || !strings.Contains(err.Error(), "KEYVEND_TABLE") {
		t.Errorf("without KEYVEND_TABLE: %v, want a refusal naming it", err)
	}
}

// workerFromEnv builds the worker function's handler as its main does: the
// configuration from the environment, then app.Worker.
func workerFromEnv(log *slog.Logger) (*chatops.Worker, error) {
	c, err := app.FromEnv()
	if err != nil {
		return nil, err
	}
	return app.Worker(context.Background(), c, log)
}
