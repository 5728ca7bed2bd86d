package httpapi

import (
	"net/http"

	"github.com/keyvend/keyvend/pkg/caller"
	"github.com/keyvend/keyvend/pkg/policy"
	"github.com/keyvend/keyvend/pkg/provision"
)

// deleteUser serves DELETE /v1/users/{name}[?force=true]: 204 when the
// user is gone. force, when given, is true or false: a bare ?force, or
// ?force=, would read as forcing to some and not to others.
func (a *api) deleteUser(w http.ResponseWriter, r *http.Request) {
	force := false
	q := r.URL.Query()
	switch v := q.Get("force"); {
	case !q.Has("force"), v == "false":
	case v == "true":
		force = true
	default:
		pr := newProblem(http.StatusBadRequest, "validation", "Invalid request", "force must be true or false")
		pr.Errors = []policy.FieldError{{Field: "force", Detail: "must be true or false"}}
		writeProblem(w, r, pr)
		return
	}
	version, pr := ifMatch(r)
	if pr != nil {
		writeProblem(w, r, pr)
		return
	}
	p, _ := caller.FromContext(r.Context())
	err := a.svc.Delete(r.Context(), provision.DeleteInput{Principal: p, RequestID: RequestID(r.Context()), User: r.PathValue("name"), Force: force, IfMatch: version})
	if err != nil {
		writeProblem(w, r, ProblemFor(r.Context(), a.log, err))
		return
	}
	w.WriteHeader(http.StatusNoContent)
}
