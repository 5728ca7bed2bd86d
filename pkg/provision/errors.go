package provision

import (
	"errors"
	"fmt"
	"time"

	"github.com/keyvend/keyvend/pkg/awserr"
	"github.com/keyvend/keyvend/pkg/grants"
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
	KindLimit                        // the requester holds as many users as the rules allow (max_users): 429
	KindGone                         // an approval request expired before the decision: 410
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

// String is the kind's stable name, as the audit line's result and the
// Slack command's give it; "error" for 0 (not a caller-facing error).
func (k Kind) String() string {
	switch k {
	case KindInvalid:
		return "invalid"
	case KindForbidden:
		return "forbidden"
	case KindNotFound:
		return "not-found"
	case KindConflict:
		return "conflict"
	case KindInProgress:
		return "in-progress"
	case KindPrecondition:
		return "precondition-failed"
	case KindLimit:
		return "limit"
	case KindGone:
		return "gone"
	}
	return "error"
}

// KindOf returns the Kind of err, or 0 when err is not a caller-facing *Error.
func KindOf(err error) Kind {
	var e *Error
	if errors.As(err, &e) {
		return e.Kind
	}
	return 0
}

// inProgressRetry is the Retry-After for a user another request is working on.
const inProgressRetry = 2 * time.Second

// The constructors of caller-facing errors: every *Error keyvend returns
// is made by one of them.

func invalid(detail string, fields ...policy.FieldError) error {
	return &Error{Kind: KindInvalid, Detail: detail, Fields: fields}
}

func forbidden(format string, args ...any) error {
	return &Error{Kind: KindForbidden, Detail: fmt.Sprintf(format, args...)}
}

func notFound(name string) error {
	return &Error{Kind: KindNotFound, Detail: fmt.Sprintf("no user %s is managed by keyvend", name)}
}

func conflict(format string, args ...any) error {
	return &Error{Kind: KindConflict, Detail: fmt.Sprintf(format, args...)}
}

// conflictCausedBy is a conflict whose cause stays in the error chain (for
// the log).
func conflictCausedBy(cause error, detail string) error {
	return &Error{Kind: KindConflict, Detail: detail, Err: cause}
}

func precondition(format string, args ...any) error {
	return &Error{Kind: KindPrecondition, Detail: fmt.Sprintf(format, args...)}
}

// limited answers a create beyond a rule's max_users.
func limited(format string, args ...any) error {
	return &Error{Kind: KindLimit, Detail: fmt.Sprintf(format, args...)}
}

// busy answers for a user another request is working on (doing: "being
// provisioned by another request", …); a retry after inProgressRetry may
// find it done.
func busy(name, doing string) error {
	return &Error{Kind: KindInProgress, RetryAfter: inProgressRetry, Detail: fmt.Sprintf("user %s is %s", name, doing)}
}

// beingProvisioned answers for a user another request is creating.
func beingProvisioned(name string) error { return busy(name, "being provisioned by another request") }

// beingChanged answers for a user that changed under this request (it
// vanished while being read, or its lease was taken over): another
// request's work. A retry starts clean.
func beingChanged(name string) error { return busy(name, "being changed by another request") }

// beingDeleted answers for a user a delete holds.
func beingDeleted(name string) error { return busy(name, "being deleted") }

// stillAttached answers a DeleteUser that IAM refused: something is still
// attached to the user.
func stillAttached(name string) error {
	return &Error{Kind: KindConflict, RetryAfter: inProgressRetry, Detail: fmt.Sprintf("user %s still has something attached: a key or group added by a concurrent request (retry), or something keyvend does not manage such as a login profile, MFA device, SSH key or certificate", name)}
}

// grantError turns a grant carrier's refusal into the caller-facing error:
// a grant group keyvend will not use is a conflict, and so is IAM's group
// quota (retrying does not help; grant mode policy has no such limit).
func grantError(err error) error {
	var ce *grants.ConflictError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &ce):
		return conflictCausedBy(err, ce.Detail)
	case errors.Is(err, grants.ErrGroupQuota):
		return conflictCausedBy(err, "IAM's quota of groups per account (300 by default) is reached, so keyvend cannot create the group for a new grant; "+
			"retrying does not help: ask AWS for a higher quota, reuse existing grants, or deploy keyvend in grant mode policy (no groups)")
	}
	return err
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
