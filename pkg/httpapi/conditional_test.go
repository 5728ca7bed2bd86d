package httpapi_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/keyvend/keyvend/pkg/awstest"
	"github.com/keyvend/keyvend/pkg/caller"
	"github.com/keyvend/keyvend/pkg/policy"
)

// mallory may not describe anything: no rule names it.
const mallory = "arn:aws:iam::123456789012:user/mallory"

// call sends one request with a JSON body (none if "") and headers; a
// header value holding "\n" is sent as several values.
func call(h http.Handler, method, path, body string, headers map[string]string) *httptest.ResponseRecorder {
	r := httptest.NewRequest(method, path, strings.NewReader(body))
	if body != "" {
		r.Header.Set("Content-Type", jsonCT)
	}
	for k, v := range headers {
		for _, one := range strings.Split(v, "\n") {
			r.Header.Add(k, one)
		}
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w
}

// mustStatus fails the test now unless w has status.
func mustStatus(t *testing.T, w *httptest.ResponseRecorder, status int, what string) {
	t.Helper()
	if w.Code != status {
		t.Fatalf("%s: status %d, want %d: %s", what, w.Code, status, w.Body)
	}
}

// decodeBody decodes w's JSON body into v.
func decodeBody(t *testing.T, w *httptest.ResponseRecorder, v any) {
	t.Helper()
	if err := json.Unmarshal(w.Body.Bytes(), v); err != nil {
		t.Fatalf("body is not JSON: %v: %s", err, w.Body)
	}
}

// userView is the part of GET /v1/users/{name} (and of PUT grants' answer)
// these tests read.
type userView struct {
	User    string         `json:"user"`
	Grants  []policy.Grant `json:"grants"`
	Version int64          `json:"version"`
}

// vend creates user with one grant on site.example.com (expiresIn "" for
// none) and returns the create's access key id.
func vend(t *testing.T, h http.Handler, user, expiresIn string) string {
	t.Helper()
	body := map[string]any{"user": user, "grants": []policy.Grant{{Bucket: "site.example.com", Access: policy.ReadWrite}}, "reason": "conditional requests"}
	if expiresIn != "" {
		body["expires_in"] = expiresIn
	}
	b, _ := json.Marshal(body)
	w := call(h, "POST", "/v1/users", string(b), nil)
	mustStatus(t, w, http.StatusCreated, "create "+user)
	var res struct {
		AccessKeyID string `json:"access_key_id"`
	}
	decodeBody(t, w, &res)
	return res.AccessKeyID
}

// describe reads the user and checks that its ETag is its version, quoted.
func describe(t *testing.T, h http.Handler, user string) (userView, string) {
	t.Helper()
	w := call(h, "GET", "/v1/users/"+user, "", nil)
	mustStatus(t, w, http.StatusOK, "describe "+user)
	return etagged(t, w)
}

// etagged decodes a user answer and checks its ETag against its version.
func etagged(t *testing.T, w *httptest.ResponseRecorder) (userView, string) {
	t.Helper()
	var v userView
	decodeBody(t, w, &v)
	tag := w.Header().Get("ETag")
	if v.Version < 1 || tag != strconv.Quote(strconv.FormatInt(v.Version, 10)) {
		t.Fatalf("ETag %q, version %d: want the version (> 0), quoted", tag, v.Version)
	}
	return v, tag
}

const (
	siteRW   = `{"bucket":"site.example.com","access":"read-write"}`
	assetsRO = `{"bucket":"assets.example.com","access":"read-only"}`
	docsRO   = `{"bucket":"docs.example.com","access":"read-only"}`
)

func grantsBody(grants ...string) string { return `{"grants":[` + strings.Join(grants, ",") + `]}` }

func buckets(gs []policy.Grant) []string {
	var out []string
	for _, g := range gs {
		out = append(out, g.Bucket)
	}
	slices.Sort(out)
	return out
}

// TestETagIsTheVersion: GET /v1/users/{name} answers ETag "<version>"; a
// PUT grants answers the new version's ETag, which GET then agrees with.
func TestETagIsTheVersion(t *testing.T) {
	e := newAPI(t, caller.Static{ARN: testCaller})
	user := awstest.Name("etag")
	vend(t, e.h, user, "")
	v1, tag1 := describe(t, e.h, user)

	w := call(e.h, "PUT", "/v1/users/"+user+"/grants", grantsBody(siteRW, assetsRO), nil)
	mustStatus(t, w, http.StatusOK, "PUT grants")
	v2, tag2 := etagged(t, w)
	if v2.Version <= v1.Version || tag2 == tag1 {
		t.Errorf("after PUT grants: version %d ETag %s, before %d %s: want a later version", v2.Version, tag2, v1.Version, tag1)
	}
	if _, tag := describe(t, e.h, user); tag != tag2 {
		t.Errorf("GET after PUT: ETag %s, PUT answered %s", tag, tag2)
	}
}

// TestIfMatchGrants: PUT grants with the current ETag succeeds; with an
// older one it is a 412 problem and nothing changes; a malformed If-Match
// is a 400 before any AWS call.
func TestIfMatchGrants(t *testing.T) {
	e := newAPI(t, caller.Static{ARN: testCaller})
	user := awstest.Name("ifmatch")
	vend(t, e.h, user, "")
	_, old := describe(t, e.h, user)

	w := call(e.h, "PUT", "/v1/users/"+user+"/grants", grantsBody(siteRW, assetsRO), map[string]string{"If-Match": old})
	mustStatus(t, w, http.StatusOK, "PUT grants with the current ETag")
	_, current := etagged(t, w)

	e.calls.Reset()
	w = call(e.h, "PUT", "/v1/users/"+user+"/grants", grantsBody(docsRO), map[string]string{"If-Match": old})
	p := checkProblem(t, w, http.StatusPreconditionFailed, "precondition-failed")
	if !strings.Contains(p.Detail, user) {
		t.Errorf("412 detail %q does not name the user", p.Detail)
	}
	if writes := e.calls.Writes(); len(writes) != 0 {
		t.Errorf("a 412 wrote to AWS: %v", writes)
	}
	v, tag := describe(t, e.h, user)
	if got := buckets(v.Grants); !slices.Equal(got, []string{"assets.example.com", "site.example.com"}) || tag != current {
		t.Errorf("after the 412: grants on %v, ETag %s; want the PUT's (assets, site; %s)", got, tag, current)
	}

	for _, bad := range []string{`W/` + current, `*`, current + `, ` + current, current + "\n" + current, strings.Trim(current, `"`), `"x"`, `"0"`, `"-1"`, `"0` + strings.Trim(current, `"`) + `"`, `""`, `"1.0"`} {
		t.Run("If-Match "+bad, func(t *testing.T) {
			e.calls.Reset()
			w := call(e.h, "PUT", "/v1/users/"+user+"/grants", grantsBody(docsRO), map[string]string{"If-Match": bad})
			p := checkProblem(t, w, http.StatusBadRequest, "validation")
			if !slices.Equal(p.fields(), []string{"If-Match"}) {
				t.Errorf("fields %v, want [If-Match]", p.fields())
			}
			assertNoAWSCalls(t, e)
		})
	}
	if _, tag := describe(t, e.h, user); tag != current {
		t.Errorf("after the malformed If-Match: ETag %s, want %s", tag, current)
	}
}

// TestIfMatchDelete: DELETE with an old ETag is a 412 and the user stays;
// a malformed one is a 400; the current one deletes it.
func TestIfMatchDelete(t *testing.T) {
	e := newAPI(t, caller.Static{ARN: testCaller})
	user := awstest.Name("ifmatch-del")
	vend(t, e.h, user, "")
	_, old := describe(t, e.h, user)
	w := call(e.h, "PUT", "/v1/users/"+user+"/grants", grantsBody(siteRW, assetsRO), nil)
	mustStatus(t, w, http.StatusOK, "PUT grants")
	_, current := etagged(t, w)

	e.calls.Reset()
	w = call(e.h, "DELETE", "/v1/users/"+user, "", map[string]string{"If-Match": old})
	checkProblem(t, w, http.StatusPreconditionFailed, "precondition-failed")
	if writes := e.calls.Writes(); len(writes) != 0 {
		t.Errorf("a 412 wrote to AWS: %v", writes)
	}
	if _, tag := describe(t, e.h, user); tag != current {
		t.Errorf("after the 412: ETag %s, want %s (unchanged)", tag, current)
	}

	e.calls.Reset()
	w = call(e.h, "DELETE", "/v1/users/"+user, "", map[string]string{"If-Match": "W/" + current})
	if p := checkProblem(t, w, http.StatusBadRequest, "validation"); !slices.Equal(p.fields(), []string{"If-Match"}) {
		t.Errorf("fields %v, want [If-Match]", p.fields())
	}
	assertNoAWSCalls(t, e)
	describe(t, e.h, user)

	w = call(e.h, "DELETE", "/v1/users/"+user, "", map[string]string{"If-Match": current})
	mustStatus(t, w, http.StatusNoContent, "DELETE with the current ETag")
	checkProblem(t, call(e.h, "GET", "/v1/users/"+user, "", nil), http.StatusNotFound, "not-found")
}

// historyPage is GET /v1/users/{name}/history's answer.
type historyPage struct {
	User    string `json:"user"`
	Entries []struct {
		User        string         `json:"user"`
		Action      string         `json:"action"`
		Principal   string         `json:"principal"`
		RequestID   string         `json:"request_id"`
		Result      string         `json:"result"`
		At          time.Time      `json:"at"`
		Before      []policy.Grant `json:"grants_before"`
		After       []policy.Grant `json:"grants_after"`
		AccessKeyID string         `json:"access_key_id"`
	} `json:"entries"`
	Next string `json:"next"`
}

func (p historyPage) actions() []string {
	var out []string
	for _, e := range p.Entries {
		out = append(out, e.Action)
	}
	return out
}

func history(t *testing.T, h http.Handler, user, query string) historyPage {
	t.Helper()
	w := call(h, "GET", "/v1/users/"+user+"/history"+query, "", nil)
	mustStatus(t, w, http.StatusOK, "history "+query)
	var p historyPage
	decodeBody(t, w, &p)
	return p
}

// TestHistory: after create, update and rotate, the history lists them
// newest first with who, what and which key; it pages with limit and next;
// a changed or foreign token and a bad limit are 400s; a principal that
// may not describe the user is told it does not exist, before and after
// the user is deleted, while its requester still reads it.
func TestHistory(t *testing.T) {
	e := newAPI(t, caller.Static{ARN: testCaller})
	user := awstest.Name("history")
	created := vend(t, e.h, user, "")
	w := call(e.h, "PUT", "/v1/users/"+user+"/grants", grantsBody(siteRW, assetsRO), nil)
	mustStatus(t, w, http.StatusOK, "PUT grants")
	w = call(e.h, "POST", "/v1/users/"+user+"/rotate", "", nil)
	mustStatus(t, w, http.StatusOK, "rotate")
	var rotated struct {
		AccessKeyID string `json:"access_key_id"`
	}
	decodeBody(t, w, &rotated)

	all := history(t, e.h, user, "")
	if got := all.actions(); !slices.Equal(got, []string{"rotate", "update", "create"}) || all.User != user || all.Next != "" {
		t.Fatalf("history: user %q actions %v next %q; want %s [rotate update create] and no next", all.User, got, all.Next, user)
	}
	for i, en := range all.Entries {
		if en.User != user || en.Principal != testCaller || en.Result != "ok" || en.RequestID == "" || en.At.IsZero() {
			t.Errorf("entry %d: %+v", i, en)
		}
		if i > 0 && en.At.After(all.Entries[i-1].At) {
			t.Errorf("entry %d (%s) is newer than entry %d", i, en.At, i-1)
		}
	}
	rot, upd, cre := all.Entries[0], all.Entries[1], all.Entries[2]
	if rot.AccessKeyID != rotated.AccessKeyID || cre.AccessKeyID != created {
		t.Errorf("keys: rotate %s (want %s), create %s (want %s)", rot.AccessKeyID, rotated.AccessKeyID, cre.AccessKeyID, created)
	}
	if !slices.Equal(buckets(upd.Before), []string{"site.example.com"}) || !slices.Equal(buckets(upd.After), []string{"assets.example.com", "site.example.com"}) {
		t.Errorf("update: grants %v → %v", upd.Before, upd.After)
	}
	if len(cre.Before) != 0 || !slices.Equal(buckets(cre.After), []string{"site.example.com"}) {
		t.Errorf("create: grants %v → %v", cre.Before, cre.After)
	}

	// One entry a page, following next.
	var paged []string
	var tokens []string
	q := "?limit=1"
	for range 5 {
		p := history(t, e.h, user, q)
		if len(p.Entries) > 1 {
			t.Fatalf("limit=1 answered %d entries", len(p.Entries))
		}
		paged = append(paged, p.actions()...)
		if p.Next == "" {
			break
		}
		tokens = append(tokens, p.Next)
		q = "?limit=1&next=" + url.QueryEscape(p.Next)
	}
	if !slices.Equal(paged, all.actions()) {
		t.Errorf("paged with limit=1: %v, want %v", paged, all.actions())
	}
	if len(tokens) == 0 {
		t.Fatal("no next token")
	}

	// A changed token, another user's, the list's: 400 naming next.
	tok := tokens[0]
	changed := tamper(tok)
	otherUser := awstest.Name("history-other")
	vend(t, e.h, otherUser, "")
	call(e.h, "POST", "/v1/users/"+otherUser+"/rotate", "", nil)
	otherTok := history(t, e.h, otherUser, "?limit=1").Next
	w = call(e.h, "GET", "/v1/users?limit=1", "", nil)
	mustStatus(t, w, http.StatusOK, "list")
	var lst struct{ Next string }
	decodeBody(t, w, &lst)
	for name, bad := range map[string]string{"changed": changed, "another user's": otherTok, "the list's": lst.Next, "not a token": "djE6"} {
		t.Run("next "+name, func(t *testing.T) {
			if bad == "" {
				t.Fatal("no token to send")
			}
			w := call(e.h, "GET", "/v1/users/"+user+"/history?limit=1&next="+url.QueryEscape(bad), "", nil)
			if p := checkProblem(t, w, http.StatusBadRequest, "validation"); !slices.Equal(p.fields(), []string{"next"}) {
				t.Errorf("fields %v, want [next]", p.fields())
			}
		})
	}
	// And a history token is no list token.
	w = call(e.h, "GET", "/v1/users?limit=1&next="+url.QueryEscape(tok), "", nil)
	if p := checkProblem(t, w, http.StatusBadRequest, "validation"); !slices.Equal(p.fields(), []string{"next"}) {
		t.Errorf("list with a history token: fields %v, want [next]", p.fields())
	}
	for _, limit := range []string{"0", "-1", "101", "x", ""} {
		t.Run("limit="+limit, func(t *testing.T) {
			w := call(e.h, "GET", "/v1/users/"+user+"/history?limit="+limit, "", nil)
			if p := checkProblem(t, w, http.StatusBadRequest, "validation"); !slices.Equal(p.fields(), []string{"limit"}) {
				t.Errorf("fields %v, want [limit]", p.fields())
			}
		})
	}

	// mallory may not describe the user: its history does not exist for it.
	other := newAPI(t, caller.Static{ARN: mallory})
	checkProblem(t, call(other.h, "GET", "/v1/users/"+user, "", nil), http.StatusNotFound, "not-found")
	checkProblem(t, call(other.h, "GET", "/v1/users/"+user+"/history", "", nil), http.StatusNotFound, "not-found")

	// Deleted: the requester still reads the history, delete first; mallory not.
	mustStatus(t, call(e.h, "DELETE", "/v1/users/"+user, "", nil), http.StatusNoContent, "delete")
	gone := history(t, e.h, user, "")
	if got := gone.actions(); !slices.Equal(got, []string{"delete", "rotate", "update", "create"}) {
		t.Errorf("history of the deleted user: %v", got)
	}
	checkProblem(t, call(other.h, "GET", "/v1/users/"+user+"/history", "", nil), http.StatusNotFound, "not-found")
	checkProblem(t, call(e.h, "GET", "/v1/users/never-"+user+"/history", "", nil), http.StatusNotFound, "not-found")
}

// TestListExpiringBefore: expiring_before keeps the users that expire
// before it (not those that never do); anything but an RFC 3339 time is a
// 400. Summaries carry state and version (the user's ETag); a changed
// page token, or one sent with another limit, is a 400 naming next.
func TestListExpiringBefore(t *testing.T) {
	e := newAPI(t, caller.Static{ARN: testCaller})
	soon, later, never := awstest.Name("exp-soon"), awstest.Name("exp-later"), awstest.Name("exp-never")
	vend(t, e.h, soon, "1h")
	vend(t, e.h, later, "240h")
	vend(t, e.h, never, "")

	type summary struct {
		User    string `json:"user"`
		State   string `json:"state"`
		Version int64  `json:"version"`
	}
	list := func(query string) ([]summary, string) {
		t.Helper()
		w := call(e.h, "GET", "/v1/users"+query, "", nil)
		mustStatus(t, w, http.StatusOK, "list "+query)
		var res struct {
			Users []summary `json:"users"`
			Next  string    `json:"next"`
		}
		decodeBody(t, w, &res)
		return res.Users, res.Next
	}
	names := func(us []summary) []string {
		var out []string
		for _, u := range us {
			out = append(out, u.User)
		}
		slices.Sort(out)
		return out
	}
	sorted := func(s ...string) []string { slices.Sort(s); return s }
	at := func(d time.Duration) string { return url.QueryEscape(time.Now().Add(d).UTC().Format(time.RFC3339)) }

	if got := names(must(list("?expiring_before=" + at(24*time.Hour)))); !slices.Equal(got, []string{soon}) {
		t.Errorf("expiring within a day: %v, want [%s]", got, soon)
	}
	if got := names(must(list("?expiring_before=" + at(1000*time.Hour)))); !slices.Equal(got, sorted(soon, later)) {
		t.Errorf("expiring within 1000h: %v, want %v", got, sorted(soon, later))
	}
	if got := names(must(list("?expiring_before=" + at(-time.Hour)))); len(got) != 0 {
		t.Errorf("expired an hour ago: %v, want none", got)
	}
	everyone := must(list(""))
	if got := names(everyone); !slices.Equal(got, sorted(soon, later, never)) {
		t.Errorf("no filter: %v", got)
	}
	for _, u := range everyone {
		if _, tag := describe(t, e.h, u.User); u.State != "ready" || tag != fmt.Sprintf(`"%d"`, u.Version) {
			t.Errorf("%s: state %q version %d, ETag %s", u.User, u.State, u.Version, tag)
		}
	}
	// By bucket (the per-bucket summaries) too.
	for _, u := range must(list("?bucket=site.example.com")) {
		if u.State != "ready" || u.Version < 1 {
			t.Errorf("by bucket, %s: state %q version %d", u.User, u.State, u.Version)
		}
	}

	for _, bad := range []string{"tomorrow", "2030-01-02", "2030-01-02T15:04:05", "1767225600", ""} {
		t.Run("expiring_before="+bad, func(t *testing.T) {
			w := call(e.h, "GET", "/v1/users?expiring_before="+url.QueryEscape(bad), "", nil)
			if p := checkProblem(t, w, http.StatusBadRequest, "validation"); !slices.Equal(p.fields(), []string{"expiring_before"}) {
				t.Errorf("fields %v, want [expiring_before]", p.fields())
			}
		})
	}

	_, next := list("?limit=1")
	if next == "" {
		t.Fatal("limit=1 over three users: no next")
	}
	changed := tamper(next)
	for name, q := range map[string]string{
		"changed":       "?limit=1&next=" + url.QueryEscape(changed),
		"another limit": "?limit=2&next=" + url.QueryEscape(next),
		"another query": "?limit=1&bucket=site.example.com&next=" + url.QueryEscape(next),
	} {
		t.Run("next "+name, func(t *testing.T) {
			w := call(e.h, "GET", "/v1/users"+q, "", nil)
			if p := checkProblem(t, w, http.StatusBadRequest, "validation"); !slices.Equal(p.fields(), []string{"next"}) {
				t.Errorf("fields %v, want [next]", p.fields())
			}
		})
	}
	if got, _ := list("?limit=1&next=" + url.QueryEscape(next)); len(got) != 1 {
		t.Errorf("the real next page: %v", got)
	}
}

func must[T any](v T, _ string) T { return v }

// tamper changes one character in the middle of a page token's sealed
// body (not its last: base64 ignores a last character's spare bits).
func tamper(tok string) string {
	b := []byte(tok)
	i := strings.IndexByte(tok, '.') / 2
	if b[i] == 'A' {
		b[i] = 'B'
	} else {
		b[i] = 'A'
	}
	return string(b)
}
