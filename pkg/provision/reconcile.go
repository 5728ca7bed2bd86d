package provision

import (
	"context"
	"errors"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	iamtypes "github.com/aws/aws-sdk-go-v2/service/iam/types"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	smtypes "github.com/aws/aws-sdk-go-v2/service/secretsmanager/types"

	"github.com/keyvend/keyvend/pkg/caller"
	"github.com/keyvend/keyvend/pkg/state"
)

// The reconciliation's walks, each checkpointed in the table under its name.
const (
	walkUsers   = "iam-users"
	walkRecords = "records"
	walkSecrets = "secrets"
)

// reconcile repairs drift between the table, IAM and Secrets Manager, a
// slice of each walk per call (at most n IAM users, n records, n secrets),
// each resumed where its last call stopped. adoptOnly (reindex) only
// records keyvend users the table lacks and changes nothing in AWS.
func (s *Service) reconcile(ctx context.Context, r *reporter, n int, adoptOnly bool) error {
	// The walks are independent: one that fails (IAM refusing ListUsers,
	// say) does not stop the others; the first error is returned.
	done, usersErr := s.reconcileUsers(ctx, r, n, adoptOnly)
	r.rep.Reconciled.Users = done && usersErr == nil
	if adoptOnly {
		return usersErr
	}
	var recordsErr, secretsErr error
	r.rep.Reconciled.Records, recordsErr = s.reconcileRecords(ctx, r, n)
	r.rep.Reconciled.Secrets, secretsErr = s.reconcileSecrets(ctx, r, n)
	return errors.Join(usersErr, recordsErr, secretsErr)
}

// Reindex records every keyvend user the state table has no record of, as
// IAM holds it: run once after upgrading a deployment that vended users
// before the table existed (`keyvend reindex`). It changes nothing in IAM
// or Secrets Manager, and running it again changes nothing more.
func (s *Service) Reindex(ctx context.Context) (*ReapReport, error) {
	r := &reporter{rep: newReport(s.cfg.Now())}
	if err := s.store.SetCheckpoint(ctx, walkUsers+"-reindex", ""); err != nil {
		return r.rep, err
	}
	for {
		done, err := s.walkUsers(ctx, r, walkUsers+"-reindex", 100, true)
		if err != nil || done {
			r.rep.Reconciled.Users = done
			return r.rep, err
		}
	}
}

func (s *Service) reconcileUsers(ctx context.Context, r *reporter, n int, adoptOnly bool) (bool, error) {
	return s.walkUsers(ctx, r, walkUsers, n, adoptOnly)
}

// walkUsers takes the next slice of up to n IAM users under the user path
// from walk's checkpoint and reconciles each; it reports whether the walk
// reached the end (and starts it over next time).
func (s *Service) walkUsers(ctx context.Context, r *reporter, walk string, n int, adoptOnly bool) (bool, error) {
	marker, err := s.store.Checkpoint(ctx, walk)
	if err != nil {
		return false, err
	}
	in := &iam.ListUsersInput{PathPrefix: &s.cfg.UserPath, MaxItems: aws.Int32(int32(n))}
	if marker != "" {
		in.Marker = &marker
	}
	page, err := s.iam.ListUsers(ctx, in)
	if err != nil {
		return false, wrapf(err, "list users under %s", s.cfg.UserPath)
	}
	var users []iamtypes.User
	for _, u := range page.Users {
		if aws.ToString(u.Path) == s.cfg.UserPath {
			users = append(users, u)
		}
	}
	each(users, 4, func(u iamtypes.User) { s.reconcileUser(ctx, u, r, adoptOnly) })
	next := ""
	if page.IsTruncated {
		next = aws.ToString(page.Marker)
	}
	return next == "", s.store.SetCheckpoint(ctx, walk, next)
}

// reconcileUser brings one IAM user and its record into agreement: a
// keyvend user with no record is adopted; one older than HalfMadeAfter is
// checked for keys outside its secret (deleted; a secret with no live key
// gets a new one) and, with no secret at all, deprovisioned. A user a
// request holds is left for the next run.
func (s *Service) reconcileUser(ctx context.Context, u iamtypes.User, r *reporter, adoptOnly bool) {
	name := aws.ToString(u.UserName)
	tags, err := s.iam.ListUserTags(ctx, &iam.ListUserTagsInput{UserName: &name})
	if isCode(err, codeNoSuchEntity) {
		return
	}
	if err != nil {
		r.fail(name, wrapf(err, "list tags of %s", name))
		return
	}
	u.Tags = tags.Tags
	if !s.managedUser(&u) {
		return
	}
	r.add(func(rep *ReapReport) { rep.Checked++ })
	h := s.newHold(name, "reaper")
	defer h.release(ctx)
	if _, err := h.take(ctx, state.LeaseOpts{Phases: []state.Phase{state.Ready}}); err != nil {
		if !errors.Is(err, state.ErrBusy) && !errors.Is(err, state.ErrPhase) {
			r.fail(name, err)
		}
		return // held by a request, or creating/deleting: the expiry index has it
	}
	old := s.cfg.Now().Sub(aws.ToTime(u.CreateDate)) >= HalfMadeAfter
	if h.rec != nil && (adoptOnly || !old) {
		return // recorded; young users are their requests' business
	}
	st, err := s.readUserState(ctx, name, allState)
	if isCode(err, codeNoSuchEntity) {
		return
	}
	if err != nil {
		r.fail(name, err)
		return
	}
	if h.rec == nil {
		if !adoptOnly && old && st.secret == nil {
			s.reapHalfMade(ctx, h, &u, st, r)
			return
		}
		if !adoptOnly && !old && !st.complete() {
			return // being made by a request of a keyvend without the table
		}
		var phase state.Phase
		if st.secret != nil && !st.complete() {
			// Vended once (its secret is written last), its key lost
			// since: recorded ready, to be restocked, not taken for a
			// create that died (which the expiry index would remove).
			phase = state.Ready
		}
		if err := h.adopt(ctx, &u, st, phase); err != nil {
			r.fail(name, err)
			return
		}
		if phase != "" {
			h.back = "" // released as recorded
		}
		r.add(func(rep *ReapReport) { rep.Adopted = append(rep.Adopted, name) })
		if adoptOnly {
			if _, err := h.commit(ctx, *h.rec, s.entry("adopt", caller.Principal{ID: ReaperPrincipal}, "reindex", name, nil, h.rec.Grants, h.rec.KeyID, nil)); err != nil {
				r.fail(name, err)
			}
			return
		}
	}
	if st.secret == nil {
		s.reapHalfMade(ctx, h, &u, st, r)
		return
	}
	keep := st.secretKey()
	// A rotation's previous key in its grace is not a stray: it is the
	// reaper's when the grace ends (reapDue).
	keys := st.keys
	if h.rec != nil && h.rec.PrevKeyID != "" && s.cfg.Now().Before(h.rec.PrevKeyDeletesAt) &&
		(keep == nil || aws.ToString(keep.AccessKeyId) != h.rec.PrevKeyID) {
		keys = nil
		for _, k := range st.keys {
			if aws.ToString(k.AccessKeyId) != h.rec.PrevKeyID {
				keys = append(keys, k)
			}
		}
	}
	if keep != nil && len(keys) == 1 {
		switch id := aws.ToString(keep.AccessKeyId); {
		case h.claimed:
			_, _ = h.commit(ctx, *h.rec, s.entry("adopt", caller.Principal{ID: ReaperPrincipal}, "reaper", name, nil, h.rec.Grants, h.rec.KeyID, nil))
		case h.rec.KeyID != id || !sameSet(h.rec.Grants, st.held.Grants) || h.rec.Intact != st.held.Intact:
			// The record missed the key its secret holds (a restock's
			// commit failed after the key was stored), or the grants IAM
			// holds (an update died between writing them and its commit;
			// found by the model, protocol.pml FIX_RECONCILE): it takes
			// IAM's.
			next := *h.rec
			next.Phase, next.Grants, next.Intact = state.Ready, st.held.Grants, st.held.Intact
			if next.KeyID != id {
				next.KeyID, next.KeyAt = id, aws.ToTime(keep.CreateDate).UTC()
			}
			if _, err := h.commit(ctx, next, s.entry("repair", caller.Principal{ID: ReaperPrincipal}, "reaper", name, h.rec.Grants, next.Grants, id, nil)); err != nil {
				r.fail(name, err)
			}
		}
		return // complete: its only key is the one in its secret
	}
	var stray []KeyOfUser
	for _, k := range keys {
		if keep == nil || aws.ToString(k.AccessKeyId) != aws.ToString(keep.AccessKeyId) {
			stray = append(stray, KeyOfUser{User: name, AccessKeyID: aws.ToString(k.AccessKeyId)})
		}
	}
	if len(stray) > 0 {
		if err := s.deleteKeysExcept(ctx, name, keys, keep); err != nil {
			r.fail(name, err)
			return
		}
		r.add(func(rep *ReapReport) { rep.StrayKeysDeleted = append(rep.StrayKeysDeleted, stray...) })
	}
	if keep == nil {
		if err := s.restock(ctx, h, st.held); err != nil {
			r.fail(name, err)
			return
		}
		r.add(func(rep *ReapReport) { rep.Repaired = append(rep.Repaired, name) })
	}
}

// reapHalfMade deprovisions a user with no secret, older than
// HalfMadeAfter, holding its lease (h; adopted first if it has no record).
func (s *Service) reapHalfMade(ctx context.Context, h *hold, u *iamtypes.User, st *userState, r *reporter) {
	name := h.name
	if err := h.adopt(ctx, u, st, state.Deleting); err != nil {
		r.fail(name, err)
		return
	}
	if err := s.reapDelete(ctx, h, "reap-half-made"); err != nil {
		r.fail(name, err)
		return
	}
	r.add(func(rep *ReapReport) { rep.HalfMadeDeleted = append(rep.HalfMadeDeleted, name) })
}

// reconcileRecords takes the next slice of up to n records and removes
// those whose IAM user is gone (a user deleted outside keyvend).
func (s *Service) reconcileRecords(ctx context.Context, r *reporter, n int) (bool, error) {
	tok, err := s.store.Checkpoint(ctx, walkRecords)
	if err != nil {
		return false, err
	}
	page, err := s.store.List(ctx, state.Query{Limit: n, Next: tok})
	if errors.Is(err, state.ErrToken) {
		page, err = s.store.List(ctx, state.Query{Limit: n})
	}
	if err != nil {
		return false, err
	}
	each(page.Records, 4, func(rec *state.Record) {
		if s.staleDeleting(rec) {
			s.reapDue(ctx, rec, r)
			return
		}
		if rec.Phase != state.Ready || rec.Busy(s.store.Now()) || s.cfg.Now().Sub(rec.UpdatedAt) < HalfMadeAfter {
			return
		}
		if _, err := s.iam.GetUser(ctx, &iam.GetUserInput{UserName: aws.String(rec.Name)}); !isCode(err, codeNoSuchEntity) {
			if err != nil {
				r.fail(rec.Name, wrapf(err, "read user %s", rec.Name))
			}
			return
		}
		h := s.newHold(rec.Name, "reaper")
		defer h.release(ctx)
		if _, err := h.take(ctx, state.LeaseOpts{Version: rec.Version, SetPhase: state.Deleting}); err != nil || h.rec == nil {
			return // changed since: the next walk sees it again
		}
		if err := s.reapDelete(ctx, h, "reconcile-user-gone"); err != nil {
			r.fail(rec.Name, err)
			return
		}
		r.add(func(rep *ReapReport) { rep.RecordsRemoved = append(rep.RecordsRemoved, rec.Name) })
	})
	return page.Next == "", s.store.SetCheckpoint(ctx, walkRecords, page.Next)
}

// staleDeleting reports whether rec was left in deleting, past its due
// time, by a request that died, and is not expired. The expiry index may
// never give such a record: a delete marks its user deleting as it takes
// the lease (state.Store.Lease), which leaves the record's place in the
// index as it was — none for a user that never expires, its expiry for one
// that does. The records walk hands it to reapDue; an expired one the
// index gives.
func (s *Service) staleDeleting(rec *state.Record) bool {
	now := s.cfg.Now()
	due := rec.Due()
	return rec.Phase == state.Deleting && !rec.Busy(s.store.Now()) && due != nil && !now.Before(*due) &&
		(rec.ExpiresAt == nil || now.Before(*rec.ExpiresAt))
}

// reconcileSecrets takes the next slice of up to n secrets under the
// secret prefix and schedules for deletion each keyvend secret whose user
// is gone and has no record (an orphan: a crash between deleting a user
// and its secret, or a user deleted outside keyvend). Only secrets tagged
// as keyvend's for a user of their own name are touched.
func (s *Service) reconcileSecrets(ctx context.Context, r *reporter, n int) (bool, error) {
	tok, err := s.store.Checkpoint(ctx, walkSecrets)
	if err != nil {
		return false, err
	}
	in := &secretsmanager.ListSecretsInput{MaxResults: aws.Int32(int32(min(n, 100))),
		Filters: []smtypes.Filter{{Key: smtypes.FilterNameStringTypeName, Values: []string{s.cfg.SecretPrefix}}}}
	if tok != "" {
		in.NextToken = &tok
	}
	page, err := s.sm.ListSecrets(ctx, in)
	if err != nil {
		return false, wrapf(err, "list secrets under %s", s.cfg.SecretPrefix)
	}
	each(page.SecretList, 4, func(sec smtypes.SecretListEntry) {
		name := aws.ToString(sec.Name)
		user := secretTag(sec.Tags, TagUser)
		if sec.DeletedDate != nil || !secretManaged(sec.Tags) || user == "" || s.SecretName(user) != name {
			return
		}
		if aws.ToTime(sec.CreatedDate).After(s.cfg.Now().Add(-HalfMadeAfter)) {
			return // a create may be storing it right now
		}
		// Hold the name while deleting the secret (found by the model,
		// protocol.pml FIX_ORPHAN): claim a record (deleting) — a create
		// claiming the name now waits, and one that already recorded it
		// keeps its secret — then check the user is still gone, delete,
		// and remove the record.
		h := s.newHold(user, "reaper")
		defer h.release(ctx)
		if err := h.claim(ctx, state.Record{Name: user, Phase: state.Deleting, Requester: ReaperPrincipal, Reason: "orphan secret"}); err != nil {
			return // recorded (or unreadable): the user walks handle it
		}
		if _, err := s.iam.GetUser(ctx, &iam.GetUserInput{UserName: &user}); !isCode(err, codeNoSuchEntity) {
			_ = h.remove(ctx, nil)
			return
		}
		_, err := s.sm.DeleteSecret(ctx, &secretsmanager.DeleteSecretInput{SecretId: &name, RecoveryWindowInDays: aws.Int64(int64(s.cfg.SecretRecoveryDays))})
		if rerr := h.remove(ctx, nil); rerr != nil {
			s.log.ErrorContext(ctx, "reconcile: the record held while deleting an orphan secret was not removed; it is due in 15 minutes", "user", user, "error", rerr)
		}
		if err != nil && !isCode(err, codeResourceNotFound, codeInvalidRequest) {
			r.fail(user, wrapf(err, "delete orphan secret %s", name))
			return
		}
		s.log.InfoContext(ctx, "reconcile: orphan secret scheduled for deletion", "secret", name, "user", user)
		r.add(func(rep *ReapReport) { rep.OrphanSecretsDeleted = append(rep.OrphanSecretsDeleted, name) })
	})
	next := aws.ToString(page.NextToken)
	return next == "", s.store.SetCheckpoint(ctx, walkSecrets, next)
}
