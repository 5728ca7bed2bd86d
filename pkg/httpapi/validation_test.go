package httpapi_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/keyvend/keyvend/pkg/awstest"
	"github.com/keyvend/keyvend/pkg/caller"
	"github.com/keyvend/keyvend/pkg/httpapi"
	"github.com/keyvend/keyvend/pkg/policy"
)

const problemBase = "https://keyvend.dev/problems/"

// problem is the problem+json body; unknown members are an error.
type problem struct {
	Type      string              `json:"type"`
	Title     string              `json:"title"`
	Status    int                 `json:"status"`
	Detail    string              `json:"detail"`
	RequestID string              `json:"request_id"`
	Errors    []policy.FieldError `json:"errors"`
}

func (p problem) fields() []string {
	var out []string
	for _, e := range p.Errors {
		out = append(out, e.Field)
	}
	return out
}

func send(h http.Handler, method, path, contentType string, body io.Reader) *httptest.ResponseRecorder {
	r := httptest.NewRequest(method, path, body)
	if contentType != "" {
		r.Header.Set("Content-Type", contentType)
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w
}

// checkProblem asserts w is a well-formed problem of the given status and
// type slug, and returns it.
func checkProblem(t *testing.T, w *httptest.ResponseRecorder, status int, slug string) problem {
	t.Helper()
	if w.Code != status {
		t.Errorf("status = %d, want %d; body: %s", w.Code, status, w.Body)
	}
	if ct := w.Header().Get("Content-Type"); ct != "application/problem+json" {
		t.Errorf("Content-Type = %q, want application/problem+json", ct)
	}
	var p problem
	dec := json.NewDecoder(bytes.NewReader(w.Body.Bytes()))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&p); err != nil {
		t.Fatalf("body is not a problem document: %v: %s", err, w.Body)
	}
	if p.Type != problemBase+slug {
		t.Errorf("type = %q, want %q", p.Type, problemBase+slug)
	}
	if p.Title == "" {
		t.Error("problem has no title")
	}
	if p.Status != w.Code {
		t.Errorf("problem status = %d, HTTP status = %d", p.Status, w.Code)
	}
	if p.RequestID == "" || p.RequestID != w.Header().Get("X-Request-Id") {
		t.Errorf("request_id = %q, X-Request-Id = %q: want equal and non-empty", p.RequestID, w.Header().Get("X-Request-Id"))
	}
	return p
}

func assertNoAWSCalls(t *testing.T, e *apiEnv) {
	t.Helper()
	if calls := e.calls.Calls(); len(calls) != 0 {
		t.Errorf("%d AWS calls were made: %v", len(calls), calls)
	}
}

// req is a create request as a JSON object, so cases can break any part.
type req map[string]any

// validReq is a request the service would accept. Each has a fresh user
// name, so a case that wrongly reached AWS could not disturb another.
func validReq() req {
	return req{
		"user":   awstest.Name("deployer"),
		"grants": []any{map[string]any{"bucket": "site.example.com", "access": "read-write", "prefix": "deploy/site/"}},
		"reason": "CI deploys the site",
	}
}

// named puts fresh user names where body says NAME, for bodies a map
// cannot express (duplicate keys).
func named(body string) string {
	for strings.Contains(body, `"NAME"`) {
		body = strings.Replace(body, `"NAME"`, `"`+awstest.Name("strict")+`"`, 1)
	}
	return body
}

func (r req) with(k string, v any) req { r[k] = v; return r }

func (r req) without(k string) req { delete(r, k); return r }

// grant sets field k of the first grant.
func (r req) grant(k string, v any) req {
	r["grants"].([]any)[0].(map[string]any)[k] = v
	return r
}

func (r req) grantWithout(k string) req {
	delete(r["grants"].([]any)[0].(map[string]any), k)
	return r
}

func (r req) String() string {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(map[string]any(r)); err != nil {
		panic(err)
	}
	return b.String()
}

func grants(n int, g func(i int) map[string]any) []any {
	out := make([]any, n)
	for i := range out {
		out[i] = g(i)
	}
	return out
}

const jsonCT = "application/json"

type badCase struct {
	name        string
	contentType string // "" sends no Content-Type; use jsonCT for JSON
	body        string
	status      int
	slug        string
	field       string // the field an errors entry must name; "" for none
}

func validation(name, body, field string) badCase {
	return badCase{name: name, contentType: jsonCT, body: body, status: http.StatusBadRequest, slug: "validation", field: field}
}

func badJSON(name, body, field string) badCase {
	return badCase{name: name, contentType: jsonCT, body: body, status: http.StatusBadRequest, slug: "invalid-json", field: field}
}

func badCases() []badCase {
	const b0, p0 = "grants[0].bucket", "grants[0].prefix"
	cases := []badCase{
		// Bucket names: policy injection, wildcards, ARNs and S3's rules.
		validation("bucket policy injection", validReq().grant("bucket", `a"],"Action":"*`).String(), b0),
		validation("bucket injection without wildcard", validReq().grant("bucket", `x.example.com","arn:aws:s3:::other`).String(), b0),
		validation("bucket *", validReq().grant("bucket", "*").String(), b0),
		validation("bucket wildcard pattern", validReq().grant("bucket", "*.example.com").String(), b0),
		validation("bucket ?", validReq().grant("bucket", "site?.example.com").String(), b0),
		validation("bucket as ARN", validReq().grant("bucket", "arn:aws:s3:::x").String(), b0),
		validation("bucket with object path", validReq().grant("bucket", "site.example.com/deploy").String(), b0),
		validation("bucket IP address", validReq().grant("bucket", "192.168.1.1").String(), b0),
		validation("bucket uppercase", validReq().grant("bucket", "Site.Example.com").String(), b0),
		validation("bucket with ..", validReq().grant("bucket", "site..example.com").String(), b0),
		validation("bucket prefix xn--", validReq().grant("bucket", "xn--site.example.com").String(), b0),
		validation("bucket prefix sthree-", validReq().grant("bucket", "sthree-site.example.com").String(), b0),
		validation("bucket prefix amzn-s3-demo-", validReq().grant("bucket", "amzn-s3-demo-site.example.com").String(), b0),
		validation("bucket suffix -s3alias", validReq().grant("bucket", "site-s3alias").String(), b0),
		validation("bucket suffix --ol-s3", validReq().grant("bucket", "site--ol-s3").String(), b0),
		validation("bucket suffix .mrap", validReq().grant("bucket", "site.mrap").String(), b0),
		validation("bucket suffix --x-s3", validReq().grant("bucket", "site--x-s3").String(), b0),
		validation("bucket suffix --table-s3", validReq().grant("bucket", "site--table-s3").String(), b0),
		validation("bucket too short", validReq().grant("bucket", "ab").String(), b0),
		validation("bucket too long", validReq().grant("bucket", strings.Repeat("a", 52)+".example.com").String(), b0),
		validation("bucket empty", validReq().grant("bucket", "").String(), b0),
		validation("bucket missing", validReq().grantWithout("bucket").String(), b0),
		validation("bucket leading hyphen", validReq().grant("bucket", "-site.example.com").String(), b0),
		validation("bucket trailing period", validReq().grant("bucket", "site.example.com.").String(), b0),
		validation("bucket underscore", validReq().grant("bucket", "site_1.example.com").String(), b0),
		validation("bucket non-ASCII", validReq().grant("bucket", "sïte.example.com").String(), b0),

		// Prefixes: injection, wildcards, traversal, policy variables.
		validation("prefix policy injection", validReq().grant("prefix", `a"],"Action":"*`).String(), p0),
		validation("prefix *", validReq().grant("prefix", "deploy/*").String(), p0),
		validation("prefix ?", validReq().grant("prefix", "deploy/?/").String(), p0),
		validation("prefix ..", validReq().grant("prefix", "..").String(), p0),
		validation("prefix ../admin", validReq().grant("prefix", "../admin").String(), p0),
		validation("prefix inner ..", validReq().grant("prefix", "deploy/../admin/").String(), p0),
		validation("prefix .. in a name", validReq().grant("prefix", "deploy..x/").String(), p0),
		validation("prefix policy variable", validReq().grant("prefix", "${aws:username}/").String(), p0),
		validation("prefix NUL", validReq().grant("prefix", "deploy\x00/").String(), p0),
		validation("prefix newline", validReq().grant("prefix", "deploy\n/").String(), p0),
		validation("prefix DEL", validReq().grant("prefix", "deploy\x7f/").String(), p0),
		validation("prefix non-ASCII", validReq().grant("prefix", "déploy/").String(), p0),
		validation("prefix leading /", validReq().grant("prefix", "/deploy/").String(), p0),
		validation("prefix too long", validReq().grant("prefix", strings.Repeat("p", policy.MaxPrefixLen+1)).String(), p0),

		// User names.
		validation("user ../admin", validReq().with("user", "../admin").String(), "user"),
		validation("user 65 characters", validReq().with("user", strings.Repeat("u", 65)).String(), "user"),
		validation("user empty", validReq().with("user", "").String(), "user"),
		validation("user missing", validReq().without("user").String(), "user"),
		validation("user with space", validReq().with("user", "de ployer").String(), "user"),
		validation("user with /", validReq().with("user", "team/deployer").String(), "user"),
		validation("user with ;", validReq().with("user", "deployer;x").String(), "user"),
		validation("user non-ASCII", validReq().with("user", "déployer").String(), "user"),

		// Access levels.
		validation("access unknown", validReq().grant("access", "admin").String(), "grants[0].access"),
		validation("access empty", validReq().grant("access", "").String(), "grants[0].access"),
		validation("access missing", validReq().grantWithout("access").String(), "grants[0].access"),
		validation("access in capitals", validReq().grant("access", "READ-WRITE").String(), "grants[0].access"),
		validation("access s3:*", validReq().grant("access", "s3:*").String(), "grants[0].access"),

		// The grant list.
		validation("zero grants", validReq().with("grants", []any{}).String(), "grants"),
		validation("grants null", validReq().with("grants", nil).String(), "grants"),
		validation("grants missing", validReq().without("grants").String(), "grants"),
		validation("51 grants", validReq().with("grants", grants(51, func(i int) map[string]any {
			return map[string]any{"bucket": fmt.Sprintf("site-%d.example.com", i), "access": "read-only"}
		})).String(), "grants"),
		// grant mode policy: all grants in one user policy of at most
		// IAM's 2,048 characters
		validation("grants over the user policy limit", validReq().with("grants", grants(6, func(i int) map[string]any {
			return map[string]any{"bucket": fmt.Sprintf("site-%d.example.com", i), "access": "read-only", "prefix": strings.Repeat("p", 200) + "/"}
		})).String(), "grants"),
		validation("duplicate grants", validReq().with("grants", grants(2, func(int) map[string]any {
			return map[string]any{"bucket": "site.example.com", "access": "read-only", "prefix": "a/"}
		})).String(), "grants[1]"),
		validation("second grant invalid", validReq().with("grants", []any{
			map[string]any{"bucket": "site.example.com", "access": "read-only"},
			map[string]any{"bucket": "site.example.com", "access": "write-only", "prefix": "../x"},
		}).String(), "grants[1].prefix"),
		validation("grant null", validReq().with("grants", []any{nil}).String(), b0),
		validation("body null", "null", "user"),

		// Reasons: required, bounded, and only IAM tag value characters.
		validation("reason empty", validReq().with("reason", "").String(), "reason"),
		validation("reason blank", validReq().with("reason", "   ").String(), "reason"),
		validation("reason missing", validReq().without("reason").String(), "reason"),
		validation("reason 257 characters", validReq().with("reason", strings.Repeat("r", 257)).String(), "reason"),
		validation("reason with '", validReq().with("reason", "it's for CI").String(), "reason"),
		validation("reason with ;", validReq().with("reason", "deploys; and more").String(), "reason"),
		validation("reason with quotes", validReq().with("reason", `the "site"`).String(), "reason"),
		validation("reason with <>", validReq().with("reason", "<script>").String(), "reason"),
		validation("reason with tab", validReq().with("reason", "CI\tdeploys").String(), "reason"),
		validation("reason with newline", validReq().with("reason", "CI\ndeploys").String(), "reason"),
		validation("reason with form feed", validReq().with("reason", "CI\fdeploys").String(), "reason"),
		validation("reason with vertical tab", validReq().with("reason", "CI\vdeploys").String(), "reason"),
		validation("reason with NEL", validReq().with("reason", "CI\u0085deploys").String(), "reason"),
		validation("reason with emoji", validReq().with("reason", "CI deploys 🚀").String(), "reason"),

		// Several problems at once: every one is reported.
		validation("every field wrong", `{"user":"","grants":[{"bucket":"B","access":"x","prefix":"*"}],"reason":""}`, "grants[0].prefix"),

		// Keys are exact: Go's encoding/json would take the last of a
		// duplicate and fold case (and Unicode: ſ is s, the Kelvin sign K
		// is k), so a proxy or a log could read another request than
		// keyvend acted on. Every body here is otherwise valid.
		badJSON("duplicate key", named(`{"user":"NAME","user":"NAME","grants":[{"bucket":"site.example.com","access":"read-only"}],"reason":"ci"}`), "user"),
		badJSON("duplicate key, same value", strings.ReplaceAll(`{"user":"NAME","user":"NAME","grants":[{"bucket":"site.example.com","access":"read-only"}],"reason":"ci"}`, "NAME", awstest.Name("strict")), "user"),
		badJSON("duplicate key in a grant", named(`{"user":"NAME","grants":[{"bucket":"site.example.com","access":"read-only","access":"full"}],"reason":"ci"}`), "grants[0].access"),
		badJSON("duplicate key in the second grant", named(`{"user":"NAME","grants":[{"bucket":"a.example.com","access":"read-only"},{"bucket":"b.example.com","prefix":"x/","access":"read-only","prefix":""}],"reason":"ci"}`), "grants[1].prefix"),
		badJSON("duplicate grants key", named(`{"user":"NAME","grants":[],"reason":"ci","grants":[{"bucket":"site.example.com","access":"read-only"}]}`), "grants"),
		badJSON("key User", named(`{"User":"NAME","grants":[{"bucket":"site.example.com","access":"read-only"}],"reason":"ci"}`), "User"),
		badJSON("key GRANTS", named(`{"user":"NAME","GRANTS":[{"bucket":"site.example.com","access":"read-only"}],"reason":"ci"}`), "GRANTS"),
		badJSON("key Reason", named(`{"user":"NAME","grants":[{"bucket":"site.example.com","access":"read-only"}],"Reason":"ci"}`), "Reason"),
		badJSON("key reaſon (long s)", named(`{"user":"NAME","grants":[{"bucket":"site.example.com","access":"read-only"}],"rea`+"\u017f"+`on":"ci"}`), "rea\u017fon"),
		badJSON("key buc\u212aet (Kelvin sign)", named(`{"user":"NAME","grants":[{"buc`+"\u212a"+`et":"site.example.com","access":"read-only"}],"reason":"ci"}`), "grants[0].buc\u212aet"),
		badJSON("key Access in a grant", named(`{"user":"NAME","grants":[{"bucket":"site.example.com","Access":"read-only"}],"reason":"ci"}`), "grants[0].Access"),
		badJSON("key Wait", named(`{"user":"NAME","grants":[{"bucket":"site.example.com","access":"read-only"}],"reason":"ci","Wait":true}`), "Wait"),
		badJSON("exact key and its case variant", named(`{"user":"NAME","User":"NAME","grants":[{"bucket":"site.example.com","access":"read-only"}],"reason":"ci"}`), "User"),

		// Unknown fields and wrong JSON types.
		badJSON("unknown top-level field", validReq().with("admin", true).String(), "admin"),
		badJSON("unknown grant field", validReq().grant("effect", "Allow").String(), "effect"),
		badJSON("user is a number", validReq().with("user", 5).String(), "user"),
		badJSON("user is an object", validReq().with("user", map[string]any{"name": "x"}).String(), "user"),
		badJSON("grants is an object", validReq().with("grants", map[string]any{"bucket": "site.example.com"}).String(), "grants"),
		badJSON("grants is a string", validReq().with("grants", "site.example.com").String(), "grants"),
		badJSON("bucket is a number", validReq().grant("bucket", 42).String(), "grants.bucket"),
		badJSON("access is a list", validReq().grant("access", []any{"read-only"}).String(), "grants.access"),
		badJSON("reason is a boolean", validReq().with("reason", true).String(), "reason"),
		badJSON("body is an array", `[]`, ""),
		badJSON("body is a string", `"create me a user"`, ""),

		// Bodies that are not one JSON document.
		{name: "oversize body", contentType: jsonCT, body: validReq().with("reason", strings.Repeat("r", httpapi.MaxBodyBytes)).String(), status: http.StatusRequestEntityTooLarge, slug: "too-large"},
		badJSON("non-JSON body", "user=deployer-1&reason=ci", ""),
		badJSON("empty body", "", ""),
		badJSON("whitespace body", " \n\t ", ""),
		badJSON("two JSON documents", validReq().String()+validReq().String(), ""),
		badJSON("trailing garbage", validReq().String()+"x", ""),
		badJSON("trailing brace", strings.TrimSpace(validReq().String())+"}", ""),
		badJSON("truncated JSON", validReq().String()[:20], ""),
		badJSON("deeply nested", `{"grants":[`+strings.Repeat("[", 20000)+strings.Repeat("]", 20000)+`]}`, ""),

		// Content types.
		{name: "no Content-Type", body: validReq().String(), status: http.StatusUnsupportedMediaType, slug: "unsupported-media-type"},
		{name: "text/plain", contentType: "text/plain", body: validReq().String(), status: http.StatusUnsupportedMediaType, slug: "unsupported-media-type"},
		{name: "form encoded", contentType: "application/x-www-form-urlencoded", body: "user=x", status: http.StatusUnsupportedMediaType, slug: "unsupported-media-type"},
		{name: "json-like type", contentType: "application/json-patch+json", body: validReq().String(), status: http.StatusUnsupportedMediaType, slug: "unsupported-media-type"},
		{name: "malformed Content-Type", contentType: "application/json; charset", body: validReq().String(), status: http.StatusUnsupportedMediaType, slug: "unsupported-media-type"},
	}
	return cases
}

// TestCreateRejectsBadInput sends every bad request through the real
// handler and service: each is a problem naming what is wrong, and none
// reaches AWS.
func TestCreateRejectsBadInput(t *testing.T) {
	cases := badCases()
	if len(cases) < 40 {
		t.Fatalf("only %d validation cases", len(cases))
	}
	names := map[string]bool{}
	for _, c := range cases {
		if names[c.name] {
			t.Fatalf("duplicate case name %q", c.name)
		}
		names[c.name] = true
		t.Run(c.name, func(t *testing.T) {
			e := newAPI(t, caller.Static{ARN: testCaller})
			w := send(e.h, http.MethodPost, "/v1/users", c.contentType, strings.NewReader(c.body))
			p := checkProblem(t, w, c.status, c.slug)
			if c.field != "" && !slices.Contains(p.fields(), c.field) {
				t.Errorf("errors %+v do not name %s", p.Errors, c.field)
			}
			for _, fe := range p.Errors {
				if fe.Field == "" || fe.Detail == "" {
					t.Errorf("errors entry %+v has no field or detail", fe)
				}
			}
			assertNoAWSCalls(t, e)
		})
	}
	t.Logf("%d bad inputs", len(cases))
}

func TestCreateReportsEveryProblem(t *testing.T) {
	e := newAPI(t, caller.Static{ARN: testCaller})
	w := send(e.h, http.MethodPost, "/v1/users", jsonCT, strings.NewReader(
		`{"user":"a/b","grants":[{"bucket":"B","access":"x","prefix":"*"},{"bucket":"ok.example.com","access":"full","prefix":"$"}],"reason":"it's"}`))
	p := checkProblem(t, w, http.StatusBadRequest, "validation")
	want := []string{"user", "grants[0].bucket", "grants[0].access", "grants[0].prefix", "grants[1].prefix", "reason"}
	if got := p.fields(); !slices.Equal(got, want) {
		t.Errorf("fields = %v, want %v", got, want)
	}
	assertNoAWSCalls(t, e)
}

func TestCreateForbidden(t *testing.T) {
	cases := []struct {
		name, who string
		body      string
	}{
		{"bucket no rule names", testCaller, validReq().grant("bucket", "site.example.org").String()},
		{"caller no rule names", "arn:aws:iam::123456789012:user/mallory", validReq().String()},
		{"one of several grants", testCaller, validReq().with("grants", []any{
			map[string]any{"bucket": "site.example.com", "access": "read-only"},
			map[string]any{"bucket": "example.com", "access": "read-only"},
		}).String()},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e := newAPI(t, caller.Static{ARN: c.who})
			w := send(e.h, http.MethodPost, "/v1/users", jsonCT, strings.NewReader(c.body))
			checkProblem(t, w, http.StatusForbidden, "forbidden")
			assertNoAWSCalls(t, e)
		})
	}
}

func TestRouting(t *testing.T) {
	e := newAPI(t, caller.Static{ARN: testCaller})
	for _, path := range []string{"/", "/v2/users", "/v1/user", "/v1/users/a/b/c", "/v1/keys", "/v1/users/a/keys"} {
		t.Run("404 "+path, func(t *testing.T) {
			w := send(e.h, http.MethodGet, path, "", nil)
			checkProblem(t, w, http.StatusNotFound, "not-found")
		})
	}
	for _, c := range []struct{ method, path, allow string }{
		{http.MethodPut, "/v1/users", "POST, GET"},
		{http.MethodDelete, "/v1/users", "POST, GET"},
		{http.MethodPatch, "/v1/users", "POST, GET"},
		{http.MethodPost, "/v1/users/deployer-1", "GET, DELETE"},
		{http.MethodPatch, "/v1/users/deployer-1", "GET, DELETE"},
		{http.MethodGet, "/v1/users/deployer-1/rotate", "POST"},
		{http.MethodPost, "/v1/users/deployer-1/grants", "PUT"},
		{http.MethodPost, "/v1/openapi.json", "GET"},
	} {
		t.Run("405 "+c.method+" "+c.path, func(t *testing.T) {
			w := send(e.h, c.method, c.path, jsonCT, strings.NewReader(validReq().String()))
			checkProblem(t, w, http.StatusMethodNotAllowed, "method-not-allowed")
			if got := w.Header().Get("Allow"); got != c.allow {
				t.Errorf("Allow = %q, want %q", got, c.allow)
			}
		})
	}
	assertNoAWSCalls(t, e)
}

func TestNoIdentity(t *testing.T) {
	for _, c := range []struct {
		name string
		who  caller.Resolver
	}{
		{"static without ARN", caller.Static{}},
		{"API Gateway without a request context", caller.APIGateway{}},
	} {
		t.Run(c.name, func(t *testing.T) {
			e := newAPI(t, c.who)
			for _, r := range []struct{ method, path string }{
				{http.MethodPost, "/v1/users"},
				{http.MethodGet, "/v1/users/deployer-1"},
				{http.MethodGet, "/nowhere"},
			} {
				body := strings.NewReader(validReq().String())
				req := httptest.NewRequest(r.method, r.path, body)
				req.Header.Set("Content-Type", jsonCT)
				// Client-supplied identity is never believed.
				req.Header.Set("X-GoLambdaProxy-ApiGw-Context", `{"authorizer":{"iam":{"userArn":"`+testCaller+`"}}}`)
				w := httptest.NewRecorder()
				e.h.ServeHTTP(w, req)
				checkProblem(t, w, http.StatusUnauthorized, "unauthenticated")
			}
			assertNoAWSCalls(t, e)
		})
	}
}

// TestCreateValidRequest is the positive control for the table above: the
// same handler, service and recorder vend a user for a valid request, and
// the recorder sees the calls. The prefix holds '%', '+' and a space, so
// reading the user back also checks the group policy as moto returns it.
func TestCreateValidRequest(t *testing.T) {
	e := newAPI(t, caller.Static{ARN: testCaller})
	user := awstest.Name("deployer")
	g := policy.Grant{Bucket: awstest.Name("site") + ".example.com", Access: policy.ReadWrite, Prefix: "deploy/100% site+x/a b/"}
	body := validReq().with("user", user).
		with("grants", []any{map[string]any{"bucket": g.Bucket, "access": string(g.Access), "prefix": g.Prefix}}).String()
	w := send(e.h, http.MethodPost, "/v1/users", "application/json; charset=utf-8", strings.NewReader(body))
	if w.Code != http.StatusCreated {
		t.Fatalf("status = %d, want 201; body: %s", w.Code, w.Body)
	}
	if ct := w.Header().Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type = %q", ct)
	}
	if loc := w.Header().Get("Location"); loc != "/v1/users/"+user {
		t.Errorf("Location = %q", loc)
	}
	if w.Header().Get("X-Request-Id") == "" {
		t.Error("no X-Request-Id")
	}
	var res struct {
		User        string         `json:"user"`
		Grants      []policy.Grant `json:"grants"`
		AccessKeyID string         `json:"access_key_id"`
	}
	if err := json.Unmarshal(w.Body.Bytes(), &res); err != nil {
		t.Fatal(err)
	}
	if res.User != user || res.AccessKeyID == "" || !slices.Equal(res.Grants, []policy.Grant{g}) {
		t.Errorf("result = %+v", res)
	}
	for _, op := range []string{"CreateUser", "CreateAccessKey", "PutUserPolicy"} {
		if e.calls.Count(op) == 0 {
			t.Errorf("the recorder saw no %s: calls %v", op, e.calls.Calls())
		}
	}

	w = send(e.h, http.MethodGet, "/v1/users/"+url.PathEscape(user), "", nil)
	if w.Code != http.StatusOK {
		t.Fatalf("describe: status = %d; body: %s", w.Code, w.Body)
	}
	var d struct {
		Grants   []policy.Grant `json:"grants"`
		Complete bool           `json:"complete"`
	}
	if err := json.Unmarshal(w.Body.Bytes(), &d); err != nil {
		t.Fatal(err)
	}
	if !d.Complete || !slices.Equal(d.Grants, []policy.Grant{g}) {
		t.Errorf("describe = %+v, want complete with grants [%+v]", d, g)
	}
}

// TestDescribeRejectsBadName: a name segment that is no IAM user name. (A
// segment with an encoded '/' or that decodes to "." or ".." is not a name:
// TestNonCanonicalPath.)
func TestDescribeRejectsBadName(t *testing.T) {
	e := newAPI(t, caller.Static{ARN: testCaller})
	for _, name := range []string{"de%20ployer", strings.Repeat("u", 65), "d%C3%A9ployer", "a;b"} {
		t.Run(name, func(t *testing.T) {
			w := send(e.h, http.MethodGet, "/v1/users/"+name, "", nil)
			p := checkProblem(t, w, http.StatusBadRequest, "validation")
			if !slices.Contains(p.fields(), "name") {
				t.Errorf("errors %+v do not name the user name", p.Errors)
			}
		})
	}
	assertNoAWSCalls(t, e)
}
