package provision

import (
	"fmt"
	"time"

	"github.com/keyvend/keyvend/pkg/policy"
)

// expiry decides when the requested user expires: the requested lifetime,
// capped by the rules' max_ttl (capped reports that), and required when
// the rules require it. nil means no expiry.
func (s *Service) expiry(in Input) (at *time.Time, capped bool, err error) {
	now := s.cfg.Now()
	ttl, fe := in.Request.lifetime(now)
	if fe != nil {
		return nil, false, &Error{Kind: KindInvalid, Detail: "the request is not valid", Fields: []policy.FieldError{*fe}}
	}
	lim := s.rules.ExpiryIn(in.Principal.Names(), in.Principal.Channel, in.Request.Grants)
	if ttl == 0 && lim.Required {
		detail := "required by the rules for these grants"
		if lim.MaxTTL > 0 {
			detail += fmt.Sprintf(" (at most %s)", lim.MaxTTL)
		}
		return nil, false, &Error{Kind: KindInvalid, Detail: "the rules require an expiry for these grants",
			Fields: []policy.FieldError{{Field: "expires_in", Detail: detail}}}
	}
	// A cap applies to "never expires" too: no expiry under a max_ttl rule
	// means the longest allowed one.
	if lim.MaxTTL > 0 && (ttl > lim.MaxTTL || ttl == 0) {
		ttl, capped = lim.MaxTTL, true
	}
	if ttl == 0 {
		return nil, false, nil
	}
	t := now.Add(ttl).UTC().Truncate(time.Second)
	return &t, capped, nil
}
