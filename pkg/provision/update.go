package provision

import (
	"context"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	iamtypes "github.com/aws/aws-sdk-go-v2/service/iam/types"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"

	"github.com/keyvend/keyvend/pkg/approval"
	"github.com/keyvend/keyvend/pkg/authz"
	"github.com/keyvend/keyvend/pkg/caller"
	"github.com/keyvend/keyvend/pkg/grants"
	"github.com/keyvend/keyvend/pkg/policy"
	"github.com/keyvend/keyvend/pkg/state"
)

// UpdateGrantsInput replaces a managed user's grants.
type UpdateGrantsInput struct {
	Principal caller.Principal
	RequestID string
	User      string
	Grants    []policy.Grant
	// Lifetime optionally sets a new expiry, as a create's does.
	Lifetime Lifetime
	// IfMatch, when not 0, is the version (ETag) the caller last read:
	// the update is refused (KindPrecondition, 412) if the user changed since.
	IfMatch int64

	approved *approval.Request // the approved request this update provisions (Decide)
}

// UpdateGrants replaces the user's grants, in the deployment's grant mode
// (a user in the other mode is moved): what it no longer has is revoked
// first, then the new grants are given. The new grants pass the same
// validation, rules and expiry decision as a create (require_expiry and
// max_ttl of the rules covering them: the requested lifetime, or else
// what is left of the current expiry, is refused or capped); changing a
// user also needs its requester or a rule with the update action on its
// current grants. The key is unchanged.
func (s *Service) UpdateGrants(ctx context.Context, in UpdateGrantsInput) (d *Description, err error) {
	start := time.Now()
	defer func() { s.audit(ctx, start, "update", in.Principal, in.RequestID, in.User, in.Grants, &err) }()
	if err := checkName(in.User); err != nil {
		return nil, err
	}
	fields := validateGrants(in.Grants)
	if len(fields) == 0 {
		fields = s.grants.Check(in.Grants)
	}
	if _, fe := in.Lifetime.duration(s.cfg.Now()); fe != nil {
		fields = append(fields, *fe)
	}
	if len(fields) > 0 {
		return nil, invalid("the request is not valid", fields...)
	}
	if err := s.rules.DecideIn(in.Principal.Names(), in.Principal.Channel, authz.Create, in.Grants); err != nil {
		return nil, forbidden("%s", err.Error())
	}
	if err := s.updateApproval(ctx, in); err != nil {
		return nil, err
	}
	h := s.newHold(in.User, in.RequestID)
	defer h.release(ctx)
	if rec, err := h.take(ctx, state.LeaseOpts{Version: in.IfMatch, Phases: []state.Phase{state.Ready}}); err != nil {
		return nil, s.refusedAfterAuth(ctx, in.Principal, authz.Update, in.User, rec, err, in.IfMatch)
	}
	user, st, err := s.load(ctx, in.Principal, authz.Update, in.User, allState)
	if err != nil {
		return nil, err
	}
	if err := h.adopt(ctx, user, st, ""); err != nil {
		return nil, err
	}
	ttl, err := s.requestedTTL(in.Lifetime)
	if err != nil {
		return nil, err
	}
	current := expiryOf(user.Tags)
	if !in.Lifetime.given() && current != nil {
		ttl = max(current.Sub(s.cfg.Now()), time.Second)
	}
	expires, capped, err := s.expiry(in.Principal, in.Grants, ttl)
	if err != nil {
		return nil, err
	}
	// The secret's rotation schedule follows the rules covering the new
	// grants (rotate_every), set before the grants change: a failure
	// leaves IAM as it was.
	if s.cfg.RotationFunctionARN != "" && st.secret != nil {
		name := s.SecretName(in.User)
		desc, err := s.sm.DescribeSecret(ctx, &secretsmanager.DescribeSecretInput{SecretId: &name})
		if err != nil {
			return nil, wrapf(err, "read secret %s", name)
		}
		if err := s.schedule(ctx, in.User, in.Grants, desc); err != nil {
			return nil, err
		}
	}
	applied, err := s.grants.Apply(ctx, in.User, in.Grants, st.held)
	if err != nil {
		return nil, grantError(err)
	}
	// The tags say what the user was given, for a young user's replay
	// (keyvend:grants) and for the reaper (keyvend:expires-at); written
	// only when they change, alongside dropping the groups it left empty.
	var tags []iamtypes.Tag
	if fp := grantsFingerprint(in.Grants); userTag(user, TagGrants) != fp {
		tags = append(tags, iamtypes.Tag{Key: aws.String(TagGrants), Value: aws.String(fp)})
	}
	if expires != nil && (in.Lifetime.given() || capped) {
		if at := expires.Format(time.RFC3339); userTag(user, TagExpiresAt) != at {
			tags = append(tags, iamtypes.Tag{Key: aws.String(TagExpiresAt), Value: aws.String(at)})
		}
	} else {
		expires = current
	}
	dropped := make(chan struct{})
	go func() {
		defer close(dropped)
		s.grants.DropEmpty(ctx, applied.Left)
	}()
	if len(tags) > 0 {
		if _, err := s.iam.TagUser(ctx, &iam.TagUserInput{UserName: &in.User, Tags: tags}); err != nil {
			<-dropped
			return nil, wrapf(err, "tag user %s with its new grants", in.User)
		}
	}
	next := *h.rec
	next.Grants, next.Intact, next.GrantMode, next.ExpiresAt = in.Grants, true, string(s.cfg.GrantMode), expires
	inputs := map[string]any{}
	if expires != nil {
		inputs["expires_at"] = expires.UTC().Format(time.RFC3339)
	}
	approvalInputs(inputs, in.approved)
	rec, err := h.commit(ctx, next, s.entry("update", in.Principal, in.RequestID, in.User, st.held.Grants, in.Grants, "", inputs))
	<-dropped
	if err != nil {
		return nil, err
	}
	user.Tags = mergeTags(user.Tags, tags)
	groups := applied.Groups
	held := &grants.Held{Grants: in.Grants, Intact: true, Policy: len(groups) == 0, PolicyExact: true, GroupsIntact: true, Groups: groups}
	d = s.describe(user, &userState{held: held, keys: st.keys, secret: st.secret})
	d.ExpiresAt, d.ExpiryCapped, d.Version = expires, capped, rec.Version
	d.Rotation = s.rotationOf(ctx, in.User)
	return d, nil
}

// mergeTags is tags with set written over it.
func mergeTags(tags, set []iamtypes.Tag) []iamtypes.Tag {
	out := append([]iamtypes.Tag{}, set...)
	for _, t := range tags {
		overwritten := false
		for _, n := range set {
			overwritten = overwritten || aws.ToString(n.Key) == aws.ToString(t.Key)
		}
		if !overwritten {
			out = append(out, t)
		}
	}
	return out
}
