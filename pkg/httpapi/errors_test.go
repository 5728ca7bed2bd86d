package httpapi_test

import (
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/keyvend/keyvend/pkg/awstest"
	"github.com/keyvend/keyvend/pkg/caller"
	"github.com/keyvend/keyvend/pkg/httpapi"
	"github.com/keyvend/keyvend/pkg/provisiontest"
)

// faultyAPI is the real handler over a service whose AWS calls fail as
// faults says; its log is captured.
func faultyAPI(t *testing.T) (http.Handler, *awstest.Faults, *syncBuffer) {
	t.Helper()
	faults := &awstest.Faults{}
	logs := &syncBuffer{}
	log := slog.New(slog.NewJSONHandler(logs, nil))
	svc := provisiontest.New(t, provisiontest.Instrument(faults.Attach), provisiontest.Logger(log)).Service
	return httpapi.New(svc, caller.Static{ARN: testCaller}, log), faults, logs
}

func createBody(user string) string {
	return `{"user":"` + user + `","grants":[{"bucket":"site.example.com","access":"read-write"}],"reason":"deploys"}`
}

func TestAWSErrorsMapToClearResponses(t *testing.T) {
	cases := []struct {
		name, code      string
		status          int
		problemType     string
		retryAfter      bool
		logMentionsCode bool
	}{
		// After the SDK's own retries (disabled here: one attempt), throttling
		// is AWS's problem and the caller should come back.
		{"throttling", "Throttling", http.StatusServiceUnavailable, "throttled", true, false},
		// keyvend's own role lacks a permission: our fault. The body says so
		// without naming the permission; the log names it.
		{"access denied", "AccessDenied", http.StatusInternalServerError, "internal", false, true},
		{"other AWS error", "ServiceUnavailable", http.StatusBadGateway, "aws-error", false, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h, faults, logs := faultyAPI(t)
			faults.FailNthWith("CreateAccessKey", 0, c.code)
			req := httptest.NewRequest(http.MethodPost, "/v1/users", strings.NewReader(createBody(awstest.Name("err"))))
			req.Header.Set("Content-Type", "application/json")
			w := httptest.NewRecorder()
			h.ServeHTTP(w, req)
			if w.Code != c.status {
				t.Fatalf("status %d, want %d: %s", w.Code, c.status, w.Body)
			}
			var p map[string]any
			if err := json.Unmarshal(w.Body.Bytes(), &p); err != nil {
				t.Fatal(err)
			}
			if p["type"] != "https://keyvend.dev/problems/"+c.problemType || p["request_id"] == "" {
				t.Errorf("problem = %v", p)
			}
			if got := w.Header().Get("Retry-After"); (got != "") != c.retryAfter {
				t.Errorf("Retry-After = %q, want present=%v", got, c.retryAfter)
			}
			if strings.Contains(w.Body.String(), "CreateAccessKey") || strings.Contains(w.Body.String(), "injected") {
				t.Errorf("the body leaks the failing call: %s", w.Body)
			}
			if c.logMentionsCode && !strings.Contains(logs.String(), c.code) {
				t.Errorf("the log does not name %s:\n%s", c.code, logs)
			}
			if !strings.Contains(logs.String(), "create access key for") {
				t.Errorf("the log does not say which step failed:\n%s", logs)
			}
		})
	}
}

// TestUnreachableAWS: with AWS unreachable (connection refused), a create
// is answered 503 with Retry-After — transient, not keyvend's fault — and
// the log says what failed.
func TestUnreachableAWS(t *testing.T) {
	logs := &syncBuffer{}
	log := slog.New(slog.NewJSONHandler(logs, nil))
	svc := provisiontest.New(t, provisiontest.Endpoint("http://127.0.0.1:1"), provisiontest.Logger(log),
		provisiontest.Table("keyvend-state")).Service // the table is unreachable too: never created
	h := httpapi.New(svc, caller.Static{ARN: testCaller}, log)
	req := httptest.NewRequest(http.MethodPost, "/v1/users", strings.NewReader(createBody(awstest.Name("unreach"))))
	req.Header.Set("Content-Type", "application/json")
	w := httptest.NewRecorder()
	h.ServeHTTP(w, req)
	if w.Code != http.StatusServiceUnavailable || w.Header().Get("Retry-After") == "" || !strings.Contains(w.Body.String(), "problems/aws-unavailable") {
		t.Fatalf("%d Retry-After=%q: %s", w.Code, w.Header().Get("Retry-After"), w.Body)
	}
	if !strings.Contains(logs.String(), "AWS unreachable") || !strings.Contains(logs.String(), "connection refused") {
		t.Errorf("the log does not say AWS was unreachable:\n%s", logs)
	}
}
