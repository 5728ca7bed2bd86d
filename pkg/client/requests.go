package client

import (
	"context"
	"net/http"
	"net/url"

	"github.com/keyvend/keyvend/pkg/approval"
	"github.com/keyvend/keyvend/pkg/provision"
)

// Pending is the approval request a 202 answer carries (a create or a
// grants change waiting for approval); ok is false for any other answer.
func Pending(res *Response) (r *approval.Request, ok bool, err error) {
	if res == nil || res.Status != http.StatusAccepted {
		return nil, false, nil
	}
	var out approval.Request
	if err := res.Decode(&out); err != nil {
		return nil, true, err
	}
	return &out, true, nil
}

// Requests lists the caller's approval requests and the pending requests
// it may decide (status "" for every status).
func (c *Client) Requests(ctx context.Context, status string) (*provision.RequestList, *Response, error) {
	var q url.Values
	if status != "" {
		q = url.Values{"status": {status}}
	}
	var out provision.RequestList
	res, err := c.call(ctx, http.MethodGet, "/v1/requests", q, nil, nil, &out)
	return &out, res, err
}

// Request reads one approval request.
func (c *Client) Request(ctx context.Context, id string) (*approval.Request, *Response, error) {
	var out approval.Request
	res, err := c.call(ctx, http.MethodGet, requestPath(id), nil, nil, nil, &out)
	return &out, res, err
}

// Decide approves (approve) or denies the approval request id, with a
// reason (required to deny).
func (c *Client) Decide(ctx context.Context, id string, approve bool, reason string) (*approval.Request, *Response, error) {
	verb := "/deny"
	if approve {
		verb = "/approve"
	}
	body := map[string]string{}
	if reason != "" {
		body["reason"] = reason
	}
	var out approval.Request
	res, err := c.call(ctx, http.MethodPost, requestPath(id)+verb, nil, body, nil, &out)
	return &out, res, err
}

func requestPath(id string) string { return "/v1/requests/" + url.PathEscape(id) }
