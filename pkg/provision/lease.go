package provision

import (
	"context"
	"errors"

	"github.com/aws/aws-sdk-go-v2/aws"
	iamtypes "github.com/aws/aws-sdk-go-v2/service/iam/types"

	"github.com/keyvend/keyvend/pkg/authz"
	"github.com/keyvend/keyvend/pkg/caller"
	"github.com/keyvend/keyvend/pkg/grants"
	"github.com/keyvend/keyvend/pkg/policy"
	"github.com/keyvend/keyvend/pkg/state"
)

// hold is one operation's lease on a user's record in the state table
// (pkg/state): every change of a user — create, update, rotate, delete,
// the reaper, a rotation — is made holding it, and ends by committing the
// change (version bumped, history appended, lease released in one
// transaction), removing the record (delete), or releasing the lease.
//
// The lease lasts RepairAfter, which exceeds the longest operation: a
// lease past its time belongs to a holder that died, and the next
// operation takes it over atomically and finishes or undoes what it left.
type hold struct {
	s      *Service
	name   string
	holder string
	// rec is the record as leased or claimed; nil while the user is a
	// legacy one (vended before the table) that adopt has not recorded yet.
	rec *state.Record
	// back is the phase a refused operation puts the record back in
	// (a delete marks it deleting as it takes the lease).
	back state.Phase
	// ifMatch is the version the caller named (If-Match), 0 for none.
	ifMatch int64
	// claimed: this request wrote the record (claim), it did not exist.
	claimed bool
	// madeUser: this request's CreateUser made the IAM user (a create
	// that took a record over): a repair that fails deletes it.
	madeUser bool
	done     bool
}

func (s *Service) newHold(name, requestID string) *hold {
	return &hold{s: s, name: name, holder: s.holder(requestID)}
}

// claim writes r as the user's new record, leased to h (a create's
// write-ahead entry).
func (h *hold) claim(ctx context.Context, r state.Record) error {
	rec, err := h.s.store.Claim(ctx, r, h.holder, h.s.cfg.RepairAfter)
	if err != nil {
		return err
	}
	h.rec, h.claimed = rec, true
	return nil
}

// record commits r as the user's record, unchanged in substance, when the
// table does not already say so (a replay of a ready user changes nothing
// and only releases the lease).
func (h *hold) record(ctx context.Context, r state.Record) error {
	cur := h.rec
	if !h.claimed && cur.Phase == r.Phase && cur.KeyID == r.KeyID && cur.UserARN == r.UserARN && sameSet(cur.Grants, r.Grants) && cur.Intact == r.Intact {
		return nil // released by the caller
	}
	_, err := h.commit(ctx, r, nil)
	return err
}

// take leases the user's record with o. ErrNotFound (no record) leaves
// h.rec nil: a legacy user, recorded by adopt once it has been read. A
// refusal (ErrBusy, ErrVersion, ErrPhase) is returned with the record as
// the table holds it, for refused to word after authorization.
func (h *hold) take(ctx context.Context, o state.LeaseOpts) (*state.Record, error) {
	h.ifMatch = o.Version
	rec, err := h.s.store.Lease(ctx, h.name, h.holder, h.s.cfg.RepairAfter, o)
	switch {
	case err == nil:
		h.rec = rec
		if o.SetPhase != "" {
			h.back = rec.Was
		}
		return nil, nil
	case errors.Is(err, state.ErrNotFound):
		return nil, nil
	case errors.Is(err, state.ErrBusy), errors.Is(err, state.ErrVersion), errors.Is(err, state.ErrPhase):
		h.done = true
		return rec, err
	}
	h.done = true
	return nil, wrapf(err, "lease user %s", h.name)
}

// refused is the caller's answer when take was refused: say so only after
// the caller was shown allowed to see the user (authorize first).
func refused(name string, rec *state.Record, err error, ifMatch int64) error {
	switch {
	case errors.Is(err, state.ErrVersion):
		return precondition("user %s is at version %d, not %d (If-Match): it was changed since you read it", name, rec.Version, ifMatch)
	case rec != nil && rec.Phase == state.Deleting:
		return beingDeleted(name)
	case rec != nil && rec.Phase == state.Creating:
		return beingProvisioned(name)
	}
	return beingChanged(name)
}

// refusedAfterAuth answers a refused lease (take) on name: a caller that
// may not act on the user learns only what load tells it (404 or 403);
// one that may learns why (in progress, precondition failed). Other
// errors pass through.
func (s *Service) refusedAfterAuth(ctx context.Context, p caller.Principal, action authz.Action, name string, rec *state.Record, err error, ifMatch int64) error {
	if rec == nil {
		return err
	}
	if _, _, lerr := s.load(ctx, p, action, name, grantState); lerr != nil {
		return lerr
	}
	return refused(name, rec, err, ifMatch)
}

// adopt records a legacy user (one with no record: vended before the
// table existed) as it is in IAM, leased to h; phase, when set, is the
// phase the operation puts it in (a delete: deleting; back is then the
// phase IAM's state says). Another request adopting or creating it
// meanwhile makes this one "in progress".
func (h *hold) adopt(ctx context.Context, user *iamtypes.User, st *userState, phase state.Phase) error {
	if h.rec != nil {
		return nil
	}
	if h.ifMatch != 0 {
		h.done = true
		return precondition("user %s is not at version %d (If-Match)", h.name, h.ifMatch)
	}
	r := h.s.recordOf(user, nil, st)
	if phase != "" {
		h.back, r.Phase = r.Phase, phase
	}
	err := h.claim(ctx, r)
	switch {
	case errors.Is(err, state.ErrExists):
		h.done = true
		return beingChanged(h.name)
	case err != nil:
		h.done = true
		return wrapf(err, "record user %s", h.name)
	}
	return nil
}

// commit writes next as the user's record with entry, releasing the lease.
// A lease that went stale and was taken over is ErrLeaseLost: nothing is
// written, and the caller reports the user as changed by another request.
func (h *hold) commit(ctx context.Context, next state.Record, entry *state.History) (*state.Record, error) {
	rec, err := h.s.store.Commit(ctx, state.Change{Holder: h.holder, Prev: h.rec, Next: next, Entry: entry})
	if err != nil {
		if errors.Is(err, state.ErrLeaseLost) {
			h.done = true
			h.s.log.ErrorContext(ctx, "lease lost before commit: another request took the user over", "user", h.name, "holder", h.holder)
			return nil, beingChanged(h.name)
		}
		return nil, wrapf(err, "record the change of user %s", h.name)
	}
	h.done, h.rec = true, rec
	return rec, nil
}

// remove deletes the user's record (the user is gone from IAM) with its
// last history entry.
func (h *hold) remove(ctx context.Context, entry *state.History) error {
	if h.rec == nil {
		h.done = true
		if entry != nil {
			return h.s.store.Append(ctx, *entry)
		}
		return nil
	}
	err := h.s.store.Remove(ctx, h.holder, h.rec, entry)
	switch {
	case err == nil:
		h.done = true
	case errors.Is(err, state.ErrLeaseLost):
		h.done = true
		return beingChanged(h.name)
	}
	return err // not removed: release gives the lease back
}

// retake leases the record again at the version h last committed (a
// create whose store step failed after its commit, compensating).
func (h *hold) retake(ctx context.Context) bool {
	rec, err := h.s.store.Lease(ctx, h.name, h.holder, h.s.cfg.RepairAfter, state.LeaseOpts{Version: h.rec.Version})
	if err != nil {
		return false
	}
	h.rec, h.done = rec, false
	return true
}

// release gives the lease back unless the operation committed or removed
// the record; a refused delete also puts the record back in its phase.
// It runs detached from the request (a cancelled request still releases).
func (h *hold) release(ctx context.Context) {
	if h == nil || h.done || h.rec == nil {
		return
	}
	h.done = true
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), h.s.cfg.CompensationTimeout)
	defer cancel()
	var err error
	if h.back != "" {
		err = h.s.store.Abort(ctx, h.name, h.holder, h.back)
	} else {
		err = h.s.store.Release(ctx, h.name, h.holder)
	}
	if err != nil && !errors.Is(err, state.ErrLeaseLost) {
		h.s.log.ErrorContext(ctx, "release lease failed; it expires by itself", "user", h.name, "error", err)
	}
}

// recordOf is the record of a user as IAM and Secrets Manager hold it:
// for a user vended before the table (adopt, reindex) and for a user a
// request found made by another (replay, repair).
func (s *Service) recordOf(user *iamtypes.User, held *grants.Held, st *userState) state.Record {
	r := state.Record{
		Name: aws.ToString(user.UserName), UserARN: aws.ToString(user.Arn), Phase: state.Creating,
		Requester: requesterOf(user), Reason: userTag(user, TagReason), RequestID: userTag(user, TagRequestID),
		CreatedAt: aws.ToTime(user.CreateDate).UTC(), ExpiresAt: expiryOf(user.Tags), GrantMode: string(s.cfg.GrantMode),
	}
	if held == nil && st != nil {
		held = st.held
	}
	if held != nil {
		r.Grants, r.Intact = held.Grants, held.Intact
		switch {
		case len(held.Groups) > 0 && held.Policy:
			r.GrantMode = "mixed"
		case len(held.Groups) > 0:
			r.GrantMode = string(grants.Group)
		case held.Policy:
			r.GrantMode = string(grants.Policy)
		}
	}
	if st != nil {
		if k := st.secretKey(); k != nil {
			r.Phase, r.KeyID, r.KeyAt = state.Ready, aws.ToString(k.AccessKeyId), aws.ToTime(k.CreateDate).UTC()
		}
	}
	return r
}

// entry is a history entry of a change made for p.
func (s *Service) entry(action string, p caller.Principal, requestID, user string, before, after []policy.Grant, keyID string, inputs map[string]any) *state.History {
	return &state.History{
		User: user, Action: action, Principal: p.ID, Requester: p.Requester(), RequestID: requestID,
		Inputs: inputs, Result: "ok", At: s.cfg.Now().UTC(), Before: before, After: after, KeyID: keyID,
	}
}
