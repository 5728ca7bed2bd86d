package provision

import (
	"errors"
	"fmt"
	"time"

	"github.com/keyvend/keyvend/pkg/awserr"
	"github.com/keyvend/keyvend/pkg/policy"
)

// Kind classifies an error for the caller: each maps to one HTTP status.
type Kind int

// Error kinds.
const (
	KindInvalid      Kind = iota + 1 // the request breaks a rule: 400
	KindForbidden                    // no rule allows it: 403
	KindNotFound                     // no such managed user: 404
	KindConflict                     // existing state contradicts the request: 409
	KindInProgress                   // another request is working on this user: 409 + Retry-After
	KindPrecondition                 // the user is not at the version the caller named (If-Match): 412
)

// Error is an error keyvend reports to its caller as is. Other errors are
// keyvend's or AWS's and are reported as 5xx without their details.
type Error struct {
	Kind       Kind
	Detail     string
	Fields     []policy.FieldError
	RetryAfter time.Duration
	Err        error
}

func (e *Error) Error() string {
	if e.Err != nil {
		return e.Detail + ": " + e.Err.Error()
	}
	return e.Detail
}

func (e *Error) Unwrap() error { return e.Err }

// KindOf returns the Kind of err, or 0 when err is not a caller-facing *Error.
func KindOf(err error) Kind {
	var e *Error
	if errors.As(err, &e) {
		return e.Kind
	}
	return 0
}

// isCode reports whether err is an AWS API error with one of codes.
func isCode(err error, codes ...string) bool { return awserr.Is(err, codes...) }

// Codes keyvend acts on.
const (
	codeNoSuchEntity     = "NoSuchEntity"
	codeEntityExists     = "EntityAlreadyExists"
	codeResourceNotFound = "ResourceNotFoundException"
	codeResourceExists   = "ResourceExistsException"
	codeInvalidRequest   = "InvalidRequestException"
)

// wrapf adds an operator-facing description of the failed step to err.
func wrapf(err error, format string, args ...any) error {
	return fmt.Errorf(format+": %w", append(args, err)...)
}
