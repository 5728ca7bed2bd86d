package provision

import (
	"context"
	"fmt"
	"strings"
	"sync"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	iamtypes "github.com/aws/aws-sdk-go-v2/service/iam/types"
)

// repair completes a user left half-made by a crash: no secret, or a secret
// whose key the user no longer has. Under the repair lock it re-reads the
// state and decides again (another request may have finished it), deletes
// every key that is not in the secret (none is), gives the user its grants
// in the deployment's mode, then creates and stores a new key.
func (s *Service) repair(ctx context.Context, in Input, user *iamtypes.User) (*Result, error) {
	name := aws.ToString(user.UserName)
	release, err := s.lockRepair(ctx, name)
	if err != nil {
		return nil, err
	}
	defer release()
	st, err := s.readState(ctx, name)
	switch {
	case isCode(err, codeNoSuchEntity):
		return nil, userChanging(name)
	case err != nil:
		return nil, err
	}
	v := s.view(in, user, st)
	v.young = false // it was old enough to repair; the lock says nobody else is
	switch decide(v) {
	case replay: // another request finished it
		return s.replayResult(in, user, st), nil
	case conflict:
		return nil, conflictGrants(name)
	case putAgain, inProgress:
		// complete now, with its policy drifted or its grants short:
		// Apply brings it back to exactly the request's grants.
		if err := s.applyGrants(ctx, name, in.Request.Grants, st.held); err != nil {
			return nil, err
		}
		return s.replayResult(in, user, st), nil
	}
	var wg sync.WaitGroup
	errs := make([]error, len(st.keys))
	for i, k := range st.keys {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := s.iam.DeleteAccessKey(ctx, &iam.DeleteAccessKeyInput{UserName: &name, AccessKeyId: k.AccessKeyId})
			if err != nil && !isCode(err, codeNoSuchEntity) {
				errs[i] = wrapf(err, "delete stray access key %s of user %s", aws.ToString(k.AccessKeyId), name)
			}
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return nil, err
		}
	}
	s.log.InfoContext(ctx, "repairing half-made user", "user", name, "stray_keys_deleted", len(st.keys), "had_secret", st.secret != nil)
	r, err := s.finish(ctx, in, &saga{user: name}, user, s.grants.Prepare(ctx, in.Request.Grants), st.held)
	if r != nil {
		r.Repaired = true
	}
	return r, err
}

// lockRepair takes the cross-process repair lock for user: an IAM group
// under <user path>locks/, whose creation is atomic. A lock older than
// RepairAfter is stale (its holder died) and is broken once.
func (s *Service) lockRepair(ctx context.Context, user string) (func(), error) {
	name := "keyvend-lock_" + strings.ToLower(user)
	path := s.cfg.UserPath + "locks/"
	for attempt := 0; attempt < 2; attempt++ {
		_, err := s.iam.CreateGroup(ctx, &iam.CreateGroupInput{GroupName: &name, Path: &path})
		if err == nil {
			return func() {
				ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.cfg.CompensationTimeout)
				defer cancel()
				if _, err := s.iam.DeleteGroup(ctx, &iam.DeleteGroupInput{GroupName: &name}); err != nil && !isCode(err, codeNoSuchEntity) {
					s.log.ErrorContext(ctx, "release repair lock failed; it expires by age", "lock", name, "error", err)
				}
			}, nil
		}
		if !isCode(err, codeEntityExists) {
			return nil, wrapf(err, "take repair lock %s", name)
		}
		got, err := s.iam.GetGroup(ctx, &iam.GetGroupInput{GroupName: &name, MaxItems: aws.Int32(1)})
		if err != nil && !isCode(err, codeNoSuchEntity) {
			// Not "another request holds it": keyvend could not tell.
			return nil, wrapf(err, "read repair lock %s", name)
		}
		if err != nil || aws.ToString(got.Group.Path) != path || s.cfg.Now().Sub(aws.ToTime(got.Group.CreateDate)) < s.cfg.RepairAfter {
			break
		}
		if _, err := s.iam.DeleteGroup(ctx, &iam.DeleteGroupInput{GroupName: &name}); err != nil && !isCode(err, codeNoSuchEntity) {
			return nil, wrapf(err, "break stale repair lock %s", name)
		}
	}
	return nil, &Error{Kind: KindInProgress, RetryAfter: inProgressRetry, Detail: fmt.Sprintf("user %s is being repaired by another request", user)}
}
