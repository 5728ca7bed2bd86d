package provision

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	iamtypes "github.com/aws/aws-sdk-go-v2/service/iam/types"

	"github.com/keyvend/keyvend/pkg/approval"
	"github.com/keyvend/keyvend/pkg/authz"
	"github.com/keyvend/keyvend/pkg/caller"
	"github.com/keyvend/keyvend/pkg/grants"
	"github.com/keyvend/keyvend/pkg/policy"
	"github.com/keyvend/keyvend/pkg/state"
)

// CreateInput is one create request with who made it.
type CreateInput struct {
	Principal caller.Principal
	RequestID string
	Request   CreateRequest

	expiresAt    *time.Time // decided from the request and the rules
	expiryCapped bool
	requester    string // the principal as its tag holds it (encodeRequester)

	need     *authz.Need       // the approval the rules ask for (nil: none)
	approved *approval.Request // the approved request this create provisions (Decide)
	limits   authz.CreateLimits
}

// GroupRef is a keyvend grant group and the grant it carries (grant mode
// group).
type GroupRef = grants.GroupRef

// CreateResult describes a vended user. It never holds the secret access key.
type CreateResult struct {
	// Created is true when this request created the access key (HTTP 201),
	// false when it found the same user already complete (HTTP 200).
	Created  bool `json:"-"`
	Repaired bool `json:"repaired,omitempty"`

	User    string         `json:"user"`
	UserARN string         `json:"user_arn"`
	Path    string         `json:"path"`
	Grants  []policy.Grant `json:"grants"`
	// GrantMode is how the grants reach IAM: "policy" (one user policy) or
	// "group" (Groups).
	GrantMode         grants.Mode `json:"grant_mode"`
	Groups            []GroupRef  `json:"groups"`
	AccessKeyID       string      `json:"access_key_id"`
	SecretName        string      `json:"secret_name"`
	SecretARN         string      `json:"secret_arn"`
	CredentialProcess string      `json:"credential_process"`
	ExpiresAt         *time.Time  `json:"expires_at,omitempty"`
	// ExpiryCapped is true when a rule's max_ttl shortened the requested expiry.
	ExpiryCapped bool `json:"expiry_capped,omitempty"`
	// CredentialProcessKeyvend is the credential_process line of keyvend's
	// own helper (`keyvend credentials`).
	CredentialProcessKeyvend string `json:"credential_process_keyvend"`
	Readiness
}

// admit decides everything about a create request that needs no AWS
// call: validation (the request's and the grant mode's limits), the
// requester it will record, the rules, and the expiry. Create and the
// Slack precheck (CheckCreate) decide with it.
func (s *Service) admit(in *CreateInput) error {
	req := in.Request
	if err := req.Validate(); err != nil {
		return err
	}
	if fields := s.grants.Check(req.Grants); len(fields) > 0 {
		return invalid("the request is not valid", fields...)
	}
	if err := s.rules.DecideIn(in.Principal.Names(), in.Principal.Channel, authz.Create, req.Grants); err != nil {
		return forbidden("%s", err.Error())
	}
	if in.limits = s.rules.Limits(in.Principal.Names(), in.Principal.Channel, req.Grants); !in.limits.Unlimited && len(in.limits.Rules) == 0 {
		return forbidden("these grants need several rules, and %s has max_users: a rule with max_users allows only users whose grants it covers entirely; ask for them in separate users", authz.RuleName(in.limits.Split))
	}
	in.need = s.rules.ApprovalIn(in.Principal.Names(), in.Principal.Channel, req.Grants)
	requester, ok := encodeRequester(in.Principal.Requester())
	if !ok {
		return invalid(fmt.Sprintf("keyvend cannot record the caller %q as a requester exactly (it would take more than %d characters in a tag)", in.Principal.Requester(), MaxTagValueLen))
	}
	in.requester = requester
	ttl, err := s.requestedTTL(req.lifetime())
	if err != nil {
		return err
	}
	in.expiresAt, in.expiryCapped, err = s.expiry(in.Principal, req.Grants, ttl)
	return err
}

// Create provisions the user the request describes, or returns the same
// user if an identical request already did. The saga, in three round trips:
//
//  1. CreateUser ‖ claim the name in the state table (a record in phase
//     creating, leased to this request) (grant mode group: ‖ GetGroup for
//     each grant)
//  2. CreateAccessKey ‖ PutUserPolicy (grant mode group: per group
//     PutGroupPolicy if it exists, CreateGroup if it does not)
//  3. store the key in the user's secret (grant mode group: ‖
//     AddUserToGroup for each group ‖ PutGroupPolicy on each new group)
//
// and then the record is committed (ready, the key id, history; the lease
// released): a single DynamoDB write, a few milliseconds.
//
// The claim is the cross-process lock on the name: of two requests for it,
// the one whose claim fails and whose CreateUser succeeded deletes the user
// it made (the claim's holder is making it) unless the record it found is
// stale, which it then takes over. A failure after step 1 is compensated
// (rollback.go): the key is deleted, the grants removed, the user deleted
// and the record removed, so a retry starts clean.
func (s *Service) Create(ctx context.Context, in CreateInput) (res *CreateResult, err error) {
	start := time.Now()
	defer func() {
		s.audit(ctx, start, "create", in.Principal, in.RequestID, in.Request.User, in.Request.Grants, &err)
	}()
	if err := s.admit(&in); err != nil {
		return nil, err
	}
	if in.need != nil && in.approved == nil {
		if err := s.submitCreate(ctx, in); err != nil {
			return nil, err
		}
		// nil: the user exists already exactly as asked; Create answers it.
	}
	if in.approved != nil {
		if err := stillApproved(in.approved, in.need); err != nil {
			return nil, err
		}
	}
	req := in.Request
	h := s.newHold(req.User, in.RequestID)
	defer h.release(ctx)

	claimed := make(chan error, 1)
	if !in.limits.Unlimited {
		// A rule's max_users applies: count, then claim, before CreateUser
		// (a create refused for its limit makes nothing).
		if err := s.claimWithinLimit(ctx, in, h); err != nil && !errors.Is(err, state.ErrExists) {
			if KindOf(err) != 0 {
				return nil, err
			}
			return nil, wrapf(err, "claim user %s", req.User)
		} else {
			claimed <- err
		}
	}
	setup := s.grants.Prepare(ctx, req.Grants)
	if in.limits.Unlimited {
		go func() { claimed <- h.claim(ctx, s.createRecord(in)) }()
	}
	user, err := s.createUser(ctx, in)
	claimErr := <-claimed
	exists := isCode(err, codeEntityExists)
	switch {
	case claimErr != nil && !errors.Is(claimErr, state.ErrExists):
		_ = setup.Wait()
		if err == nil {
			s.dropUser(ctx, req.User)
		}
		return nil, wrapf(claimErr, "claim user %s", req.User)
	case errors.Is(claimErr, state.ErrExists):
		// Another request's record: take it over unless its lease is live.
		rec, lerr := h.take(ctx, state.LeaseOpts{})
		if lerr == nil && h.rec == nil {
			rec, lerr = nil, state.ErrBusy // removed between the claim and the lease
		}
		if lerr != nil {
			_ = setup.Wait()
			if err == nil && !sameRequest(rec, in) {
				// Our CreateUser won the race in IAM, but the name is
				// claimed by a live request for something else: the
				// user we made is in its way. (For the same request, the
				// claim's holder finds the user and completes it.)
				s.dropUser(ctx, req.User)
			}
			if errors.Is(lerr, state.ErrBusy) || errors.Is(lerr, state.ErrPhase) {
				return nil, refused(req.User, rec, lerr, 0)
			}
			return nil, lerr
		}
		if h.rec.Phase == state.Deleting && exists {
			// A delete died half-way: finish it; the retry starts clean.
			_ = setup.Wait()
			return nil, s.finishStaleDelete(ctx, h)
		}
		if err != nil && !exists {
			_ = setup.Wait()
			return nil, fmt.Errorf("create IAM user %s: %w", req.User, err)
		}
		// Whether or not our CreateUser succeeded, what IAM holds decides:
		// a CreateUser that succeeded says nothing of who made or
		// completed the user since (a twin request holding the claim may
		// have completed it; found by the model, protocol.pml FIX_MINE).
		// Under the lease nobody else is making the user, whatever its
		// age: a create commits only once the user is complete.
		if err := setup.Wait(); err != nil {
			return nil, grantError(err)
		}
		h.madeUser = err == nil // ours to delete if its repair fails
		return s.existing(ctx, in, h, true)
	case exists:
		// The name is ours in the table but taken in IAM: a user vended
		// before the table, or one a request that lost the claim made and
		// is about to delete (young: in progress).
		if err := setup.Wait(); err != nil {
			return nil, grantError(err)
		}
		return s.existing(ctx, in, h, false)
	case err != nil:
		_ = setup.Wait()
		if rerr := h.remove(ctx, nil); rerr != nil {
			s.log.ErrorContext(ctx, "create: record of a user IAM refused to create not removed", "user", req.User, "error", rerr)
		}
		return nil, fmt.Errorf("create IAM user %s: %w", req.User, err)
	}
	return s.finish(ctx, in, &saga{user: req.User, createdUser: true, hold: h}, user, setup, nil)
}

// sameRequest reports whether rec was claimed for what in asks: the same
// requester and grants (a retry, or a twin request).
func sameRequest(rec *state.Record, in CreateInput) bool {
	return rec != nil && rec.Requester == in.Principal.Requester() && sameSet(rec.Grants, in.Request.Grants)
}

// dropUser deletes a user this request created and then found claimed by
// another: it has nothing attached yet.
func (s *Service) dropUser(ctx context.Context, name string) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.cfg.CompensationTimeout)
	defer cancel()
	if _, err := s.iam.DeleteUser(ctx, &iam.DeleteUserInput{UserName: &name}); err != nil && !isCode(err, codeNoSuchEntity) {
		s.log.ErrorContext(ctx, "create: a user made for a name another request holds was not deleted; the reconciliation finds it", "user", name, "error", err)
	}
}

// finish completes a user that exists, on the critical path
// CreateAccessKey → store the key, while its grants are given alongside
// (setup):
//
//	CreateAccessKey ─────────┐
//	grants (setup.Attach) ───┴→ store key (‖ group memberships) → commit the record
//
// The key is stored only once the grants are in place (setup.Ready): a
// key in its secret is a working key with exactly its grants. have is what
// the user holds already (repair), nil for a user just created. The record
// is committed ready, releasing the lease, last (one DynamoDB write). On
// any failure it compensates sg.
func (s *Service) finish(ctx context.Context, in CreateInput, sg *saga, user *iamtypes.User, setup *grants.Setup, have *grants.Held) (*CreateResult, error) {
	name := aws.ToString(user.UserName)
	type created struct {
		key *iamtypes.AccessKey
		err error
	}
	keyDone := make(chan created, 1)
	go func() {
		out, err := s.iam.CreateAccessKey(ctx, &iam.CreateAccessKeyInput{UserName: &name})
		if err != nil {
			keyDone <- created{err: fmt.Errorf("create access key for %s: %w", name, err)}
			return
		}
		keyDone <- created{key: out.AccessKey}
	}()
	setup.Attach(ctx, name, have)
	readyErr := setup.Ready()
	c := <-keyDone
	if c.key != nil {
		sg.keyID = aws.ToString(c.key.AccessKeyId)
	}
	var secretARN string
	stepErr := errors.Join(c.err, grantError(readyErr))
	if stepErr == nil {
		arn, err := s.storeKey(ctx, in.Principal, in.RequestID, name, c.key)
		if err != nil {
			stepErr = err
		} else {
			secretARN, sg.storedSecret = arn, true
			// The rotation schedule the rules ask for (rotate_every) is
			// part of the user: a failure undoes the create.
			if s.rotationDays(in.Request.Grants) > 0 {
				stepErr = s.schedule(ctx, name, in.Request.Grants, nil)
			}
		}
	}
	if err := setup.Wait(); err != nil && stepErr == nil {
		stepErr = grantError(err)
	}
	if stepErr == nil {
		// The record says ready, and the lease is released, only once the
		// key is in its secret and every grant is given: committing any
		// earlier would let a delete in between the commit and the store
		// (it would leave a secret with no user).
		next := s.readyRecord(in, sg, user, c.key)
		entry := s.entry("create", in.Principal, in.RequestID, name, nil, in.Request.Grants, sg.keyID, createInputs(in))
		if !sg.createdUser {
			entry.Action = "repair"
		}
		if _, err := sg.hold.commit(ctx, next, entry); err != nil {
			stepErr = err
			sg.leaseLost = KindOf(err) == KindInProgress
		}
	}
	if stepErr != nil {
		stepErr = firstErr(stepErr)
		s.compensate(ctx, sg, stepErr)
		return nil, stepErr
	}
	r := s.createResult(user, in.Request.Grants, setup.Groups(), sg.keyID, secretARN, true)
	r.ExpiryCapped = in.expiryCapped
	if in.Request.Wait {
		r.Readiness = s.checkReady(ctx, c.key, aws.ToString(user.Arn), in.Request.Grants)
	}
	return r, nil
}

// createRecord is a create request's record, as it claims the name.
func (s *Service) createRecord(in CreateInput) state.Record {
	now := s.cfg.Now().UTC()
	return state.Record{
		Name: in.Request.User, Phase: state.Creating, Grants: in.Request.Grants, GrantMode: string(s.cfg.GrantMode), Intact: true,
		Requester: in.Principal.Requester(), Reason: in.Request.Reason, RequestID: in.RequestID,
		CreatedAt: now, ExpiresAt: in.expiresAt,
	}
}

// readyRecord is the record of a user this request completed: its own
// request's record for a user it created, the user's as IAM holds it for
// one it repaired, with the new key.
func (s *Service) readyRecord(in CreateInput, sg *saga, user *iamtypes.User, key *iamtypes.AccessKey) state.Record {
	r := s.createRecord(in)
	if !sg.createdUser {
		r = s.recordOf(user, nil, nil)
	}
	r.Phase, r.UserARN, r.Grants, r.Intact, r.GrantMode = state.Ready, aws.ToString(user.Arn), in.Request.Grants, true, string(s.cfg.GrantMode)
	r.KeyID, r.KeyAt = aws.ToString(key.AccessKeyId), aws.ToTime(key.CreateDate).UTC()
	if r.KeyAt.IsZero() {
		r.KeyAt = s.cfg.Now().UTC()
	}
	return r
}

// createInputs is what a create's history entry records of its request.
func createInputs(in CreateInput) map[string]any {
	m := map[string]any{}
	if in.Request.Reason != "" {
		m["reason"] = in.Request.Reason
	}
	if in.expiresAt != nil {
		m["expires_at"] = in.expiresAt.UTC().Format(time.RFC3339)
	}
	approvalInputs(m, in.approved)
	return m
}

// firstErr unwraps an errors.Join to its first error, so callers see the
// failing step's own error (and its Kind).
func firstErr(err error) error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		if errs := j.Unwrap(); len(errs) > 0 {
			return errs[0]
		}
	}
	return err
}

func (s *Service) createResult(user *iamtypes.User, gs []policy.Grant, groups []GroupRef, keyID, secretARN string, created bool) *CreateResult {
	name := aws.ToString(user.UserName)
	if groups == nil {
		groups = []GroupRef{}
	}
	mode := grants.Policy
	if len(groups) > 0 {
		mode = grants.Group
	}
	res := &CreateResult{
		Created:           created,
		User:              name,
		UserARN:           aws.ToString(user.Arn),
		Path:              aws.ToString(user.Path),
		Grants:            gs,
		GrantMode:         mode,
		Groups:            groups,
		AccessKeyID:       keyID,
		SecretName:        s.SecretName(name),
		SecretARN:         secretARN,
		CredentialProcess: s.credentialProcess(secretARN),
		ExpiresAt:         expiryOf(user.Tags),
	}
	res.CredentialProcessKeyvend = credentialProcessKeyvend(secretARN)
	return res
}

// createUser is CreateUser with the permissions boundary and every tag in
// the one call: a user never exists without them.
func (s *Service) createUser(ctx context.Context, in CreateInput) (*iamtypes.User, error) {
	now := s.cfg.Now().UTC().Format(time.RFC3339)
	tags := []iamtypes.Tag{
		{Key: aws.String(TagManagedBy), Value: aws.String(managedByValue)},
		{Key: aws.String(TagRequester), Value: aws.String(in.requester)},
		{Key: aws.String(TagReason), Value: aws.String(tagValue(in.Request.Reason))},
		{Key: aws.String(TagRequestID), Value: aws.String(tagValue(in.RequestID))},
		{Key: aws.String(TagCreatedAt), Value: aws.String(now)},
		{Key: aws.String(TagGrants), Value: aws.String(grantsFingerprint(in.Request.Grants))},
	}
	if in.expiresAt != nil {
		tags = append(tags, iamtypes.Tag{Key: aws.String(TagExpiresAt), Value: aws.String(in.expiresAt.UTC().Format(time.RFC3339))})
	}
	out, err := s.iam.CreateUser(ctx, &iam.CreateUserInput{
		UserName:            aws.String(in.Request.User),
		Path:                aws.String(s.cfg.UserPath),
		PermissionsBoundary: aws.String(s.cfg.BoundaryARN),
		Tags:                tags,
	})
	if err != nil {
		return nil, err
	}
	return out.User, nil
}

// grantsFingerprint identifies a set of grants: 32 hex digits of the
// SHA-256 of their sorted group names (which name each grant exactly).
func grantsFingerprint(gs []policy.Grant) string {
	names := make([]string, len(gs))
	for i, g := range gs {
		names[i] = policy.GroupName(g)
	}
	sort.Strings(names)
	sum := sha256.Sum256([]byte(strings.Join(names, "\n")))
	return hex.EncodeToString(sum[:16])
}
