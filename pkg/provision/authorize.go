package provision

import (
	"context"
	"fmt"

	"github.com/aws/aws-sdk-go-v2/service/iam"
	iamtypes "github.com/aws/aws-sdk-go-v2/service/iam/types"

	"github.com/keyvend/keyvend/pkg/authz"
	"github.com/keyvend/keyvend/pkg/caller"
	"github.com/keyvend/keyvend/pkg/policy"
)

// ownerActions are what a caller may always do to the users it requested.
var ownerActions = map[authz.Action]bool{
	authz.Describe: true, authz.List: true, authz.Rotate: true, authz.Update: true, authz.Delete: true,
}

// authorizeOnUser decides whether p may perform action on the managed user
// u, which carries grants: its requester may (except force-delete, which
// only a rule grants); anyone else needs a rule that allows the action on
// every one of the user's grants.
func (s *Service) authorizeOnUser(p caller.Principal, action authz.Action, u *iamtypes.User, grants []policy.Grant) error {
	if p.ID != "" && ownerActions[action] && userTag(u, TagRequester) == tagValue(p.ID) {
		return nil
	}
	if err := s.rules.DecideIn(p.Names(), p.Channel, action, grants); err != nil {
		return &Error{Kind: KindForbidden, Detail: fmt.Sprintf("%s may not %s user %s: %v", orAnonymous(p.ID), action, userName(u), err)}
	}
	return nil
}

func orAnonymous(id string) string {
	if id == "" {
		return "(anonymous)"
	}
	return id
}

// lookupManaged returns the managed user name, or a KindNotFound error for
// a user that does not exist or that keyvend does not manage. Nothing
// outside the user path is ever acted on past this point.
func (s *Service) lookupManaged(ctx context.Context, name string) (*iamtypes.User, error) {
	if msg := CheckUserName(name); msg != "" {
		return nil, &Error{Kind: KindInvalid, Detail: "the user name is not valid", Fields: []policy.FieldError{{Field: "name", Detail: msg}}}
	}
	got, err := s.iam.GetUser(ctx, &iam.GetUserInput{UserName: &name})
	switch {
	case isCode(err, codeNoSuchEntity):
		return nil, notFound(name)
	case err != nil:
		return nil, wrapf(err, "read user %s", name)
	}
	if !s.managedUser(got.User) {
		return nil, notFound(name)
	}
	if actual := userName(got.User); actual != name {
		// IAM matched case-insensitively; keyvend's secret is named by the
		// exact spelling, so insist on it.
		return nil, &Error{Kind: KindNotFound, Detail: fmt.Sprintf("no user %s is managed by keyvend (did you mean %s?)", name, actual)}
	}
	return got.User, nil
}

// lookupManagedState is lookupManaged and, in the same round trip, the
// parts of the user's state that read names (state.go). The state of a
// user keyvend does not manage is never looked at (reading it may also
// have been denied): its lookup error wins.
func (s *Service) lookupManagedState(ctx context.Context, name string, read stateParts) (*iamtypes.User, *userState, error) {
	if msg := CheckUserName(name); msg != "" {
		return nil, nil, &Error{Kind: KindInvalid, Detail: "the user name is not valid", Fields: []policy.FieldError{{Field: "name", Detail: msg}}}
	}
	var (
		st      *userState
		readErr error
		done    = make(chan struct{})
	)
	go func() {
		defer close(done)
		st, readErr = s.readUserState(ctx, name, read)
	}()
	user, err := s.lookupManaged(ctx, name)
	<-done
	switch {
	case err != nil:
		return nil, nil, err
	case readErr != nil:
		return nil, nil, readErr
	}
	return user, st, nil
}

func userName(u *iamtypes.User) string {
	if u == nil || u.UserName == nil {
		return ""
	}
	return *u.UserName
}
