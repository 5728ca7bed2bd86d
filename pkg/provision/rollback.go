package provision

import (
	"context"
	"log/slog"
	"sync"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"

	"github.com/keyvend/keyvend/pkg/grants"
	"github.com/keyvend/keyvend/pkg/policy"
)

// saga records what one request changed, so a failure can undo it.
type saga struct {
	user        string
	createdUser bool   // this request's CreateUser succeeded
	keyID       string // the key this request created
	// storedSecret: this request put its key in the user's secret. If the
	// saga then fails for a user it created, the secret (holding a key that
	// compensation deletes) is scheduled for deletion; a retry restores it.
	storedSecret bool
	// hold is the request's lease on the user's record; leaseLost says
	// the lease went stale and another request took the user over.
	hold        *hold
	leaseLost   bool
	userDeleted bool
}

// compensate undoes sg after cause, on a context detached from the
// request's (a cancelled request must still clean up) and bounded by
// CompensationTimeout. Order: the key first (nothing may leak), then the
// grants (user policy, group memberships), then the user if this request
// created it. Groups stay: they are shared and carry no credentials.
//
// For a user this request created, every key and membership is listed and
// removed, not just the recorded ones: a call that timed out on our side
// may still have succeeded at AWS. For a user it repaired, only its own
// key is deleted: the grants it gave are the ones the user was made for.
func (s *Service) compensate(ctx context.Context, sg *saga, cause error) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.cfg.CompensationTimeout)
	defer cancel()
	log := s.log.With("user", sg.user, "cause", cause.Error())
	if h := sg.hold; h != nil {
		// Undo only holding the user: re-lease it at the version this
		// request last wrote. If another request took it over meanwhile
		// (this one stalled past its lease), only this request's own key
		// goes, and only if it is not the one in the secret.
		if !sg.leaseLost && !h.retake(ctx) {
			sg.leaseLost = true
		}
		switch {
		case sg.leaseLost && sg.storedSecret:
			// The key is in the user's secret: consistent. Whoever took the
			// user over decides what becomes of it.
			log.WarnContext(ctx, "compensation: lease lost after the key was stored; left to the request that took the user over")
			return
		case sg.leaseLost:
			sg.createdUser = false
		}
		defer func() {
			if sg.leaseLost {
				return
			}
			if sg.createdUser && sg.userDeleted {
				if err := h.remove(ctx, nil); err != nil {
					log.ErrorContext(ctx, "compensation: record of the deleted user not removed; the reconciliation removes it", "error", err)
				}
				return
			}
			h.release(ctx)
		}()
	}

	keys := []string{}
	if sg.keyID != "" {
		keys = append(keys, sg.keyID)
	}
	var groups []string
	if sg.createdUser {
		if listed, err := s.listKeyIDs(ctx, sg.user); err == nil {
			keys = listed
		} else {
			log.ErrorContext(ctx, "compensation: list access keys failed", "error", err)
		}
		if listed, err := s.listGroupNames(ctx, sg.user); err == nil {
			groups = listed
		} else {
			log.ErrorContext(ctx, "compensation: list groups failed", "error", err)
		}
	}
	ok := true
	var wg sync.WaitGroup
	var mu sync.Mutex
	for _, id := range keys {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := s.iam.DeleteAccessKey(ctx, &iam.DeleteAccessKeyInput{UserName: &sg.user, AccessKeyId: aws.String(id)})
			if err != nil && !isCode(err, codeNoSuchEntity) {
				mu.Lock()
				ok = false
				mu.Unlock()
				log.ErrorContext(ctx, "compensation: access key NOT deleted; it is not in any secret and will be removed by the next repair", "access_key_id", id, "error", err)
			}
		}()
	}
	for _, g := range groups {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := s.iam.RemoveUserFromGroup(ctx, &iam.RemoveUserFromGroupInput{UserName: &sg.user, GroupName: aws.String(g)})
			if err != nil && !isCode(err, codeNoSuchEntity) {
				mu.Lock()
				ok = false
				mu.Unlock()
				log.ErrorContext(ctx, "compensation: group membership not removed", "group", g, "error", err)
			}
		}()
	}
	if sg.createdUser {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := s.iam.DeleteUserPolicy(ctx, &iam.DeleteUserPolicyInput{UserName: &sg.user, PolicyName: aws.String(policy.UserPolicyName)})
			if err != nil && !isCode(err, codeNoSuchEntity) {
				mu.Lock()
				ok = false
				mu.Unlock()
				log.ErrorContext(ctx, "compensation: user policy not deleted", "error", err)
			}
		}()
	}
	wg.Wait()
	if sg.createdUser && ok {
		if _, err := s.iam.DeleteUser(ctx, &iam.DeleteUserInput{UserName: &sg.user}); err != nil && !isCode(err, codeNoSuchEntity) {
			ok = false
			log.ErrorContext(ctx, "compensation: user not deleted; a later request or the reaper repairs it", "error", err)
		} else {
			sg.userDeleted = true
		}
	}
	if sg.createdUser && sg.storedSecret && ok {
		name := s.SecretName(sg.user)
		_, err := s.sm.DeleteSecret(ctx, &secretsmanager.DeleteSecretInput{SecretId: &name, RecoveryWindowInDays: aws.Int64(int64(s.cfg.SecretRecoveryDays))})
		if err != nil && !isCode(err, codeResourceNotFound, codeInvalidRequest) {
			log.ErrorContext(ctx, "compensation: secret holding the deleted key not scheduled for deletion", "secret", name, "error", err)
		}
	}
	log.InfoContext(ctx, "compensated failed provisioning", slog.Bool("complete", ok), slog.Int("keys_deleted", len(keys)), slog.Bool("user_deleted", sg.createdUser && ok))
}

func (s *Service) listKeyIDs(ctx context.Context, user string) ([]string, error) {
	out, err := s.iam.ListAccessKeys(ctx, &iam.ListAccessKeysInput{UserName: &user})
	if err != nil {
		return nil, err
	}
	ids := make([]string, 0, len(out.AccessKeyMetadata))
	for _, k := range out.AccessKeyMetadata {
		ids = append(ids, aws.ToString(k.AccessKeyId))
	}
	return ids, nil
}

func (s *Service) listGroupNames(ctx context.Context, user string) ([]string, error) {
	groups, err := grants.UserGroups(ctx, s.iam, user)
	if err != nil {
		return nil, err
	}
	names := make([]string, len(groups))
	for i, g := range groups {
		names[i] = aws.ToString(g.GroupName)
	}
	return names, nil
}
