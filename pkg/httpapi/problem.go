package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws/ratelimit"
	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"

	"github.com/keyvend/keyvend/pkg/caller"
	"github.com/keyvend/keyvend/pkg/policy"
	"github.com/keyvend/keyvend/pkg/provision"
)

// Problem is an RFC 9457 problem details document.
type Problem struct {
	Type      string              `json:"type"`
	Title     string              `json:"title"`
	Status    int                 `json:"status"`
	Detail    string              `json:"detail,omitempty"`
	RequestID string              `json:"request_id"`
	Errors    []policy.FieldError `json:"errors,omitempty"`

	retryAfter time.Duration
}

const problemBase = "https://keyvend.dev/problems/"

// Error makes a problem an endpoint's error: served as it is.
func (p *Problem) Error() string {
	if p.Detail == "" {
		return p.Title
	}
	return p.Title + ": " + p.Detail
}

func newProblem(status int, slug, title, detail string) *Problem {
	return &Problem{Type: problemBase + slug, Title: title, Status: status, Detail: detail}
}

// throttleCodes are the AWS error codes of request throttling.
var throttleCodes = map[string]bool{
	"Throttling": true, "ThrottlingException": true, "ThrottledException": true,
	"RequestLimitExceeded": true, "TooManyRequestsException": true,
	"RequestThrottled": true, "RequestThrottledException": true, "SlowDown": true,
}

// ProblemFor maps an error from the service to the problem the caller sees.
// Errors that are keyvend's or AWS's are logged in full and answered with a
// generic 5xx: their details (ARNs, permissions) stay in the log.
func ProblemFor(ctx context.Context, log *slog.Logger, err error) *Problem {
	var pe *provision.Error
	if errors.As(err, &pe) {
		var p *Problem
		switch pe.Kind {
		case provision.KindInvalid:
			p = newProblem(http.StatusBadRequest, "validation", "Invalid request", pe.Detail)
			p.Errors = pe.Fields
		case provision.KindForbidden:
			p = newProblem(http.StatusForbidden, "forbidden", "Not allowed", pe.Detail)
		case provision.KindNotFound:
			p = newProblem(http.StatusNotFound, "not-found", "Not found", pe.Detail)
		case provision.KindConflict:
			p = newProblem(http.StatusConflict, "conflict", "Conflict", pe.Detail)
		case provision.KindInProgress:
			p = newProblem(http.StatusConflict, "in-progress", "In progress", pe.Detail)
			p.retryAfter = pe.RetryAfter
		case provision.KindPrecondition:
			p = newProblem(http.StatusPreconditionFailed, "precondition-failed", "Precondition failed", pe.Detail)
		case provision.KindLimit:
			p = newProblem(http.StatusTooManyRequests, "limit", "Limit reached", pe.Detail)
		case provision.KindGone:
			p = newProblem(http.StatusGone, "gone", "Gone", pe.Detail)
		}
		if p != nil {
			return p
		}
	}
	if errors.Is(err, caller.ErrNoIdentity) {
		return newProblem(http.StatusUnauthorized, "unauthenticated", "Unauthenticated", "the request carries no caller identity keyvend accepts")
	}
	var ae smithy.APIError
	switch {
	case errors.As(err, &ae) && throttleCodes[ae.ErrorCode()]:
		log.WarnContext(ctx, "AWS throttled keyvend after retries", "error", err.Error())
		p := newProblem(http.StatusServiceUnavailable, "throttled", "AWS is throttling keyvend", "try again shortly")
		p.retryAfter = 5 * time.Second
		return p
	case errors.As(err, &ae) && (strings.Contains(ae.ErrorCode(), "AccessDenied") || ae.ErrorCode() == "UnauthorizedOperation"):
		log.ErrorContext(ctx, "keyvend's own role lacks a permission", "aws_code", ae.ErrorCode(), "error", err.Error())
		return newProblem(http.StatusInternalServerError, "internal", "Internal error", "keyvend is missing a permission; the operator has the details in the log")
	case errors.Is(err, context.DeadlineExceeded):
		log.ErrorContext(ctx, "request timed out", "error", err.Error())
		return newProblem(http.StatusGatewayTimeout, "timeout", "Timed out", "AWS did not answer in time; the request is safe to retry")
	case unreachable(err):
		log.ErrorContext(ctx, "AWS unreachable after retries", "error", err.Error())
		p := newProblem(http.StatusServiceUnavailable, "aws-unavailable", "AWS unavailable", "keyvend could not reach AWS; try again shortly")
		p.retryAfter = 5 * time.Second
		return p
	case errors.As(err, &ae):
		log.ErrorContext(ctx, "AWS call failed", "aws_code", ae.ErrorCode(), "error", err.Error())
		return newProblem(http.StatusBadGateway, "aws-error", "AWS error", "an AWS call failed ("+ae.ErrorCode()+"); the request is safe to retry")
	default:
		log.ErrorContext(ctx, "internal error", "error", err.Error())
		return newProblem(http.StatusInternalServerError, "internal", "Internal error", "")
	}
}

// unreachable reports whether err is a failure to reach AWS — a request
// that could not be sent or whose answer was lost — or the SDK giving up
// retrying because its retry quota is spent (many calls of this process
// are failing): transient, and not keyvend's fault.
func unreachable(err error) bool {
	var send *smithyhttp.RequestSendError
	var quota ratelimit.QuotaExceededError
	return errors.As(err, &send) || errors.As(err, &quota)
}

func writeProblem(w http.ResponseWriter, r *http.Request, p *Problem) {
	p.RequestID = RequestID(r.Context())
	if p.retryAfter > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(int((p.retryAfter+time.Second-1)/time.Second)))
	}
	writeJSON(w, p.Status, "application/problem+json", p)
}

// WriteJSON answers v as application/json with status, uncached.
func WriteJSON(w http.ResponseWriter, status int, v any) {
	writeJSON(w, status, "application/json", v)
}

func writeJSON(w http.ResponseWriter, status int, contentType string, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		status = http.StatusInternalServerError
		contentType = "application/problem+json"
		body = []byte(`{"type":"` + problemBase + `internal","title":"Internal error","status":500}`)
	}
	w.Header().Set("Content-Type", contentType)
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_, _ = w.Write(append(body, '\n'))
}
