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

// Limits of a request (see docs/architecture.md and the IAM quotas page).
// The grant mode adds its own (grants.Carrier.Check): at most 10 grants in
// grant mode group (IAM's groups per user), a user policy of at most 2,048
// characters in grant mode policy.
const (
	MaxUserNameLen  = 64
	MaxGrants       = 50
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

func (r CreateRequest) lifetime() Lifetime {
	return Lifetime{ExpiresIn: r.ExpiresIn, ExpiresAt: r.ExpiresAt}
}

// Validate checks the request against IAM's and S3's rules before any AWS
// call is made. It returns a *Error of kind KindInvalid listing every
// problem, or nil. The grant mode's limits are checked by the Service.
func (r CreateRequest) Validate() error {
	var fields []policy.FieldError
	if msg := CheckUserName(r.User); msg != "" {
		fields = append(fields, policy.FieldError{Field: "user", Detail: msg})
	}
	fields = append(fields, validateGrants(r.Grants)...)
	if msg := checkReason(r.Reason); msg != "" {
		fields = append(fields, policy.FieldError{Field: "reason", Detail: msg})
	}
	if _, fe := r.lifetime().duration(time.Now()); fe != nil {
		fields = append(fields, *fe)
	}
	if len(fields) > 0 {
		return invalid("the request is not valid", fields...)
	}
	return nil
}

// validateGrants checks a grant list: 1 to MaxGrants grants, each valid,
// no two the same.
func validateGrants(grants []policy.Grant) []policy.FieldError {
	var fields []policy.FieldError
	switch n := len(grants); {
	case n == 0:
		fields = append(fields, policy.FieldError{Field: "grants", Detail: "at least one grant is required"})
	case n > MaxGrants:
		fields = append(fields, policy.FieldError{Field: "grants", Detail: fmt.Sprintf("at most %d grants, got %d", MaxGrants, n)})
	}
	seen := make(map[policy.Grant]int)
	for i, g := range grants {
		for _, fe := range g.Validate() {
			fields = append(fields, policy.FieldError{Field: fmt.Sprintf("grants[%d].%s", i, fe.Field), Detail: fe.Detail})
		}
		if j, dup := seen[g]; dup {
			fields = append(fields, policy.FieldError{Field: fmt.Sprintf("grants[%d]", i), Detail: fmt.Sprintf("duplicates grants[%d]", j)})
		}
		seen[g] = i
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
	case name == "." || name == "..":
		return "must not be . or .. (no URL path can name it)"
	}
	return ""
}

// checkReason returns why reason cannot be stored as an IAM tag value, or "".
// IAM tag values allow letters, digits, white space and _ . : / = + - @.
func checkReason(reason string) string {
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

// tagValue makes s safe for a tag value where nothing depends on reading it
// back exactly (a request id, a validated reason): characters outside the
// allowed set become '_', and it is cut to 256 characters. The requester,
// which decides ownership, is encoded losslessly instead (requester.go).
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
