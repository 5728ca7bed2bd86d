package provision

import (
	"context"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	iamtypes "github.com/aws/aws-sdk-go-v2/service/iam/types"

	"github.com/keyvend/keyvend/pkg/grants"
)

// userState is what IAM and Secrets Manager hold for one existing user.
type userState struct {
	held   *grants.Held // nil when not read
	keys   []iamtypes.AccessKeyMetadata
	secret *storedSecret // nil: no secret
}

// complete reports whether the user's secret holds one of its keys.
func (st *userState) complete() bool {
	return st.secretKey() != nil
}

func (st *userState) secretKey() *iamtypes.AccessKeyMetadata {
	if st.secret == nil || st.secret.AccessKeyID == "" {
		return nil
	}
	for i, k := range st.keys {
		if aws.ToString(k.AccessKeyId) == st.secret.AccessKeyID {
			return &st.keys[i]
		}
	}
	return nil
}

// stateParts says which parts of a user's state to read.
type stateParts struct{ grants, keys, secret bool }

var (
	allState     = stateParts{grants: true, keys: true, secret: true}
	iamState     = stateParts{grants: true, keys: true}
	grantState   = stateParts{grants: true}
	keyAndSecret = stateParts{keys: true, secret: true}
)

// readUserState reads the parts of a user's state that read names,
// concurrently.
func (s *Service) readUserState(ctx context.Context, user string, read stateParts) (*userState, error) {
	st := &userState{}
	var (
		wg               sync.WaitGroup
		gErr, kErr, sErr error
	)
	wg.Add(3)
	go func() {
		defer wg.Done()
		if read.grants {
			st.held, gErr = s.grants.Read(ctx, user)
		}
	}()
	go func() {
		defer wg.Done()
		if !read.keys {
			return
		}
		out, err := s.iam.ListAccessKeys(ctx, &iam.ListAccessKeysInput{UserName: &user})
		if err != nil {
			kErr = err
			return
		}
		st.keys = out.AccessKeyMetadata
	}()
	go func() {
		defer wg.Done()
		if read.secret {
			st.secret, sErr = s.readSecret(ctx, user)
		}
	}()
	wg.Wait()
	switch {
	case gErr != nil:
		return nil, wrapf(gErr, "read grants of user %s", user)
	case kErr != nil:
		return nil, wrapf(kErr, "list access keys of user %s", user)
	case sErr != nil:
		return nil, sErr
	}
	return st, nil
}

// managedUser reports whether u is a user keyvend created: under its path
// and tagged as managed by it.
func (s *Service) managedUser(u *iamtypes.User) bool {
	if u == nil || aws.ToString(u.Path) != s.cfg.UserPath {
		return false
	}
	return userTag(u, TagManagedBy) == managedByValue
}

func userTag(u *iamtypes.User, key string) string {
	for _, t := range u.Tags {
		if aws.ToString(t.Key) == key {
			return aws.ToString(t.Value)
		}
	}
	return ""
}

// TagExpiresAt holds a user's expiry (RFC 3339, UTC).
const TagExpiresAt = "keyvend:expires-at"

// expiryOf returns the expiry in a user's tags, or nil.
func expiryOf(tags []iamtypes.Tag) *time.Time {
	for _, t := range tags {
		if aws.ToString(t.Key) == TagExpiresAt {
			if at, err := time.Parse(time.RFC3339, aws.ToString(t.Value)); err == nil {
				return &at
			}
		}
	}
	return nil
}
