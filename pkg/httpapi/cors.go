package httpapi

import (
	"net/http"
	"strings"
)

// withCORS answers browsers on the configured portal origins: preflight
// requests (which carry no credentials) get 204 before identity is checked;
// actual requests get the CORS headers and go on to the usual checks. Other
// origins get no CORS headers, so browsers block them; their preflights 403.
// An Origin is allowed only if it is the request's one Origin and exactly a
// configured one. With origins configured every answer depends on Origin,
// so every answer says Vary: Origin (a cache must not hand one origin's
// answer to another).
func (a *api) withCORS(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if len(a.origins) > 0 {
			w.Header().Add("Vary", "Origin")
		}
		origins := r.Header.Values("Origin")
		origin := ""
		if len(origins) > 0 {
			origin = origins[0]
		}
		preflight := r.Method == http.MethodOptions && r.Header.Get("Access-Control-Request-Method") != ""
		if origin == "" && len(origins) <= 1 || len(a.origins) == 0 && !preflight {
			next.ServeHTTP(w, r)
			return
		}
		if len(origins) != 1 || !a.origins[origin] {
			if preflight {
				writeProblem(w, r, newProblem(http.StatusForbidden, "cors", "Origin not allowed", "this origin is not a configured portal origin"))
				return
			}
			next.ServeHTTP(w, r)
			return
		}
		h := w.Header()
		h.Set("Access-Control-Allow-Origin", origin)
		h.Set("Access-Control-Expose-Headers", "X-Request-Id, Retry-After, Location, ETag, Idempotency-Replayed, Allow")
		if preflight {
			h.Set("Access-Control-Allow-Methods", strings.Join([]string{"GET", "POST", "PUT", "DELETE"}, ", "))
			h.Set("Access-Control-Allow-Headers", "Authorization, Content-Type, If-Match, Idempotency-Key, X-Amz-Date, X-Amz-Security-Token, X-Amz-Content-Sha256")
			h.Set("Access-Control-Max-Age", "600")
			w.WriteHeader(http.StatusNoContent)
			return
		}
		next.ServeHTTP(w, r)
	})
}
