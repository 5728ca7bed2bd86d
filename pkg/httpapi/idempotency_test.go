package httpapi_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"

	"github.com/keyvend/keyvend/pkg/awstest"
	"github.com/keyvend/keyvend/pkg/caller"
	"github.com/keyvend/keyvend/pkg/httpapi"
	"github.com/keyvend/keyvend/pkg/idempotency"
	"github.com/keyvend/keyvend/pkg/provisiontest"
	"github.com/keyvend/keyvend/pkg/state"
)

// idemEnv is the API with idempotency keys in a fresh state table on the
// shared moto; the provisiontest.Env reads moto directly, calls records the
// service's calls.
type idemEnv struct {
	*provisiontest.Env
	store *idempotency.Store
	calls *awstest.Recorder
	log   *slog.Logger
}

// newIdemEnv builds the service; instrument, when given, adjusts the
// service's AWS configuration (hooks, faults).
func newIdemEnv(t *testing.T, instrument func(*aws.Config)) *idemEnv {
	t.Helper()
	cfg := awstest.Config(t, awstest.Shared(t).URL)
	db := dynamodb.NewFromConfig(cfg)
	table := awstest.Name("idem")
	if err := state.CreateTable(context.Background(), db, table); err != nil {
		t.Fatal(err)
	}
	store, err := idempotency.New(db, table)
	if err != nil {
		t.Fatal(err)
	}
	e := &idemEnv{store: store, calls: &awstest.Recorder{}, log: slog.New(slog.NewJSONHandler(io.Discard, nil))}
	attach := []func(*aws.Config){e.calls.Attach}
	if instrument != nil {
		attach = append(attach, instrument)
	}
	// records and keys share the table, as in keyvend serve
	e.Env = provisiontest.New(t, provisiontest.Instrument(attach...), provisiontest.Logger(e.log), provisiontest.Table(table))
	return e
}

// handler is the API for callers from who, with the store.
func (e *idemEnv) handler(who caller.Resolver) http.Handler {
	return httpapi.New(e.Service, who, e.log, httpapi.WithIdempotency(e.store))
}

// sendKeyed sends a request with Idempotency-Key values (none: no header).
func sendKeyed(h http.Handler, method, path, body string, keys ...string) *httptest.ResponseRecorder {
	var r *http.Request
	if body == "" {
		r = httptest.NewRequest(method, path, nil)
	} else {
		r = httptest.NewRequest(method, path, strings.NewReader(body))
		r.Header.Set("Content-Type", jsonCT)
	}
	for _, k := range keys {
		r.Header.Add("Idempotency-Key", k)
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w
}

func replayed(w *httptest.ResponseRecorder) bool {
	return w.Header().Get("Idempotency-Replayed") == "true"
}

func createJSON(user string) string {
	return `{"user":"` + user + `","grants":[{"bucket":"site.example.com","access":"read-write"}],"reason":"idempotency"}`
}

// TestIdempotentCreate: a second POST with the same key and the same body
// (whitespace aside) is the first's answer — 201, its body and Location —
// marked replayed, with its own request id, and makes no AWS call: no
// second user or key.
func TestIdempotentCreate(t *testing.T) {
	e := newIdemEnv(t, nil)
	h := e.handler(caller.Static{ARN: testCaller})
	user := awstest.Name("idem-create")
	first := sendKeyed(h, "POST", "/v1/users", createJSON(user), "create-"+user)
	if first.Code != http.StatusCreated || replayed(first) {
		t.Fatalf("first: %d replayed=%v %s", first.Code, replayed(first), first.Body)
	}
	e.calls.Reset()
	spaced := strings.ReplaceAll(strings.ReplaceAll(createJSON(user), ",", ",\n  "), ":", ": ")
	again := sendKeyed(h, "POST", "/v1/users", spaced, "create-"+user)
	if again.Code != http.StatusCreated || !replayed(again) {
		t.Fatalf("again: %d replayed=%v %s", again.Code, replayed(again), again.Body)
	}
	if again.Body.String() != first.Body.String() {
		t.Errorf("replayed body differs:\n%s\n%s", first.Body, again.Body)
	}
	for _, name := range []string{"Location", "Content-Type", "Cache-Control", "X-Content-Type-Options"} {
		if got, want := again.Header().Get(name), first.Header().Get(name); got != want || want == "" {
			t.Errorf("replayed %s = %q, first %q", name, got, want)
		}
	}
	if id := again.Header().Get("X-Request-Id"); id == "" || id == first.Header().Get("X-Request-Id") {
		t.Errorf("replay X-Request-Id %q: want its own", id)
	}
	if calls := e.calls.Calls(); len(calls) != 0 {
		t.Errorf("the replay made AWS calls: %v", calls)
	}
	if keys := e.Keys(t, user); len(keys) != 1 {
		t.Errorf("user has keys %v, want one", keys)
	}
	// The answer never holds the secret access key.
	var res map[string]any
	if err := json.Unmarshal(first.Body.Bytes(), &res); err != nil {
		t.Fatal(err)
	}
	for k := range res {
		if strings.Contains(strings.ToLower(k), "secret_access") {
			t.Errorf("the answer holds %s", k)
		}
	}
}

// TestIdempotentRotate: a second rotate with the same key does not rotate
// again: the key in IAM is the one the first rotate made, and the answer
// is the first's. Another key rotates.
func TestIdempotentRotate(t *testing.T) {
	e := newIdemEnv(t, nil)
	h := e.handler(caller.Static{ARN: testCaller})
	user := awstest.Name("idem-rotate")
	if w := sendKeyed(h, "POST", "/v1/users", createJSON(user)); w.Code != http.StatusCreated {
		t.Fatalf("create: %d %s", w.Code, w.Body)
	}
	first := sendKeyed(h, "POST", "/v1/users/"+user+"/rotate", "", "rotate-1")
	if first.Code != http.StatusOK {
		t.Fatalf("rotate: %d %s", first.Code, first.Body)
	}
	var r1 struct {
		AccessKeyID string `json:"access_key_id"`
	}
	if err := json.Unmarshal(first.Body.Bytes(), &r1); err != nil || r1.AccessKeyID == "" {
		t.Fatalf("rotate answer %s: %v", first.Body, err)
	}
	e.calls.Reset()
	again := sendKeyed(h, "POST", "/v1/users/"+user+"/rotate", "", "rotate-1")
	if again.Code != http.StatusOK || !replayed(again) || again.Body.String() != first.Body.String() {
		t.Errorf("second rotate with the key: %d replayed=%v %s", again.Code, replayed(again), again.Body)
	}
	if n := e.calls.Count("CreateAccessKey"); n != 0 {
		t.Errorf("the second rotate with the same key called CreateAccessKey %d times", n)
	}
	// The first rotate's key, and the one it replaced, kept for its grace.
	if keys := e.Keys(t, user); len(keys) != 2 || !slices.Contains(keys, r1.AccessKeyID) {
		t.Errorf("keys in IAM %v, want the first rotate's %s and the previous one", keys, r1.AccessKeyID)
	}
	// A new key is a new rotate.
	other := sendKeyed(h, "POST", "/v1/users/"+user+"/rotate", "", "rotate-2")
	if other.Code != http.StatusOK || replayed(other) {
		t.Fatalf("rotate with another key: %d replayed=%v %s", other.Code, replayed(other), other.Body)
	}
	if keys := e.Keys(t, user); len(keys) != 2 || !slices.Contains(keys, r1.AccessKeyID) {
		t.Errorf("keys in IAM %v after a rotate with another key, want its key and the first rotate's %s in its grace", keys, r1.AccessKeyID)
	}
	// DELETE: the replay is the first's 204, not a 404.
	if w := sendKeyed(h, "DELETE", "/v1/users/"+user, "", "delete-1"); w.Code != http.StatusNoContent || replayed(w) {
		t.Fatalf("delete: %d %s", w.Code, w.Body)
	}
	if w := sendKeyed(h, "DELETE", "/v1/users/"+user, "", "delete-1"); w.Code != http.StatusNoContent || !replayed(w) || w.Body.Len() != 0 {
		t.Errorf("delete again: %d replayed=%v %s", w.Code, replayed(w), w.Body)
	}
}

// TestIdempotencyKeyReusedForAnotherRequest: the same key with another
// body, path, query or method is 422 and acts on nothing.
func TestIdempotencyKeyReusedForAnotherRequest(t *testing.T) {
	e := newIdemEnv(t, nil)
	h := e.handler(caller.Static{ARN: testCaller})
	user := awstest.Name("idem-mismatch")
	if w := sendKeyed(h, "POST", "/v1/users", createJSON(user), "k1"); w.Code != http.StatusCreated {
		t.Fatalf("create: %d %s", w.Code, w.Body)
	}
	e.calls.Reset()
	cases := []struct{ method, path, body string }{
		{"POST", "/v1/users", createJSON(user + "-other")},
		{"POST", "/v1/users", strings.Replace(createJSON(user), "read-write", "read-only", 1)},
		{"POST", "/v1/users/" + user + "/rotate", ""},
		{"PUT", "/v1/users/" + user + "/grants", `{"grants":[{"bucket":"site.example.com","access":"read-only"}]}`},
		{"DELETE", "/v1/users/" + user, ""},
		{"DELETE", "/v1/users/" + user + "?force=true", ""},
	}
	for _, c := range cases {
		w := sendKeyed(h, c.method, c.path, c.body, "k1")
		p := checkProblem(t, w, http.StatusUnprocessableEntity, "idempotency-key-reused")
		if !strings.Contains(p.Detail, "Idempotency-Key") {
			t.Errorf("%s %s: detail %q", c.method, c.path, p.Detail)
		}
	}
	if calls := e.calls.Calls(); len(calls) != 0 {
		t.Errorf("a reused key made AWS calls: %v", calls)
	}
	// The query is part of the request too: delete ?force=false vs none.
	if w := sendKeyed(h, "DELETE", "/v1/users/"+user+"?force=false", "", "k2"); w.Code != http.StatusNoContent {
		t.Fatalf("delete: %d %s", w.Code, w.Body)
	}
	checkProblem(t, sendKeyed(h, "DELETE", "/v1/users/"+user, "", "k2"), http.StatusUnprocessableEntity, "idempotency-key-reused")

	// So is If-Match: the same key with another version precondition is
	// another request, not a replay of the first answer.
	other := awstest.Name("idem-ifmatch")
	if w := sendKeyed(h, "POST", "/v1/users", createJSON(other), "k3"); w.Code != http.StatusCreated {
		t.Fatalf("create: %d %s", w.Code, w.Body)
	}
	grantsBody := `{"grants":[{"bucket":"site.example.com","access":"read-only"}]}`
	put := func(ifMatch string) *httptest.ResponseRecorder {
		r := httptest.NewRequest("PUT", "/v1/users/"+other+"/grants", strings.NewReader(grantsBody))
		r.Header.Set("Content-Type", jsonCT)
		r.Header.Set("Idempotency-Key", "k4")
		r.Header.Set("If-Match", ifMatch)
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		return w
	}
	if w := put(`"1"`); w.Code != http.StatusPreconditionFailed {
		t.Fatalf("PUT with a stale If-Match: %d %s", w.Code, w.Body)
	}
	checkProblem(t, put(`"2"`), http.StatusUnprocessableEntity, "idempotency-key-reused")
}

// sessions resolves every request as the role testCaller names, in the
// session the request's X-Test-Session header names (test only: keyvend's
// resolvers never read a header).
type sessions struct{}

func (sessions) Principal(r *http.Request) (caller.Principal, error) {
	s := r.Header.Get("X-Test-Session")
	return caller.Principal{ID: testCaller, Raw: s, Session: s}, nil
}

// TestIdempotencyKeysArePerPrincipal: a key is the requester's own (an
// assumed-role session's, not its role's): the same key from another
// caller neither replays the first's answer nor is a reuse.
func TestIdempotencyKeysArePerPrincipal(t *testing.T) {
	e := newIdemEnv(t, nil)
	h := e.handler(sessions{})
	send := func(session, user string) *httptest.ResponseRecorder {
		r := httptest.NewRequest("POST", "/v1/users", strings.NewReader(createJSON(user)))
		r.Header.Set("Content-Type", jsonCT)
		r.Header.Set("Idempotency-Key", "shared-key")
		r.Header.Set("X-Test-Session", session)
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		return w
	}
	alice, bob := "arn:aws:sts::123456789012:assumed-role/deployer/alice", "arn:aws:sts::123456789012:assumed-role/deployer/bob"
	u1, u2 := awstest.Name("idem-alice"), awstest.Name("idem-bob")
	if w := send(alice, u1); w.Code != http.StatusCreated || replayed(w) {
		t.Fatalf("alice: %d %s", w.Code, w.Body)
	}
	if w := send(bob, u2); w.Code != http.StatusCreated || replayed(w) {
		t.Errorf("bob, the same key, another body: %d replayed=%v %s", w.Code, replayed(w), w.Body)
	}
	if w := send(bob, u2); w.Code != http.StatusCreated || !replayed(w) || !strings.Contains(w.Body.String(), u2) {
		t.Errorf("bob again: %d replayed=%v %s", w.Code, replayed(w), w.Body)
	}
	if w := send(alice, u1); w.Code != http.StatusCreated || !replayed(w) || !strings.Contains(w.Body.String(), u1) {
		t.Errorf("alice again: %d replayed=%v %s", w.Code, replayed(w), w.Body)
	}
}

// TestIdempotencyKeyInvalid: a key that is empty, too long, not printable
// ASCII, or given twice is a 400 naming the header, before any AWS call.
func TestIdempotencyKeyInvalid(t *testing.T) {
	e := newIdemEnv(t, nil)
	h := e.handler(caller.Static{ARN: testCaller})
	user := awstest.Name("idem-bad")
	for _, keys := range [][]string{{""}, {strings.Repeat("k", 256)}, {"tab\tkey"}, {"clé"}, {"a", "b"}, {"a", "a"}} {
		w := sendKeyed(h, "POST", "/v1/users", createJSON(user), keys...)
		p := checkProblem(t, w, http.StatusBadRequest, "validation")
		if f := p.fields(); len(f) != 1 || f[0] != "Idempotency-Key" {
			t.Errorf("keys %q: fields %v", keys, f)
		}
	}
	if w := sendKeyed(h, "POST", "/v1/users", createJSON(user), strings.Repeat("k", 255)); w.Code != http.StatusCreated {
		t.Errorf("a 255-character key: %d %s", w.Code, w.Body)
	}
	if n := e.calls.Count("CreateUser"); n != 1 {
		t.Errorf("CreateUser called %d times, want 1", n)
	}
}

// TestIdempotencyInProgress: while a request holds its key, the same
// request again is 409 in-progress with Retry-After: 2, and acts on
// nothing; once the first is done, it is the first's answer.
func TestIdempotencyInProgress(t *testing.T) {
	entered, release := make(chan struct{}), make(chan struct{})
	var armed, held atomic.Bool // the rotate's CreateAccessKey waits, the create's does not
	e := newIdemEnv(t, func(cfg *aws.Config) {
		awstest.BeforeSend(cfg, "CreateAccessKey", func(context.Context) {
			if armed.Load() && held.CompareAndSwap(false, true) {
				close(entered)
				<-release
			}
		})
	})
	h := e.handler(caller.Static{ARN: testCaller})
	user := awstest.Name("idem-busy")
	if w := sendKeyed(h, "POST", "/v1/users", createJSON(user)); w.Code != http.StatusCreated {
		t.Fatalf("create: %d %s", w.Code, w.Body)
	}
	armed.Store(true)
	done := make(chan *httptest.ResponseRecorder)
	go func() { done <- sendKeyed(h, "POST", "/v1/users/"+user+"/rotate", `{"wait":false}`, "busy") }()
	select {
	case <-entered:
	case <-time.After(30 * time.Second):
		t.Fatal("the rotate never reached CreateAccessKey")
	}
	second := make(chan *httptest.ResponseRecorder, 1)
	go func() { second <- sendKeyed(h, "POST", "/v1/users/"+user+"/rotate", `{ "wait": false }`, "busy") }()
	var w *httptest.ResponseRecorder
	select {
	case w = <-second:
	case <-time.After(10 * time.Second):
		close(release)
		t.Fatal("the same request with the key waited for the first instead of answering in-progress")
	}
	checkProblem(t, w, http.StatusConflict, "in-progress")
	if ra := w.Header().Get("Retry-After"); ra != "2" {
		t.Errorf("Retry-After = %q, want 2", ra)
	}
	close(release)
	first := <-done
	if first.Code != http.StatusOK {
		t.Fatalf("the first rotate: %d %s", first.Code, first.Body)
	}
	if n := e.calls.Count("CreateAccessKey"); n != 2 { // the create's and the one rotate's
		t.Errorf("CreateAccessKey called %d times, want 2", n)
	}
	if w := sendKeyed(h, "POST", "/v1/users/"+user+"/rotate", `{"wait":false}`, "busy"); !replayed(w) || w.Body.String() != first.Body.String() {
		t.Errorf("after the first finished: %d replayed=%v %s", w.Code, replayed(w), w.Body)
	}
}

// TestIdempotencyFailuresAreNotStored: a 5xx is not kept: the same
// request with the same key acts again, and can succeed.
func TestIdempotencyFailuresAreNotStored(t *testing.T) {
	faults := &awstest.Faults{}
	e := newIdemEnv(t, faults.Attach)
	h := e.handler(caller.Static{ARN: testCaller})
	user := awstest.Name("idem-fail")
	if w := sendKeyed(h, "POST", "/v1/users", createJSON(user)); w.Code != http.StatusCreated {
		t.Fatalf("create: %d %s", w.Code, w.Body)
	}
	faults.FailNthWith("CreateAccessKey", 0, "ServiceFailure")
	w := sendKeyed(h, "POST", "/v1/users/"+user+"/rotate", "", "flaky")
	if w.Code < 500 || replayed(w) {
		t.Fatalf("rotate with a failing IAM: %d %s", w.Code, w.Body)
	}
	faults.Clear()
	if w := sendKeyed(h, "POST", "/v1/users/"+user+"/rotate", "", "flaky"); w.Code != http.StatusOK || replayed(w) {
		t.Errorf("the retry: %d replayed=%v %s", w.Code, replayed(w), w.Body)
	}
	if w := sendKeyed(h, "POST", "/v1/users/"+user+"/rotate", "", "flaky"); w.Code != http.StatusOK || !replayed(w) {
		t.Errorf("the retry's retry: %d replayed=%v %s", w.Code, replayed(w), w.Body)
	}
}

// TestIdempotencyKeyWithoutStore: a keyed request to a keyvend with no
// state table is refused (500 naming KEYVEND_TABLE) rather than acted on
// without the guarantee; unkeyed requests and reads are served.
func TestIdempotencyKeyWithoutStore(t *testing.T) {
	e := newAPI(t, caller.Static{ARN: testCaller})
	w := sendKeyed(e.h, "POST", "/v1/users", createJSON(awstest.Name("idem-nostore")), "k")
	p := checkProblem(t, w, http.StatusInternalServerError, "internal")
	if !strings.Contains(p.Detail, "KEYVEND_TABLE") {
		t.Errorf("detail %q does not name KEYVEND_TABLE", p.Detail)
	}
	assertNoAWSCalls(t, e)
	if w := sendKeyed(e.h, "GET", "/v1/openapi.json", "", "k"); w.Code != http.StatusOK {
		t.Errorf("a GET with a key: %d", w.Code)
	}
}
