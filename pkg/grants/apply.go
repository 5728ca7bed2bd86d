package grants

import (
	"context"
	"fmt"
	"sync"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/iam"

	"github.com/keyvend/keyvend/pkg/awserr"
	"github.com/keyvend/keyvend/pkg/policy"
)

// Applied is what Apply did: the groups the user is in now (grant mode
// group), and the keyvend grant groups it left, which the caller passes to
// DropEmpty alongside its own last step.
type Applied struct {
	Groups []GroupRef
	Left   []string
}

// Apply makes user hold exactly want, in the deployment's mode, moving it
// from the other mode if it is there; have is what it holds now. What is
// no longer wanted is revoked before anything new is given, so the user
// never holds more than either its old or its new grants plus the ones
// they share (a user policy is replaced at once). Every step converges:
// after an error, Apply again from a fresh Read.
func (c *Carrier) Apply(ctx context.Context, user string, want []policy.Grant, have *Held) (*Applied, error) {
	if c.cfg.Mode == Group {
		return c.applyGroups(ctx, user, want, have)
	}
	var leave []string
	for _, g := range have.Groups {
		leave = append(leave, g.Name)
	}
	if err := c.leave(ctx, user, leave); err != nil {
		return nil, err
	}
	if !(have.Policy && have.PolicyExact && sameGrants(policyGrants(have), want)) {
		if err := c.putUserPolicy(ctx, user, want); err != nil {
			return nil, err
		}
	}
	return &Applied{Groups: []GroupRef{}, Left: leave}, nil
}

// policyGrants are the grants of have's user policy (all of them when it
// has no groups).
func policyGrants(have *Held) []policy.Grant {
	inGroups := map[policy.Grant]bool{}
	for _, g := range have.Groups {
		inGroups[g.Grant] = true
	}
	var out []policy.Grant
	for _, g := range have.Grants {
		if !inGroups[g] {
			out = append(out, g)
		}
	}
	return out
}

// applyGroups is Apply in grant mode group: the wanted groups are set up
// first (that changes no user), then the user leaves the groups it should
// not be in and loses a user policy from grant mode policy, then joins the
// ones it is not in yet.
func (c *Carrier) applyGroups(ctx context.Context, user string, want []policy.Grant, have *Held) (*Applied, error) {
	s := c.prepare(ctx, want, have.Groups)
	if err := s.Wait(); err != nil {
		return nil, err
	}
	wanted := map[string]bool{}
	for _, r := range s.refs {
		wanted[r.Name] = true
	}
	member := map[string]bool{}
	var leave []string
	for _, g := range have.Groups {
		member[g.Name] = true
		if !wanted[g.Name] {
			leave = append(leave, g.Name)
		}
	}
	if err := c.leave(ctx, user, leave); err != nil {
		return nil, err
	}
	if have.Policy {
		_, err := c.iam.DeleteUserPolicy(ctx, &iam.DeleteUserPolicyInput{UserName: &user, PolicyName: aws.String(policy.UserPolicyName)})
		if err != nil && !awserr.Is(err, "NoSuchEntity") {
			return nil, fmt.Errorf("delete policy %s of user %s: %w", policy.UserPolicyName, user, err)
		}
	}
	err := c.each(s.refs, func(g GroupRef) error {
		if member[g.Name] {
			return nil
		}
		return c.join(ctx, user, g)
	})
	if err != nil {
		return nil, err
	}
	return &Applied{Groups: s.refs, Left: leave}, nil
}

// leave removes user from groups, concurrently.
func (c *Carrier) leave(ctx context.Context, user string, groups []string) error {
	refs := make([]GroupRef, len(groups))
	for i, g := range groups {
		refs[i] = GroupRef{Name: g}
	}
	return c.each(refs, func(g GroupRef) error {
		_, err := c.iam.RemoveUserFromGroup(ctx, &iam.RemoveUserFromGroupInput{UserName: &user, GroupName: aws.String(g.Name)})
		if err != nil && !awserr.Is(err, "NoSuchEntity") {
			return fmt.Errorf("remove user %s from group %s: %w", user, g.Name, err)
		}
		return nil
	})
}

// each runs f on every group concurrently and returns the first error.
func (c *Carrier) each(groups []GroupRef, f func(GroupRef) error) error {
	errs := make([]error, len(groups))
	var wg sync.WaitGroup
	for i, g := range groups {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = f(g)
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// DropEmpty deletes the keyvend grant groups among names that have no
// member left (their policy first: IAM deletes no group that still has
// one), so groups do not pile up against IAM's quota of 300 per account.
// It is best effort: a group another request joins meanwhile survives —
// IAM refuses to delete a group with members — and gets its policy back in
// grant mode group; anything else is logged and left for later.
func (c *Carrier) DropEmpty(ctx context.Context, names []string) {
	var wg sync.WaitGroup
	for _, name := range names {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.dropIfEmpty(ctx, name)
		}()
	}
	wg.Wait()
}

func (c *Carrier) dropIfEmpty(ctx context.Context, name string) {
	log := c.log.With("group", name)
	got, err := c.iam.GetGroup(ctx, &iam.GetGroupInput{GroupName: &name, MaxItems: aws.Int32(1)})
	switch {
	case awserr.Is(err, "NoSuchEntity"):
		return
	case err != nil:
		log.WarnContext(ctx, "empty grant group not deleted: cannot read it", "error", err.Error())
		return
	case aws.ToString(got.Group.Path) != c.cfg.Path || len(got.Users) > 0:
		return
	}
	grant, gerr := policy.ParseGroup(c.cfg.Partition, name, "")
	if gerr != nil {
		// A prefixed grant: its prefix is only in the policy.
		out, err := c.iam.GetGroupPolicy(ctx, &iam.GetGroupPolicyInput{GroupName: &name, PolicyName: aws.String(policy.InlinePolicyName)})
		if err == nil {
			grant, gerr = policy.ParseGroup(c.cfg.Partition, name, aws.ToString(out.PolicyDocument))
		}
	}
	_, err = c.iam.DeleteGroupPolicy(ctx, &iam.DeleteGroupPolicyInput{GroupName: &name, PolicyName: aws.String(policy.InlinePolicyName)})
	if err != nil && !awserr.Is(err, "NoSuchEntity") {
		log.WarnContext(ctx, "empty grant group not deleted: its policy stays", "error", err.Error())
		return
	}
	_, err = c.iam.DeleteGroup(ctx, &iam.DeleteGroupInput{GroupName: &name})
	switch {
	case err == nil:
		log.InfoContext(ctx, "deleted grant group: its last member left")
	case awserr.Is(err, "NoSuchEntity"):
	case awserr.Is(err, "DeleteConflict") && c.cfg.Mode == Group && gerr == nil:
		// Someone joined meanwhile: give the group its policy back.
		if perr := c.putGroupPolicy(ctx, name, grant); perr != nil {
			log.ErrorContext(ctx, "a member joined a grant group while it was being deleted and its policy could not be put back; the next provision with this grant puts it", "error", perr.Error())
		}
	default:
		log.WarnContext(ctx, "empty grant group not deleted", "error", err.Error())
	}
}
