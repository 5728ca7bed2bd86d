// Package slacksig checks that a request comes from Slack: the v0
// signature of its body with the app's signing secret (read from Secrets
// Manager, or given locally), within Slack's 5-minute window, and not a
// replay of one already accepted.
package slacksig

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/slack-go/slack"
)

// SignatureWindow is how far a request's timestamp may be from now: Slack's
// 5 minutes, which slack.NewSecretsVerifier enforces.
const SignatureWindow = 5 * time.Minute

// Why a request was not accepted as Slack's.
const (
	RejectMissing  = "missing"  // no signature or timestamp header
	RejectInvalid  = "invalid"  // malformed, or not the HMAC of this body with the signing secret
	RejectStale    = "stale"    // timestamp more than 5 minutes from now
	RejectReplayed = "replayed" // a signature already accepted within its window
)

// Rejection is a request that is not (or no longer) Slack's.
type Rejection struct {
	Reason string
	Err    error
}

func (r *Rejection) Error() string {
	if r.Err != nil {
		return "slack signature " + r.Reason + ": " + r.Err.Error()
	}
	return "slack signature " + r.Reason
}

func (r *Rejection) Unwrap() error { return r.Err }

// Verifier checks that a request comes from Slack: v0 signature of the raw
// body with the app's signing secret (slack.NewSecretsVerifier, which also
// refuses timestamps outside the 5-minute window), then the replay cache.
type Verifier struct {
	Secret SecretSource
	Replay *ReplayCache
	// Now is the clock of the replay cache (time.Now).
	Now func() time.Time
}

// Verify returns nil for a request Slack signed, a *Rejection for one it
// did not, and another error when the signing secret cannot be read
// (keyvend's problem, not the caller's).
func (v *Verifier) Verify(ctx context.Context, h http.Header, body []byte) error {
	if h.Get("X-Slack-Signature") == "" || h.Get("X-Slack-Request-Timestamp") == "" {
		return &Rejection{Reason: RejectMissing}
	}
	secret, err := v.Secret.SigningSecret(ctx)
	if err != nil {
		return err
	}
	sv, err := slack.NewSecretsVerifier(h, secret)
	switch {
	case errors.Is(err, slack.ErrExpiredTimestamp):
		return &Rejection{Reason: RejectStale, Err: err}
	case errors.Is(err, slack.ErrMissingHeaders):
		return &Rejection{Reason: RejectMissing, Err: err}
	case err != nil:
		return &Rejection{Reason: RejectInvalid, Err: err}
	}
	if _, err := sv.Write(body); err != nil {
		return &Rejection{Reason: RejectInvalid, Err: err}
	}
	if err := sv.Ensure(); err != nil {
		return &Rejection{Reason: RejectInvalid, Err: err}
	}
	ts, err := strconv.ParseInt(h.Get("X-Slack-Request-Timestamp"), 10, 64)
	if err != nil { // NewSecretsVerifier parsed it already
		return &Rejection{Reason: RejectInvalid, Err: err}
	}
	now := time.Now
	if v.Now != nil {
		now = v.Now
	}
	// Hex is case-insensitive: the cache key must not be, or a replay
	// with the signature in capitals would pass.
	sig := strings.ToLower(h.Get("X-Slack-Signature"))
	if v.Replay != nil && v.Replay.Seen(sig, time.Unix(ts, 0).Add(SignatureWindow), now()) {
		return &Rejection{Reason: RejectReplayed}
	}
	return nil
}
