package httpapi

import (
	"net/http"
	"strconv"

	"github.com/keyvend/keyvend/pkg/caller"
	"github.com/keyvend/keyvend/pkg/policy"
	"github.com/keyvend/keyvend/pkg/provision"
)

// listUsers serves GET /v1/users?bucket=&requester=&limit=&next=.
func (a *api) listUsers(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	limit := 0
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil {
			pr := newProblem(http.StatusBadRequest, "validation", "Invalid request", "the query is not valid")
			pr.Errors = []policy.FieldError{{Field: "limit", Detail: "must be a whole number"}}
			writeProblem(w, r, pr)
			return
		}
		limit = n
		if n == 0 {
			limit = -1 // explicit 0 is invalid, not "default"
		}
	}
	p, _ := caller.FromContext(r.Context())
	res, err := a.svc.List(r.Context(), provision.ListInput{Principal: p, Bucket: q.Get("bucket"), Requester: q.Get("requester"), Limit: limit, Next: q.Get("next")})
	if err != nil {
		writeProblem(w, r, problemFor(r.Context(), a.log, err))
		return
	}
	writeJSON(w, http.StatusOK, "application/json", res)
}
