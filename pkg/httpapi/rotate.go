package httpapi

import (
	"github.com/keyvend/keyvend/pkg/provision"
)

// rotateRequest is the optional body of POST /v1/users/{name}/rotate.
type rotateRequest struct {
	Wait bool `json:"wait"`
}

// rotateUser serves POST /v1/users/{name}/rotate.
func (a *api) rotateUser(c *call) (response, error) {
	var req rotateRequest
	if c.ContentLength != 0 {
		if err := c.decode(&req); err != nil {
			return response{}, err
		}
	}
	res, err := a.svc.Rotate(c.Context(), provision.RotateInput{Principal: c.who, RequestID: c.id, User: c.PathValue("name"), Wait: req.Wait})
	if err != nil {
		return response{}, err
	}
	return ok(res), nil
}
