package client

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/credentials"
)

// seen is the last request a loopback server received.
type seen struct{ header http.Header }

func server(t *testing.T, status int, ctype, body string) (*httptest.Server, *seen) {
	t.Helper()
	s := &seen{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.header = r.Header.Clone()
		w.Header().Set("Content-Type", ctype)
		w.Header().Set("X-Request-Id", "req-header")
		w.WriteHeader(status)
		_, _ = w.Write([]byte(body))
	}))
	t.Cleanup(srv.Close)
	return srv, s
}

func TestAuthentication(t *testing.T) {
	srv, s := server(t, 200, "application/json", `{"user":"u"}`)
	ctx := context.Background()

	c := &Client{BaseURL: srv.URL, Auth: Bearer, Token: "tok"}
	if _, _, err := c.Describe(ctx, "u"); err != nil {
		t.Fatal(err)
	}
	if got := s.header.Get("Authorization"); got != "Bearer tok" {
		t.Errorf("bearer: Authorization = %q", got)
	}

	at := time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC)
	c = &Client{BaseURL: srv.URL, Auth: SigV4, Region: "eu-west-1", now: func() time.Time { return at },
		Credentials: credentials.NewStaticCredentialsProvider("AKIDEXAMPLE", "secret", "session")}
	if _, _, err := c.Create(ctx, CreateRequest{User: "u", Reason: "r"}); err != nil {
		t.Fatal(err)
	}
	auth := s.header.Get("Authorization")
	if !strings.HasPrefix(auth, "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20261203/eu-west-1/execute-api/aws4_request, SignedHeaders=") ||
		s.header.Get("X-Amz-Date") != "20261203T100000Z" || s.header.Get("X-Amz-Security-Token") != "session" {
		t.Errorf("SigV4: Authorization %q, X-Amz-Date %q, token %q", auth, s.header.Get("X-Amz-Date"), s.header.Get("X-Amz-Security-Token"))
	}
	if strings.Contains(auth, "secret") {
		t.Error("the Authorization header holds the secret key")
	}

	c = &Client{BaseURL: srv.URL}
	if _, _, err := c.Describe(ctx, "u"); err != nil {
		t.Fatal(err)
	}
	if got := s.header.Get("Authorization"); got != "" {
		t.Errorf("no auth: Authorization = %q", got)
	}
}

func TestProblems(t *testing.T) {
	ctx := context.Background()
	srv, _ := server(t, 404, "application/problem+json", `{"type":"https://keyvend.dev/problems/not-found","title":"Not found","status":404,"detail":"no user x","request_id":"req-body"}`)
	_, _, err := (&Client{BaseURL: srv.URL}).Describe(ctx, "x")
	var p *Problem
	if !errors.As(err, &p) || p.Status != 404 || p.Detail != "no user x" || p.RequestID != "req-body" || !strings.Contains(err.Error(), "request id: req-body") {
		t.Fatalf("problem+json 404: %#v (%v)", p, err)
	}
	srv, _ = server(t, 403, "application/json", `{"message":"Forbidden"}`)
	_, _, err = (&Client{BaseURL: srv.URL}).Describe(ctx, "x")
	if !errors.As(err, &p) || p.Status != 403 || p.Detail != "Forbidden" || p.RequestID != "req-header" {
		t.Fatalf("API Gateway 403: %#v (%v)", p, err)
	}
}

func TestURLs(t *testing.T) {
	for u, want := range map[string]bool{"http://127.0.0.1:8080": true, "http://localhost:1": true, "http://[::1]:8080": true, "https://abc.execute-api.eu-west-1.amazonaws.com": false, "http://10.0.0.1": false} {
		if Local(u) != want {
			t.Errorf("Local(%s) = %v", u, !want)
		}
	}
	if got := RegionOf("https://abc.execute-api.eu-west-1.amazonaws.com/"); got != "eu-west-1" {
		t.Errorf("RegionOf = %q", got)
	}
	if got := RegionOf("https://keyvend.example.com"); got != "" {
		t.Errorf("RegionOf(custom domain) = %q", got)
	}
}
