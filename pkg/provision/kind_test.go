package provision

import (
	"errors"
	"fmt"
	"testing"
)

// TestKindString pins the names front ends and the audit line give kinds.
func TestKindString(t *testing.T) {
	for k, want := range map[Kind]string{
		0:                "error",
		KindInvalid:      "invalid",
		KindForbidden:    "forbidden",
		KindNotFound:     "not-found",
		KindConflict:     "conflict",
		KindInProgress:   "in-progress",
		KindPrecondition: "precondition-failed",
		KindLimit:        "limit",
	} {
		if got := k.String(); got != want {
			t.Errorf("Kind(%d).String() = %q, want %q", k, got, want)
		}
	}
}

// TestResultOf pins the audit line's result of a failed call.
func TestResultOf(t *testing.T) {
	for _, c := range []struct {
		err  error
		want string
	}{
		{errors.New("aws failed"), "error"},
		{fmt.Errorf("wrapped: %w", notFound("u")), "not-found"},
		{beingChanged("u"), "in-progress"},
		{stillAttached("u"), "conflict"},
		{limited("at the limit"), "limit"},
		{precondition("user %s is not at version %d (If-Match)", "u", 3), "error"},
	} {
		if got := resultOf(c.err); got != c.want {
			t.Errorf("resultOf(%v) = %q, want %q", c.err, got, c.want)
		}
	}
}
