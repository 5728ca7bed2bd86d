package provision

import (
	"context"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	iamtypes "github.com/aws/aws-sdk-go-v2/service/iam/types"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"

	"github.com/keyvend/keyvend/pkg/authz"
	"github.com/keyvend/keyvend/pkg/caller"
	"github.com/keyvend/keyvend/pkg/credential"
	"github.com/keyvend/keyvend/pkg/policy"
	"github.com/keyvend/keyvend/pkg/state"
)

// RotateInput asks for a new access key for a managed user.
type RotateInput struct {
	Principal caller.Principal
	RequestID string
	User      string
	// Wait asks to confirm, before answering, that AWS accepts the new key.
	Wait bool
}

// RotateResult describes a rotation. It never holds the secret key.
type RotateResult struct {
	User                string `json:"user"`
	AccessKeyID         string `json:"access_key_id"`
	PreviousAccessKeyID string `json:"previous_access_key_id,omitempty"`
	// PreviousKeyDeleted is true when the old key was deleted at once (no
	// grace configured); false while it stays active for the grace period,
	// or when it could not be deleted — the next rotation or the reaper
	// removes it.
	PreviousKeyDeleted bool `json:"previous_key_deleted"`
	// PreviousKeyDeletesAt is when the old key, still active, is deleted
	// (Settings.RotationGrace after the rotation): clients holding it keep
	// working until then. Nil when there was none or it is already gone.
	PreviousKeyDeletesAt *time.Time `json:"previous_key_deletes_at,omitempty"`
	SecretName           string     `json:"secret_name"`
	SecretARN            string     `json:"secret_arn"`
	CredentialProcess    string     `json:"credential_process"`
	// CredentialProcessKeyvend is the line of keyvend's own helper.
	CredentialProcessKeyvend string `json:"credential_process_keyvend"`
	Readiness
}

// Readiness reports the optional check that AWS accepts a new key.
type Readiness struct {
	Ready     *bool  `json:"ready,omitempty"`
	ReadyHint string `json:"ready_hint,omitempty"`
}

// Rotate replaces the user's access key: any key that is not the one in
// the secret is deleted first — a previous rotation's key still in its
// grace included (IAM allows two per user) — the new key is stored as the
// secret's new current version, and the record takes the new key id with
// the old one as its previous key, which stays active for the grace
// (Settings.RotationGrace) and is then deleted by the reaper (or by the
// next rotation, first). With NoGrace the old key is deleted at once. If
// storing fails, the new key is deleted and the old one keeps working. The
// secret is written only if keyvend made it for this user (ownSecret).
//
// It holds the user's lease throughout (taken first, in phase ready: a
// user being created or deleted is "in progress"), so a delete cannot
// remove the user or schedule its secret under a rotation, and the store
// step never brings back a secret of a user that is gone. The user, its
// grants (for authorization), keys and secret are read once, under it.
func (s *Service) Rotate(ctx context.Context, in RotateInput) (res *RotateResult, err error) {
	start := time.Now()
	var audited []policy.Grant
	defer func() { s.audit(ctx, start, "rotate", in.Principal, in.RequestID, in.User, audited, &err) }()
	if err := checkName(in.User); err != nil {
		return nil, err
	}
	h := s.newHold(in.User, in.RequestID)
	defer h.release(ctx)
	if rec, err := h.take(ctx, state.LeaseOpts{Phases: []state.Phase{state.Ready}}); err != nil {
		return nil, s.refusedAfterAuth(ctx, in.Principal, authz.Rotate, in.User, rec, err, 0)
	}
	var owned = make(chan error, 1)
	go func() {
		_, err := s.ownSecret(ctx, in.User)
		if isCode(err, codeResourceNotFound) {
			err = nil // no secret: storing creates it
		}
		owned <- err
	}()
	user, st, err := s.load(ctx, in.Principal, authz.Rotate, in.User, allState)
	ownErr := <-owned
	if err != nil {
		return nil, err
	}
	if ownErr != nil {
		return nil, ownErr
	}
	audited = st.held.Grants
	name := aws.ToString(user.UserName)
	if st.secret == nil && h.rec == nil && s.cfg.Now().Sub(aws.ToTime(user.CreateDate)) < s.cfg.RepairAfter {
		return nil, beingProvisioned(name)
	}
	if err := h.adopt(ctx, user, st, ""); err != nil {
		return nil, err
	}

	current := st.secretKey()
	if err := s.deleteKeysExcept(ctx, name, st.keys, current); err != nil {
		return nil, err
	}
	out, err := s.iam.CreateAccessKey(ctx, &iam.CreateAccessKeyInput{UserName: &name})
	if err != nil {
		return nil, wrapf(err, "create new access key for %s", name)
	}
	key := out.AccessKey
	secretARN, err := s.putKey(ctx, in.Principal, in.RequestID, name, key)
	if err != nil {
		// The store may have succeeded at AWS even though we saw an error:
		// then the new key is the current one and must not be deleted.
		check, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.cfg.CompensationTimeout)
		sec, rerr := s.readSecret(check, name)
		cancel()
		if rerr != nil || sec == nil || sec.AccessKeyID != aws.ToString(key.AccessKeyId) {
			s.compensate(ctx, &saga{user: name, keyID: aws.ToString(key.AccessKeyId)}, err)
			return nil, err
		}
		s.log.WarnContext(ctx, "rotate: the secret holds the new key although storing it reported an error", "user", name, "error", err.Error())
		secretARN = sec.ARN
	}
	res = &RotateResult{
		User:              name,
		AccessKeyID:       aws.ToString(key.AccessKeyId),
		SecretName:        s.SecretName(name),
		SecretARN:         secretARN,
		CredentialProcess: s.credentialProcess(secretARN),
	}
	res.CredentialProcessKeyvend = credentialProcessKeyvend(secretARN)
	next := *h.rec // with the grants IAM holds, read under the lease
	next.Phase, next.KeyID, next.KeyAt = state.Ready, res.AccessKeyID, aws.ToTime(key.CreateDate).UTC()
	next.Grants, next.Intact = st.held.Grants, st.held.Intact
	if next.KeyAt.IsZero() {
		next.KeyAt = s.cfg.Now().UTC()
	}
	// The old key stays active for the grace: the record names it and when
	// it goes, which puts the record on the expiry index for the reaper.
	next.PrevKeyID, next.PrevKeyDeletesAt = "", time.Time{}
	entry := s.entry("rotate", in.Principal, in.RequestID, name, st.held.Grants, st.held.Grants, res.AccessKeyID, nil)
	grace := current != nil && s.cfg.RotationGrace > 0
	if current != nil {
		res.PreviousAccessKeyID = aws.ToString(current.AccessKeyId)
		entry.PreviousKeyID = res.PreviousAccessKeyID
	}
	if grace {
		at := s.cfg.Now().Add(s.cfg.RotationGrace).UTC().Truncate(time.Second)
		next.PrevKeyID, next.PrevKeyDeletesAt = res.PreviousAccessKeyID, at
		entry.PreviousKeyDeletesAt = &at
	}
	// The record takes the new key id (and the lease is released) before
	// the old key goes. If that write fails, the rotation stands — the new
	// key is in the secret — but the old key is kept, as when its deletion
	// fails: the next operation on the user, or the reconciliation,
	// records the key and removes the old one.
	if _, err := h.commit(ctx, next, entry); err != nil {
		s.log.ErrorContext(ctx, "rotate: the new key is stored but its record was not written; the previous key is kept", "user", name, "error", err)
	} else if grace {
		res.PreviousKeyDeletesAt = &next.PrevKeyDeletesAt
	} else if current != nil {
		_, derr := s.iam.DeleteAccessKey(ctx, &iam.DeleteAccessKeyInput{UserName: &name, AccessKeyId: current.AccessKeyId})
		res.PreviousKeyDeleted = derr == nil || isCode(derr, codeNoSuchEntity)
		if !res.PreviousKeyDeleted {
			s.log.ErrorContext(ctx, "rotate: previous access key not deleted", "user", name, "access_key_id", res.PreviousAccessKeyID, "error", derr.Error())
		}
	}
	if in.Wait {
		res.Readiness = s.checkReady(ctx, key, aws.ToString(user.Arn), st.held.Grants)
	}
	return res, nil
}

// putKey stores key as the new current version of the user's secret, or
// creates the secret when there is none. The caller has checked that the
// secret is keyvend's for this user (ownSecret).
func (s *Service) putKey(ctx context.Context, p caller.Principal, requestID, user string, key *iamtypes.AccessKey) (string, error) {
	name := s.SecretName(user)
	value := credential.Of(key).JSON()
	out, err := s.sm.PutSecretValue(ctx, &secretsmanager.PutSecretValueInput{SecretId: &name, SecretString: &value})
	switch {
	case err == nil:
		return aws.ToString(out.ARN), nil
	case isCode(err, codeResourceNotFound, codeInvalidRequest):
		return s.storeKey(ctx, p, requestID, user, key)
	default:
		return "", wrapf(err, "put new version of secret %s", name)
	}
}

// deleteKeysExcept deletes every key of user but keep, concurrently.
func (s *Service) deleteKeysExcept(ctx context.Context, user string, keys []iamtypes.AccessKeyMetadata, keep *iamtypes.AccessKeyMetadata) error {
	var wg sync.WaitGroup
	errs := make([]error, len(keys))
	for i, k := range keys {
		if keep != nil && aws.ToString(k.AccessKeyId) == aws.ToString(keep.AccessKeyId) {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := s.iam.DeleteAccessKey(ctx, &iam.DeleteAccessKeyInput{UserName: &user, AccessKeyId: k.AccessKeyId})
			if err != nil && !isCode(err, codeNoSuchEntity) {
				errs[i] = wrapf(err, "delete stray access key %s of user %s", aws.ToString(k.AccessKeyId), user)
			}
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}
