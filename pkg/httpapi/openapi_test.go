package httpapi_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"math"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsmiddleware "github.com/aws/aws-sdk-go-v2/aws/middleware"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	iamtypes "github.com/aws/aws-sdk-go-v2/service/iam/types"
	"github.com/aws/smithy-go"
	"github.com/aws/smithy-go/middleware"

	"github.com/keyvend/keyvend/pkg/approval"
	"github.com/keyvend/keyvend/pkg/authz"
	"github.com/keyvend/keyvend/pkg/awstest"
	"github.com/keyvend/keyvend/pkg/caller"
	grantmode "github.com/keyvend/keyvend/pkg/grants"
	"github.com/keyvend/keyvend/pkg/httpapi"
	"github.com/keyvend/keyvend/pkg/idempotency"
	"github.com/keyvend/keyvend/pkg/keycheck"
	"github.com/keyvend/keyvend/pkg/policy"
	"github.com/keyvend/keyvend/pkg/provision"
	"github.com/keyvend/keyvend/pkg/provisiontest"
	"github.com/keyvend/keyvend/pkg/state"
)

// localDev is the caller of `keyvend serve` and of the document's examples.
const localDev = "arn:aws:iam::123456789012:user/local-dev"

// localOps is the demo's second local caller: rules/demo.json lets it ask
// for full access on assets.example.com, with local-dev's approval.
const localOps = "arn:aws:iam::123456789012:user/local-ops"

// TestOpenAPIValid runs openapi-spec-validator over the document. It is a
// required tool of `make test`: missing, the test fails rather than skips.
func TestOpenAPIValid(t *testing.T) {
	py, err := exec.LookPath("python3")
	if err != nil {
		t.Fatalf("python3 is not on PATH, so openapi.json cannot be validated: install Python 3 and `pip install openapi-spec-validator` (make tools does)")
	}
	// Python's re, which the validator checks patterns with, knows no
	// Unicode property escapes (\p{L}) that ECMAScript and Go share: it
	// sees the document with each replaced by a class of its own. The
	// patterns themselves are compiled by Go (TestOpenAPIDocument's
	// examples) and by node with the u flag (make openapi-check), and
	// checked against the server's validators (TestOpenAPIPatterns).
	raw, err := os.ReadFile("openapi.json")
	if err != nil {
		t.Fatal(err)
	}
	py3 := regexp.MustCompile(`\\\\p\{[A-Za-z]+\}`).ReplaceAll(raw, []byte(`\\w`))
	spec := filepath.Join(t.TempDir(), "openapi.json")
	if err := os.WriteFile(spec, py3, 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(py, "-m", "openapi_spec_validator", spec).CombinedOutput()
	if bytes.Contains(out, []byte("No module named openapi_spec_validator")) {
		t.Fatalf("python3 has no openapi_spec_validator module, so openapi.json cannot be validated: `pip install openapi-spec-validator` (make tools does)\n%s", out)
	}
	if err != nil {
		t.Fatalf("openapi-spec-validator rejects openapi.json: %v\n%s", err, out)
	}
	if !bytes.Contains(out, []byte(spec+": OK")) {
		t.Fatalf("openapi-spec-validator did not say OK:\n%s", out)
	}
	doc := loadDoc(t)
	if v := doc.root["openapi"]; v != "3.1.0" {
		t.Errorf("openapi = %v, want 3.1.0", v)
	}
}

// TestOpenAPIRoutes: the document's operations are exactly Routes().
func TestOpenAPIRoutes(t *testing.T) {
	doc := loadDoc(t)
	inDoc := map[string]bool{}
	for _, op := range doc.operations() {
		inDoc[op.method+" "+op.path] = true
	}
	served := map[string]bool{}
	for _, r := range httpapi.Routes() {
		served[r.Method+" "+openAPIPath(r.Path)] = true
	}
	for r := range served {
		if !inDoc[r] {
			t.Errorf("%s is served but not in openapi.json", r)
		}
	}
	for r := range inDoc {
		if !served[r] {
			t.Errorf("%s is in openapi.json but not served", r)
		}
	}
}

// openAPIPath writes a ServeMux pattern's path as an OpenAPI path template:
// {name...} is {name}; a trailing {$} is dropped.
func openAPIPath(p string) string {
	p = strings.TrimSuffix(p, "{$}")
	return regexp.MustCompile(`\{([A-Za-z_][A-Za-z0-9_]*)\.\.\.\}`).ReplaceAllString(p, "{$1}")
}

// TestOpenAPIServed: GET /v1/openapi.json through the real handler is the
// embedded document, which is the file in the repository.
func TestOpenAPIServed(t *testing.T) {
	e := newAPI(t, caller.Static{ARN: testCaller})
	w := send(e.h, http.MethodGet, "/v1/openapi.json", "", nil)
	if w.Code != http.StatusOK {
		t.Fatalf("status = %d; body: %s", w.Code, w.Body)
	}
	if ct := w.Header().Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type = %q", ct)
	}
	if w.Header().Get("X-Request-Id") == "" {
		t.Error("no X-Request-Id")
	}
	var v map[string]any
	if err := json.Unmarshal(w.Body.Bytes(), &v); err != nil {
		t.Fatalf("body is not JSON: %v", err)
	}
	file, err := os.ReadFile("openapi.json")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(w.Body.Bytes(), httpapi.OpenAPI) || !bytes.Equal(file, httpapi.OpenAPI) {
		t.Error("the served document, the embedded one and openapi.json differ")
	}
	if len(v) < 4 || v["paths"] == nil {
		t.Errorf("the served document is not the OpenAPI document: %.200s", w.Body)
	}
	assertNoAWSCalls(t, e)
}

// TestOpenAPIDocument checks the document against itself: every reference
// resolves, every response documents X-Request-Id, errors are problem+json
// with the Problem schema, and every example (request, response,
// parameter) is valid against its own schema.
func TestOpenAPIDocument(t *testing.T) {
	doc := loadDoc(t)
	var refs []string
	walkJSON(doc.root, func(m map[string]any) {
		if r, ok := m["$ref"].(string); ok {
			refs = append(refs, r)
		}
	})
	for _, r := range refs {
		if doc.pointer(r) == nil {
			t.Errorf("$ref %s does not resolve", r)
		}
	}
	ids := map[string]bool{}
	for _, op := range doc.operations() {
		name := op.method + " " + op.path
		if op.method == "POST" || op.method == "PUT" || op.method == "DELETE" {
			// Every mutating operation takes an Idempotency-Key.
			if op.parameterIn("header", "Idempotency-Key") == nil {
				t.Errorf("%s: no Idempotency-Key parameter", name)
			}
			if _, ok := op.responses()["422"]; !ok {
				t.Errorf("%s: the 422 of a reused Idempotency-Key is not documented", name)
			}
			for status, resp := range op.responses() {
				if status[0] == '2' && obj(resp.obj["headers"])["Idempotency-Replayed"] == nil {
					t.Errorf("%s %s: Idempotency-Replayed is not documented", name, status)
				}
			}
		}
		id, _ := op.obj["operationId"].(string)
		if id == "" || ids[id] {
			t.Errorf("%s: operationId %q missing or not unique", name, id)
		}
		ids[id] = true
		if len(op.obj["responses"].(map[string]any)) == 0 {
			t.Errorf("%s: no responses", name)
		}
		for status, resp := range op.responses() {
			where := fmt.Sprintf("%s %s", name, status)
			if obj(resp.obj["headers"])["X-Request-Id"] == nil {
				t.Errorf("%s: X-Request-Id is not documented", where)
			}
			for mt, media := range obj(resp.obj["content"]) {
				schema := obj(media)["schema"]
				switch {
				case status[0] == '2' && mt != "application/json":
					t.Errorf("%s: success content %s, want application/json", where, mt)
				case status[0] != '2' && mt != "application/problem+json":
					t.Errorf("%s: error content %s, want application/problem+json", where, mt)
				case status[0] != '2' && obj(schema)["$ref"] != "#/components/schemas/Problem":
					t.Errorf("%s: error schema %v, want the Problem schema", where, schema)
				}
				for exName, ex := range obj(obj(media)["examples"]) {
					for _, msg := range doc.validate(schema, obj(ex)["value"]) {
						t.Errorf("%s example %q: %s", where, exName, msg)
					}
				}
			}
			if status[0] != '2' && resp.obj["content"] == nil {
				t.Errorf("%s: an error without a problem body", where)
			}
		}
		for exName, ex := range op.requestExamples() {
			for _, msg := range doc.validate(op.requestSchema(), ex) {
				t.Errorf("%s request example %q: %s", name, exName, msg)
			}
		}
		for _, p := range op.parameters() {
			if ex, ok := p["example"]; ok {
				for _, msg := range doc.validate(p["schema"], ex) {
					t.Errorf("%s parameter %v example: %s", name, p["name"], msg)
				}
			}
		}
	}
	for name, resp := range obj(obj(doc.root["components"])["responses"]) {
		for _, media := range obj(obj(resp)["content"]) {
			for exName, ex := range obj(obj(media)["examples"]) {
				for _, msg := range doc.validate(obj(media)["schema"], obj(ex)["value"]) {
					t.Errorf("components.responses.%s example %q: %s", name, exName, msg)
				}
			}
		}
	}
	desc, _ := obj(doc.root["info"])["description"].(string)
	if !strings.Contains(desc, "secret access key is never returned") {
		t.Error("info.description does not say that the secret access key is never returned")
	}
}

// exchange is one request through the real handler, and what the document
// says it gets.
type exchange struct {
	name         string
	method, path string // the operation, as in the document ("" path: raw)
	raw          string // a request path outside the document's operations
	user         string // {name}; default: the document's example
	query        []string
	rawQuery     string            // a query string as sent, instead of query
	example      string            // request body: this request example of the operation
	body         string            // or this raw body
	contentType  string            // of body ("" for none)
	headers      map[string]string // request headers besides Content-Type
	ifMatch      string            // If-Match: "latest" or "first" ETag the user was answered with, or this value
	tamperNext   bool              // send the previous page's next token with one character changed
	anonymous    bool              // send without a caller identity
	groupMode    bool              // send to the API in grant mode group
	ops          bool              // send as localOps (the demo's second local caller), not localDev
	setup        func(t *testing.T, e *exampleEnv)
	status       int
	replayed     bool   // the answer is a stored one (Idempotency-Replayed: true)
	response     string // the documented example the answer must match; "" for none
	responseFrom string // the example is in this components.responses entry, not the operation's
}

// TestOpenAPIExamples runs the document's examples through the real handler
// and a real provisioning service on a fresh moto, in the order of a user's
// life: create → describe → rotate → update grants (If-Match) → list →
// history → delete (If-Match) → history. Every
// request example is sent and gets its documented status; every documented
// example answer has the same JSON keys, recursively, as the real answer,
// and each real answer is valid against the documented schema. Errors are
// produced for real too (faults are AWS errors injected by SDK middleware),
// so every example in the document is checked against the code.
func TestOpenAPIExamples(t *testing.T) {
	doc := loadDoc(t)
	e := newExampleEnv(t)

	badGrant := func(k string, v any) string {
		r := map[string]any{"user": "bad-request", "grants": []any{map[string]any{"bucket": "site.example.com", "access": "read-write"}}, "reason": "tests"}
		r["grants"].([]any)[0].(map[string]any)[k] = v
		b, _ := json.Marshal(r)
		return string(b)
	}
	valid := `{"user":"other-user","grants":[{"bucket":"site.example.com","access":"read-only"}],"reason":"tests"}`
	halfMade := func(t *testing.T, e *exampleEnv) {
		// What a create that crashed after CreateUser leaves: a tagged
		// user under keyvend's path, with no key and no secret.
		_, err := e.iam.CreateUser(context.Background(), &iam.CreateUserInput{
			UserName: aws.String("half-made"), Path: aws.String("/keyvend/"),
			Tags: []iamtypes.Tag{
				{Key: aws.String(provision.TagManagedBy), Value: aws.String("keyvend")},
				{Key: aws.String(provision.TagRequester), Value: aws.String(localDev)},
			},
		})
		if err != nil && !strings.Contains(err.Error(), "EntityAlreadyExists") {
			t.Fatal(err)
		}
	}
	// The document's Idempotency-Key example.
	idemKey := map[string]string{"Idempotency-Key": fmt.Sprint(obj(obj(obj(doc.root["components"])["parameters"])["IdempotencyKey"])["example"])}
	fail := func(op string, err error) func(*testing.T, *exampleEnv) {
		return func(t *testing.T, e *exampleEnv) { e.faults.set(op, err) }
	}

	const (
		users   = "/v1/users"
		user    = "/v1/users/{name}"
		rotate  = "/v1/users/{name}/rotate"
		grants  = "/v1/users/{name}/grants"
		history = "/v1/users/{name}/history"

		requests = "/v1/requests"
		request  = "/v1/requests/{id}"
		approve  = "/v1/requests/{id}/approve"
		deny     = "/v1/requests/{id}/deny"
	)
	// leased: another request holds site-deployer's lease for the step.
	leased := func(t *testing.T, e *exampleEnv) {
		ctx := context.Background()
		if _, err := e.store.Lease(ctx, "site-deployer", "another-request", time.Minute, state.LeaseOpts{}); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			if err := e.store.Release(ctx, "site-deployer", "another-request"); err != nil {
				t.Error(err)
			}
		})
	}
	// expiredRequest stores a pending request of local-ops already past
	// its expiry (the API cannot make one: expires_in is 5m at least).
	expiredRequest := func(t *testing.T, e *exampleEnv) {
		now := time.Now().UTC()
		r := &approval.Request{
			ID: approval.NewID(), Kind: approval.Create, User: "ops-late", Principal: localOps, Requester: localOps,
			Grants: []policy.Grant{{Bucket: "assets.example.com", Access: policy.Full}}, Reason: "nightly export",
			Body:      json.RawMessage(`{"user":"ops-late","grants":[{"bucket":"assets.example.com","access":"full","prefix":""}],"reason":"nightly export"}`),
			CreatedAt: now.Add(-25 * time.Hour), ExpiresAt: now.Add(-time.Hour), RequestID: "setup",
			Needs: []authz.GrantNeed{{Grant: policy.Grant{Bucket: "assets.example.com", Access: policy.Full}, Approvers: []string{localDev}, Min: 1, Distinct: authz.DistinctPrincipal, Rules: []int{3}}},
		}
		r.Fingerprint = approval.Fingerprint(r.Kind, r.User, r.ID)
		if err := approval.New(e.store.DB(), e.store.Table()).Submit(context.Background(), r); err != nil {
			t.Fatal(err)
		}
		e.lastRequest = r.ID
	}
	steps := []exchange{
		// Create, then the same request again, then a second user.
		{name: "create site-deployer", method: "POST", path: users, example: "site-deployer", status: 201, response: "site-deployer"},
		{name: "create site-deployer again", method: "POST", path: users, example: "site-deployer", status: 200, response: "replay"},
		{name: "create assets-uploader", method: "POST", path: users, example: "assets-uploader", headers: idemKey, status: 201, response: "assets-uploader"},
		{name: "create assets-uploader again, the same key", method: "POST", path: users, example: "assets-uploader", headers: idemKey, status: 201, response: "assets-uploader", replayed: true},
		{name: "describe", method: "GET", path: user, status: 200, response: "site-deployer"},
		{name: "rotate and wait", method: "POST", path: rotate, example: "wait", status: 200, response: "wait"},
		{name: "rotate without a body", method: "POST", path: rotate, status: 200, response: "no-body"},
		{name: "replace grants, a weak If-Match", method: "PUT", path: grants, example: "add-assets", ifMatch: `W/"2"`, status: 400, response: "if-match"},
		{name: "replace grants, the If-Match before the rotations", method: "PUT", path: grants, example: "add-assets", ifMatch: "first", status: 412, response: "precondition-failed"},
		{name: "replace grants while another request holds the user", method: "PUT", path: grants, setup: leased, example: "add-assets", status: 409, response: "in-progress"},
		{name: "describe before replacing grants", method: "GET", path: user, status: 200, response: "site-deployer"},
		{name: "replace grants", method: "PUT", path: grants, example: "add-assets", ifMatch: "latest", status: 200, response: "add-assets"},
		{name: "list first page", method: "GET", path: users, query: []string{"requester", "limit"}, status: 200, response: "first-page"},
		{name: "list next page", method: "GET", path: users, query: []string{"requester", "limit", "next"}, status: 200, response: "last-page"},
		{name: "list by bucket", method: "GET", path: users, query: []string{"bucket"}, status: 200, response: "by-bucket"},
		{name: "list expiring before", method: "GET", path: users, query: []string{"expiring_before"}, status: 200, response: "expiring"},
		{name: "history first page", method: "GET", path: history, query: []string{"limit"}, status: 200, response: "first-page"},
		{name: "history next page", method: "GET", path: history, query: []string{"limit", "next"}, status: 200, response: "last-page"},
		{name: "history first page again", method: "GET", path: history, query: []string{"limit"}, status: 200, response: "first-page"},
		{name: "history, a changed next", method: "GET", path: history, query: []string{"limit", "next"}, tamperNext: true, status: 400, response: "page-token"},
		{name: "history of a user keyvend does not manage", method: "GET", path: history, user: "nobody-here", status: 404, response: "not-found"},

		// Approvals: local-ops asks, local-dev decides.
		{name: "create, needs approval", method: "POST", path: users, example: "needs-approval", ops: true, status: 202, response: "pending"},
		{name: "create, needs approval again: the same request", method: "POST", path: users, example: "needs-approval", ops: true, status: 202, response: "pending"},
		{name: "requests, the approver's queue", method: "GET", path: requests, query: []string{"status"}, status: 200, response: "queue"},
		{name: "request, by its requester", method: "GET", path: request, ops: true, status: 200, response: "pending"},
		{name: "request, unknown", method: "GET", path: request, user: "apr-00000000000000000000", status: 404, response: "not-found"},
		{name: "approve, by its requester", method: "POST", path: approve, ops: true, status: 403, response: "own-request"},
		{name: "deny without a reason", method: "POST", path: deny, body: `{}`, contentType: jsonCT, status: 400, response: "reason"},
		{name: "approve", method: "POST", path: approve, example: "approve", status: 200, response: "provisioned"},
		{name: "approve again", method: "POST", path: approve, example: "approve", status: 409, response: "decided"},
		{name: "create, needs approval, to deny", method: "POST", path: users, ops: true, body: `{"user":"ops-bulk","grants":[{"bucket":"assets.example.com","access":"full"}],"reason":"bulk cleanup"}`, contentType: jsonCT, status: 202},
		{name: "deny", method: "POST", path: deny, example: "deny", status: 200, response: "denied"},
		{name: "approve, expired", method: "POST", path: approve, setup: expiredRequest, status: 410, response: "expired"},
		{name: "create, read-only for the grants change", method: "POST", path: users, ops: true, body: `{"user":"ops-reader","grants":[{"bucket":"assets.example.com","access":"read-only"}],"reason":"asset audits"}`, contentType: jsonCT, status: 201},
		{name: "replace grants, needs approval", method: "PUT", path: grants, user: "ops-reader", ops: true, example: "needs-approval", status: 202, response: "pending"},
		{name: "requests, the requester's own", method: "GET", path: requests, ops: true, status: 200, response: "mine"},
		{name: "requests, an unknown status", method: "GET", path: requests, rawQuery: "status=waiting", status: 400, response: "status"},

		// Create's errors.
		{name: "create invalid", method: "POST", path: users, body: badGrant("bucket", "192.168.1.1"), contentType: jsonCT, status: 400, response: "validation"},
		{name: "create unknown field", method: "POST", path: users, body: `{"user":"x","grants":[],"reason":"r","admin":true}`, contentType: jsonCT, status: 400, response: "invalid-json"},
		{name: "create anonymous", method: "POST", path: users, body: valid, contentType: jsonCT, anonymous: true, status: 401, response: "unauthenticated"},
		{name: "create forbidden", method: "POST", path: users, body: badGrant("access", "write-only"), contentType: jsonCT, status: 403, response: "forbidden"},
		{name: "create other grants", method: "POST", path: users, body: `{"user":"site-deployer","grants":[{"bucket":"site.example.com","access":"read-only"}],"reason":"blog deploys"}`, contentType: jsonCT, status: 409, response: "conflict"},
		{name: "create in progress", method: "POST", path: users, setup: halfMade, body: `{"user":"half-made","grants":[{"bucket":"site.example.com","access":"read-only"}],"reason":"tests"}`, contentType: jsonCT, status: 409, response: "in-progress"},
		{name: "create a scratch user", method: "POST", path: users, body: `{"user":"scratch-1","grants":[{"bucket":"scratch.example.com","access":"full"}],"reason":"tests"}`, contentType: jsonCT, status: 201},
		{name: "create beyond max_users", method: "POST", path: users, body: `{"user":"scratch-2","grants":[{"bucket":"scratch.example.com","access":"full"}],"reason":"tests"}`, contentType: jsonCT, status: 429, response: "limit"},
		{name: "create too large", method: "POST", path: users, body: badGrant("prefix", strings.Repeat("p", httpapi.MaxBodyBytes)), contentType: jsonCT, status: 413, response: "too-large"},
		{name: "create not JSON", method: "POST", path: users, body: valid, contentType: "text/plain", status: 415, response: "unsupported-media-type"},
		{name: "create, the key of another request", method: "POST", path: users, body: valid, contentType: jsonCT, headers: idemKey, status: 422, response: "idempotency-key-reused"},
		{name: "create, a bad key", method: "POST", path: users, body: valid, contentType: jsonCT, headers: map[string]string{"Idempotency-Key": strings.Repeat("k", 256)}, status: 400, response: "idempotency-key"},

		// The other operations' own errors, and the AWS failures.
		{name: "rotate in progress", method: "POST", path: rotate, user: "half-made", status: 409, response: "in-progress"},
		{name: "grants on a foreign group", method: "PUT", path: grants, setup: func(t *testing.T, e *exampleEnv) {
			name := policy.GroupName(policy.Grant{Bucket: "conflict.example.com", Access: policy.ReadOnly})
			if _, err := e.iam.CreateGroup(context.Background(), &iam.CreateGroupInput{GroupName: &name, Path: aws.String("/")}); err != nil {
				t.Fatal(err)
			}
		}, body: `{"grants":[{"bucket":"conflict.example.com","access":"read-only"}]}`, contentType: jsonCT, status: 409, response: "conflict", groupMode: true},
		{name: "describe, role lacks a permission", method: "GET", path: user, setup: fail("GetUser", &smithy.GenericAPIError{Code: "AccessDenied", Message: "not authorized to perform iam:GetUser"}), status: 500, response: "internal"},
		{name: "describe, AWS fails", method: "GET", path: user, setup: fail("GetUser", &smithy.GenericAPIError{Code: "ServiceFailure", Message: "injected"}), status: 502, response: "aws-error"},
		{name: "describe, AWS throttles", method: "GET", path: user, setup: fail("GetUser", &smithy.GenericAPIError{Code: "Throttling", Message: "Rate exceeded"}), status: 503, response: "throttled"},
		{name: "describe, AWS times out", method: "GET", path: user, setup: fail("GetUser", context.DeadlineExceeded), status: 504, response: "timeout"},
		{name: "delete, IAM refuses", method: "DELETE", path: user, user: "half-made", setup: fail("DeleteUser", &smithy.GenericAPIError{Code: "DeleteConflict", Message: "Cannot delete entity, must remove login profile first."}), status: 409, response: "conflict"},
		{name: "wrong method", raw: "/v1/users", method: "PUT", body: valid, contentType: jsonCT, status: 405, response: "method-not-allowed", responseFrom: "MethodNotAllowed"},
		{name: "list, a parameter twice", method: "GET", path: users, rawQuery: "bucket=site.example.com&bucket=assets.example.com", status: 400, response: "query"},
		{name: "openapi.json with a query", method: "GET", path: "/v1/openapi.json", rawQuery: "format=yaml", status: 400},
		{name: "describe, a path not in canonical form", raw: "/v1/users/site-deployer/.", method: "GET", status: 404, response: "not-canonical", responseFrom: "NotFound"},

		// Delete, and the user is gone; its history is kept.
		{name: "delete while another request holds the user", method: "DELETE", path: user, setup: leased, status: 409, response: "in-progress"},
		{name: "delete, an old If-Match", method: "DELETE", path: user, ifMatch: "first", status: 412, response: "precondition-failed"},
		{name: "delete", method: "DELETE", path: user, ifMatch: "latest", status: 204},
		{name: "describe deleted", method: "GET", path: user, status: 404, response: "not-found"},
		{name: "history of the deleted user", method: "GET", path: history, query: []string{"limit"}, status: 200, response: "deleted"},
		{name: "openapi.json", method: "GET", path: "/v1/openapi.json", status: 200},
	}

	used := map[string]bool{}
	var next string    // a page's next token, from one page to the next
	var etags []string // the ETags site-deployer was answered with, in order
	for _, x := range steps {
		ok := t.Run(x.name, func(t *testing.T) {
			defer e.faults.clear()
			if x.setup != nil {
				x.setup(t, e)
			}
			op := doc.operation(x.method, x.path)
			if x.raw == "" && op == nil {
				t.Fatalf("openapi.json has no operation %s %s", x.method, x.path)
			}

			// The request, from the document's examples.
			target := x.raw
			var body io.Reader
			contentType := x.contentType
			if x.raw == "" {
				target = x.path
				for _, p := range op.parameters() {
					switch p["in"] {
					case "path":
						v := x.user
						if p["name"] == "id" && v == "" {
							v = e.lastRequest // the approval request answered last
						}
						if v == "" {
							v = fmt.Sprint(p["example"])
						}
						target = strings.ReplaceAll(target, "{"+p["name"].(string)+"}", url.PathEscape(v))
					}
				}
				q := url.Values{}
				for _, name := range x.query {
					p := op.parameter(name)
					if p == nil || p["example"] == nil {
						t.Fatalf("parameter %s has no example", name)
					}
					v := fmt.Sprint(p["example"])
					if name == "next" {
						// A token only the previous page can produce.
						if next == "" {
							t.Fatal("the previous page had no next token")
						}
						v = next
						if x.tamperNext {
							b := []byte(v)
							b[len(b)/3] ^= 'A' ^ 'B' // A<->B, any other letter to another
							v = string(b)
						}
					}
					q.Set(name, v)
				}
				if len(q) > 0 {
					target += "?" + q.Encode()
				}
				if x.rawQuery != "" {
					target += "?" + x.rawQuery
				}
				if x.example != "" {
					v, ok := op.requestExamples()[x.example]
					if !ok {
						t.Fatalf("no request example %q", x.example)
					}
					used[op.key()+" request "+x.example] = true
					b, err := json.Marshal(v)
					if err != nil {
						t.Fatal(err)
					}
					body, contentType = bytes.NewReader(b), jsonCT
				}
			}
			if x.body != "" {
				body = strings.NewReader(x.body)
			}
			h := e.h
			switch {
			case x.anonymous:
				h = e.anon
			case x.groupMode:
				h = e.groups
			case x.ops:
				h = e.ops
			}
			r := httptest.NewRequest(x.method, target, body)
			if contentType != "" {
				r.Header.Set("Content-Type", contentType)
			}
			headers := maps.Clone(x.headers)
			switch x.ifMatch {
			case "":
			case "latest", "first":
				if len(etags) == 0 {
					t.Fatal("no ETag was answered yet")
				}
				headers = map[string]string{"If-Match": etags[len(etags)-1]}
				if x.ifMatch == "first" {
					headers["If-Match"] = etags[0]
				}
			default:
				headers = map[string]string{"If-Match": x.ifMatch}
			}
			for k, v := range headers {
				if op != nil && k != "Content-Type" && op.parameterIn("header", k) == nil {
					t.Fatalf("header %s is not a documented parameter of %s %s", k, x.method, x.path)
				}
				r.Header.Set(k, v)
			}
			w := httptest.NewRecorder()
			h.ServeHTTP(w, r)
			if got := w.Header().Get("Idempotency-Replayed") == "true"; got != x.replayed {
				t.Errorf("Idempotency-Replayed: %q, want a replay: %v", w.Header().Get("Idempotency-Replayed"), x.replayed)
			}

			// The answer, against the document.
			if w.Code != x.status {
				t.Fatalf("%s %s: status = %d, want %d; body: %s", x.method, target, w.Code, x.status, w.Body)
			}
			var resp docResponse
			if x.responseFrom != "" {
				resp = doc.componentResponse(x.responseFrom)
			} else {
				var ok bool
				if resp, ok = op.responses()[fmt.Sprint(x.status)]; !ok {
					t.Fatalf("status %d is not documented for %s %s", x.status, x.method, x.path)
				}
			}
			if w.Header().Get("X-Request-Id") == "" {
				t.Error("no X-Request-Id")
			}
			for name, hdr := range obj(resp.obj["headers"]) {
				if hdr := doc.resolve(hdr); obj(hdr)["required"] == true && w.Header().Get(name) == "" {
					t.Errorf("documented header %s is missing", name)
				}
			}
			for _, name := range []string{"Location", "Retry-After", "Allow", "Idempotency-Replayed", "ETag"} {
				if w.Header().Get(name) != "" && obj(resp.obj["headers"])[name] == nil {
					t.Errorf("header %s: %q is not documented", name, w.Header().Get(name))
				}
			}
			content := obj(resp.obj["content"])
			if len(content) == 0 {
				if w.Body.Len() != 0 {
					t.Errorf("undocumented body: %s", w.Body)
				}
				return
			}
			ct := w.Header().Get("Content-Type")
			media := obj(content[ct])
			if media == nil {
				t.Fatalf("Content-Type %q is not documented (%v)", ct, slices.Sorted(mapKeys(content)))
			}
			var got any
			if err := json.Unmarshal(w.Body.Bytes(), &got); err != nil {
				t.Fatalf("body is not JSON: %v: %s", err, w.Body)
			}
			for _, msg := range doc.validate(media["schema"], got) {
				t.Errorf("the answer breaks the documented schema: %s", msg)
			}
			if p, ok := got.(map[string]any); ok && ct == "application/problem+json" {
				if p["status"] != float64(w.Code) || p["request_id"] != w.Header().Get("X-Request-Id") {
					t.Errorf("problem status %v / request_id %v do not match the response", p["status"], p["request_id"])
				}
			}
			if l, ok := got.(map[string]any); ok && x.method == "GET" && op != nil && op.parameter("next") != nil {
				next, _ = l["next"].(string)
			}
			if m, ok := got.(map[string]any); ok && w.Code == http.StatusAccepted {
				e.lastRequest, _ = m["id"].(string)
			}
			if tag := w.Header().Get("ETag"); tag != "" {
				// The ETag is the answer's version, quoted.
				if v, _ := got.(map[string]any)["version"].(float64); tag != fmt.Sprintf(`"%d"`, int64(v)) {
					t.Errorf("ETag %s, version %v", tag, got.(map[string]any)["version"])
				}
				if x.user == "" && (len(etags) == 0 || etags[len(etags)-1] != tag) {
					etags = append(etags, tag)
				}
			}
			if x.response == "" {
				return
			}
			ex, ok := obj(media["examples"])[x.response]
			if !ok {
				t.Fatalf("no example %q for status %d", x.response, x.status)
			}
			used[resp.ptr+" "+x.response] = true
			for _, msg := range sameKeys(obj(ex)["value"], got, "$") {
				t.Errorf("example %q and the real answer differ: %s\nreal answer: %s", x.response, msg, w.Body)
			}
		})
		if !ok && x.status < 300 {
			t.Fatalf("step %q failed; the later steps depend on it", x.name)
		}
	}

	// Every example in the document was sent or compared.
	for _, op := range doc.operations() {
		for name := range op.requestExamples() {
			if !used[op.key()+" request "+name] {
				t.Errorf("%s request example %q is never sent", op.key(), name)
			}
		}
		for _, resp := range op.responses() {
			for name := range exampleNames(resp) {
				if !used[resp.ptr+" "+name] {
					t.Errorf("example %s %q is never compared with a real answer", resp.ptr, name)
				}
			}
		}
	}
	for name := range obj(obj(doc.root["components"])["responses"]) {
		resp := doc.componentResponse(name)
		for ex := range exampleNames(resp) {
			if !used[resp.ptr+" "+ex] {
				t.Errorf("example %s %q is never compared with a real answer", resp.ptr, ex)
			}
		}
	}
}

// exampleEnv is the real handler over a real service on a moto of its own,
// with the demo rules and local-dev as the caller, as `keyvend serve` runs.
type exampleEnv struct {
	// h is the API in the default grant mode (policy); groups is the same
	// API in grant mode group, for the errors only that mode has.
	h, anon, groups http.Handler
	iam             *iam.Client
	faults          *awsFaults
	store           *state.Store // the service's state table
	// ops is the API as localOps, the demo's second local caller (who
	// needs local-dev's approval for full access on assets.example.com).
	ops http.Handler
	// lastRequest is the approval request answered last (202) or set up:
	// the {id} of the requests' operations.
	lastRequest string
}

func newExampleEnv(t *testing.T) *exampleEnv {
	t.Helper()
	srv := awstest.Dedicated(t)
	cfg := awstest.Config(t, srv.URL)
	e := &exampleEnv{faults: &awsFaults{}}
	rules, err := authz.Load(filepath.Join("..", "..", "rules", "demo.json"))
	if err != nil {
		t.Fatal(err)
	}
	discard := slog.New(slog.NewJSONHandler(io.Discard, nil))
	p := provisiontest.New(t, provisiontest.Endpoint(srv.URL), provisiontest.RuleSet(rules), provisiontest.Logger(discard),
		provisiontest.Instrument(e.faults.attach, pageListUsers),
		provisiontest.Settings(func(s *provision.Settings) { s.KeyCheck = &keycheck.Checker{Base: cfg, Timeout: 10 * time.Second} }))
	svc := p.Service
	e.iam, e.store = p.IAM, p.Store
	db := dynamodb.NewFromConfig(cfg)
	if err := state.CreateTable(context.Background(), db, "keyvend-state"); err != nil {
		t.Fatal(err)
	}
	idem, err := idempotency.New(db, "keyvend-state")
	if err != nil {
		t.Fatal(err)
	}
	e.h = httpapi.New(svc, caller.Static{ARN: localDev}, discard, httpapi.WithIdempotency(idem))
	e.anon = httpapi.New(svc, caller.Static{}, discard, httpapi.WithIdempotency(idem))
	e.ops = httpapi.New(svc, caller.Static{ARN: localOps}, discard, httpapi.WithIdempotency(idem))
	groupSvc := p.Another(t, provisiontest.Settings(func(s *provision.Settings) { s.KeyCheck, s.GrantMode = nil, grantmode.Group }))
	e.groups = httpapi.New(groupSvc, caller.Static{ARN: localDev}, discard)
	return e
}

// awsFaults fails every call of one operation with a chosen error, as AWS
// would answer it: an API error code, or the context's deadline.
type awsFaults struct {
	mu  sync.Mutex
	op  string
	err error
}

func (f *awsFaults) set(op string, err error) { f.mu.Lock(); f.op, f.err = op, err; f.mu.Unlock() }
func (f *awsFaults) clear()                   { f.set("", nil) }

func (f *awsFaults) attach(cfg *aws.Config) {
	cfg.APIOptions = append(cfg.APIOptions, func(stack *middleware.Stack) error {
		return stack.Initialize.Add(middleware.InitializeMiddlewareFunc("openapi_test.faults",
			func(ctx context.Context, in middleware.InitializeInput, next middleware.InitializeHandler) (middleware.InitializeOutput, middleware.Metadata, error) {
				f.mu.Lock()
				op, err := f.op, f.err
				f.mu.Unlock()
				if err != nil && awsmiddleware.GetOperationName(ctx) == op {
					return middleware.InitializeOutput{}, middleware.Metadata{}, err
				}
				return next.HandleInitialize(ctx, in)
			}), middleware.After)
	})
}

// pageListUsers pages IAM ListUsers by MaxItems and Marker as IAM does:
// moto (5.x) ignores both and never truncates, so without this the list's
// next token would never be seen.
func pageListUsers(cfg *aws.Config) {
	cfg.APIOptions = append(cfg.APIOptions, func(stack *middleware.Stack) error {
		return stack.Initialize.Add(middleware.InitializeMiddlewareFunc("openapi_test.pageListUsers",
			func(ctx context.Context, in middleware.InitializeInput, next middleware.InitializeHandler) (middleware.InitializeOutput, middleware.Metadata, error) {
				out, md, err := next.HandleInitialize(ctx, in)
				lin, ok1 := in.Parameters.(*iam.ListUsersInput)
				lout, ok2 := out.Result.(*iam.ListUsersOutput)
				if err != nil || !ok1 || !ok2 {
					return out, md, err
				}
				all, start := lout.Users, 0
				if m := aws.ToString(lin.Marker); m != "" {
					start = slices.IndexFunc(all, func(u iamtypes.User) bool { return "page:"+aws.ToString(u.UserName) == m })
					if start < 0 {
						return out, md, &smithy.GenericAPIError{Code: "InvalidInput", Message: "bad marker"}
					}
				}
				end := len(all)
				lout.IsTruncated, lout.Marker = false, nil
				if n := int(aws.ToInt32(lin.MaxItems)); n > 0 && start+n < end {
					end = start + n
					lout.IsTruncated, lout.Marker = true, aws.String("page:"+aws.ToString(all[end].UserName))
				}
				lout.Users = all[start:end]
				return out, md, nil
			}), middleware.After)
	})
}

// sameKeys compares the JSON shape of an example with a real value: the
// same keys in every object, recursively, and the same JSON kinds. Array
// elements are compared with the real element at the same index (or the
// last one).
func sameKeys(example, real any, at string) []string {
	if k1, k2 := jsonKindOf(example), jsonKindOf(real); k1 != k2 {
		return []string{fmt.Sprintf("%s: the example is %s, the real value %s", at, k1, k2)}
	}
	var out []string
	switch ex := example.(type) {
	case map[string]any:
		re := real.(map[string]any)
		for _, k := range slices.Sorted(mapKeys(ex)) {
			if _, ok := re[k]; !ok {
				out = append(out, fmt.Sprintf("%s: the example has %q, the real answer does not", at, k))
				continue
			}
			out = append(out, sameKeys(ex[k], re[k], at+"."+k)...)
		}
		for _, k := range slices.Sorted(mapKeys(re)) {
			if _, ok := ex[k]; !ok {
				out = append(out, fmt.Sprintf("%s: the real answer has %q, the example does not", at, k))
			}
		}
	case []any:
		re := real.([]any)
		switch {
		case len(ex) > 0 && len(re) == 0:
			out = append(out, fmt.Sprintf("%s: the example has elements, the real answer none", at))
		case len(ex) == 0 && len(re) > 0:
			out = append(out, fmt.Sprintf("%s: the real answer has elements, the example none", at))
		}
		for i, v := range ex {
			if len(re) > 0 {
				out = append(out, sameKeys(v, re[min(i, len(re)-1)], fmt.Sprintf("%s[%d]", at, i))...)
			}
		}
	}
	return out
}

func jsonKindOf(v any) string {
	switch v.(type) {
	case map[string]any:
		return "an object"
	case []any:
		return "an array"
	case string:
		return "a string"
	case float64:
		return "a number"
	case bool:
		return "a boolean"
	case nil:
		return "null"
	}
	return fmt.Sprintf("%T", v)
}

// openAPIDoc is the document as generic JSON, with the few lookups the
// tests need.
type openAPIDoc struct{ root map[string]any }

func loadDoc(t *testing.T) *openAPIDoc {
	t.Helper()
	var root map[string]any
	if err := json.Unmarshal(httpapi.OpenAPI, &root); err != nil {
		t.Fatalf("openapi.json is not JSON: %v", err)
	}
	return &openAPIDoc{root: root}
}

func obj(v any) map[string]any {
	m, _ := v.(map[string]any)
	return m
}

func mapKeys[V any](m map[string]V) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// pointer resolves a local JSON pointer such as #/components/schemas/Grant.
func (d *openAPIDoc) pointer(ref string) any {
	if !strings.HasPrefix(ref, "#/") {
		return nil
	}
	var cur any = d.root
	for _, tok := range strings.Split(ref[2:], "/") {
		tok = strings.ReplaceAll(strings.ReplaceAll(tok, "~1", "/"), "~0", "~")
		m, ok := cur.(map[string]any)
		if !ok {
			return nil
		}
		if cur, ok = m[tok]; !ok {
			return nil
		}
	}
	return cur
}

// resolve follows $ref until v is not a reference.
func (d *openAPIDoc) resolve(v any) any {
	for i := 0; i < 16; i++ {
		r, ok := obj(v)["$ref"].(string)
		if !ok {
			return v
		}
		v = d.pointer(r)
	}
	return v
}

var httpMethods = []string{"get", "put", "post", "delete", "options", "head", "patch", "trace"}

type docOperation struct {
	doc          *openAPIDoc
	method, path string
	item, obj    map[string]any
}

func (o *docOperation) key() string { return o.method + " " + o.path }

func (d *openAPIDoc) operations() []*docOperation {
	var out []*docOperation
	for path, item := range obj(d.root["paths"]) {
		for _, m := range httpMethods {
			if op, ok := obj(item)[m].(map[string]any); ok {
				out = append(out, &docOperation{doc: d, method: strings.ToUpper(m), path: path, item: obj(item), obj: op})
			}
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].key() < out[j].key() })
	return out
}

func (d *openAPIDoc) operation(method, path string) *docOperation {
	for _, op := range d.operations() {
		if op.method == method && op.path == path {
			return op
		}
	}
	return nil
}

// parameters are the path item's and the operation's, resolved.
func (o *docOperation) parameters() []map[string]any {
	var out []map[string]any
	for _, list := range []any{o.item["parameters"], o.obj["parameters"]} {
		ps, _ := list.([]any)
		for _, p := range ps {
			out = append(out, obj(o.doc.resolve(p)))
		}
	}
	return out
}

func (o *docOperation) parameter(name string) map[string]any {
	for _, p := range o.parameters() {
		if p["name"] == name {
			return p
		}
	}
	return nil
}

// parameterIn is the parameter named name in in (header names match
// case-insensitively).
func (o *docOperation) parameterIn(in, name string) map[string]any {
	for _, p := range o.parameters() {
		if n, _ := p["name"].(string); p["in"] == in && (n == name || in == "header" && strings.EqualFold(n, name)) {
			return p
		}
	}
	return nil
}

func (o *docOperation) requestMedia() map[string]any {
	return obj(obj(obj(o.doc.resolve(o.obj["requestBody"]))["content"])["application/json"])
}

func (o *docOperation) requestSchema() any { return o.requestMedia()["schema"] }

// requestExamples are the values of the request body's examples.
func (o *docOperation) requestExamples() map[string]any {
	out := map[string]any{}
	for name, ex := range obj(o.requestMedia()["examples"]) {
		out[name] = obj(o.doc.resolve(ex))["value"]
	}
	return out
}

// docResponse is a response object and the pointer it is found at.
type docResponse struct {
	ptr string
	obj map[string]any
}

func (o *docOperation) responses() map[string]docResponse {
	out := map[string]docResponse{}
	esc := strings.ReplaceAll(strings.ReplaceAll(o.path, "~", "~0"), "/", "~1")
	for status, r := range obj(o.obj["responses"]) {
		ptr := "#/paths/" + esc + "/" + strings.ToLower(o.method) + "/responses/" + status
		if ref, ok := obj(r)["$ref"].(string); ok {
			ptr = ref
		}
		out[status] = docResponse{ptr: ptr, obj: obj(o.doc.resolve(r))}
	}
	return out
}

func (d *openAPIDoc) componentResponse(name string) docResponse {
	ptr := "#/components/responses/" + name
	return docResponse{ptr: ptr, obj: obj(d.pointer(ptr))}
}

func exampleNames(r docResponse) map[string]bool {
	out := map[string]bool{}
	for _, media := range obj(r.obj["content"]) {
		for name := range obj(obj(media)["examples"]) {
			out[name] = true
		}
	}
	return out
}

func walkJSON(v any, f func(map[string]any)) {
	switch v := v.(type) {
	case map[string]any:
		f(v)
		for _, c := range v {
			walkJSON(c, f)
		}
	case []any:
		for _, c := range v {
			walkJSON(c, f)
		}
	}
}

// validate checks v against a JSON Schema, lite: $ref, type, enum,
// required, properties, additionalProperties, items, minItems/maxItems,
// minLength/maxLength, pattern, minimum/maximum, not, and the formats
// date-time and uri. It is strict where the document may not be loose: an
// object schema with properties must name every property a value has,
// unless additionalProperties says otherwise.
func (d *openAPIDoc) validate(schema, v any) []string {
	var out []string
	d.check(schema, v, "$", &out)
	return out
}

func (d *openAPIDoc) check(schema, v any, at string, out *[]string) {
	s := obj(d.resolve(schema))
	if s == nil {
		if schema != nil {
			*out = append(*out, fmt.Sprintf("%s: unresolvable schema %v", at, schema))
		}
		return
	}
	fail := func(format string, args ...any) { *out = append(*out, at+": "+fmt.Sprintf(format, args...)) }
	if typ, ok := s["type"]; ok {
		types, _ := typ.([]any)
		if str, ok := typ.(string); ok {
			types = []any{str}
		}
		match := false
		for _, t := range types {
			if schemaTypeOf(t.(string), v) {
				match = true
			}
		}
		if !match {
			fail("%s, want type %v", jsonKindOf(v), typ)
			return
		}
	}
	if enum, ok := s["enum"].([]any); ok && !slices.ContainsFunc(enum, func(e any) bool { return reflect.DeepEqual(e, v) }) {
		fail("%v is not one of %v", v, enum)
	}
	if anyOf := asSlice(s["anyOf"]); len(anyOf) > 0 && !slices.ContainsFunc(anyOf, func(sub any) bool {
		var msgs []string
		d.check(sub, v, at, &msgs)
		return len(msgs) == 0
	}) {
		fail("matches none of the schemas of anyOf (%v)", anyOf)
	}
	if not, ok := s["not"]; ok {
		var sub []string
		d.check(not, v, at, &sub)
		if len(sub) == 0 {
			fail("matches the schema it must not (%v)", not)
		}
	}
	switch v := v.(type) {
	case map[string]any:
		for _, r := range asSlice(s["required"]) {
			if _, ok := v[r.(string)]; !ok {
				fail("required property %q is missing", r)
			}
		}
		props := obj(s["properties"])
		for _, k := range slices.Sorted(mapKeys(v)) {
			if p, ok := props[k]; ok {
				d.check(p, v[k], at+"."+k, out)
				continue
			}
			switch ap := s["additionalProperties"].(type) {
			case map[string]any:
				d.check(ap, v[k], at+"."+k, out)
			case bool:
				if !ap {
					fail("property %q is not allowed", k)
				}
			default:
				if props != nil {
					fail("property %q is not documented", k)
				}
			}
		}
	case []any:
		if n, ok := s["minItems"].(float64); ok && float64(len(v)) < n {
			fail("%d items, want at least %v", len(v), n)
		}
		if n, ok := s["maxItems"].(float64); ok && float64(len(v)) > n {
			fail("%d items, want at most %v", len(v), n)
		}
		for i, item := range v {
			d.check(s["items"], item, fmt.Sprintf("%s[%d]", at, i), out)
		}
	case string:
		n := float64(utf8.RuneCountInString(v))
		if m, ok := s["minLength"].(float64); ok && n < m {
			fail("%q is shorter than %v", v, m)
		}
		if m, ok := s["maxLength"].(float64); ok && n > m {
			fail("%q is longer than %v", v, m)
		}
		if p, ok := s["pattern"].(string); ok {
			re, err := regexp.Compile(p)
			if err != nil {
				fail("pattern %q: %v", p, err)
			} else if !re.MatchString(v) {
				fail("%q does not match %s", v, p)
			}
		}
		switch s["format"] {
		case "date-time":
			if _, err := time.Parse(time.RFC3339, v); err != nil {
				fail("%q is not a date-time", v)
			}
		case "uri":
			if u, err := url.Parse(v); err != nil || u.Scheme == "" {
				fail("%q is not a URI", v)
			}
		}
	case float64:
		if m, ok := s["minimum"].(float64); ok && v < m {
			fail("%v is less than %v", v, m)
		}
		if m, ok := s["maximum"].(float64); ok && v > m {
			fail("%v is more than %v", v, m)
		}
	}
}

func asSlice(v any) []any { s, _ := v.([]any); return s }

func schemaTypeOf(t string, v any) bool {
	switch v := v.(type) {
	case map[string]any:
		return t == "object"
	case []any:
		return t == "array"
	case string:
		return t == "string"
	case bool:
		return t == "boolean"
	case nil:
		return t == "null"
	case float64:
		return t == "number" || t == "integer" && v == math.Trunc(v)
	}
	return false
}
