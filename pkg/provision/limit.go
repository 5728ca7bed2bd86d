package provision

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/keyvend/keyvend/pkg/authz"
	"github.com/keyvend/keyvend/pkg/state"
)

// limitAttempts bounds how often a create counts again because another
// create by the same requester claimed a user meanwhile (state.ErrGuard).
const limitAttempts = 5

// claimWithinLimit is a limited create's claim (a rule's max_users
// applies: in.limits): it counts the requester's live users under each
// limited rule that allows the create, refuses the create when every one
// of them is full (KindLimit), and else claims the name in one
// transaction with the requester's guard (state.ClaimGuarded), so that of
// two creates that counted the same users only one claims: the other
// counts again. A user of the same name as the request's is not counted
// (a retry of the create finds its own record: state.ErrExists).
func (s *Service) claimWithinLimit(ctx context.Context, in CreateInput, h *hold) error {
	requester := in.Principal.Requester()
	for attempt := 0; attempt < limitAttempts; attempt++ {
		g, err := s.store.ReadGuard(ctx, requester)
		if err != nil {
			return err
		}
		live, err := s.liveUsers(ctx, requester, g)
		if err != nil {
			return err
		}
		var full []string
		room := false
		for _, i := range in.limits.Rules {
			n := 0
			for name, rec := range live {
				if !strings.EqualFold(name, in.Request.User) && s.rules.Counts(i, rec.Grants) {
					n++
				}
			}
			if n < s.rules.Max(i) {
				room = true
				break
			}
			full = append(full, fmt.Sprintf("%s under %s (max_users %d)", users(n), authz.RuleName(i), s.rules.Max(i)))
		}
		if !room {
			return limited("%s holds %s: delete one of them first, or ask for a rule with room", requester, strings.Join(full, ", and "))
		}
		// The guard keeps the names of the users that count under a limit.
		names := []string{in.Request.User}
		for name, rec := range live {
			if !strings.EqualFold(name, in.Request.User) && s.countsUnderALimit(rec) {
				names = append(names, rec.Name)
			}
		}
		rec, err := s.store.ClaimGuarded(ctx, s.createRecord(in), h.holder, s.cfg.RepairAfter, g, names)
		switch {
		case err == nil:
			h.rec, h.claimed = rec, true
			return nil
		case !errors.Is(err, state.ErrGuard):
			return err
		}
	}
	return busy(in.Request.User, "not created yet: other creates by the same requester keep changing its count of users")
}

// liveUsers are the requester's live users by lowercased name: its
// records (the by-requester index), and the users its guard names that
// the index does not show yet (read consistently). A record that expired
// is not live.
func (s *Service) liveUsers(ctx context.Context, requester string, g *state.Guard) (map[string]*state.Record, error) {
	recs, err := s.store.Requested(ctx, requester)
	if err != nil {
		return nil, err
	}
	out := map[string]*state.Record{}
	for _, r := range recs {
		out[strings.ToLower(r.Name)] = r
	}
	for _, name := range g.Names {
		if _, ok := out[strings.ToLower(name)]; ok {
			continue
		}
		r, err := s.store.Get(ctx, name)
		switch {
		case errors.Is(err, state.ErrNotFound):
			continue
		case err != nil:
			return nil, err
		}
		if r.Requester == requester {
			out[strings.ToLower(r.Name)] = r
		}
	}
	now := s.cfg.Now()
	for k, r := range out {
		if r.ExpiresAt != nil && !r.ExpiresAt.After(now) {
			delete(out, k)
		}
	}
	return out, nil
}

// countsUnderALimit reports whether rec counts under some rule's max_users.
func (s *Service) countsUnderALimit(rec *state.Record) bool {
	for i := range s.rules.Rules {
		if s.rules.Max(i) > 0 && s.rules.Counts(i, rec.Grants) {
			return true
		}
	}
	return false
}

// users is "1 user", "3 users".
func users(n int) string {
	if n == 1 {
		return "1 user"
	}
	return fmt.Sprintf("%d users", n)
}
