package httpapi

import (
	"net/http"

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
	p, _ := caller.FromContext(r.Context())
	d, err := a.svc.UpdateGrants(r.Context(), provision.UpdateInput{
		Principal: p, RequestID: RequestID(r.Context()), User: r.PathValue("name"), Grants: req.Grants,
		Lifetime: provision.Lifetime{ExpiresIn: req.ExpiresIn, ExpiresAt: req.ExpiresAt},
	})
	if err != nil {
		writeProblem(w, r, problemFor(r.Context(), a.log, err))
		return
	}
	writeJSON(w, http.StatusOK, "application/json", d)
}
