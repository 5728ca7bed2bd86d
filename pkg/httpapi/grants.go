package httpapi

import (
	"fmt"
	"net/http"
	"strconv"

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
func (a *api) updateGrants(c *call) (response, error) {
	var req grantsRequest
	if err := c.decode(&req); err != nil {
		return response{}, err
	}
	version, pr := ifMatch(c.Request)
	if pr != nil {
		return response{}, pr
	}
	d, err := a.svc.UpdateGrants(c.Context(), provision.UpdateGrantsInput{
		Principal: c.who, RequestID: c.id, User: c.PathValue("name"), Grants: req.Grants,
		Lifetime: provision.Lifetime{ExpiresIn: req.ExpiresIn, ExpiresAt: req.ExpiresAt}, IfMatch: version,
	})
	if p, ok := pending(err); ok {
		return p, nil
	}
	if err != nil {
		return response{}, err
	}
	return withETag(ok(d), d.Version), nil
}

// withETag gives res the ETag of a user at version v (none before it has
// one).
func withETag(res response, v int64) response {
	if v > 0 {
		res.header = http.Header{}
		res.header.Set("ETag", fmt.Sprintf("%q", strconv.FormatInt(v, 10)))
	}
	return res
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
