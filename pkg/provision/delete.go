package provision

import (
	"context"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	iamtypes "github.com/aws/aws-sdk-go-v2/service/iam/types"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"

	"github.com/keyvend/keyvend/pkg/authz"
	"github.com/keyvend/keyvend/pkg/caller"
	"github.com/keyvend/keyvend/pkg/grants"
	"github.com/keyvend/keyvend/pkg/policy"
	"github.com/keyvend/keyvend/pkg/state"
)

// DeleteInput asks to deprovision a managed user.
type DeleteInput struct {
	Principal caller.Principal
	RequestID string
	User      string
	// Force deletes the secret at once instead of scheduling it with the
	// recovery window. Only a rule with the force-delete action allows it.
	Force bool
	// IfMatch, when not 0, is the version (ETag) the caller last read
	// (KindPrecondition, 412, if the user changed since).
	IfMatch int64
}

// userInventory is everything attached to a user that blocks DeleteUser.
type userInventory struct {
	user     *iamtypes.User
	keys     []string
	groups   map[string]iamtypes.Group // every group, keyvend's or not
	inline   []string
	attached []string
	// policyDoc is keyvend's user policy (nil: none), for the grants.
	policyDoc *string
	// secretOurs is false when a secret of the user's name exists without
	// keyvend's tags for this user: Delete leaves such a secret alone.
	secretOurs bool
}

// Delete deprovisions the user in three round trips and a table write:
//
//  1. GetUser ‖ ListAccessKeys ‖ ListGroupsForUser ‖ ListUserPolicies ‖ ListAttachedUserPolicies ‖ GetUserPolicy ‖ DescribeSecret
//     ‖ the user's lease, marking it deleting (UpdateItem)
//     (‖ GetGroupPolicy of prefixed grant groups, for a user in grant mode group)
//  2. DeleteAccessKey… ‖ RemoveUserFromGroup… ‖ DeleteUserPolicy… ‖ DetachUserPolicy… ‖ DeleteSecret
//  3. DeleteUser ‖ grant groups left empty deleted (grant mode group)
//  4. the record removed with the history entry (TransactWriteItems)
//
// It works on half-made users too, and is safe to repeat until it
// succeeds. A user outside the keyvend path, or without keyvend's tag, is
// KindNotFound and nothing is touched.
func (s *Service) Delete(ctx context.Context, in DeleteInput) (err error) {
	start := time.Now()
	var audited []policy.Grant
	defer func() { s.audit(ctx, start, "delete", in.Principal, in.RequestID, in.User, audited, &err) }()
	if err := checkName(in.User); err != nil {
		return err
	}
	// The lease (marking the user deleting) is taken beside the inventory:
	// round 1. An inventory that raced a change another request committed
	// just before this one got the lease can only miss something that then
	// makes DeleteUser fail (409, retry): the user is never half-deleted
	// behind a live operation.
	h := s.newHold(in.User, in.RequestID)
	defer h.release(ctx)
	type taken struct {
		rec *state.Record
		err error
	}
	leased := make(chan taken, 1)
	go func() {
		rec, err := h.take(ctx, state.LeaseOpts{Version: in.IfMatch, SetPhase: state.Deleting})
		leased <- taken{rec, err}
	}()
	inv, err := s.inventory(ctx, in.User)
	l := <-leased
	if err != nil {
		if KindOf(err) == KindNotFound && l.err == nil && h.rec != nil {
			return s.finishGone(ctx, in, h, err)
		}
		return err
	}
	if l.err != nil {
		if l.rec == nil {
			return l.err
		}
		held, herr := s.heldBy(ctx, in.User, inv)
		if herr != nil {
			return herr
		}
		if err := s.authorizeOnUser(in.Principal, authz.Delete, inv.user, held); err != nil {
			return err
		}
		return refused(in.User, l.rec, l.err, in.IfMatch)
	}
	entry := func(held *grants.Held) *state.History {
		var before []policy.Grant
		if held != nil {
			before = held.Grants
		}
		e := s.entry("delete", in.Principal, in.RequestID, in.User, before, nil, "", nil)
		if in.Force {
			e.Inputs = map[string]any{"force": true}
		}
		return e
	}
	if owns(in.Principal, inv.user) && !in.Force {
		// Its requester may delete it whatever it holds: its grants (in
		// grant mode group, the policies of its groups: one more round
		// trip) are read alongside the deletion, for the audit line and
		// history only.
		var held *grants.Held
		done := make(chan struct{})
		go func() {
			defer close(done)
			if h, err := s.heldBy(ctx, in.User, inv); err == nil {
				held, audited = h, h.Grants
			}
		}()
		if err := h.adopt(ctx, inv.user, nil, state.Deleting); err != nil {
			<-done
			return err
		}
		err := s.finishDelete(ctx, in.User, inv, in.Force, h)
		<-done
		if err != nil {
			return err
		}
		return h.remove(ctx, entry(held))
	}
	held, err := s.heldBy(ctx, in.User, inv)
	if err != nil {
		return err
	}
	audited = held.Grants
	if err := s.authorizeOnUser(in.Principal, authz.Delete, inv.user, held); err != nil {
		return err
	}
	if in.Force {
		if err := s.authorizeOnUser(in.Principal, authz.ForceDelete, inv.user, held); err != nil {
			return err
		}
	}
	if err := h.adopt(ctx, inv.user, &userState{held: held}, state.Deleting); err != nil {
		return err
	}
	if err := s.finishDelete(ctx, in.User, inv, in.Force, h); err != nil {
		return err
	}
	return h.remove(ctx, entry(held))
}

// finishGone answers a delete of a user IAM no longer has but the table
// still records. A record already deleting is a delete that removed the
// user and died before removing the record: its retry (by whoever may
// delete it by the record) finishes it, 204. Anything else is drift the
// reconciliation repairs: notFound, and the record is left as it was.
func (s *Service) finishGone(ctx context.Context, in DeleteInput, h *hold, notFound error) error {
	rec := h.rec
	if h.back != state.Deleting {
		return notFound
	}
	if !ownsRequester(in.Principal, rec.Requester) && !(rec.Intact && s.rules.DecideIn(in.Principal.Names(), in.Principal.Channel, authz.Delete, rec.Grants) == nil) {
		return notFound
	}
	h.back = ""
	e := s.entry("delete", in.Principal, in.RequestID, in.User, rec.Grants, nil, "", map[string]any{"finished": "the user was already gone"})
	return h.remove(ctx, e)
}

// heldBy is what the inventoried user holds, from what round 1 read.
func (s *Service) heldBy(ctx context.Context, name string, inv *userInventory) (*grants.Held, error) {
	groups := make([]iamtypes.Group, 0, len(inv.groups))
	for _, g := range inv.groups {
		groups = append(groups, g)
	}
	held, err := s.grants.HeldFrom(ctx, name, inv.policyDoc, groups)
	if err != nil {
		return nil, wrapf(err, "read grants of user %s", name)
	}
	return held, nil
}

// deprovision deletes a managed user without an authorization check, for
// the reaper, which acts on the rules' expiry and on half-made users. The
// caller holds the user's lease (h, marked deleting); the record is
// removed with entry once the user is gone.
func (s *Service) deprovision(ctx context.Context, h *hold, force bool, entry *state.History) error {
	inv, err := s.inventory(ctx, h.name)
	switch {
	case KindOf(err) == KindNotFound:
		// Gone already (or not keyvend's): the record describes nothing.
		return h.remove(ctx, entry)
	case err != nil:
		return err
	}
	if err := h.adopt(ctx, inv.user, nil, state.Deleting); err != nil {
		return err
	}
	if err := s.finishDelete(ctx, h.name, inv, force, h); err != nil {
		return err
	}
	return h.remove(ctx, entry)
}

// finishStaleDelete finishes a delete whose request died (a record left in
// deleting, taken over by a create): the user goes, and the create is
// told to retry, which then starts clean.
func (s *Service) finishStaleDelete(ctx context.Context, h *hold) error {
	e := s.entry("delete", caller.Principal{ID: ReaperPrincipal}, h.holder, h.name, h.rec.Grants, nil, "", map[string]any{"finished": "a delete whose request died"})
	if err := s.deprovision(ctx, h, false, e); err != nil {
		return err
	}
	return beingChanged(h.name)
}

// finishDelete runs rounds 2 and 3 of Delete, holding the user's lease
// (h). Once it starts, a refusal no longer puts the record back: a
// half-deleted user stays deleting, and the next delete (or the reaper)
// finishes it.
func (s *Service) finishDelete(ctx context.Context, name string, inv *userInventory, force bool, h *hold) error {
	h.back = ""
	if err := s.detach(ctx, name, inv, force); err != nil {
		return err
	}
	var left []string
	for n, g := range inv.groups {
		if aws.ToString(g.Path) == s.cfg.UserPath {
			left = append(left, n)
		}
	}
	dropped := make(chan struct{})
	go func() {
		defer close(dropped)
		s.grants.DropEmpty(context.WithoutCancel(ctx), left)
	}()
	defer func() { <-dropped }()
	if _, err := s.iam.DeleteUser(ctx, &iam.DeleteUserInput{UserName: &name}); err != nil && !isCode(err, codeNoSuchEntity) {
		if isCode(err, "DeleteConflict") {
			return stillAttached(name)
		}
		return wrapf(err, "delete user %s", name)
	}
	return nil
}

// inventory is round 1 of Delete: the user and all that is attached to it.
func (s *Service) inventory(ctx context.Context, name string) (*userInventory, error) {
	inv := &userInventory{groups: map[string]iamtypes.Group{}}
	var (
		wg   sync.WaitGroup
		errs [7]error
	)
	wg.Add(7)
	go func() {
		defer wg.Done()
		out, err := s.iam.GetUserPolicy(ctx, &iam.GetUserPolicyInput{UserName: &name, PolicyName: aws.String(policy.UserPolicyName)})
		switch {
		case err == nil:
			inv.policyDoc = out.PolicyDocument
		case !isCode(err, codeNoSuchEntity):
			errs[6] = err
		}
	}()
	go func() {
		defer wg.Done()
		secret := s.SecretName(name)
		out, err := s.sm.DescribeSecret(ctx, &secretsmanager.DescribeSecretInput{SecretId: &secret})
		switch {
		case isCode(err, codeResourceNotFound):
			inv.secretOurs = true // nothing to delete; DeleteSecret will say so
		case err == nil:
			inv.secretOurs = secretManaged(out.Tags) && secretTag(out.Tags, TagUser) == name
		default:
			errs[5] = err
		}
	}()
	go func() {
		defer wg.Done()
		out, err := s.iam.GetUser(ctx, &iam.GetUserInput{UserName: &name})
		if err == nil {
			inv.user = out.User
		}
		errs[0] = err
	}()
	go func() {
		defer wg.Done()
		ids, err := s.listKeyIDs(ctx, name)
		inv.keys, errs[1] = ids, err
	}()
	go func() {
		defer wg.Done()
		groups, err := grants.UserGroups(ctx, s.iam, name)
		for _, g := range groups {
			inv.groups[aws.ToString(g.GroupName)] = g
		}
		errs[2] = err
	}()
	go func() {
		defer wg.Done()
		p := iam.NewListUserPoliciesPaginator(s.iam, &iam.ListUserPoliciesInput{UserName: &name})
		for p.HasMorePages() {
			page, err := p.NextPage(ctx)
			if err != nil {
				errs[3] = err
				return
			}
			inv.inline = append(inv.inline, page.PolicyNames...)
		}
	}()
	go func() {
		defer wg.Done()
		p := iam.NewListAttachedUserPoliciesPaginator(s.iam, &iam.ListAttachedUserPoliciesInput{UserName: &name})
		for p.HasMorePages() {
			page, err := p.NextPage(ctx)
			if err != nil {
				errs[4] = err
				return
			}
			for _, a := range page.AttachedPolicies {
				inv.attached = append(inv.attached, aws.ToString(a.PolicyArn))
			}
		}
	}()
	wg.Wait()
	switch {
	case isCode(errs[0], codeNoSuchEntity):
		return nil, notFound(name)
	case errs[0] != nil:
		return nil, wrapf(errs[0], "read user %s", name)
	case !s.managedUser(inv.user) || userName(inv.user) != name: // IAM matches names case-insensitively
		// The lists may have been denied by the fenced role; either way
		// nothing outside keyvend's path is touched.
		return nil, notFound(name)
	}
	for i, what := range []string{"", "list access keys", "list groups", "list inline policies", "list attached policies", "describe the secret", "read the grant policy"} {
		if i > 0 && errs[i] != nil {
			return nil, wrapf(errs[i], "%s of user %s", what, name)
		}
	}
	return inv, nil
}

// detach is round 2 of Delete: everything that blocks DeleteUser, and the
// secret, concurrently.
func (s *Service) detach(ctx context.Context, name string, inv *userInventory, force bool) error {
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		first error
	)
	run := func(what string, f func() error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := f(); err != nil && !isCode(err, codeNoSuchEntity, codeResourceNotFound) {
				mu.Lock()
				if first == nil {
					first = wrapf(err, "%s", what)
				}
				mu.Unlock()
			}
		}()
	}
	for _, id := range inv.keys {
		run("delete access key "+id+" of "+name, func() error {
			_, err := s.iam.DeleteAccessKey(ctx, &iam.DeleteAccessKeyInput{UserName: &name, AccessKeyId: aws.String(id)})
			return err
		})
	}
	for g := range inv.groups {
		run("remove "+name+" from group "+g, func() error {
			_, err := s.iam.RemoveUserFromGroup(ctx, &iam.RemoveUserFromGroupInput{UserName: &name, GroupName: aws.String(g)})
			return err
		})
	}
	for _, p := range inv.inline {
		run("delete inline policy "+p+" of "+name, func() error {
			_, err := s.iam.DeleteUserPolicy(ctx, &iam.DeleteUserPolicyInput{UserName: &name, PolicyName: aws.String(p)})
			return err
		})
	}
	for _, arn := range inv.attached {
		run("detach policy "+arn+" from "+name, func() error {
			_, err := s.iam.DetachUserPolicy(ctx, &iam.DetachUserPolicyInput{UserName: &name, PolicyArn: aws.String(arn)})
			return err
		})
	}
	secret := s.SecretName(name)
	if !inv.secretOurs {
		s.log.WarnContext(ctx, "delete: the user's secret is not tagged as keyvend's; left alone", "secret", secret)
	}
	run("delete secret "+secret, func() error {
		if !inv.secretOurs {
			return nil
		}
		in := &secretsmanager.DeleteSecretInput{SecretId: &secret}
		if force {
			in.ForceDeleteWithoutRecovery = aws.Bool(true)
		} else {
			in.RecoveryWindowInDays = aws.Int64(int64(s.cfg.SecretRecoveryDays))
		}
		_, err := s.sm.DeleteSecret(ctx, in)
		if isCode(err, codeInvalidRequest) && !force { // already scheduled for deletion
			return nil
		}
		return err
	})
	wg.Wait()
	return first
}
