package httpapi_test

import (
	"bufio"
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-lambda-go/lambdacontext"

	"github.com/keyvend/keyvend/pkg/caller"
	"github.com/keyvend/keyvend/pkg/httpapi"
)

// malformedRequestIDs are X-Request-Id values keyvend must not adopt.
var malformedRequestIDs = []string{
	"",
	strings.Repeat("a", httpapi.MaxRequestIDLen+1),
	"a b",
	"a/b",
	"a\tb",
	"a:b",
	"id\u00e9",
	`"quoted"`,
	"a,b",
}

// TestClientRequestID: a client's well-formed X-Request-Id (1 to 128 of
// A-Za-z0-9._-, sent once) is the request's id — the X-Request-Id of the
// answer, a problem's request_id and the access log's request_id;
// anything else, or the header twice, gets keyvend's own id.
func TestClientRequestID(t *testing.T) {
	logs := &syncBuffer{}
	h := httpapi.New(nil, caller.Static{ARN: testCaller}, slog.New(slog.NewJSONHandler(logs, nil)))
	send := func(path string, ids ...string) *httptest.ResponseRecorder {
		r := httptest.NewRequest(http.MethodGet, path, nil)
		for _, id := range ids {
			r.Header.Add("X-Request-Id", id)
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		return w
	}
	for _, id := range []string{"a", "trace-01.ab_C", "0b6f1a52-5d3c-4d0c-9c55-3c1f8b3f9e21", strings.Repeat("Z", httpapi.MaxRequestIDLen)} {
		if got := send("/v1/openapi.json", id).Header().Get("X-Request-Id"); got != id {
			t.Errorf("X-Request-Id %q: answered %q, want it kept", id, got)
		}
		w := send("/v1/nowhere", id)
		if p := checkProblem(t, w, http.StatusNotFound, "not-found"); p.RequestID != id {
			t.Errorf("X-Request-Id %q: problem request_id %q", id, p.RequestID)
		}
		if !strings.Contains(logs.String(), `"request_id":"`+id+`"`) {
			t.Errorf("X-Request-Id %q: not the access log's request_id:\n%s", id, logs.String())
		}
	}
	for _, id := range malformedRequestIDs {
		w := send("/v1/nowhere", id)
		got := w.Header().Get("X-Request-Id")
		if got == "" || got == id {
			t.Errorf("malformed X-Request-Id %q: answered %q, want keyvend's own", id, got)
		}
		checkProblem(t, w, http.StatusNotFound, "not-found")
	}
	if got := send("/v1/openapi.json", "first", "second").Header().Get("X-Request-Id"); got == "first" || got == "second" || got == "" {
		t.Errorf("two X-Request-Id headers: answered %q, want keyvend's own", got)
	}
}

// TestLambdaClientRequestID: behind API Gateway a client's well-formed
// X-Request-Id is the request id too, and the access log carries API
// Gateway's id beside it (apigw_request_id), so the two can be joined; a
// malformed one leaves API Gateway's id as the request id.
func TestLambdaClientRequestID(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join("testdata", "create_user_no_authorizer.json"))
	if err != nil {
		t.Fatal(err)
	}
	logs := &syncBuffer{}
	handle := httpapi.LambdaHandler(httpapi.New(nil, caller.APIGateway{}, slog.New(slog.NewJSONHandler(logs, nil))))
	for _, tc := range []struct{ client, want string }{
		{"portal-7f3c.0", "portal-7f3c.0"},
		{"not well formed!", ""}, // "": API Gateway's
	} {
		var ev events.APIGatewayV2HTTPRequest
		if err := json.Unmarshal(raw, &ev); err != nil {
			t.Fatal(err)
		}
		gw := ev.RequestContext.RequestID
		want := tc.want
		if want == "" {
			want = gw
		}
		ev.Headers["x-request-id"] = tc.client
		logs.Reset()
		ctx := lambdacontext.NewContext(context.Background(), &lambdacontext.LambdaContext{AwsRequestID: "6f2d4c1e-0a3b-4c5d-8e9f-000000000000"})
		resp, err := handle(ctx, ev)
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("status %d, want 401 (the fixture has no authorizer): %s", resp.StatusCode, resp.Body)
		}
		if got := resp.Headers["X-Request-Id"]; got != want {
			t.Errorf("client id %q: X-Request-Id = %q, want %q", tc.client, got, want)
		}
		var p struct {
			RequestID string `json:"request_id"`
		}
		if err := json.Unmarshal([]byte(resp.Body), &p); err != nil || p.RequestID != want {
			t.Errorf("client id %q: problem request_id %q (%v), want %q", tc.client, p.RequestID, err, want)
		}
		var line map[string]any
		sc := bufio.NewScanner(strings.NewReader(logs.String()))
		for sc.Scan() {
			var m map[string]any
			if json.Unmarshal(sc.Bytes(), &m) == nil && m["msg"] == "request" {
				line = m
			}
		}
		if line == nil {
			t.Fatalf("no access log line:\n%s", logs.String())
		}
		if line["request_id"] != want || line["apigw_request_id"] != gw {
			t.Errorf("client id %q: access log request_id %v, apigw_request_id %v; want %q and API Gateway's %q", tc.client, line["request_id"], line["apigw_request_id"], want, gw)
		}
	}
}
