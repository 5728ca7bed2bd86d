package httpapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/keyvend/keyvend/pkg/policy"
	"github.com/keyvend/keyvend/pkg/policy/policytest"
	"github.com/keyvend/keyvend/pkg/provision"
)

// createKeys are the JSON names of provision.CreateRequest.
var createKeys = map[string]bool{"user": true, "grants": true, "reason": true, "expires_in": true, "expires_at": true, "wait": true}

// FuzzDecodeCreate feeds arbitrary bodies (and Content-Types) to the
// create endpoint's decoding and the request validation, the two steps
// before any AWS call. Nothing panics; a refused body is a 400, 413 or 415
// problem; a decoded request is either refused with named fields or valid,
// and a valid request is within IAM's limits and every grant's policy
// keeps keyvend's contract (policytest.CheckDocument). Seeds:
// testdata/fuzz/FuzzDecodeCreate.
func FuzzDecodeCreate(f *testing.F) {
	f.Add([]byte(`{"user":"blog-deployer","grants":[{"bucket":"site.example.com","access":"read-write","prefix":""}],"reason":"blog deploys","expires_in":"720h","wait":true}`), "application/json")
	f.Add([]byte(`{"user":"a","grants":[{"bucket":"assets.example.com","access":"write-only","prefix":"img/"}],"reason":"x","expires_at":"2030-01-02T15:04:05Z"}`), "application/json; charset=utf-8")
	f.Add([]byte(`{"user":"a","grants":[{"bucket":"b.example.com","access":"full","prefix":"a*"}],"reason":"x"}`), "application/json")
	f.Add([]byte(`{"user":"a","grants":[],"reason":"x","extra":1}`), "application/json")
	f.Add([]byte(`{"user":"a"} {"user":"b"}`), "application/json")
	f.Add([]byte(`[1,2]`), "application/json")
	f.Add([]byte(`{"user":"a"}`), "text/plain")
	// Keys that encoding/json alone would accept: duplicates, case and
	// Unicode folds (ſ U+017F, the Kelvin sign U+212A).
	f.Add([]byte(`{"user":"a","user":"b","grants":[{"bucket":"b.example.com","access":"read-only"}],"reason":"x"}`), "application/json")
	f.Add([]byte(`{"User":"a","grants":[{"bucket":"b.example.com","access":"read-only","access":"full"}],"rea`+"\u017f"+`on":"x"}`), "application/json")
	f.Add([]byte(`{"user":"a","grants":[{"buc`+"\u212a"+`et":"b.example.com","access":"read-only"}],"reason":"x"}`), "application/json")
	f.Fuzz(func(t *testing.T, body []byte, contentType string) {
		r := httptest.NewRequest(http.MethodPost, "/v1/users", bytes.NewReader(body))
		r.Header.Set("Content-Type", contentType)
		w := httptest.NewRecorder()
		var req provision.CreateRequest
		if p := decodeJSON(w, r, &req); p != nil {
			switch p.Status {
			case http.StatusBadRequest, http.StatusRequestEntityTooLarge, http.StatusUnsupportedMediaType:
			default:
				t.Fatalf("decode refused with %d", p.Status)
			}
			if !strings.HasPrefix(p.Type, problemBase) || p.Title == "" {
				t.Fatalf("malformed problem %+v", p)
			}
			return
		}
		if len(body) > MaxBodyBytes {
			t.Fatalf("a %d-byte body was decoded", len(body))
		}
		// Every key of an accepted body is exactly a field's name (read
		// with a map, which encoding/json matches exactly).
		var top map[string]json.RawMessage
		if json.Unmarshal(body, &top) == nil {
			for k := range top {
				if !createKeys[k] {
					t.Fatalf("accepted a body with key %q", k)
				}
			}
			var gs []map[string]json.RawMessage
			if json.Unmarshal(top["grants"], &gs) == nil {
				for _, g := range gs {
					for k := range g {
						if k != "bucket" && k != "access" && k != "prefix" {
							t.Fatalf("accepted a grant with key %q", k)
						}
					}
				}
			}
		}
		err := req.Validate()
		if err != nil {
			var pe *provision.Error
			if !errors.As(err, &pe) || pe.Kind != provision.KindInvalid || len(pe.Fields) == 0 {
				t.Fatalf("invalid request without named fields: %v", err)
			}
			for _, fe := range pe.Fields {
				if fe.Field == "" || fe.Detail == "" {
					t.Fatalf("unnamed field error %+v", fe)
				}
			}
			return
		}
		if msg := provision.CheckUserName(req.User); msg != "" || len(req.User) > provision.MaxUserNameLen {
			t.Fatalf("valid request with user %q: %s", req.User, msg)
		}
		if n := len(req.Grants); n < 1 || n > provision.MaxGrants {
			t.Fatalf("valid request with %d grants", n)
		}
		if !utf8.ValidString(req.Reason) || strings.TrimSpace(req.Reason) == "" || utf8.RuneCountInString(req.Reason) > provision.MaxTagValueLen {
			t.Fatalf("valid request with reason %q", req.Reason)
		}
		groups := map[string]bool{}
		for _, g := range req.Grants {
			doc, err := policy.Document("aws", g)
			if err != nil {
				t.Fatalf("valid grant %+v has no policy: %v", g, err)
			}
			if err := policytest.CheckDocument(g, doc); err != nil {
				t.Fatalf("grant %+v: %v\npolicy: %s", g, err, doc)
			}
			name := policy.GroupName(g)
			if groups[name] {
				t.Fatalf("two grants share group %s", name)
			}
			groups[name] = true
		}
	})
}
