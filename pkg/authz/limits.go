package authz

import (
	"fmt"

	"github.com/keyvend/keyvend/pkg/policy"
)

// CreateLimits is what the rules' max_users say about one create.
type CreateLimits struct {
	// Unlimited: no max_users applies (a rule without one allows the
	// create).
	Unlimited bool
	// Rules are the limited rules that allow the whole create (they cover
	// every grant): it is within limits when one of them has room. Empty
	// (and not Unlimited): the create needs a limited rule for some grant
	// but no single rule covers all its grants, and such a user would count
	// under no rule, so it is refused (Split says which).
	Rules []int
	// Split names a limited rule a split create needs (when Rules is empty).
	Split int
}

// Limits returns what max_users says about creating a user with grants
// (call it after DecideIn allowed the creation). A rule with max_users
// allows only users it covers entirely, and counts them (Counts): so the
// create is unlimited when a rule without max_users covers all its grants,
// or each grant is covered by a rule without max_users; else it is within
// limits when one of the limited rules covering all its grants has room.
func (rs *Rules) Limits(names []string, channel string, grants []policy.Grant) CreateLimits {
	var out CreateLimits
	out.Split = -1
	everyGrantFree := len(grants) > 0
	for _, g := range grants {
		free := false
		for _, r := range rs.Rules {
			if r.MaxUsers == 0 && r.covers(names, channel, Create, g) {
				free = true
				break
			}
		}
		if !free {
			everyGrantFree = false
		}
	}
	if everyGrantFree {
		return CreateLimits{Unlimited: true}
	}
	for i, r := range rs.Rules {
		all := len(grants) > 0
		for _, g := range grants {
			if !r.covers(names, channel, Create, g) {
				all = false
				break
			}
		}
		switch {
		case all && r.MaxUsers == 0:
			return CreateLimits{Unlimited: true}
		case all:
			out.Rules = append(out.Rules, i)
		case r.MaxUsers > 0 && out.Split < 0:
			for _, g := range grants {
				if r.covers(names, channel, Create, g) {
					out.Split = i
					break
				}
			}
		}
	}
	return out
}

// Max is rule i's max_users (0: none).
func (rs *Rules) Max(i int) int { return int(rs.Rules[i].MaxUsers) }

// Counts reports whether a user holding grants counts under rule i's
// max_users: the rule covers every one of its grants (bucket and access).
// The caller picks the users of one requester; who may use the rule and
// from which channel does not matter here.
func (rs *Rules) Counts(i int, grants []policy.Grant) bool {
	r := rs.Rules[i]
	if len(grants) == 0 {
		return false
	}
	for _, g := range grants {
		if !anyMatch(r.Buckets, g.Bucket) || !hasAccess(r.Access, g.Access) {
			return false
		}
	}
	return true
}

// RuleName is how messages name rule i: as the rules file's validation does.
func RuleName(i int) string { return fmt.Sprintf("rules[%d]", i) }

// AskLimits reports whether any rule has a max_users.
func (rs *Rules) AskLimits() bool {
	for _, r := range rs.Rules {
		if r.MaxUsers > 0 {
			return true
		}
	}
	return false
}
