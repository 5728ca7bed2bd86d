package httpapi

import (
	"net/http"
	"strconv"
	"time"

	"github.com/keyvend/keyvend/pkg/policy"
	"github.com/keyvend/keyvend/pkg/provision"
)

// listUsers serves GET /v1/users?bucket=&requester=&limit=&next=.
func (a *api) listUsers(c *call) (response, error) {
	q := c.URL.Query()
	limit := 0
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil {
			pr := newProblem(http.StatusBadRequest, "validation", "Invalid request", "the query is not valid")
			pr.Errors = []policy.FieldError{{Field: "limit", Detail: "must be a whole number"}}
			return response{}, pr
		}
		limit = n
		if n == 0 {
			limit = -1 // explicit 0 is invalid, not "default"
		}
	}
	var before *time.Time
	if v := q.Get("expiring_before"); q.Has("expiring_before") {
		at, err := time.Parse(time.RFC3339, v)
		if err != nil {
			pr := newProblem(http.StatusBadRequest, "validation", "Invalid request", "the query is not valid")
			pr.Errors = []policy.FieldError{{Field: "expiring_before", Detail: "must be an RFC 3339 time, e.g. 2030-01-02T15:04:05Z"}}
			return response{}, pr
		}
		before = &at
	}
	res, err := a.svc.List(c.Context(), provision.ListInput{Principal: c.who, Bucket: q.Get("bucket"), Requester: q.Get("requester"),
		ExpiringBefore: before, Limit: limit, Next: q.Get("next")})
	if err != nil {
		return response{}, err
	}
	return ok(res), nil
}
