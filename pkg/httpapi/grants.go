package httpapi

import (
	"fmt"
	"net/http"
	"strconv"

	"github.com/keyvend/keyvend/pkg/caller"
	"github.com/keyvend/keyvend/pkg/policy"
	"github.com/keyvend/keyvend/pkg/provision"
)

// grantsRequest is the body of PUT /v1/users/{name}/grants.
type grantsRequest struct {
	Grants    []policy.Grant `json:"grants"`
	ExpiresIn string         `json:"expires_in,omitempty"`
	ExpiresAt string         `json:"expires_at,omitempty"`
}

// updateGrants serves PUT /v1/users/{name}/grants: the user's new grants,
// answered with the user as GET describes it.
func (a *api) updateGrants(w http.ResponseWriter, r *http.Request) {
	var req grantsRequest
	if p := decodeJSON(w, r, &req); p != nil {
		writeProblem(w, r, p)
		return
	}
	version, pr := ifMatch(r)
	if pr != nil {
		writeProblem(w, r, pr)
		return
	}
	p, _ := caller.FromContext(r.Context())
	d, err := a.svc.UpdateGrants(r.Context(), provision.UpdateGrantsInput{
		Principal: p, RequestID: RequestID(r.Context()), User: r.PathValue("name"), Grants: req.Grants,
		Lifetime: provision.Lifetime{ExpiresIn: req.ExpiresIn, ExpiresAt: req.ExpiresAt}, IfMatch: version,
	})
	if err != nil {
		writeProblem(w, r, ProblemFor(r.Context(), a.log, err))
		return
	}
	setETag(w, d.Version)
	writeJSON(w, http.StatusOK, "application/json", d)
}

// setETag sets the ETag of a user at version v (none before it has one).
func setETag(w http.ResponseWriter, v int64) {
	if v > 0 {
		w.Header().Set("ETag", fmt.Sprintf("%q", strconv.FormatInt(v, 10)))
	}
}

// ifMatch reads If-Match: one strong ETag as keyvend issues them ("3"),
// the version the caller last read; 0 without the header. Anything else —
// a list, a weak tag, "*" — is refused with 400: keyvend acts only on a
// condition it reads exactly as a proxy would.
func ifMatch(r *http.Request) (int64, *Problem) {
	vals := r.Header.Values("If-Match")
	if len(vals) == 0 {
		return 0, nil
	}
	bad := func() (int64, *Problem) {
		pr := newProblem(http.StatusBadRequest, "validation", "Invalid request", `If-Match must be one ETag as GET /v1/users/{name} returns it, e.g. "3"`)
		pr.Errors = []policy.FieldError{{Field: "If-Match", Detail: "must be one strong ETag keyvend issued"}}
		return 0, pr
	}
	if len(vals) != 1 {
		return bad()
	}
	v := vals[0]
	if len(v) < 3 || v[0] != '"' || v[len(v)-1] != '"' {
		return bad()
	}
	n, err := strconv.ParseInt(v[1:len(v)-1], 10, 64)
	if err != nil || n < 1 || strconv.FormatInt(n, 10) != v[1:len(v)-1] {
		return bad()
	}
	return n, nil
}
