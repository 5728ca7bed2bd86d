package provision

import (
	"context"
	"fmt"

	"github.com/keyvend/keyvend/pkg/authz"
	"github.com/keyvend/keyvend/pkg/caller"
)

// Prechecks answer "would keyvend refuse this?" without changing anything,
// for front ends that queue the work and answer before it is done (the
// Slack command). They decide exactly as the operations do, with the same
// validation and the same rules; the operations check again when they run.

// CheckCreate reports whether Create would refuse in before its first AWS
// call: the request's validation (KindInvalid), the rules (KindForbidden)
// and the rules' expiry requirements (KindInvalid). It makes no AWS call.
// nil does not promise success: AWS state (an existing user with other
// grants, say) is only seen when Create runs.
func (s *Service) CheckCreate(in Input) error {
	if err := in.Request.Validate(); err != nil {
		return err
	}
	if err := s.rules.DecideIn(in.Principal.Names(), in.Principal.Channel, authz.Create, in.Request.Grants); err != nil {
		return &Error{Kind: KindForbidden, Detail: err.Error()}
	}
	_, _, err := s.expiry(in)
	return err
}

// CheckOnUser reports whether p may perform action (describe, rotate or
// delete) on the managed user name, as Describe, Rotate and Delete decide
// it: KindInvalid for a bad name, KindNotFound for a user keyvend does not
// manage, KindForbidden when neither the requester rule nor any rule
// allows it. It only reads: GetUser, ListGroupsForUser, and GetGroupPolicy
// for prefixed grants.
func (s *Service) CheckOnUser(ctx context.Context, p caller.Principal, action authz.Action, name string) error {
	switch action {
	case authz.Describe, authz.Rotate, authz.Delete:
	default:
		return fmt.Errorf("precheck of %s on a user: not an action on one user", action)
	}
	user, err := s.lookupManaged(ctx, name)
	if err != nil {
		return err
	}
	groups, err := s.listKeyvendGroups(ctx, name)
	if err != nil {
		return wrapf(err, "list groups of user %s", name)
	}
	refs, err := s.groupGrants(ctx, groups)
	if err != nil {
		return err
	}
	return s.authorizeOnUser(p, action, user, grantsOf(refs))
}
