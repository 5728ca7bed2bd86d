package httpapi_test

import (
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/keyvend/keyvend/pkg/awstest"
	"github.com/keyvend/keyvend/pkg/caller"
)

// TestBodyKeysAreExact: every JSON body goes through the one decoder, so
// rotate's and grants' bodies refuse duplicate keys and keys that match a
// field only case-insensitively, as create's do (badCases), before any AWS
// call. The user need not exist: nothing reaches the service.
func TestBodyKeysAreExact(t *testing.T) {
	e := newAPI(t, caller.Static{ARN: testCaller})
	user := awstest.Name("strict")
	cases := []struct {
		name, method, path, body, field string
	}{
		{"rotate Wait", http.MethodPost, "/v1/users/" + user + "/rotate", `{"Wait":true}`, "Wait"},
		{"rotate wait twice", http.MethodPost, "/v1/users/" + user + "/rotate", `{"wait":false,"wait":true}`, "wait"},
		{"rotate WAIT", http.MethodPost, "/v1/users/" + user + "/rotate", `{"WAIT":true}`, "WAIT"},
		{"grants Grants", http.MethodPut, "/v1/users/" + user + "/grants", `{"Grants":[{"bucket":"site.example.com","access":"read-only"}]}`, "Grants"},
		{"grants twice", http.MethodPut, "/v1/users/" + user + "/grants", `{"grants":[],"grants":[{"bucket":"site.example.com","access":"read-only"}]}`, "grants"},
		{"grant key twice", http.MethodPut, "/v1/users/" + user + "/grants", `{"grants":[{"bucket":"site.example.com","bucket":"other.example.com","access":"read-only"}]}`, "grants[0].bucket"},
		{"grant key PREFIX", http.MethodPut, "/v1/users/" + user + "/grants", `{"grants":[{"bucket":"site.example.com","access":"read-only","PREFIX":"a/"}]}`, "grants[0].PREFIX"},
		{"grant key with a long s", http.MethodPut, "/v1/users/" + user + "/grants", `{"grants":[{"bucket":"site.example.com","acce` + "\u017f\u017f" + `":"read-only"}]}`, "grants[0].acce\u017f\u017f"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			w := send(e.h, c.method, c.path, jsonCT, strings.NewReader(c.body))
			p := checkProblem(t, w, http.StatusBadRequest, "invalid-json")
			if !slices.Contains(p.fields(), c.field) {
				t.Errorf("errors %+v do not name %s", p.Errors, c.field)
			}
		})
	}
	assertNoAWSCalls(t, e)
}

// TestQueryStrict: a query string that does not parse, a parameter the
// route does not take, or one given twice is a 400 naming the parameter
// before anything runs. url.Values would drop the bad pair, or keep the
// first of two, and act on a request a proxy or a log reads otherwise.
func TestQueryStrict(t *testing.T) {
	e := newAPI(t, caller.Static{ARN: testCaller})
	user := "/v1/users/" + awstest.Name("strict")
	cases := []struct {
		name, method, target, field string
	}{
		{"bad escape in a name", http.MethodGet, "/v1/users?%zz=1", "%zz"},
		{"bad escape in a value", http.MethodGet, "/v1/users?bucket=%zz", "bucket"},
		{"truncated escape", http.MethodGet, "/v1/users?next=abc%2", "next"},
		{"semicolon separator", http.MethodGet, "/v1/users?bucket=site.example.com;requester=x", "bucket"},
		{"semicolon in a name", http.MethodGet, "/v1/users?limit;x=1", "limit;x"},
		{"bucket twice", http.MethodGet, "/v1/users?bucket=a.example.com&bucket=b.example.com", "bucket"},
		{"limit twice, same value", http.MethodGet, "/v1/users?limit=5&limit=5", "limit"},
		{"requester twice, once escaped", http.MethodGet, "/v1/users?requester=a&%72equester=b", "requester"},
		{"unknown parameter", http.MethodGet, "/v1/users?admin=true", "admin"},
		{"parameter in capitals", http.MethodGet, "/v1/users?Bucket=site.example.com", "Bucket"},
		{"force on describe", http.MethodGet, user + "?force=true", "force"},
		{"force twice", http.MethodDelete, user + "?force=true&force=false", "force"},
		{"Force", http.MethodDelete, user + "?Force=true", "Force"},
		{"force without a value", http.MethodDelete, user + "?force", "force"},
		{"delete with a bucket", http.MethodDelete, user + "?bucket=site.example.com", "bucket"},
		{"create with a query", http.MethodPost, "/v1/users?dry_run=1", "dry_run"},
		{"rotate with a query", http.MethodPost, user + "/rotate?wait=true", "wait"},
		{"grants with a query", http.MethodPut, user + "/grants?grants=x", "grants"},
		{"openapi.json with a query", http.MethodGet, "/v1/openapi.json?v=2", "v"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var body io.Reader
			switch c.method {
			case http.MethodPost, http.MethodPut:
				body = strings.NewReader(validReq().String())
			}
			w := send(e.h, c.method, c.target, jsonCT, body)
			p := checkProblem(t, w, http.StatusBadRequest, "validation")
			if !slices.Contains(p.fields(), c.field) {
				t.Errorf("errors %+v do not name %q", p.Errors, c.field)
			}
			for _, fe := range p.Errors {
				if fe.Detail == "" {
					t.Errorf("errors entry %+v has no detail", fe)
				}
			}
		})
	}
	assertNoAWSCalls(t, e)

	// Every problem is named, each parameter once.
	w := send(e.h, http.MethodGet, "/v1/users?x=1&bucket=a.example.com&bucket=b.example.com&bucket=c.example.com&y=%zz", "", nil)
	p := checkProblem(t, w, http.StatusBadRequest, "validation")
	if got, want := p.fields(), []string{"x", "bucket", "y"}; !slices.Equal(got, want) {
		t.Errorf("fields = %v, want %v", got, want)
	}
	assertNoAWSCalls(t, e)

	// The allowed parameters, once each, and empty pairs, still work.
	for _, target := range []string{
		"/v1/users?bucket=site.example.com&requester=" + testCaller + "&limit=5",
		"/v1/users?&limit=5&",
		"/v1/users?",
		"/v1/openapi.json",
	} {
		w := send(e.h, http.MethodGet, target, "", nil)
		if w.Code != http.StatusOK {
			t.Errorf("GET %s: status %d, want 200: %s", target, w.Code, w.Body)
		}
	}
}

// TestNonCanonicalPath: ServeMux answers a path that is not clean with a
// redirect (text/html, Location) to the cleaned one; keyvend answers 404
// problem+json, follows no redirect and runs nothing. A path is canonical
// when both its escaped form (what the mux routes on) and its decoded form
// (what r.URL.Path, the access log before, and a decoding proxy read) are
// clean, and it has no encoded '/': /v1/users/a%2Fb routes as one user
// "a/b" but reads as /v1/users/a/b, and %2E%2E as "..".
func TestNonCanonicalPath(t *testing.T) {
	e := newAPI(t, caller.Static{ARN: testCaller})
	user := awstest.Name("strict")
	for _, c := range []struct{ method, path string }{
		{http.MethodGet, "/v1//users"},
		{http.MethodGet, "//v1/users"},
		{http.MethodGet, "/v1/./users"},
		{http.MethodGet, "/v1/users/../users"},
		{http.MethodGet, "/v1/users/."},
		{http.MethodGet, "/v1/users/" + user + "/.."},
		{http.MethodGet, "/v1/users/" + user + "/./"},
		{http.MethodPost, "/v1/users/" + user + "/../../users"},
		{http.MethodPut, "/v1/users/" + user + "//grants"},
		{http.MethodPost, "/v1/users/" + user + "/rotate/."},
		{http.MethodDelete, "/v1/users/%2E%2E"},
		{http.MethodDelete, "/v1/users/%2e"},
		{http.MethodGet, "/v1/users/%2E%2E%2Fadmin"},
		{http.MethodGet, "/v1/users/a%2Fb"},
		{http.MethodGet, "/v1/users/a%2fb"},
		{http.MethodGet, "/v1%2Fusers"},
		{http.MethodGet, "/v1/openapi.json/."},
	} {
		t.Run(c.method+" "+c.path, func(t *testing.T) {
			w := send(e.h, c.method, c.path, jsonCT, strings.NewReader(validReq().String()))
			p := checkProblem(t, w, http.StatusNotFound, "not-found")
			if !strings.Contains(p.Detail, "canonical") {
				t.Errorf("detail %q does not say the path is not canonical", p.Detail)
			}
			if loc := w.Header().Get("Location"); loc != "" {
				t.Errorf("Location = %q, want none", loc)
			}
		})
	}
	assertNoAWSCalls(t, e)

	// Percent-encoding that changes no segment is not refused: %73 is s.
	target := fmt.Sprintf("/v1/users/%%%02X%s", user[0], user[1:])
	w := send(e.h, http.MethodGet, target, "", nil)
	p := checkProblem(t, w, http.StatusNotFound, "not-found")
	if !strings.Contains(p.Detail, "no user "+user+" ") {
		t.Errorf("GET %s: detail %q, want the service's answer for user %s", target, p.Detail, user)
	}
}
