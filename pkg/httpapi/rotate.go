package httpapi

import (
	"net/http"

	"github.com/keyvend/keyvend/pkg/caller"
	"github.com/keyvend/keyvend/pkg/provision"
)

// rotateRequest is the optional body of POST /v1/users/{name}/rotate.
type rotateRequest struct {
	Wait bool `json:"wait"`
}

// rotateUser serves POST /v1/users/{name}/rotate.
func (a *api) rotateUser(w http.ResponseWriter, r *http.Request) {
	var req rotateRequest
	if r.ContentLength != 0 {
		if p := decodeJSON(w, r, &req); p != nil {
			writeProblem(w, r, p)
			return
		}
	}
	p, _ := caller.FromContext(r.Context())
	res, err := a.svc.Rotate(r.Context(), provision.RotateInput{Principal: p, RequestID: RequestID(r.Context()), User: r.PathValue("name"), Wait: req.Wait})
	if err != nil {
		writeProblem(w, r, ProblemFor(r.Context(), a.log, err))
		return
	}
	writeJSON(w, http.StatusOK, "application/json", res)
}
