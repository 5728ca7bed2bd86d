package provision

import (
	"fmt"
	"regexp"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/keyvend/keyvend/pkg/policy"
)

// Limits from IAM (see docs/architecture.md and the IAM quotas page).
const (
	MaxUserNameLen  = 64
	MaxGrants       = 10 // IAM: 10 groups per user
	MaxTagValueLen  = 256
	MaxSecretName   = 512
	maxReasonLength = MaxTagValueLen
)

var userNameRE = regexp.MustCompile(`^[A-Za-z0-9+=,.@_-]+$`)

// CreateRequest asks for a vended user.
type CreateRequest struct {
	User   string         `json:"user"`
	Grants []policy.Grant `json:"grants"`
	Reason string         `json:"reason"`
	// ExpiresIn (a Go duration such as "720h") or ExpiresAt (RFC 3339) set
	// when the reaper deprovisions the user; rules may cap or require it.
	ExpiresIn string `json:"expires_in,omitempty"`
	ExpiresAt string `json:"expires_at,omitempty"`
	// Wait asks to confirm, before answering, that AWS accepts the new key.
	Wait bool `json:"wait,omitempty"`
}

// MaxLifetime bounds expires_in and expires_at.
const MaxLifetime = 10 * 365 * 24 * time.Hour

// lifetime returns the requested lifetime relative to now, or 0 for none.
func (r CreateRequest) lifetime(now time.Time) (time.Duration, *policy.FieldError) {
	switch {
	case r.ExpiresIn != "" && r.ExpiresAt != "":
		return 0, &policy.FieldError{Field: "expires_in", Detail: "give expires_in or expires_at, not both"}
	case r.ExpiresIn != "":
		d, err := time.ParseDuration(r.ExpiresIn)
		if err != nil || d <= 0 {
			return 0, &policy.FieldError{Field: "expires_in", Detail: "must be a positive Go duration such as 720h"}
		}
		if d > MaxLifetime {
			return 0, &policy.FieldError{Field: "expires_in", Detail: "must be at most 87600h (10 years)"}
		}
		return d, nil
	case r.ExpiresAt != "":
		at, err := time.Parse(time.RFC3339, r.ExpiresAt)
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

// Validate checks the request against IAM's and S3's rules before any AWS
// call is made. It returns a *Error of kind KindInvalid listing every
// problem, or nil.
func (r CreateRequest) Validate() error {
	var fields []policy.FieldError
	if msg := CheckUserName(r.User); msg != "" {
		fields = append(fields, policy.FieldError{Field: "user", Detail: msg})
	}
	fields = append(fields, validateGrants(r.Grants)...)
	if msg := CheckReason(r.Reason); msg != "" {
		fields = append(fields, policy.FieldError{Field: "reason", Detail: msg})
	}
	if _, fe := r.lifetime(time.Now()); fe != nil {
		fields = append(fields, *fe)
	}
	if len(fields) > 0 {
		return &Error{Kind: KindInvalid, Detail: "the request is not valid", Fields: fields}
	}
	return nil
}

// validateGrants checks a grant list: 1 to MaxGrants grants, each valid,
// no two carried by the same group.
func validateGrants(grants []policy.Grant) []policy.FieldError {
	var fields []policy.FieldError
	switch n := len(grants); {
	case n == 0:
		fields = append(fields, policy.FieldError{Field: "grants", Detail: "at least one grant is required"})
	case n > MaxGrants:
		fields = append(fields, policy.FieldError{Field: "grants", Detail: fmt.Sprintf("at most %d grants (IAM allows %d groups per user), got %d", MaxGrants, MaxGrants, n)})
	}
	seen := make(map[string]int)
	for i, g := range grants {
		for _, fe := range g.Validate() {
			fields = append(fields, policy.FieldError{Field: fmt.Sprintf("grants[%d].%s", i, fe.Field), Detail: fe.Detail})
		}
		name := policy.GroupName(g)
		if j, dup := seen[name]; dup {
			fields = append(fields, policy.FieldError{Field: fmt.Sprintf("grants[%d]", i), Detail: fmt.Sprintf("duplicates grants[%d]", j)})
		}
		seen[name] = i
	}
	return fields
}

// CheckUserName returns why name is not a valid IAM user name, or "".
func CheckUserName(name string) string {
	switch {
	case name == "":
		return "required"
	case len(name) > MaxUserNameLen:
		return fmt.Sprintf("must be at most %d characters, got %d", MaxUserNameLen, len(name))
	case !userNameRE.MatchString(name):
		return "only letters, digits and +=,.@_- are allowed"
	}
	return ""
}

// CheckReason returns why reason cannot be stored as an IAM tag value, or "".
// IAM tag values allow letters, digits, white space and _ . : / = + - @.
func CheckReason(reason string) string {
	switch {
	case strings.TrimSpace(reason) == "":
		return "required: say why these credentials are needed"
	case !utf8.ValidString(reason):
		return "must be valid UTF-8"
	case utf8.RuneCountInString(reason) > maxReasonLength:
		return fmt.Sprintf("must be at most %d characters", maxReasonLength)
	}
	for _, c := range reason {
		if !tagValueRune(c) {
			return fmt.Sprintf("invalid character %q: tag values allow letters, digits, spaces and _ . : / = + - @", c)
		}
	}
	return ""
}

// tagValueRune reports whether c fits IAM's and Secrets Manager's tag value
// pattern [\p{L}\p{Z}\p{N}_.:/=+\-@] (digits only, of \p{N}). White space
// is \p{Z}: unicode.IsSpace would also let through the control characters
// \t \n \v \f \r and U+0085, which AWS refuses.
func tagValueRune(c rune) bool {
	return unicode.IsLetter(c) || unicode.IsDigit(c) || unicode.In(c, unicode.Z) || strings.ContainsRune("_.:/=+-@", c)
}

// tagValue makes s safe for an IAM or Secrets Manager tag value: characters
// outside the allowed set become '_', and it is cut to 256 characters.
func tagValue(s string) string {
	var b strings.Builder
	n := 0
	for _, c := range s {
		if n == MaxTagValueLen {
			break
		}
		if !tagValueRune(c) {
			c = '_'
		}
		b.WriteRune(c)
		n++
	}
	return b.String()
}

func checkSecretPrefix(p string) string {
	for _, c := range p {
		if !(c < unicode.MaxASCII && (unicode.IsLetter(c) || unicode.IsDigit(c)) || strings.ContainsRune("/_+=.@-", c)) {
			return fmt.Sprintf("secret prefix %q: invalid character %q", p, c)
		}
	}
	if len(p)+MaxUserNameLen > MaxSecretName {
		return fmt.Sprintf("secret prefix %q is too long", p)
	}
	return ""
}
