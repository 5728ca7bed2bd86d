package httpapi

import (
	"net/http"
	"net/url"
	"path"
	"strings"
)

// canonicalPath answers a request whose path is not canonical with a 404
// problem, where ServeMux would redirect (307, text/html, Location) to the
// cleaned path: keyvend acts only on the path it was sent, and a client
// learns its path is wrong rather than being sent elsewhere.
func canonicalPath(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !canonical(r.URL) {
			writeProblem(w, r, newProblem(http.StatusNotFound, "not-found", "Not found",
				"the path is not in canonical form (an empty, . or .. segment, or an encoded /); keyvend does not redirect"))
			return
		}
		next.ServeHTTP(w, r)
	})
}

// canonical reports whether u's path reads the same to everyone: its
// escaped form (EscapedPath, what ServeMux routes on and API Gateway's
// rawPath) is clean, so is its decoded form (Path: /v1/users/%2E%2E is
// /v1/users/.. decoded, which a decoding proxy or log reader resolves to
// /v1), and no segment holds an encoded '/' (/v1/users/a%2Fb routes as the
// one segment "a/b" but its Path, /v1/users/a/b, has two).
func canonical(u *url.URL) bool {
	escaped := u.EscapedPath()
	return clean(escaped) && clean(u.Path) &&
		strings.Count(escaped, "/") == strings.Count(u.Path, "/")
}

// clean reports whether p is rooted and ServeMux's cleaning (path.Clean,
// keeping a trailing slash) leaves it unchanged.
func clean(p string) bool {
	if p == "" || p[0] != '/' {
		return false
	}
	c := path.Clean(p)
	if strings.HasSuffix(p, "/") && c != "/" {
		c += "/"
	}
	return c == p
}
