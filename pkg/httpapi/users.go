package httpapi

import (
	"net/http"

	"github.com/keyvend/keyvend/pkg/caller"
	"github.com/keyvend/keyvend/pkg/provision"
)

// createUser serves POST /v1/users: 201 when this request vended the key,
// 200 when an identical request already had.
func (a *api) createUser(w http.ResponseWriter, r *http.Request) {
	var req provision.CreateRequest
	if p := decodeJSON(w, r, &req); p != nil {
		writeProblem(w, r, p)
		return
	}
	p, _ := caller.FromContext(r.Context())
	res, err := a.svc.Create(r.Context(), provision.CreateInput{Principal: p, RequestID: RequestID(r.Context()), Request: req})
	if err != nil {
		writeProblem(w, r, ProblemFor(r.Context(), a.log, err))
		return
	}
	status := http.StatusOK
	if res.Created {
		status = http.StatusCreated
		w.Header().Set("Location", "/v1/users/"+res.User)
	}
	writeJSON(w, status, "application/json", res)
}

// describeUser serves GET /v1/users/{name}.
func (a *api) describeUser(w http.ResponseWriter, r *http.Request) {
	p, _ := caller.FromContext(r.Context())
	d, err := a.svc.Describe(r.Context(), p, r.PathValue("name"))
	if err != nil {
		writeProblem(w, r, ProblemFor(r.Context(), a.log, err))
		return
	}
	setETag(w, d.Version)
	writeJSON(w, http.StatusOK, "application/json", d)
}
