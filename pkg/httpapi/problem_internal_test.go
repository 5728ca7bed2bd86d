package httpapi

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"syscall"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws/ratelimit"
	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"
)

// TestUnreachableAWSIsAServiceUnavailable: an AWS call that could not be
// sent, or whose answer was lost, and the SDK giving up because its retry
// quota is spent, are transient and not keyvend's fault: 503 with
// Retry-After, not 500. A throttled last attempt stays "throttled", a
// deadline stays 504.
func TestUnreachableAWSIsAServiceUnavailable(t *testing.T) {
	discard := slog.New(slog.NewJSONHandler(io.Discard, nil))
	reset := &smithyhttp.RequestSendError{Err: fmt.Errorf("read tcp: %w", syscall.ECONNRESET)}
	quota := fmt.Errorf("failed to get rate limit token, %w", ratelimit.QuotaExceededError{Available: 10, Requested: 14})
	throttle := &smithy.GenericAPIError{Code: "Throttling", Message: "Rate exceeded"}
	for _, c := range []struct {
		name   string
		err    error
		status int
		slug   string
	}{
		{"connection reset", fmt.Errorf("create IAM user u: %w", reset), http.StatusServiceUnavailable, "aws-unavailable"},
		{"retry quota spent after a reset", fmt.Errorf("create IAM user u: %w", errors.Join(reset, quota)), http.StatusServiceUnavailable, "aws-unavailable"},
		{"retry quota spent after throttling", errors.Join(throttle, quota), http.StatusServiceUnavailable, "throttled"},
		{"deadline while sending", &smithyhttp.RequestSendError{Err: context.DeadlineExceeded}, http.StatusGatewayTimeout, "timeout"},
		{"a plain bug", errors.New("nil map"), http.StatusInternalServerError, "internal"},
	} {
		p := ProblemFor(context.Background(), discard, c.err)
		if p.Status != c.status || p.Type != problemBase+c.slug {
			t.Errorf("%s: %d %s, want %d %s", c.name, p.Status, p.Type, c.status, c.slug)
		}
		if c.status == http.StatusServiceUnavailable && p.retryAfter <= 0 {
			t.Errorf("%s: no Retry-After", c.name)
		}
	}
}
