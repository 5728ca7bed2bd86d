package provision

import (
	"fmt"
	"time"

	"github.com/keyvend/keyvend/pkg/caller"
	"github.com/keyvend/keyvend/pkg/policy"
)

// Lifetime is a requested expiry: ExpiresIn (a Go duration such as "720h")
// or ExpiresAt (RFC 3339), at most one of them.
type Lifetime struct {
	ExpiresIn string `json:"expires_in,omitempty"`
	ExpiresAt string `json:"expires_at,omitempty"`
}

// MaxLifetime bounds expires_in and expires_at.
const MaxLifetime = 10 * 365 * 24 * time.Hour

// duration returns the requested lifetime relative to now, or 0 for none.
func (l Lifetime) duration(now time.Time) (time.Duration, *policy.FieldError) {
	switch {
	case l.ExpiresIn != "" && l.ExpiresAt != "":
		return 0, &policy.FieldError{Field: "expires_in", Detail: "give expires_in or expires_at, not both"}
	case l.ExpiresIn != "":
		d, err := time.ParseDuration(l.ExpiresIn)
		if err != nil || d <= 0 {
			return 0, &policy.FieldError{Field: "expires_in", Detail: "must be a positive Go duration such as 720h"}
		}
		if d > MaxLifetime {
			return 0, &policy.FieldError{Field: "expires_in", Detail: "must be at most 87600h (10 years)"}
		}
		return d, nil
	case l.ExpiresAt != "":
		at, err := time.Parse(time.RFC3339, l.ExpiresAt)
		if err != nil {
			return 0, &policy.FieldError{Field: "expires_at", Detail: "must be an RFC 3339 time such as 2030-01-02T15:04:05Z"}
		}
		d := at.Sub(now)
		if d <= 0 {
			return 0, &policy.FieldError{Field: "expires_at", Detail: "must be in the future"}
		}
		if d > MaxLifetime {
			return 0, &policy.FieldError{Field: "expires_at", Detail: "must be at most 10 years away"}
		}
		return d, nil
	}
	return 0, nil
}

// given reports whether a lifetime was asked for.
func (l Lifetime) given() bool { return l.ExpiresIn != "" || l.ExpiresAt != "" }

// expiry decides when a user with grants expires, from ttl (0: none asked
// for) and the rules for p: ttl capped by the rules' max_ttl (capped
// reports that; a cap applies to "never expires" too), and required when
// the rules require it. nil means no expiry. Create decides with the
// requested lifetime, PUT grants with the requested one or, without one,
// what is left of the user's current expiry — the same rules either way.
func (s *Service) expiry(p caller.Principal, gs []policy.Grant, ttl time.Duration) (at *time.Time, capped bool, err error) {
	lim := s.rules.ExpiryIn(p.Names(), p.Channel, gs)
	if ttl == 0 && lim.Required {
		detail := "required by the rules for these grants"
		if lim.MaxTTL > 0 {
			detail += fmt.Sprintf(" (at most %s)", lim.MaxTTL)
		}
		return nil, false, invalid("the rules require an expiry for these grants", policy.FieldError{Field: "expires_in", Detail: detail})
	}
	if lim.MaxTTL > 0 && (ttl > lim.MaxTTL || ttl == 0) {
		ttl, capped = lim.MaxTTL, true
	}
	if ttl == 0 {
		return nil, false, nil
	}
	t := s.cfg.Now().Add(ttl).UTC().Truncate(time.Second)
	return &t, capped, nil
}

// requestedTTL is the lifetime l asks for, relative to the clock.
func (s *Service) requestedTTL(l Lifetime) (time.Duration, error) {
	ttl, fe := l.duration(s.cfg.Now())
	if fe != nil {
		return 0, invalid("the request is not valid", *fe)
	}
	return ttl, nil
}
