package provision

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	iamtypes "github.com/aws/aws-sdk-go-v2/service/iam/types"

	"github.com/keyvend/keyvend/pkg/authz"
	"github.com/keyvend/keyvend/pkg/caller"
	"github.com/keyvend/keyvend/pkg/policy"
)

// Description is a managed user as keyvend sees it. No secret values.
type Description struct {
	User       string            `json:"user"`
	UserARN    string            `json:"user_arn"`
	UserID     string            `json:"user_id"`
	Path       string            `json:"path"`
	CreatedAt  time.Time         `json:"created_at"`
	ExpiresAt  *time.Time        `json:"expires_at,omitempty"`
	Grants     []policy.Grant    `json:"grants"`
	Groups     []GroupRef        `json:"groups"`
	AccessKeys []KeyInfo         `json:"access_keys"`
	SecretName string            `json:"secret_name"`
	SecretARN  string            `json:"secret_arn,omitempty"`
	Complete   bool              `json:"complete"`
	Tags       map[string]string `json:"tags"`
}

// KeyInfo is an access key's metadata; InSecret marks the one the user's
// secret holds.
type KeyInfo struct {
	AccessKeyID string    `json:"access_key_id"`
	Status      string    `json:"status"`
	CreatedAt   time.Time `json:"created_at"`
	InSecret    bool      `json:"in_secret"`
}

// Describe returns the managed user name. The caller must be its requester
// or be allowed by a rule with the describe (or list) action on all of its
// grants. A user that does not exist or that keyvend does not manage is
// KindNotFound.
func (s *Service) Describe(ctx context.Context, p caller.Principal, name string) (*Description, error) {
	user, st, err := s.lookupManagedState(ctx, name, allState)
	if err != nil {
		return nil, err
	}
	groups, err := s.groupGrants(ctx, st.groups)
	if err != nil {
		return nil, err
	}
	if err := s.authorizeOnUser(p, authz.Describe, user, grantsOf(groups)); err != nil {
		return nil, err
	}
	return s.describe(user, st, groups), nil
}

// describe assembles a Description from what was read.
func (s *Service) describe(user *iamtypes.User, st *userState, groups []GroupRef) *Description {
	name := aws.ToString(user.UserName)
	d := &Description{
		User:       name,
		UserARN:    aws.ToString(user.Arn),
		UserID:     aws.ToString(user.UserId),
		Path:       aws.ToString(user.Path),
		CreatedAt:  aws.ToTime(user.CreateDate),
		ExpiresAt:  expiryOf(user.Tags),
		Grants:     grantsOf(groups),
		Groups:     groups,
		AccessKeys: []KeyInfo{},
		SecretName: s.SecretName(name),
		Complete:   st.complete(),
		Tags:       map[string]string{},
	}
	if st.secret != nil {
		d.SecretARN = st.secret.ARN
	}
	for _, k := range st.keys {
		id := aws.ToString(k.AccessKeyId)
		d.AccessKeys = append(d.AccessKeys, KeyInfo{
			AccessKeyID: id,
			Status:      string(k.Status),
			CreatedAt:   aws.ToTime(k.CreateDate),
			InSecret:    st.secret != nil && st.secret.AccessKeyID == id,
		})
	}
	for _, t := range user.Tags {
		d.Tags[aws.ToString(t.Key)] = aws.ToString(t.Value)
	}
	return d
}

func notFound(name string) error {
	return &Error{Kind: KindNotFound, Detail: fmt.Sprintf("no user %s is managed by keyvend", name)}
}

// groupGrants recovers the grant of each keyvend group, reading the inline
// policy only where the name alone does not say it (prefixed grants).
func (s *Service) groupGrants(ctx context.Context, groups map[string]iamtypes.Group) ([]GroupRef, error) {
	names := make([]string, 0, len(groups))
	for n := range groups {
		names = append(names, n)
	}
	sort.Strings(names)
	refs := make([]GroupRef, 0, len(names))
	errs := make([]error, len(names))
	var mu sync.Mutex
	var wg sync.WaitGroup
	for i, n := range names {
		wg.Add(1)
		go func() {
			defer wg.Done()
			doc := ""
			if g, err := policy.ParseGroup(s.partition, n, ""); err == nil {
				mu.Lock()
				refs = append(refs, GroupRef{Name: n, ARN: aws.ToString(groups[n].Arn), Grant: g})
				mu.Unlock()
				return
			}
			out, err := s.iam.GetGroupPolicy(ctx, &iam.GetGroupPolicyInput{GroupName: aws.String(n), PolicyName: aws.String(policy.InlinePolicyName)})
			if err != nil {
				if isCode(err, codeNoSuchEntity) { // not a group keyvend made or fully configured
					return
				}
				errs[i] = wrapf(err, "read policy of group %s", n)
				return
			}
			doc = aws.ToString(out.PolicyDocument)
			g, err := policy.ParseGroup(s.partition, n, doc)
			if err != nil {
				s.log.WarnContext(ctx, "group does not carry a keyvend grant", "group", n, "error", err)
				return
			}
			mu.Lock()
			refs = append(refs, GroupRef{Name: n, ARN: aws.ToString(groups[n].Arn), Grant: g})
			mu.Unlock()
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return nil, err
		}
	}
	sort.Slice(refs, func(i, j int) bool { return refs[i].Name < refs[j].Name })
	return refs, nil
}
