package provision

import (
	"context"

	"github.com/aws/aws-sdk-go-v2/aws"
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
	// finishTwin: a twin request (same requester, same grants) made it
	// and left it to this request, which holds the name's claim: complete
	// it as this request's own.
	finishTwin
)

// existingUser is what decide looks at: the user as IAM and Secrets
// Manager hold it, the request, and the name's record in the table as
// this request holds it.
type existingUser struct {
	complete bool           // its secret holds one of its keys
	bare     bool           // it has no key and no secret at all
	held     *grants.Held   // what it holds
	want     []policy.Grant // what the request asks for
	young    bool           // younger than RepairAfter: a request may still be making it
	madeFor  bool           // its keyvend:grants tag fingerprints want: a request made it for these grants
	byAsker  bool           // its requester is this request's
	// claimed: this request wrote the name's record (it had none), so a
	// twin whose CreateUser won in IAM left the user to it.
	claimed bool
	// tookOver: this request took over a stale record: nobody else is
	// making the user, whatever its age.
	tookOver bool
}

// decide is the create request's verdict on an existing keyvend user. It
// is pure (the table in docs/architecture.md):
//
//	complete, holds exactly want                         → replay
//	complete, its policy names want but says more        → putAgain
//	complete, young, made for want, holds part of want   → inProgress (still getting its grants)
//	complete, anything else                              → taken
//	half-made, holds a grant outside want                → taken
//	half-made, young, bare, made for want by this
//	  request's requester, and this request claimed it   → finishTwin
//	half-made, young                                     → inProgress
//	half-made, old                                       → repairIt
//
// young never holds under a record this request took over.
func decide(e existingUser) verdict {
	h := e.held
	young := e.young && !e.tookOver
	if e.complete {
		switch {
		case h.Same(e.want):
			return replay
		case h.Policy && !h.PolicyExact && h.GroupsIntact && len(h.Grants) > 0 && sameSet(h.Grants, e.want):
			return putAgain
		case young && e.madeFor && h.Within(e.want):
			return inProgress
		}
		return taken
	}
	switch {
	case !h.Within(e.want):
		return taken
	case young && e.madeFor && e.bare && e.byAsker && e.claimed:
		return finishTwin
	case young:
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
// keyvend user gets decide's verdict. tookOver is true when the lease
// says nobody else is making it (a record this request took over): then
// a half-made user is repaired whatever its age.
func (s *Service) existing(ctx context.Context, in CreateInput, h *hold, tookOver bool) (*CreateResult, error) {
	name := in.Request.User
	user, st, err := s.readUser(ctx, name, allState, func(got *iamtypes.User) error { return takenBy(name, got) })
	if err != nil {
		if h.claimed {
			// The record this request wrote describes nothing keyvend made.
			if rerr := h.remove(ctx, nil); rerr != nil {
				s.log.ErrorContext(ctx, "create: claim on a name keyvend cannot use not removed", "user", name, "error", rerr)
			}
		}
		return nil, err
	}
	switch decide(s.existingOf(in, user, st, h, tookOver)) {
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
	case finishTwin:
		// Its CreateUser won in IAM while this request won the claim.
		return s.finish(ctx, in, &saga{user: name, createdUser: true, hold: h}, user, s.grants.Prepare(ctx, in.Request.Grants), st.held)
	}
	// Record the user as it is (adoption), then refuse.
	if err := h.record(ctx, s.recordOf(user, nil, st)); err != nil {
		return nil, err
	}
	return nil, conflictGrants(name)
}

// takenBy is a create's answer for a name IAM has and keyvend cannot use:
// got, the user IAM has (nil: none, it was deleted since the request's
// CreateUser — another request's compensation; a retry starts clean), is
// spelled otherwise or not keyvend's.
func takenBy(name string, got *iamtypes.User) error {
	switch {
	case got == nil:
		return beingChanged(name)
	case userName(got) != name:
		return conflict("IAM user %s already exists (user names are case-insensitive)", userName(got))
	}
	return conflict("IAM user %s already exists and is not managed by keyvend", name)
}

// existingOf is what decide needs to know of user, read under h.
func (s *Service) existingOf(in CreateInput, user *iamtypes.User, st *userState, h *hold, tookOver bool) existingUser {
	return existingUser{
		complete: st.complete(),
		bare:     st.secret == nil && len(st.keys) == 0,
		held:     st.held,
		want:     in.Request.Grants,
		young:    s.cfg.Now().Sub(aws.ToTime(user.CreateDate)) < s.cfg.RepairAfter,
		madeFor:  userTag(user, TagGrants) == grantsFingerprint(in.Request.Grants),
		byAsker:  requesterOf(user) == in.Principal.Requester(),
		claimed:  h.claimed,
		tookOver: tookOver,
	}
}

func (s *Service) replayResult(in CreateInput, user *iamtypes.User, st *userState) *CreateResult {
	return s.createResult(user, in.Request.Grants, st.held.Groups, st.secret.AccessKeyID, st.secret.ARN, false)
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
