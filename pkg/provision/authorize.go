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
// one round trip (readUser), and decides whether p may perform action on
// it. A user that does not exist, that keyvend does not manage, or that p
// may not describe is KindNotFound; nothing outside the user path is
// acted on past this point. read must include the grants.
func (s *Service) load(ctx context.Context, p caller.Principal, action authz.Action, name string, read stateParts) (*iamtypes.User, *userState, error) {
	user, st, err := s.readUser(ctx, name, read, func(*iamtypes.User) error { return notFound(name) })
	if err != nil {
		return nil, nil, err
	}
	if err := s.authorizeOnUser(p, action, user, st.held); err != nil {
		return nil, nil, err
	}
	return user, st, nil
}

// readUser reads the IAM user name and, in the same round trip, the parts
// of its state that read names (state.go). For a name that is not a
// keyvend user it returns absent(got): got is the user as IAM has it —
// spelled otherwise (IAM matches names case-insensitively; keyvend's
// secret is named by the exact spelling) or not keyvend's — or nil when
// IAM has none, or it vanished between the reads. The state of a user
// keyvend does not manage is never looked at (reading it may also have
// been denied): absent wins.
func (s *Service) readUser(ctx context.Context, name string, read stateParts, absent func(got *iamtypes.User) error) (*iamtypes.User, *userState, error) {
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
	got, err := s.iam.GetUser(ctx, &iam.GetUserInput{UserName: &name})
	<-done
	switch {
	case isCode(err, codeNoSuchEntity):
		return nil, nil, absent(nil)
	case err != nil:
		return nil, nil, wrapf(err, "read user %s", name)
	case userName(got.User) != name || !s.managedUser(got.User):
		return nil, nil, absent(got.User)
	case isCode(readErr, codeNoSuchEntity): // deleted between the reads
		return nil, nil, absent(nil)
	case readErr != nil:
		return nil, nil, readErr
	}
	return got.User, st, nil
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
