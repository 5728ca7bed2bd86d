package httpapi

import (
	"net/http"
	"strconv"

	"github.com/keyvend/keyvend/pkg/policy"
	"github.com/keyvend/keyvend/pkg/provision"
)

// userHistory serves GET /v1/users/{name}/history?limit=&next=: the
// user's changes, newest first, to whoever may describe the user.
func (a *api) userHistory(c *call) (response, error) {
	q := c.URL.Query()
	limit := 0
	if v := q.Get("limit"); q.Has("limit") {
		n, err := strconv.Atoi(v)
		if err != nil || n == 0 {
			pr := newProblem(http.StatusBadRequest, "validation", "Invalid request", "the query is not valid")
			pr.Errors = []policy.FieldError{{Field: "limit", Detail: "must be a whole number from 1 to 100"}}
			return response{}, pr
		}
		limit = n
	}
	res, err := a.svc.History(c.Context(), provision.HistoryInput{Principal: c.who, User: c.PathValue("name"), Limit: limit, Next: q.Get("next")})
	if err != nil {
		return response{}, err
	}
	return ok(res), nil
}
