package httpapi_test

import (
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"github.com/keyvend/keyvend/pkg/caller"
	"github.com/keyvend/keyvend/pkg/httpapi"
)

const (
	portal    = "https://portal.example.com"
	localhost = "http://localhost:3000"
)

// corsRequest sends an actual GET /v1/openapi.json (a route that makes no
// AWS call) or a preflight for POST /v1/users from origins (none: no
// Origin header; several: several Origin headers).
func corsRequest(h http.Handler, preflight bool, origins ...string) *httptest.ResponseRecorder {
	r := httptest.NewRequest(http.MethodGet, "/v1/openapi.json", nil)
	if preflight {
		r = httptest.NewRequest(http.MethodOptions, "/v1/users", nil)
		r.Header.Set("Access-Control-Request-Method", http.MethodPost)
		r.Header.Set("Access-Control-Request-Headers", "authorization, content-type, idempotency-key, if-match")
	}
	for _, o := range origins {
		r.Header.Add("Origin", o)
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w
}

func varyOrigin(w *httptest.ResponseRecorder) bool {
	for _, v := range w.Header().Values("Vary") {
		for _, f := range strings.Split(v, ",") {
			if strings.EqualFold(strings.TrimSpace(f), "Origin") {
				return true
			}
		}
	}
	return false
}

// noCORS fails if w carries any CORS grant.
func noCORS(t *testing.T, w *httptest.ResponseRecorder) {
	t.Helper()
	for name := range w.Header() {
		if strings.HasPrefix(strings.ToLower(name), "access-control-") {
			t.Errorf("%s: %q, want no CORS headers", name, w.Header().Get(name))
		}
	}
}

// TestCORS: the configured portal origins, exactly, get
// Access-Control-Allow-Origin naming them (never *) and Vary: Origin;
// every other origin — null, a prefix or suffix of an allowed one, another
// scheme, port or case, two Origin headers — gets no CORS header, and its
// preflight 403. A deployment without origins grants none. The test fails
// if the middleware reflects any origin.
func TestCORS(t *testing.T) {
	e := newAPI(t, caller.Static{ARN: testCaller}, httpapi.WithCORSOrigins(portal, " "+localhost+" ", ""))

	for _, origin := range []string{portal, localhost} {
		t.Run("allowed "+origin, func(t *testing.T) {
			w := corsRequest(e.h, false, origin)
			if w.Code != http.StatusOK {
				t.Fatalf("GET: status %d: %s", w.Code, w.Body)
			}
			if got := w.Header().Values("Access-Control-Allow-Origin"); !slices.Equal(got, []string{origin}) {
				t.Errorf("GET: Access-Control-Allow-Origin = %q, want [%s]", got, origin)
			}
			if !varyOrigin(w) {
				t.Errorf("GET: Vary = %q, want Origin", w.Header().Values("Vary"))
			}
			for _, h := range []string{"X-Request-Id", "Idempotency-Replayed", "ETag", "Retry-After", "Location", "Allow"} {
				if !strings.Contains(w.Header().Get("Access-Control-Expose-Headers"), h) {
					t.Errorf("GET: Access-Control-Expose-Headers = %q, want %s", w.Header().Get("Access-Control-Expose-Headers"), h)
				}
			}
			if got := w.Header().Get("Access-Control-Allow-Credentials"); got != "" {
				t.Errorf("GET: Access-Control-Allow-Credentials = %q: keyvend uses no cookies", got)
			}

			w = corsRequest(e.h, true, origin)
			if w.Code != http.StatusNoContent {
				t.Fatalf("preflight: status %d, want 204: %s", w.Code, w.Body)
			}
			if got := w.Header().Values("Access-Control-Allow-Origin"); !slices.Equal(got, []string{origin}) {
				t.Errorf("preflight: Access-Control-Allow-Origin = %q, want [%s]", got, origin)
			}
			if !varyOrigin(w) {
				t.Errorf("preflight: Vary = %q, want Origin", w.Header().Values("Vary"))
			}
			if m := w.Header().Get("Access-Control-Allow-Methods"); !strings.Contains(m, "POST") {
				t.Errorf("preflight: Access-Control-Allow-Methods = %q, want POST", m)
			}
			allowed := strings.Split(w.Header().Get("Access-Control-Allow-Headers"), ", ")
			for _, h := range []string{"Authorization", "Content-Type", "Idempotency-Key", "If-Match"} {
				if !slices.Contains(allowed, h) {
					t.Errorf("preflight: Access-Control-Allow-Headers = %q, want %s", allowed, h)
				}
			}
			if m := w.Header().Get("Access-Control-Allow-Methods"); !strings.Contains(m, "PUT") || !strings.Contains(m, "DELETE") {
				t.Errorf("preflight: Access-Control-Allow-Methods = %q, want PUT and DELETE (they take If-Match)", m)
			}
		})
	}

	refused := []string{
		"null",
		"*",
		"https://evil.example.net",
		"https://portal.example.com.evil.net", // an allowed origin is its prefix
		"https://portal.example.co",           // a prefix of an allowed origin
		"https://evilportal.example.com",      // an allowed origin's host is its suffix
		"portal.example.com",                  // a suffix of an allowed origin
		"//portal.example.com",
		"http://portal.example.com",       // another scheme
		"https://portal.example.com:8443", // another port
		"https://portal.example.com:443",  // the same origin, not spelled as configured
		"https://localhost:3000",
		"http://localhost:3001",
		"http://localhost",
		"HTTPS://PORTAL.EXAMPLE.COM",
		"https://portal.example.com/",
		"https://portal.example.com ",
		"https://portal.example.com, https://evil.example.net",
		"",
	}
	for _, origin := range refused {
		t.Run("refused "+origin, func(t *testing.T) {
			w := corsRequest(e.h, false, origin)
			if w.Code != http.StatusOK {
				t.Errorf("GET: status %d, want 200 (the request is served; the browser withholds it): %s", w.Code, w.Body)
			}
			noCORS(t, w)
			if !varyOrigin(w) {
				t.Errorf("GET: Vary = %q, want Origin: the answer depends on it", w.Header().Values("Vary"))
			}
			if origin == "" {
				return // no Origin header: not a CORS preflight
			}
			w = corsRequest(e.h, true, origin)
			checkProblem(t, w, http.StatusForbidden, "cors")
			noCORS(t, w)
		})
	}

	// Two Origin headers, the first allowed: no browser sends that, and
	// which one a proxy or log reads is anyone's guess.
	t.Run("two Origin headers", func(t *testing.T) {
		w := corsRequest(e.h, false, portal, "https://evil.example.net")
		noCORS(t, w)
		w = corsRequest(e.h, true, portal, "https://evil.example.net")
		checkProblem(t, w, http.StatusForbidden, "cors")
		noCORS(t, w)
	})

	// No origins configured: nothing is reflected, every preflight is 403.
	t.Run("no origins configured", func(t *testing.T) {
		bare := newAPI(t, caller.Static{ARN: testCaller})
		for _, origin := range append([]string{portal, localhost}, refused[:4]...) {
			w := corsRequest(bare.h, false, origin)
			if w.Code != http.StatusOK {
				t.Errorf("%s GET: status %d", origin, w.Code)
			}
			noCORS(t, w)
			w = corsRequest(bare.h, true, origin)
			checkProblem(t, w, http.StatusForbidden, "cors")
			noCORS(t, w)
		}
		assertNoAWSCalls(t, bare)
	})
	assertNoAWSCalls(t, e)
}

// TestCORSVaryEverywhere: with origins configured every answer depends on
// Origin, so every answer says Vary: Origin — successes, problems, 401,
// 404 (no endpoint, a path not in canonical form), 405, OPTIONS that is no
// preflight, allowed and refused preflights — with an allowed Origin, a
// refused one, or none. And a 405 to an allowed origin exposes Allow, so a
// page can read which methods the path takes.
func TestCORSVaryEverywhere(t *testing.T) {
	e := newAPI(t, caller.Static{ARN: testCaller}, httpapi.WithCORSOrigins(portal))
	anon := newAPI(t, caller.Static{}, httpapi.WithCORSOrigins(portal))
	type req struct {
		name, method, target string
		preflight            bool
		h                    http.Handler
		status               int
	}
	reqs := []req{
		{"GET openapi.json", http.MethodGet, "/v1/openapi.json", false, e.h, http.StatusOK},
		{"400 problem", http.MethodGet, "/v1/users?bogus=1", false, e.h, http.StatusBadRequest},
		{"401", http.MethodGet, "/v1/openapi.json", false, anon.h, http.StatusUnauthorized},
		{"404 no endpoint", http.MethodGet, "/v1/nowhere", false, e.h, http.StatusNotFound},
		{"404 not canonical", http.MethodGet, "/v1//users", false, e.h, http.StatusNotFound},
		{"405", http.MethodPatch, "/v1/users", false, e.h, http.StatusMethodNotAllowed},
		{"OPTIONS, no preflight", http.MethodOptions, "/v1/users", false, e.h, http.StatusMethodNotAllowed},
		{"preflight", http.MethodOptions, "/v1/users", true, e.h, 0},
	}
	for _, x := range reqs {
		for _, origin := range []string{portal, "https://evil.example.net", ""} {
			t.Run(x.name+" from "+origin, func(t *testing.T) {
				r := httptest.NewRequest(x.method, x.target, nil)
				if x.preflight {
					r.Header.Set("Access-Control-Request-Method", http.MethodPost)
				}
				if origin != "" {
					r.Header.Set("Origin", origin)
				}
				w := httptest.NewRecorder()
				x.h.ServeHTTP(w, r)
				want := x.status
				switch {
				case x.preflight && origin == portal:
					want = http.StatusNoContent
				case x.preflight && origin != "":
					want = http.StatusForbidden
				case x.preflight: // no Origin: no CORS preflight, an OPTIONS
					want = http.StatusMethodNotAllowed
				}
				if w.Code != want {
					t.Errorf("status %d, want %d: %s", w.Code, want, w.Body)
				}
				if !varyOrigin(w) {
					t.Errorf("Vary = %q, want Origin", w.Header().Values("Vary"))
				}
				if w.Code == http.StatusMethodNotAllowed {
					if w.Header().Get("Allow") == "" {
						t.Error("405 without Allow")
					}
					exposed := strings.Split(w.Header().Get("Access-Control-Expose-Headers"), ", ")
					if origin == portal && !slices.Contains(exposed, "Allow") {
						t.Errorf("Access-Control-Expose-Headers = %q, want Allow", exposed)
					}
				}
			})
		}
	}
	assertNoAWSCalls(t, e)
}
