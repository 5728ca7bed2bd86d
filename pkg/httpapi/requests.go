package httpapi

import (
	"errors"
	"net/http"

	"github.com/keyvend/keyvend/pkg/approval"
	"github.com/keyvend/keyvend/pkg/provision"
)

// pending answers a create or change of grants that waits for approval:
// 202 Accepted, Location the request, the request as body. ok is false
// for any other error.
func pending(err error) (response, bool) {
	var p *provision.Pending
	if !errors.As(err, &p) {
		return response{}, false
	}
	return response{status: http.StatusAccepted, body: p.Request, header: http.Header{"Location": {"/v1/requests/" + p.Request.ID}}}, true
}

// listRequests serves GET /v1/requests?status=: the caller's own
// requests and the pending requests it may decide.
func (a *api) listRequests(c *call) (response, error) {
	res, err := a.svc.ListRequests(c.Context(), provision.ListRequestsInput{Principal: c.who, Status: approval.Status(c.URL.Query().Get("status"))})
	if err != nil {
		return response{}, err
	}
	return ok(res), nil
}

// getRequest serves GET /v1/requests/{id}: to its requester and its
// approvers; anyone else is told it does not exist.
func (a *api) getRequest(c *call) (response, error) {
	r, err := a.svc.GetRequest(c.Context(), c.who, c.PathValue("id"))
	if err != nil {
		return response{}, err
	}
	return ok(r), nil
}

// decisionRequest is the body of POST /v1/requests/{id}/approve and /deny.
type decisionRequest struct {
	Reason string `json:"reason"`
}

// approveRequest serves POST /v1/requests/{id}/approve (the body is
// optional).
func (a *api) approveRequest(c *call) (response, error) { return a.decide(c, true) }

// denyRequest serves POST /v1/requests/{id}/deny (a reason is required).
func (a *api) denyRequest(c *call) (response, error) { return a.decide(c, false) }

func (a *api) decide(c *call, approve bool) (response, error) {
	var req decisionRequest
	if c.ContentLength != 0 || !approve {
		if err := c.decode(&req); err != nil {
			return response{}, err
		}
	}
	r, err := a.svc.Decide(c.Context(), provision.DecideInput{Principal: c.who, RequestID: c.id, ID: c.PathValue("id"), Approve: approve, Reason: req.Reason})
	if err != nil {
		return response{}, err
	}
	return ok(r), nil
}
