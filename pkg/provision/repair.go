package provision

import (
	"context"
	"sync"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	iamtypes "github.com/aws/aws-sdk-go-v2/service/iam/types"
)

// repair completes a user left half-made by a crash: no secret, or a secret
// whose key the user no longer has. It holds the user's lease (h), and st
// was read under it: it deletes every key that is not in the secret (none
// is), gives the user its grants in the deployment's mode, then creates
// and stores a new key.
func (s *Service) repair(ctx context.Context, in CreateInput, user *iamtypes.User, st *userState, h *hold) (*CreateResult, error) {
	name := aws.ToString(user.UserName)
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
	// A user this request's own CreateUser made is undone whole if the
	// repair fails; any other keeps all but the key this request made.
	r, err := s.finish(ctx, in, &saga{user: name, hold: h, createdUser: h.madeUser}, user, s.grants.Prepare(ctx, in.Request.Grants), st.held)
	if r != nil {
		r.Repaired = true
	}
	return r, err
}
