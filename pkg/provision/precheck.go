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
// call: the request's validation and the grant mode's limits
// (KindInvalid), the rules (KindForbidden) and the rules' expiry
// requirements (KindInvalid) — Create's own admit. It makes no AWS call.
// nil does not promise success: AWS state (an existing user with other
// grants, say) is only seen when Create runs.
func (s *Service) CheckCreate(in CreateInput) error {
	return s.admit(&in)
}

// CheckOnUser reports whether p may perform action (describe, rotate or
// delete) on the managed user name, as Describe, Rotate and Delete decide
// it: KindInvalid for a bad name, KindNotFound for a user keyvend does not
// manage or p may not describe, KindForbidden when p may describe it but
// not act. It only reads: GetUser and the user's grants.
func (s *Service) CheckOnUser(ctx context.Context, p caller.Principal, action authz.Action, name string) error {
	switch action {
	case authz.Describe, authz.Rotate, authz.Delete:
	default:
		return fmt.Errorf("precheck of %s on a user: not an action on one user", action)
	}
	_, _, err := s.load(ctx, p, action, name, grantState)
	return err
}
