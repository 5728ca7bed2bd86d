package httpapi

import (
	"net/http"

	"github.com/keyvend/keyvend/pkg/policy"
	"github.com/keyvend/keyvend/pkg/provision"
)

// deleteUser serves DELETE /v1/users/{name}[?force=true]: 204 when the
// user is gone. force, when given, is true or false: a bare ?force, or
// ?force=, would read as forcing to some and not to others.
func (a *api) deleteUser(c *call) (response, error) {
	force := false
	q := c.URL.Query()
	switch v := q.Get("force"); {
	case !q.Has("force"), v == "false":
	case v == "true":
		force = true
	default:
		pr := newProblem(http.StatusBadRequest, "validation", "Invalid request", "force must be true or false")
		pr.Errors = []policy.FieldError{{Field: "force", Detail: "must be true or false"}}
		return response{}, pr
	}
	version, pr := ifMatch(c.Request)
	if pr != nil {
		return response{}, pr
	}
	err := a.svc.Delete(c.Context(), provision.DeleteInput{Principal: c.who, RequestID: c.id, User: c.PathValue("name"), Force: force, IfMatch: version})
	if err != nil {
		return response{}, err
	}
	return response{status: http.StatusNoContent}, nil
}
