package provision

import (
	"context"
	"errors"
	"fmt"

	"github.com/keyvend/keyvend/pkg/authz"
	"github.com/keyvend/keyvend/pkg/caller"
	"github.com/keyvend/keyvend/pkg/policy"
	"github.com/keyvend/keyvend/pkg/state"
)

// HistoryInput asks for one page of a user's history.
type HistoryInput struct {
	Principal caller.Principal
	User      string
	Limit     int    // page size (DefaultListLimit, at most MaxListLimit)
	Next      string // the previous page's token
}

// HistoryResult is one page of a user's history, newest first. Entries
// never hold a secret: ids, grants, who and when.
type HistoryResult struct {
	User    string          `json:"user"`
	Entries []state.History `json:"entries"`
	Next    string          `json:"next,omitempty"`
}

// History returns a page of the user's history. Whoever may describe the
// user may read it. For a user that is gone (its history is kept for
// HistoryRetention), the last entry stands for it: the principal that made
// that change, or a rule with the describe action on the grants the user
// held then; anyone else is told it does not exist.
func (s *Service) History(ctx context.Context, in HistoryInput) (*HistoryResult, error) {
	if err := checkName(in.User); err != nil {
		return nil, err
	}
	if in.Limit == 0 {
		in.Limit = DefaultListLimit
	}
	if in.Limit < 1 || in.Limit > MaxListLimit {
		return nil, invalid("the query is not valid", policy.FieldError{Field: "limit", Detail: fmt.Sprintf("must be 1 to %d", MaxListLimit)})
	}
	_, _, err := s.load(ctx, in.Principal, authz.Describe, in.User, grantState)
	if KindOf(err) == KindNotFound {
		err = s.mayReadGone(ctx, in.Principal, in.User)
	}
	if err != nil {
		return nil, err
	}
	page, err := s.store.History(ctx, in.User, in.Limit, in.Next)
	switch {
	case errors.Is(err, state.ErrToken):
		return nil, invalid("the query is not valid", policy.FieldError{Field: "next", Detail: "not a token from a previous page of this user's history"})
	case err != nil:
		return nil, wrapf(err, "read the history of user %s", in.User)
	}
	return &HistoryResult{User: in.User, Entries: page.Entries, Next: page.Next}, nil
}

// mayReadGone decides who may read the history of a user IAM no longer
// has (or keyvend does not manage): KindNotFound unless it has history and
// its last entry allows p.
func (s *Service) mayReadGone(ctx context.Context, p caller.Principal, name string) error {
	last, err := s.store.History(ctx, name, 1, "")
	if err != nil {
		return wrapf(err, "read the history of user %s", name)
	}
	if len(last.Entries) == 0 || last.Entries[0].User != name {
		return notFound(name)
	}
	e := last.Entries[0]
	held := e.Before
	if len(held) == 0 {
		held = e.After
	}
	if ownsRequester(p, e.Requester) || (len(held) > 0 && s.rules.DecideIn(p.Names(), p.Channel, authz.Describe, held) == nil) {
		return nil
	}
	return notFound(name)
}
