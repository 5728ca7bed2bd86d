package client

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"time"

	"github.com/keyvend/keyvend/pkg/policy"
	"github.com/keyvend/keyvend/pkg/provision"
)

// CreateRequest is the body of POST /v1/users.
type CreateRequest struct {
	User      string         `json:"user"`
	Grants    []policy.Grant `json:"grants"`
	Reason    string         `json:"reason"`
	ExpiresIn string         `json:"expires_in,omitempty"`
	Wait      bool           `json:"wait,omitempty"`
}

// GrantsRequest is the body of PUT /v1/users/{name}/grants.
type GrantsRequest struct {
	Grants    []policy.Grant `json:"grants"`
	ExpiresIn string         `json:"expires_in,omitempty"`
}

// HistoryEntry is one change of a user (GET /v1/users/{name}/history).
type HistoryEntry struct {
	User      string    `json:"user"`
	Action    string    `json:"action"`
	Principal string    `json:"principal"`
	Requester string    `json:"requester,omitempty"`
	RequestID string    `json:"request_id"`
	Result    string    `json:"result"`
	At        time.Time `json:"at"`
}

// Create vends a user. A request that waits for approval answers 202:
// the result is nil and Pending(res) holds the request.
func (c *Client) Create(ctx context.Context, in CreateRequest) (*provision.CreateResult, *Response, error) {
	res, err := c.call(ctx, http.MethodPost, "/v1/users", nil, in, nil, nil)
	if err != nil || res.Status == http.StatusAccepted {
		return nil, res, err
	}
	var out provision.CreateResult
	return &out, res, res.Decode(&out)
}

// Describe reads a user; the answer's ETag header is its version.
func (c *Client) Describe(ctx context.Context, user string) (*provision.Description, *Response, error) {
	var out provision.Description
	res, err := c.call(ctx, http.MethodGet, userPath(user), nil, nil, nil, &out)
	return &out, res, err
}

// Rotate replaces the user's access key.
func (c *Client) Rotate(ctx context.Context, user string, wait bool) (*provision.RotateResult, *Response, error) {
	var out provision.RotateResult
	body := map[string]bool{}
	if wait {
		body["wait"] = true
	}
	res, err := c.call(ctx, http.MethodPost, userPath(user)+"/rotate", nil, body, nil, &out)
	return &out, res, err
}

// Delete deprovisions the user; force as DELETE ?force=true.
func (c *Client) Delete(ctx context.Context, user string, force bool) (*Response, error) {
	var q url.Values
	if force {
		q = url.Values{"force": {"true"}}
	}
	return c.call(ctx, http.MethodDelete, userPath(user), q, nil, nil, nil)
}

// UpdateGrants (nil and a 202 when the new grants wait for approval:
// Pending(res)) replaces the user's grants if the user is still at the
// version etag names (If-Match): a concurrent change makes it a 412.
func (c *Client) UpdateGrants(ctx context.Context, user, etag string, in GrantsRequest) (*provision.Description, *Response, error) {
	var out provision.Description
	var h http.Header
	if etag != "" {
		h = http.Header{"If-Match": {etag}}
	}
	res, err := c.call(ctx, http.MethodPut, userPath(user)+"/grants", nil, in, h, nil)
	if err != nil || res.Status == http.StatusAccepted { // waits for approval: Pending(res)
		return nil, res, err
	}
	return &out, res, res.Decode(&out)
}

// List reads every page of the users the caller may see, filtered by
// bucket and requester when they are not empty. raw holds the users as
// the API sent them (fields this client does not know included).
func (c *Client) List(ctx context.Context, bucket, requester string) (users []provision.UserSummary, raw []json.RawMessage, err error) {
	q := url.Values{}
	if bucket != "" {
		q.Set("bucket", bucket)
	}
	if requester != "" {
		q.Set("requester", requester)
	}
	raw, err = c.pages(ctx, "/v1/users", "users", q)
	if err != nil {
		return nil, nil, err
	}
	users = make([]provision.UserSummary, len(raw))
	for i, r := range raw {
		if err := json.Unmarshal(r, &users[i]); err != nil {
			return nil, nil, fmt.Errorf("decode the answer: %w", err)
		}
	}
	return users, raw, nil
}

// History reads every page of the user's history, newest first. raw holds
// the entries as the API sent them.
func (c *Client) History(ctx context.Context, user string) (entries []HistoryEntry, raw []json.RawMessage, err error) {
	raw, err = c.pages(ctx, userPath(user)+"/history", "entries", url.Values{})
	if err != nil {
		return nil, nil, err
	}
	entries = make([]HistoryEntry, len(raw))
	for i, r := range raw {
		if err := json.Unmarshal(r, &entries[i]); err != nil {
			return nil, nil, fmt.Errorf("decode the answer: %w", err)
		}
	}
	return entries, raw, nil
}

// pages GETs path page by page (the answer's "next" into the query's
// next) and returns the items of every page's field.
func (c *Client) pages(ctx context.Context, path, field string, q url.Values) ([]json.RawMessage, error) {
	items := []json.RawMessage{}
	for {
		var page map[string]json.RawMessage
		if _, err := c.call(ctx, http.MethodGet, path, q, nil, nil, &page); err != nil {
			return nil, err
		}
		var these []json.RawMessage
		if err := json.Unmarshal(page[field], &these); err != nil {
			return nil, fmt.Errorf("decode the answer's %s: %w", field, err)
		}
		items = append(items, these...)
		var next string
		if n, ok := page["next"]; ok {
			if err := json.Unmarshal(n, &next); err != nil {
				return nil, fmt.Errorf("decode the answer's next: %w", err)
			}
		}
		if next == "" {
			return items, nil
		}
		q.Set("next", next)
	}
}

func (c *Client) call(ctx context.Context, method, path string, q url.Values, body any, h http.Header, out any) (*Response, error) {
	res, err := c.Do(ctx, method, path, q, body, h)
	if err != nil {
		return nil, err
	}
	if out != nil && len(res.Body) > 0 {
		if err := res.Decode(out); err != nil {
			return res, err
		}
	}
	return res, nil
}

func userPath(user string) string { return "/v1/users/" + url.PathEscape(user) }
