package provision

import (
	"context"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/iam"

	"github.com/keyvend/keyvend/pkg/authz"
	"github.com/keyvend/keyvend/pkg/caller"
	"github.com/keyvend/keyvend/pkg/policy"
)

// UpdateInput replaces a managed user's grants.
type UpdateInput struct {
	Principal caller.Principal
	RequestID string
	User      string
	Grants    []policy.Grant
}

// UpdateGrants replaces the user's grants: it joins the groups of the new
// grants (creating them as needed) and leaves the keyvend groups of grants
// it no longer has. The new grants pass the same validation and rules as
// a create; changing a user also needs its requester or a rule with the
// update action on its current grants. The key is unchanged.
func (s *Service) UpdateGrants(ctx context.Context, in UpdateInput) (d *Description, err error) {
	start := time.Now()
	defer func() { s.audit(ctx, start, "update", in.Principal, in.RequestID, in.User, in.Grants, &err) }()
	if msg := CheckUserName(in.User); msg != "" {
		return nil, &Error{Kind: KindInvalid, Detail: "the user name is not valid", Fields: []policy.FieldError{{Field: "name", Detail: msg}}}
	}
	if fields := validateGrants(in.Grants); len(fields) > 0 {
		return nil, &Error{Kind: KindInvalid, Detail: "the request is not valid", Fields: fields}
	}
	if err := s.rules.DecideIn(in.Principal.Names(), in.Principal.Channel, authz.Create, in.Grants); err != nil {
		return nil, &Error{Kind: KindForbidden, Detail: err.Error()}
	}
	want, err := desiredGroups(s.partition, in.Grants)
	if err != nil {
		return nil, err
	}
	unlock := s.locks.Lock(strings.ToLower(in.User))
	defer unlock()
	user, st, err := s.lookupManagedState(ctx, in.User, allState)
	if err != nil {
		return nil, err
	}
	current, err := s.groupGrants(ctx, st.groups)
	if err != nil {
		return nil, err
	}
	if err := s.authorizeOnUser(in.Principal, authz.Update, user, grantsOf(current)); err != nil {
		return nil, err
	}
	groups, err := s.ensureGroups(ctx, want, st.groups)
	if err != nil {
		return nil, err
	}
	wanted := map[string]bool{}
	for _, g := range groups {
		wanted[g.Name] = true
	}
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		first error
	)
	record := func(err error) {
		mu.Lock()
		if first == nil {
			first = err
		}
		mu.Unlock()
	}
	for _, g := range groups {
		if st.groups[g.Name].GroupName != nil {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := s.iam.AddUserToGroup(ctx, &iam.AddUserToGroupInput{UserName: &in.User, GroupName: aws.String(g.Name)}); err != nil {
				record(wrapf(err, "add user %s to group %s", in.User, g.Name))
			}
		}()
	}
	for name := range st.groups {
		if wanted[name] {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := s.iam.RemoveUserFromGroup(ctx, &iam.RemoveUserFromGroupInput{UserName: &in.User, GroupName: aws.String(name)})
			if err != nil && !isCode(err, codeNoSuchEntity) {
				record(wrapf(err, "remove user %s from group %s", in.User, name))
			}
		}()
	}
	wg.Wait()
	if first != nil {
		return nil, first // safe to retry: every step converges
	}
	return s.describe(user, st, groups), nil
}
