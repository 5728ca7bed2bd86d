package provision

import (
	"context"

	"github.com/aws/aws-sdk-go-v2/service/iam"
	iamtypes "github.com/aws/aws-sdk-go-v2/service/iam/types"

	"github.com/keyvend/keyvend/pkg/authz"
	"github.com/keyvend/keyvend/pkg/caller"
	"github.com/keyvend/keyvend/pkg/grants"
	"github.com/keyvend/keyvend/pkg/policy"
)

// ownerActions are what a caller may always do to the users it requested.
var ownerActions = map[authz.Action]bool{
	authz.Describe: true, authz.List: true, authz.Rotate: true, authz.Update: true, authz.Delete: true,
}

// authorizeOnUser decides whether p may perform action on the managed user
// u, which holds held:
//
//   - its requester may, exactly (owns), except force-delete, which only
//     a rule grants;
//   - anyone else needs a rule that allows the action on every one of the
//     user's grants — and the grants must be intact: a user whose grants
//     cannot all be read is its requester's alone (fail closed), never
//     "a user with no grants", which any rule with the action would allow.
//
// A caller who may not even see the user — neither describe it nor
// perform the action — is told it does not exist (KindNotFound), exactly
// as for a user that does not; other refusals name the user and the
// action, never its buckets or access levels.
func (s *Service) authorizeOnUser(p caller.Principal, action authz.Action, u *iamtypes.User, held *grants.Held) error {
	name := userName(u)
	owner := owns(p, u)
	if owner && ownerActions[action] {
		return nil
	}
	allowed := func(a authz.Action) bool {
		return held != nil && held.Intact && s.rules.DecideIn(p.Names(), p.Channel, a, held.Grants) == nil
	}
	if allowed(action) {
		return nil
	}
	if !owner && !allowed(authz.Describe) {
		return notFound(name)
	}
	if action == authz.ForceDelete {
		return forbidden("force=true needs a rule with the force-delete action on every grant of user %s", name)
	}
	return forbidden("%s may not %s user %s", orAnonymous(p.ID), action, name)
}

func orAnonymous(id string) string {
	if id == "" {
		return "(anonymous)"
	}
	return id
}

// load is how every operation on one existing user starts: it checks the
// name, reads the managed user and the parts of its state read names in
// one round trip, and decides whether p may perform action on it. A user
// that does not exist, that keyvend does not manage, or that p may not
// describe is KindNotFound; nothing outside the user path is acted on past
// this point. read must include the grants.
func (s *Service) load(ctx context.Context, p caller.Principal, action authz.Action, name string, read stateParts) (*iamtypes.User, *userState, error) {
	user, st, err := s.lookupManagedState(ctx, name, read)
	if err != nil {
		return nil, nil, err
	}
	if err := s.authorizeOnUser(p, action, user, st.held); err != nil {
		return nil, nil, err
	}
	return user, st, nil
}

// lookupManaged returns the managed user name, or a KindNotFound error for
// a user that does not exist or that keyvend does not manage.
func (s *Service) lookupManaged(ctx context.Context, name string) (*iamtypes.User, error) {
	if err := checkName(name); err != nil {
		return nil, err
	}
	got, err := s.iam.GetUser(ctx, &iam.GetUserInput{UserName: &name})
	switch {
	case isCode(err, codeNoSuchEntity):
		return nil, notFound(name)
	case err != nil:
		return nil, wrapf(err, "read user %s", name)
	}
	if !s.managedUser(got.User) || userName(got.User) != name {
		// IAM matches names case-insensitively; keyvend's secret is named
		// by the exact spelling, so insist on it.
		return nil, notFound(name)
	}
	return got.User, nil
}

// lookupManagedState is lookupManaged and, in the same round trip, the
// parts of the user's state that read names (state.go). The state of a
// user keyvend does not manage is never looked at (reading it may also
// have been denied): its lookup error wins.
func (s *Service) lookupManagedState(ctx context.Context, name string, read stateParts) (*iamtypes.User, *userState, error) {
	if err := checkName(name); err != nil {
		return nil, nil, err
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
	case isCode(readErr, codeNoSuchEntity): // deleted between the reads
		return nil, nil, notFound(name)
	case readErr != nil:
		return nil, nil, readErr
	}
	return user, st, nil
}

// checkName is the validation of a user name in a path.
func checkName(name string) error {
	if msg := CheckUserName(name); msg != "" {
		return invalid("the user name is not valid", policy.FieldError{Field: "name", Detail: msg})
	}
	return nil
}

func userName(u *iamtypes.User) string {
	if u == nil || u.UserName == nil {
		return ""
	}
	return *u.UserName
}
