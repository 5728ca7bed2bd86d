package provision

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	iamtypes "github.com/aws/aws-sdk-go-v2/service/iam/types"

	"github.com/keyvend/keyvend/pkg/caller"
	"github.com/keyvend/keyvend/pkg/grants"
	"github.com/keyvend/keyvend/pkg/policy"
	"github.com/keyvend/keyvend/pkg/state"
)

// HalfMadeAfter is how old a half-made user must be before the reaper
// repairs or removes it: far longer than any request takes.
const HalfMadeAfter = 15 * time.Minute

// ReapReport is what one reaper run did, as JSON.
type ReapReport struct {
	StartedAt time.Time `json:"started_at"`
	// Due is how many records the expiry index gave (expired users, and
	// records a request that died left in creating or deleting).
	Due int `json:"due"`
	// Checked is how many IAM users the reconciliation's slice looked at.
	Checked          int         `json:"checked"`
	Expired          []string    `json:"expired_deleted"`
	HalfMadeDeleted  []string    `json:"half_made_deleted"`
	StrayKeysDeleted []KeyOfUser `json:"stray_keys_deleted"`
	// PreviousKeysDeleted are rotated-out keys whose grace ended.
	PreviousKeysDeleted []KeyOfUser `json:"previous_keys_deleted"`
	Repaired            []string    `json:"repaired"`
	// Adopted are keyvend users the table had no record of (vended before
	// it existed, or a record lost): recorded as IAM holds them.
	Adopted []string `json:"adopted"`
	// RecordsRemoved are records whose IAM user is gone.
	RecordsRemoved []string `json:"records_removed"`
	// OrphanSecretsDeleted are keyvend secrets whose user is gone
	// (scheduled for deletion with the recovery window).
	OrphanSecretsDeleted []string `json:"orphan_secrets_deleted"`
	// Reconciled says where the reconciliation's walks stand: each run
	// takes a bounded slice and resumes where the last one stopped.
	Reconciled ReconcileProgress `json:"reconciled"`
	Errors     []ReapError       `json:"errors"`
}

// ReconcileProgress is how far each reconciliation walk got this run;
// true when it reached the end (the next run starts it over).
type ReconcileProgress struct {
	Users   bool `json:"users_complete"`
	Records bool `json:"records_complete"`
	Secrets bool `json:"secrets_complete"`
}

// KeyOfUser names one access key.
type KeyOfUser struct {
	User        string `json:"user"`
	AccessKeyID string `json:"access_key_id"`
}

// ReapError is a user the run could not handle; the next run tries again.
type ReapError struct {
	User  string `json:"user"`
	Error string `json:"error"`
}

func newReport(now time.Time) *ReapReport {
	return &ReapReport{StartedAt: now.UTC(), Expired: []string{}, HalfMadeDeleted: []string{}, StrayKeysDeleted: []KeyOfUser{}, PreviousKeysDeleted: []KeyOfUser{},
		Repaired: []string{}, Adopted: []string{}, RecordsRemoved: []string{}, OrphanSecretsDeleted: []string{}, Errors: []ReapError{}}
}

// reporter adds to a report from concurrent workers.
type reporter struct {
	mu  sync.Mutex
	rep *ReapReport
}

func (r *reporter) add(f func(*ReapReport)) {
	r.mu.Lock()
	defer r.mu.Unlock()
	f(r.rep)
}

func (r *reporter) fail(user string, err error) {
	r.add(func(rep *ReapReport) { rep.Errors = append(rep.Errors, ReapError{User: user, Error: err.Error()}) })
}

// Reap does what is due, then a slice of reconciliation:
//
//  1. What is due, from one query of the state table's expiry index, so a
//     run costs what is due, not what exists: users past their expiry are
//     deprovisioned (secret scheduled for deletion); a record a request
//     that died left in creating is finished (its user complete) or the
//     user deprovisioned; one left in deleting is deleted; a rotation's
//     previous key whose grace is over is deleted.
//  2. Reconciliation (reconcile.go), a bounded slice per run, resumed from
//     a checkpoint in the table: IAM users (adopting keyvend users with no
//     record; half-made users older than HalfMadeAfter deprovisioned; keys
//     outside the secret deleted, a secret with no live key restocked),
//     records (removed when their user is gone) and secrets (a keyvend
//     secret whose user is gone scheduled for deletion).
//  3. History retention: entries of deleted users get their TTL.
//
// Every change to a user is made holding its lease; a user a request holds
// is left for the next run. Running it again changes nothing more. Errors
// on one user do not stop the others; they are in the report.
func (s *Service) Reap(ctx context.Context) (*ReapReport, error) {
	r := &reporter{rep: newReport(s.cfg.Now())}
	due, err := s.store.Due(ctx, s.cfg.Now(), s.cfg.ReapBatch)
	if err != nil {
		return r.rep, wrapf(err, "read the users due")
	}
	r.rep.Due = len(due)
	each(due, 4, func(rec *state.Record) { s.reapDue(ctx, rec, r) })
	if s.rules.RequiresApproval() { // pending approvals past their expiry (one more query)
		if _, err := s.ExpireRequests(ctx); err != nil {
			s.log.ErrorContext(ctx, "reap: pending approval requests not expired; the next run tries again", "error", err)
		}
	}
	err = s.reconcile(ctx, r, s.cfg.ReconcileSlice, false)
	s.expireHistory(ctx, r) // whatever the reconciliation met
	return r.rep, err
}

// each runs f on every item, n at a time.
func each[T any](items []T, n int, f func(T)) {
	sem := make(chan struct{}, n)
	var wg sync.WaitGroup
	for _, it := range items {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			f(it)
		}()
	}
	wg.Wait()
}

// reapDue handles one record the expiry index gave.
func (s *Service) reapDue(ctx context.Context, rec *state.Record, r *reporter) {
	h := s.newHold(rec.Name, "reaper")
	defer h.release(ctx)
	if _, err := h.take(ctx, state.LeaseOpts{SetPhase: state.Deleting}); err != nil {
		if !errors.Is(err, state.ErrBusy) {
			r.fail(rec.Name, err)
		}
		return // a request holds it: the next run looks again
	}
	if h.rec == nil {
		return // removed since the query
	}
	now := s.cfg.Now()
	expired := h.rec.ExpiresAt != nil && !now.Before(*h.rec.ExpiresAt)
	if !expired && h.back == state.Ready {
		// A rotation's previous key whose grace is over is deleted. Else
		// not due any more (its expiry moved, or a refused delete left its
		// index key at a stale time): written back as it is, which puts
		// its expiry index key right.
		next := *h.rec
		next.Phase = state.Ready
		var entry *state.History
		prev := next.PrevKeyID
		if prev != "" && !now.Before(next.PrevKeyDeletesAt) {
			if prev != next.KeyID { // never the key in the secret
				_, err := s.iam.DeleteAccessKey(ctx, &iam.DeleteAccessKeyInput{UserName: aws.String(rec.Name), AccessKeyId: aws.String(prev)})
				if err != nil && !isCode(err, codeNoSuchEntity) {
					r.fail(rec.Name, wrapf(err, "delete previous access key %s of user %s", prev, rec.Name))
					return
				}
			}
			entry = s.entry("delete-previous-key", caller.Principal{ID: ReaperPrincipal}, "reaper", rec.Name, next.Grants, next.Grants, next.KeyID, nil)
			entry.PreviousKeyID = prev
			next.PrevKeyID, next.PrevKeyDeletesAt = "", time.Time{}
		}
		if _, err := h.commit(ctx, next, entry); err != nil {
			r.fail(rec.Name, err)
			return
		}
		if entry != nil {
			r.add(func(rep *ReapReport) {
				rep.PreviousKeysDeleted = append(rep.PreviousKeysDeleted, KeyOfUser{User: rec.Name, AccessKeyID: prev})
			})
		}
		return
	}
	if !expired && h.back == state.Creating {
		// A create died after its user was made: keep the user if it is
		// complete (the record was all it missed), else remove it. A read
		// that fails decides nothing: the next run looks again.
		st, err := s.readUserState(ctx, rec.Name, allState)
		if err != nil && !isCode(err, codeNoSuchEntity) {
			r.fail(rec.Name, err)
			return
		}
		if err == nil && st.complete() {
			u, _, gerr := s.readUser(ctx, rec.Name, stateParts{}, func(*iamtypes.User) error { return notFound(rec.Name) })
			if gerr != nil && KindOf(gerr) != KindNotFound {
				r.fail(rec.Name, gerr)
				return
			}
			if gerr == nil {
				next := s.recordOf(u, nil, st)
				if _, err := h.commit(ctx, next, s.entry("repair", caller.Principal{ID: ReaperPrincipal}, "reaper", rec.Name, nil, next.Grants, next.KeyID, nil)); err != nil {
					r.fail(rec.Name, err)
					return
				}
				r.add(func(rep *ReapReport) { rep.Repaired = append(rep.Repaired, rec.Name) })
				return
			}
		}
	}
	action := "reap-expired"
	if !expired {
		action = "reap-half-made"
	}
	if err := s.reapDelete(ctx, h, action); err != nil {
		r.fail(rec.Name, err)
		return
	}
	r.add(func(rep *ReapReport) {
		if expired {
			rep.Expired = append(rep.Expired, rec.Name)
		} else {
			rep.HalfMadeDeleted = append(rep.HalfMadeDeleted, rec.Name)
		}
	})
}

// expireHistory gives the history of users deleted since the last run its
// retention (HistoryRetention), by TTL.
func (s *Service) expireHistory(ctx context.Context, r *reporter) {
	names, err := s.store.Deleted(ctx, s.cfg.ReapBatch)
	if err != nil {
		r.fail("", wrapf(err, "read deleted users"))
		return
	}
	each(names, 4, func(name string) {
		if err := s.store.ExpireHistory(ctx, name, s.cfg.HistoryRetention); err != nil {
			r.fail(name, err)
		}
	})
}

// restock puts a new key in the secret of a user whose secret holds no
// live key, if the secret is keyvend's for that user (ownSecret). The
// caller holds the user's lease (h) and commits the new key id.
func (s *Service) restock(ctx context.Context, h *hold, held *grants.Held) error {
	name := h.name
	if _, err := s.ownSecret(ctx, name); err != nil && !isCode(err, codeResourceNotFound) {
		return err
	}
	out, err := s.iam.CreateAccessKey(ctx, &iam.CreateAccessKeyInput{UserName: &name})
	if err != nil {
		return wrapf(err, "create access key for %s", name)
	}
	if _, err := s.putKey(ctx, caller.Principal{}, "reaper", name, out.AccessKey); err != nil {
		s.compensate(ctx, &saga{user: name, keyID: aws.ToString(out.AccessKey.AccessKeyId)}, err)
		return err
	}
	next := *h.rec // with the grants IAM holds (read under the lease)
	next.Phase, next.KeyID, next.KeyAt = state.Ready, aws.ToString(out.AccessKey.AccessKeyId), s.cfg.Now().UTC()
	if held != nil {
		next.Grants, next.Intact = held.Grants, held.Intact
	}
	_, err = h.commit(ctx, next, s.entry("repair", caller.Principal{ID: ReaperPrincipal}, "reaper", name, h.rec.Grants, next.Grants, next.KeyID, nil))
	return err
}

// ReaperPrincipal is who the audit log names for the reaper's changes.
const ReaperPrincipal = "keyvend:reaper"

// reapDelete deprovisions the user h holds for the reaper.
func (s *Service) reapDelete(ctx context.Context, h *hold, action string) (err error) {
	var before []policy.Grant
	if h.rec != nil {
		before = h.rec.Grants
	}
	defer s.audit(ctx, time.Now(), action, caller.Principal{ID: ReaperPrincipal}, "reaper", h.name, before, &err)
	return s.deprovision(ctx, h, false, s.entry(action, caller.Principal{ID: ReaperPrincipal}, "reaper", h.name, before, nil, "", nil))
}
