// Package client is a client of keyvend's HTTP API (pkg/httpapi), as the
// `keyvend` CLI uses it: it builds the requests, authenticates them —
// SigV4 for execute-api from the default AWS credential chain, a bearer
// token for JWT deployments, or nothing for a local `keyvend serve` — and
// decodes the answers and problem+json errors.
package client

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
)

// DefaultAPI is the API a local `keyvend serve` (make run) listens on.
const DefaultAPI = "http://127.0.0.1:8080"

// Auth says how requests are authenticated.
type Auth int

const (
	// None sends no Authorization: a local keyvend serve, whose caller is
	// fixed (KEYVEND_LOCAL_CALLER).
	None Auth = iota
	// Bearer sends Authorization: Bearer <Token> (a JWT deployment).
	Bearer
	// SigV4 signs for execute-api with Credentials (an IAM deployment).
	SigV4
)

// Client calls one keyvend API.
type Client struct {
	// BaseURL is the API's URL, e.g. https://abc.execute-api.eu-west-1.amazonaws.com.
	BaseURL string
	Auth    Auth
	Token   string // Bearer
	// Credentials and Region sign SigV4 requests. Region, when empty, is
	// read from an execute-api host name.
	Credentials aws.CredentialsProvider
	Region      string
	HTTP        *http.Client // nil: a client with a 60 s timeout
	now         func() time.Time
}

// Local reports whether u names this machine (127.0.0.1, ::1, localhost):
// a keyvend serve, which needs no authentication.
func Local(u string) bool {
	p, err := url.Parse(u)
	if err != nil {
		return false
	}
	h := p.Hostname()
	if h == "localhost" {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}

// RegionOf reads the region from an execute-api host name
// (<id>.execute-api.<region>.amazonaws.com); "" for any other URL.
func RegionOf(u string) string {
	p, err := url.Parse(u)
	if err != nil {
		return ""
	}
	parts := strings.Split(p.Hostname(), ".")
	for i := 0; i+2 < len(parts); i++ {
		if parts[i] == "execute-api" && parts[i+2] == "amazonaws" {
			return parts[i+1]
		}
	}
	return ""
}

// Problem is an error answer (RFC 9457 problem details as keyvend sends
// them), or a non-2xx answer that is not one.
type Problem struct {
	Type      string       `json:"type"`
	Title     string       `json:"title"`
	Status    int          `json:"status"`
	Detail    string       `json:"detail"`
	RequestID string       `json:"request_id"`
	Errors    []FieldError `json:"errors,omitempty"`
}

// FieldError is one refused field of a request.
type FieldError struct {
	Field  string `json:"field"`
	Detail string `json:"detail"`
}

func (p *Problem) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d %s", p.Status, p.Title)
	if p.Detail != "" && p.Detail != p.Title {
		b.WriteString(": " + p.Detail)
	}
	for _, f := range p.Errors {
		fmt.Fprintf(&b, "\n  %s: %s", f.Field, f.Detail)
	}
	if p.RequestID != "" {
		b.WriteString("\n  request id: " + p.RequestID)
	}
	return b.String()
}

// Response is a successful answer.
type Response struct {
	Status int
	Header http.Header
	Body   []byte // the answer as the API sent it (--json prints it)
}

// Decode reads the answer's JSON into v.
func (r *Response) Decode(v any) error {
	if err := json.Unmarshal(r.Body, v); err != nil {
		return fmt.Errorf("decode the answer: %w", err)
	}
	return nil
}

// Do sends one request: body (nil for none) as JSON, header added as is.
// A non-2xx answer is a *Problem.
func (c *Client) Do(ctx context.Context, method, path string, query url.Values, body any, header http.Header) (*Response, error) {
	u := strings.TrimRight(c.BaseURL, "/") + path
	if len(query) > 0 {
		u += "?" + query.Encode()
	}
	var payload []byte
	if body != nil {
		var err error
		if payload, err = json.Marshal(body); err != nil {
			return nil, err
		}
	}
	req, err := http.NewRequestWithContext(ctx, method, u, bytes.NewReader(payload))
	if err != nil {
		return nil, err
	}
	if body == nil {
		req.Body, req.ContentLength = http.NoBody, 0
	} else {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", "application/json, application/problem+json")
	for k, vs := range header {
		req.Header[k] = vs
	}
	if err := c.authenticate(ctx, req, payload); err != nil {
		return nil, err
	}
	hc := c.HTTP
	if hc == nil {
		hc = &http.Client{Timeout: 60 * time.Second}
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return nil, fmt.Errorf("%s %s: read the answer: %w", method, path, err)
	}
	if resp.StatusCode/100 != 2 {
		return nil, problemOf(resp, raw)
	}
	return &Response{Status: resp.StatusCode, Header: resp.Header, Body: raw}, nil
}

func (c *Client) authenticate(ctx context.Context, req *http.Request, payload []byte) error {
	switch c.Auth {
	case Bearer:
		req.Header.Set("Authorization", "Bearer "+c.Token)
	case SigV4:
		if c.Credentials == nil {
			return errors.New("no AWS credentials to sign the request with")
		}
		region := c.Region
		if r := RegionOf(c.BaseURL); r != "" {
			region = r
		}
		if region == "" {
			return errors.New("no region to sign the request for: set AWS_REGION")
		}
		creds, err := c.Credentials.Retrieve(ctx)
		if err != nil {
			return fmt.Errorf("AWS credentials to sign the request: %w", err)
		}
		sum := sha256.Sum256(payload)
		now := time.Now
		if c.now != nil {
			now = c.now
		}
		if err := v4.NewSigner().SignHTTP(ctx, creds, req, hex.EncodeToString(sum[:]), "execute-api", region, now()); err != nil {
			return fmt.Errorf("sign the request: %w", err)
		}
	}
	return nil
}

// problemOf decodes an error answer; one that is not problem+json (a
// proxy's, API Gateway's own {"message":…}) keeps its status, the body's
// message and the X-Request-Id or API Gateway request id.
func problemOf(resp *http.Response, raw []byte) *Problem {
	p := &Problem{}
	mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	if mt == "application/problem+json" && json.Unmarshal(raw, p) == nil && p.Status != 0 {
		if p.RequestID == "" {
			p.RequestID = resp.Header.Get("X-Request-Id")
		}
		return p
	}
	p = &Problem{Status: resp.StatusCode, Title: http.StatusText(resp.StatusCode)}
	var gw struct {
		Message string `json:"message"`
	}
	switch {
	case json.Unmarshal(raw, &gw) == nil && gw.Message != "":
		p.Detail = gw.Message
	case len(raw) > 0:
		s := strings.TrimSpace(string(raw))
		if len(s) > 300 {
			s = s[:300] + "…"
		}
		p.Detail = s
	}
	p.RequestID = resp.Header.Get("X-Request-Id")
	if p.RequestID == "" {
		p.RequestID = resp.Header.Get("Apigw-Requestid")
	}
	return p
}
