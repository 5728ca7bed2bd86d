package rotation

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/keyvend/keyvend/pkg/state"
)

// LeaseTTL is how long a rotation step holds the user's lease: longer
// than the rotation function's timeout, so a live step never loses it.
const LeaseTTL = 5 * time.Minute

// Principal is who the user's history names for a rotation's changes.
const Principal = "keyvend:rotation"

// lease takes the user's lease in the state table for the steps that
// change keys (createSecret, finishSecret): a keyvend request (rotate,
// delete) and a rotation never act on one user at once. A user the table
// does not record (vended before it: run keyvend reindex), or one another
// operation holds, is an error: Secrets Manager retries the step later.
func (r *Rotator) lease(ctx context.Context, user, token string) (*state.Record, string, error) {
	holder := "rotation:" + token
	rec, err := r.Store.Lease(ctx, user, holder, LeaseTTL, state.LeaseOpts{Phases: []state.Phase{state.Ready}})
	switch {
	case err == nil:
		return rec, holder, nil
	case errors.Is(err, state.ErrNotFound):
		return nil, "", fmt.Errorf("user %s has no record in keyvend's state table (vended before it? run keyvend reindex); not rotated", user)
	case errors.Is(err, state.ErrBusy), errors.Is(err, state.ErrPhase):
		return nil, "", fmt.Errorf("user %s is being changed by another keyvend operation; Secrets Manager retries this step later", user)
	}
	return nil, "", fmt.Errorf("lease user %s: %w", user, err)
}

// release gives the lease back (a step that changed nothing to record, or
// failed).
func (r *Rotator) release(ctx context.Context, user, holder string) {
	if err := r.Store.Release(context.WithoutCancel(ctx), user, holder); err != nil && !errors.Is(err, state.ErrLeaseLost) {
		r.log().ErrorContext(ctx, "rotation: release lease failed; it expires by itself", "user", user, "error", err)
	}
}

// record commits the key now in the secret as the user's key, and prev
// (if any) as its previous key, due for deletion when the grace ends, with
// a history entry, releasing the lease.
func (r *Rotator) record(ctx context.Context, rec *state.Record, holder, keyID, prev, token string) error {
	next := *rec
	now := r.now().UTC()
	entry := &state.History{
		User: rec.Name, Action: "rotate", Principal: Principal, RequestID: token, Result: "ok",
		At: now, Before: rec.Grants, After: rec.Grants, KeyID: keyID,
	}
	if rec.KeyID != keyID {
		next.KeyID, next.KeyAt = keyID, now
	}
	switch {
	case prev == "":
		next.PrevKeyID, next.PrevKeyDeletesAt = "", time.Time{}
	case prev != rec.PrevKeyID || rec.KeyID != keyID:
		next.PrevKeyID, next.PrevKeyDeletesAt = prev, now.Add(r.grace()).Truncate(time.Second)
	}
	if next.PrevKeyID != "" {
		at := next.PrevKeyDeletesAt
		entry.PreviousKeyID, entry.PreviousKeyDeletesAt = next.PrevKeyID, &at
	}
	_, err := r.Store.Commit(ctx, state.Change{Holder: holder, Prev: rec, Next: next, Entry: entry})
	if err != nil {
		return fmt.Errorf("record the rotated key of %s: %w", rec.Name, err)
	}
	return nil
}
