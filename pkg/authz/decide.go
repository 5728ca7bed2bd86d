package authz

import (
	"fmt"
	"time"

	"github.com/keyvend/keyvend/pkg/policy"
)

// allowsAction reports whether the rule lets its principals perform a.
func (r Rule) allowsAction(a Action) bool {
	if len(r.Actions) == 0 {
		return a == Create
	}
	for _, x := range r.Actions {
		if x == a || (x == List && a == Describe) {
			return true
		}
	}
	return false
}

// covers reports whether the rule matches one of the caller's names and
// allows action a on grant g.
func (r Rule) covers(names []string, a Action, g policy.Grant) bool {
	if !r.allowsAction(a) || !anyMatch(r.Buckets, g.Bucket) || !hasAccess(r.Access, g.Access) {
		return false
	}
	for _, n := range names {
		if anyMatch(r.Principals, n) {
			return true
		}
	}
	return false
}

// ActionDenial explains which grant no rule allows for an action.
type ActionDenial struct {
	Principal string
	Action    Action
	Grant     policy.Grant
}

func (d *ActionDenial) Error() string {
	return fmt.Sprintf("no rule allows %s to %s %s access to bucket %s", d.Principal, d.Action, d.Grant.Access, d.Grant.Bucket)
}

// Decide returns nil when, for every grant, some rule matching one of the
// caller's names (its principal id, and aliases such as jwt-group:NAME)
// allows action on it; otherwise an *ActionDenial. An empty grant list is
// allowed only when some rule matching the caller allows the action.
func (rs *Rules) Decide(names []string, action Action, grants []policy.Grant) error {
	who := "(anonymous)"
	if len(names) > 0 {
		who = names[0]
	} else {
		return &ActionDenial{Principal: who, Action: action}
	}
	if len(grants) == 0 {
		for _, r := range rs.Rules {
			if r.allowsAction(action) && matchesAny(r.Principals, names) {
				return nil
			}
		}
		return &ActionDenial{Principal: who, Action: action}
	}
	for _, g := range grants {
		ok := false
		for _, r := range rs.Rules {
			if r.covers(names, action, g) {
				ok = true
				break
			}
		}
		if !ok {
			return &ActionDenial{Principal: who, Action: action, Grant: g}
		}
	}
	return nil
}

func matchesAny(patterns, names []string) bool {
	for _, n := range names {
		if anyMatch(patterns, n) {
			return true
		}
	}
	return false
}

// ExpiryLimit is what the rules say about a new user's lifetime.
type ExpiryLimit struct {
	// MaxTTL caps the lifetime; 0 means no cap.
	MaxTTL time.Duration
	// Required means the user must expire.
	Required bool
}

// Expiry returns the lifetime limit for creating a user with grants: for
// each grant the most permissive rule that allows creating it counts, and
// the strictest grant wins. Call it after Decide allowed the creation.
func (rs *Rules) Expiry(names []string, grants []policy.Grant) ExpiryLimit {
	var lim ExpiryLimit
	for _, g := range grants {
		var best time.Duration = -1 // -1: none seen; 0: unlimited
		required := true
		for _, r := range rs.Rules {
			if !r.covers(names, Create, g) {
				continue
			}
			if !r.RequireExpiry {
				required = false
			}
			ttl := time.Duration(r.MaxTTL)
			if best == -1 || ttl == 0 || (best != 0 && ttl > best) {
				best = ttl
			}
		}
		if best == -1 { // no rule covers it: Decide denies; be strict anyway
			return ExpiryLimit{Required: true, MaxTTL: time.Nanosecond}
		}
		if required {
			lim.Required = true
		}
		if best > 0 && (lim.MaxTTL == 0 || best < lim.MaxTTL) {
			lim.MaxTTL = best
		}
	}
	return lim
}
