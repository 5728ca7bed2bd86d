package httpapi

import (
	"net/http"

	"github.com/keyvend/keyvend/pkg/provision"
)

// createUser serves POST /v1/users: 201 when this request vended the key,
// 200 when an identical request already had.
func (a *api) createUser(c *call) (response, error) {
	var req provision.CreateRequest
	if err := c.decode(&req); err != nil {
		return response{}, err
	}
	res, err := a.svc.Create(c.Context(), provision.CreateInput{Principal: c.who, RequestID: c.id, Request: req})
	if p, ok := pending(err); ok {
		return p, nil
	}
	if err != nil {
		return response{}, err
	}
	if !res.Created {
		return ok(res), nil
	}
	return response{status: http.StatusCreated, body: res, header: http.Header{"Location": {"/v1/users/" + res.User}}}, nil
}

// describeUser serves GET /v1/users/{name}.
func (a *api) describeUser(c *call) (response, error) {
	d, err := a.svc.Describe(c.Context(), c.who, c.PathValue("name"))
	if err != nil {
		return response{}, err
	}
	return withETag(ok(d), d.Version), nil
}
