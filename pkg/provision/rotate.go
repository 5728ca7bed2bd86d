package provision

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	iamtypes "github.com/aws/aws-sdk-go-v2/service/iam/types"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"

	"github.com/keyvend/keyvend/pkg/authz"
	"github.com/keyvend/keyvend/pkg/caller"
	"github.com/keyvend/keyvend/pkg/policy"
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
	// PreviousKeyDeleted is false when the old key could not be deleted; the
	// next rotation or the reaper removes it.
	PreviousKeyDeleted bool   `json:"previous_key_deleted"`
	SecretName         string `json:"secret_name"`
	SecretARN          string `json:"secret_arn"`
	CredentialProcess  string `json:"credential_process"`
	Readiness
}

// Readiness reports the optional check that AWS accepts a new key.
type Readiness struct {
	Ready     *bool  `json:"ready,omitempty"`
	ReadyHint string `json:"ready_hint,omitempty"`
}

// Rotate replaces the user's access key: a leftover key that is not the one
// in the secret is deleted first (IAM allows two per user), the new key is
// stored as the secret's new current version, then the old key is deleted.
// If storing fails, the new key is deleted and the old one keeps working.
// The secret is written only if keyvend made it for this user (ownSecret).
//
// The user and its grants are read together (for authorization); its keys
// and secret are read once, under the cross-process repair lock, so a
// rotation another process finished meanwhile is seen.
func (s *Service) Rotate(ctx context.Context, in RotateInput) (res *RotateResult, err error) {
	start := time.Now()
	var audited []policy.Grant
	defer func() { s.audit(ctx, start, "rotate", in.Principal, in.RequestID, in.User, audited, &err) }()
	user, st, err := s.load(ctx, in.Principal, authz.Rotate, in.User, grantState)
	if err != nil {
		return nil, err
	}
	audited = st.held.Grants
	name := aws.ToString(user.UserName)
	unlock := s.locks.Lock(strings.ToLower(name))
	defer unlock()
	release, err := s.lockRepair(ctx, name)
	if err != nil {
		return nil, err
	}
	defer release()
	var (
		owned   = make(chan error, 1)
		readErr error
	)
	go func() {
		_, err := s.ownSecret(ctx, name)
		if isCode(err, codeResourceNotFound) {
			err = nil // no secret: storing creates it
		}
		owned <- err
	}()
	st, readErr = s.readUserState(ctx, name, keyAndSecret)
	if err := <-owned; err != nil {
		return nil, err
	}
	if readErr != nil {
		return nil, readErr
	}
	if st.secret == nil && s.cfg.Now().Sub(aws.ToTime(user.CreateDate)) < s.cfg.RepairAfter {
		return nil, &Error{Kind: KindInProgress, RetryAfter: inProgressRetry, Detail: fmt.Sprintf("user %s is being provisioned by another request", name)}
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
	secretARN, err := s.putKey(ctx, Input{Principal: in.Principal, RequestID: in.RequestID}, name, key)
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
	if current != nil {
		res.PreviousAccessKeyID = aws.ToString(current.AccessKeyId)
		_, derr := s.iam.DeleteAccessKey(ctx, &iam.DeleteAccessKeyInput{UserName: &name, AccessKeyId: current.AccessKeyId})
		res.PreviousKeyDeleted = derr == nil || isCode(derr, codeNoSuchEntity)
		if !res.PreviousKeyDeleted {
			s.log.ErrorContext(ctx, "rotate: previous access key not deleted", "user", name, "access_key_id", res.PreviousAccessKeyID, "error", derr.Error())
		}
	}
	if in.Wait {
		res.Readiness = s.checkReady(ctx, key, aws.ToString(user.Arn))
	}
	return res, nil
}

// putKey stores key as the new current version of the user's secret, or
// creates the secret when there is none. The caller has checked that the
// secret is keyvend's for this user (ownSecret).
func (s *Service) putKey(ctx context.Context, in Input, user string, key *iamtypes.AccessKey) (string, error) {
	name := s.SecretName(user)
	value, err := credentialJSON(key)
	if err != nil {
		return "", err
	}
	out, err := s.sm.PutSecretValue(ctx, &secretsmanager.PutSecretValueInput{SecretId: &name, SecretString: &value})
	switch {
	case err == nil:
		return aws.ToString(out.ARN), nil
	case isCode(err, codeResourceNotFound, codeInvalidRequest):
		return s.storeKey(ctx, in, user, key)
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
