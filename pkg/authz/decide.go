package authz

import (
	"fmt"
	"time"

	"github.com/keyvend/keyvend/pkg/policy"
)

// allowsAction reports whether the rule lets its principals perform a.
// Every action on existing users (list, rotate, update, delete,
// force-delete) also allows describing them: who may act on a user may see
// it.
func (r Rule) allowsAction(a Action) bool {
	if len(r.Actions) == 0 {
		return a == Create
	}
	for _, x := range r.Actions {
		if x == a || (a == Describe && x != Create) {
			return true
		}
	}
	return false
}

// inChannel reports whether the rule applies to a caller acting from
// channel ("" for callers that are not in a chat channel): a rule without
// channels applies everywhere, a rule with channels only in those.
func (r Rule) inChannel(channel string) bool {
	if len(r.Channels) == 0 {
		return true
	}
	return channel != "" && anyMatch(r.Channels, channel)
}

// covers reports whether the rule matches one of the caller's names (in
// its channel) and allows action a on grant g.
func (r Rule) covers(names []string, channel string, a Action, g policy.Grant) bool {
	if !r.allowsAction(a) || !anyMatch(r.Buckets, g.Bucket) || !hasAccess(r.Access, g.Access) || !r.inChannel(channel) {
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
	// Channel is the chat channel the caller acted from, if any.
	Channel string
}

func (d *ActionDenial) Error() string {
	msg := fmt.Sprintf("no rule allows %s to %s %s access to bucket %s", d.Principal, d.Action, d.Grant.Access, d.Grant.Bucket)
	if d.Channel != "" {
		msg += " in channel " + d.Channel
	}
	return msg
}

// Decide returns nil when, for every grant, some rule matching one of the
// caller's names (its principal id, and aliases such as jwt-group:NAME)
// allows action on it; otherwise an *ActionDenial. An empty grant list is
// allowed only when some rule matching the caller allows the action. Rules
// restricted to channels do not apply: see DecideIn.
func (rs *Rules) Decide(names []string, action Action, grants []policy.Grant) error {
	return rs.DecideIn(names, "", action, grants)
}

// DecideIn is Decide for a caller acting from a chat channel ("" for
// none): rules with channels apply only when one of them matches.
func (rs *Rules) DecideIn(names []string, channel string, action Action, grants []policy.Grant) error {
	who := "(anonymous)"
	if len(names) > 0 {
		who = names[0]
	} else {
		return &ActionDenial{Principal: who, Action: action, Channel: channel}
	}
	if len(grants) == 0 {
		for _, r := range rs.Rules {
			if r.allowsAction(action) && r.inChannel(channel) && matchesAny(r.Principals, names) {
				return nil
			}
		}
		return &ActionDenial{Principal: who, Action: action, Channel: channel}
	}
	for _, g := range grants {
		ok := false
		for _, r := range rs.Rules {
			if r.covers(names, channel, action, g) {
				ok = true
				break
			}
		}
		if !ok {
			return &ActionDenial{Principal: who, Action: action, Grant: g, Channel: channel}
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
	return rs.ExpiryIn(names, "", grants)
}

// ExpiryIn is Expiry for a caller acting from a chat channel ("" for none).
func (rs *Rules) ExpiryIn(names []string, channel string, grants []policy.Grant) ExpiryLimit {
	var lim ExpiryLimit
	for _, g := range grants {
		var best time.Duration = -1 // -1: none seen; 0: unlimited
		required := true
		for _, r := range rs.Rules {
			if !r.covers(names, channel, Create, g) {
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
