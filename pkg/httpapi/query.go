package httpapi

import (
	"net/http"
	"net/url"
	"slices"
	"strings"

	"github.com/keyvend/keyvend/pkg/policy"
)

// strictQuery runs next only if r's query string is unambiguous: every
// pair parses (url.ParseQuery would drop a pair with a bad escape or a
// ';' and go on), every parameter is one of params, and none is given
// twice (url.Values.Get would take the first). Otherwise: 400 naming each
// offending parameter, before next does anything.
func strictQuery(params []string, next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if p := checkQuery(r.URL.RawQuery, params); p != nil {
			writeProblem(w, r, p)
			return
		}
		next(w, r)
	}
}

func checkQuery(raw string, params []string) *Problem {
	var errs []policy.FieldError
	named := map[string]bool{} // parameters with an error already
	seen := map[string]bool{}
	bad := func(name, detail string) {
		if !named[name] {
			named[name] = true
			errs = append(errs, policy.FieldError{Field: name, Detail: detail})
		}
	}
	for _, pair := range strings.Split(raw, "&") {
		if pair == "" {
			continue // as url.ParseQuery: "a=1&&b=2" and a trailing & are no pairs
		}
		rawName, rawValue, _ := strings.Cut(pair, "=")
		name, err := url.QueryUnescape(rawName)
		if err != nil {
			bad(rawName, "not a valid query parameter name: invalid percent-encoding")
			continue
		}
		switch {
		case strings.Contains(pair, ";"):
			bad(name, "';' does not separate query parameters: use '&', and write a ';' in a value as %3B")
		case !validEscapes(rawValue):
			bad(name, "the value has invalid percent-encoding")
		case !slices.Contains(params, name):
			if len(params) == 0 {
				bad(name, "unknown query parameter: this endpoint takes none")
			} else {
				bad(name, "unknown query parameter: this endpoint takes "+strings.Join(params, ", "))
			}
		case seen[name]:
			bad(name, "given more than once")
		}
		seen[name] = true
	}
	if len(errs) == 0 {
		return nil
	}
	p := newProblem(http.StatusBadRequest, "validation", "Invalid request", "the query string is not valid")
	p.Errors = errs
	return p
}

func validEscapes(s string) bool {
	_, err := url.QueryUnescape(s)
	return err == nil
}
