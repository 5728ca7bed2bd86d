package httpapi_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/keyvend/keyvend/pkg/awstest"
	"github.com/keyvend/keyvend/pkg/caller"
	"github.com/keyvend/keyvend/pkg/httpapi"
	"github.com/keyvend/keyvend/pkg/provisiontest"
)

// TestCreateBeyondMaxUsersIs429: the second create under a rule with
// max_users 1 is a 429 problem naming the limit and the rule, with the
// request id, and makes nothing.
func TestCreateBeyondMaxUsersIs429(t *testing.T) {
	me := awstest.Name("arn:aws:iam::123456789012:user/limited")
	rules := `{"rules":[{"principals":["arn:aws:iam::123456789012:user/limited-*"],"buckets":["site.example.com"],"access":["read-write"],"max_users":1}]}`
	env := provisiontest.New(t, provisiontest.Rules(rules))
	h := httpapi.New(env.Service, caller.Static{ARN: me}, nil)
	post := func(user string) *httptest.ResponseRecorder {
		req := httptest.NewRequest(http.MethodPost, "/v1/users", strings.NewReader(createBody(user)))
		req.Header.Set("Content-Type", "application/json")
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		return w
	}
	if w := post(awstest.Name("first")); w.Code != http.StatusCreated {
		t.Fatalf("first create: %d %s", w.Code, w.Body)
	}
	second := awstest.Name("second")
	w := post(second)
	if w.Code != http.StatusTooManyRequests || w.Header().Get("Content-Type") != "application/problem+json" {
		t.Fatalf("second create: %d %s %s", w.Code, w.Header().Get("Content-Type"), w.Body)
	}
	var p map[string]any
	if err := json.Unmarshal(w.Body.Bytes(), &p); err != nil {
		t.Fatal(err)
	}
	want := me + " holds 1 user under rules[0] (max_users 1): delete one of them first, or ask for a rule with room"
	if p["type"] != "https://keyvend.dev/problems/limit" || p["status"] != float64(429) || p["detail"] != want ||
		p["request_id"] == "" || p["request_id"] != w.Header().Get("X-Request-Id") {
		t.Errorf("problem = %v; want detail %q", p, want)
	}
	if env.UserExists(t, second) {
		t.Error("the refused create made the user")
	}
}
