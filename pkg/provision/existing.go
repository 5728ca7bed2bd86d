package provision

import (
	"context"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	iamtypes "github.com/aws/aws-sdk-go-v2/service/iam/types"

	"github.com/keyvend/keyvend/pkg/grants"
	"github.com/keyvend/keyvend/pkg/policy"
)

// verdict is what a create request does with a user that already exists.
type verdict int

const (
	// replay: the same user, complete: answer it (200), nothing created.
	replay verdict = iota + 1
	// putAgain: the same user, complete, but its user policy was changed
	// outside keyvend: put the canonical policy again, then answer it.
	putAgain
	// inProgress: another request is making it (409 with Retry-After).
	inProgress
	// taken: another user of that name (409).
	taken
	// repairIt: a user a crashed request left half-made: complete it.
	repairIt
)

// existingUser is what decide looks at.
type existingUser struct {
	complete bool           // its secret holds one of its keys
	held     *grants.Held   // what it holds
	want     []policy.Grant // what the request asks for
	young    bool           // younger than RepairAfter: a request may still be making it
	madeFor  bool           // its keyvend:grants tag fingerprints want: a request made it for these grants
}

// decide is the create request's verdict on an existing keyvend user. It
// is pure (the table in docs/architecture.md):
//
//	complete, holds exactly want                         → replay
//	complete, its policy names want but says more        → putAgain
//	complete, young, made for want, holds part of want   → inProgress (still getting its grants)
//	complete, anything else                              → taken
//	half-made, holds a grant outside want                → taken
//	half-made, young                                     → inProgress
//	half-made, old                                       → repairIt
func decide(e existingUser) verdict {
	h := e.held
	if e.complete {
		switch {
		case h.Same(e.want):
			return replay
		case h.Policy && !h.PolicyExact && h.GroupsIntact && len(h.Grants) > 0 && sameSet(h.Grants, e.want):
			return putAgain
		case e.young && e.madeFor && h.Within(e.want):
			return inProgress
		}
		return taken
	}
	switch {
	case !h.Within(e.want):
		return taken
	case e.young:
		return inProgress
	}
	return repairIt
}

func sameSet(a, b []policy.Grant) bool {
	h := grants.Held{Grants: a, Intact: true}
	return h.Same(b)
}

// existing handles a create request whose CreateUser found the name taken
// in IAM, holding the name's lease (h): a user keyvend does not manage (or
// spelled differently: IAM names are case-insensitive) is a conflict; a
// keyvend user gets decide's verdict. mayBeYoung is false when the lease
// says nobody else is making it (a record this request took over): then
// a half-made user is repaired whatever its age.
func (s *Service) existing(ctx context.Context, in CreateInput, h *hold, mayBeYoung bool) (*CreateResult, error) {
	name := in.Request.User
	user, st, err := s.readExisting(ctx, name)
	if err != nil {
		if h.claimed {
			// The record this request wrote describes nothing keyvend made.
			if rerr := h.remove(ctx, nil); rerr != nil {
				s.log.ErrorContext(ctx, "create: claim on a name keyvend cannot use not removed", "user", name, "error", rerr)
			}
		}
		return nil, err
	}
	v := s.view(in, user, st)
	if mayBeYoung && v.young && v.madeFor && st.secret == nil && len(st.keys) == 0 && h.claimed &&
		requesterOf(user) == in.Principal.Requester() && st.held.Within(in.Request.Grants) {
		// A twin request made it: its CreateUser won in IAM while this
		// request won the claim, and it left the user to the claim's
		// holder. Complete it as this request's own.
		return s.finish(ctx, in, &saga{user: name, createdUser: true, hold: h}, user, s.grants.Prepare(ctx, in.Request.Grants), st.held)
	}
	v.young = v.young && mayBeYoung
	switch decide(v) {
	case replay:
		if err := h.record(ctx, s.recordOf(user, nil, st)); err != nil {
			return nil, err
		}
		return s.replayResult(in, user, st), nil
	case putAgain:
		if err := s.applyGrants(ctx, name, in.Request.Grants, st.held); err != nil {
			return nil, err
		}
		s.log.WarnContext(ctx, "user policy had drifted from its grants; put it again", "user", name)
		r := s.recordOf(user, nil, st)
		r.Grants, r.Intact = in.Request.Grants, true
		if err := h.record(ctx, r); err != nil {
			return nil, err
		}
		return s.replayResult(in, user, st), nil
	case inProgress:
		if h.claimed {
			_ = h.remove(ctx, nil) // whoever is making it records it
		}
		return nil, beingProvisioned(name)
	case repairIt:
		return s.repair(ctx, in, user, st, h)
	}
	// Record the user as it is (adoption), then refuse.
	if err := h.record(ctx, s.recordOf(user, nil, st)); err != nil {
		return nil, err
	}
	return nil, conflictGrants(name)
}

// readExisting reads a user another request made, and all of its state, in
// one round trip.
func (s *Service) readExisting(ctx context.Context, name string) (*iamtypes.User, *userState, error) {
	var (
		st      *userState
		readErr error
		done    = make(chan struct{})
	)
	go func() {
		defer close(done)
		st, readErr = s.readState(ctx, name)
	}()
	got, err := s.iam.GetUser(ctx, &iam.GetUserInput{UserName: &name})
	<-done
	switch {
	case isCode(err, codeNoSuchEntity): // deleted between our CreateUser and now
		return nil, nil, beingChanged(name)
	case err != nil:
		return nil, nil, wrapf(err, "read existing user %s", name)
	}
	user := got.User
	if got := aws.ToString(user.UserName); got != name {
		// The secret is named by the exact spelling, so a differently
		// spelled request is not the same user.
		return nil, nil, conflict("IAM user %s already exists (user names are case-insensitive)", got)
	}
	if !s.managedUser(user) {
		return nil, nil, conflict("IAM user %s already exists and is not managed by keyvend", name)
	}
	switch {
	case isCode(readErr, codeNoSuchEntity): // deleted since: another request's compensation
		return nil, nil, beingChanged(name)
	case readErr != nil:
		return nil, nil, readErr
	}
	return user, st, nil
}

func (s *Service) view(in CreateInput, user *iamtypes.User, st *userState) existingUser {
	return existingUser{
		complete: st.complete(),
		held:     st.held,
		want:     in.Request.Grants,
		young:    s.cfg.Now().Sub(aws.ToTime(user.CreateDate)) < s.cfg.RepairAfter,
		madeFor:  userTag(user, TagGrants) == grantsFingerprint(in.Request.Grants),
	}
}

func (s *Service) replayResult(in CreateInput, user *iamtypes.User, st *userState) *CreateResult {
	return s.result(user, in.Request.Grants, st.held.Groups, st.secret.AccessKeyID, st.secret.ARN, false)
}

func conflictGrants(name string) error {
	return conflict("user %s already exists with different grants", name)
}

// applyGrants brings a user to exactly gs (grants.Apply) and deletes the
// grant groups it left that are now empty.
func (s *Service) applyGrants(ctx context.Context, user string, gs []policy.Grant, held *grants.Held) error {
	applied, err := s.grants.Apply(ctx, user, gs, held)
	if err != nil {
		return grantError(err)
	}
	s.grants.DropEmpty(ctx, applied.Left)
	return nil
}
