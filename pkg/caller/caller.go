// Package caller establishes who is calling keyvend: from the API Gateway
// request context in Lambda, or a fixed local principal in local mode. A
// client-supplied header is never a source of identity.
package caller

import (
	"context"
	"errors"
	"net/http"
	"strings"

	"github.com/awslabs/aws-lambda-go-api-proxy/core"
)

// Principal is an authenticated caller.
type Principal struct {
	// ID is what rules match: an IAM ARN, with assumed-role sessions
	// normalised to their role's ARN, "jwt:<subject>", "slack:<team>/<user>".
	ID string
	// Raw is the identity as the authorizer reported it, for the logs.
	Raw string
	// Session is the exact identity when ID names something broader: for
	// an assumed role, the session (arn:aws:sts::1:assumed-role/deployer/alice)
	// whose role ID names. "" when ID is exact.
	Session string
	// Groups are the JWT caller's groups; rules match them as jwt-group:NAME.
	Groups []string
	// Channel is the chat channel a Slack caller acts from ("" for every
	// other caller); rules with channels match only callers in them.
	Channel string
}

// Requester is who keyvend records as the requester of what p creates,
// and compares with a user's requester to decide ownership: the identity
// exactly as authenticated, an assumed-role session included, so people
// who share a role (an SSO permission set) do not own each other's users.
// Rules still match the role (ID).
func (p Principal) Requester() string {
	if p.Session != "" {
		return p.Session
	}
	return p.ID
}

// Names returns every name rules may match for p: its ID, then
// jwt-group:NAME for each of its groups.
func (p Principal) Names() []string {
	if p.ID == "" {
		return nil
	}
	names := []string{p.ID}
	for _, g := range p.Groups {
		names = append(names, "jwt-group:"+g)
	}
	return names
}

// ErrNoIdentity means the request carries no caller identity keyvend accepts.
var ErrNoIdentity = errors.New("the request carries no caller identity")

// Resolver finds the principal of a request.
type Resolver interface {
	Principal(r *http.Request) (Principal, error)
}

// APIGateway reads the caller from the API Gateway HTTP API request context
// that the Lambda adapter put in the request's context. Headers are ignored.
//
//   - IAM (SigV4) authorizer: the caller's ARN, with assumed-role sessions
//     normalised to the role.
//   - JWT authorizer: "jwt:" + the PrincipalClaim (default "sub"), and the
//     groups in GroupsClaim (default "groups").
//
// Any other authorizer shape, or none, is ErrNoIdentity.
type APIGateway struct {
	PrincipalClaim string
	GroupsClaim    string
}

// Principal implements Resolver.
func (a APIGateway) Principal(r *http.Request) (Principal, error) {
	rc, ok := core.GetAPIGatewayV2ContextFromContext(r.Context())
	if !ok || rc.Authorizer == nil {
		return Principal{}, ErrNoIdentity
	}
	switch az := rc.Authorizer; {
	case az.IAM != nil && az.JWT == nil && len(az.Lambda) == 0:
		raw := az.IAM.UserARN
		id, err := NormalizeARN(raw)
		if err != nil {
			return Principal{}, err
		}
		p := Principal{ID: id, Raw: raw}
		if id != raw {
			p.Session = raw
		}
		return p, nil
	case az.JWT != nil && az.IAM == nil && len(az.Lambda) == 0:
		claim := a.PrincipalClaim
		if claim == "" {
			claim = "sub"
		}
		sub := strings.TrimSpace(az.JWT.Claims[claim])
		if sub == "" {
			return Principal{}, ErrNoIdentity
		}
		groupsClaim := a.GroupsClaim
		if groupsClaim == "" {
			groupsClaim = "groups"
		}
		return Principal{ID: "jwt:" + sub, Raw: "jwt:" + sub, Groups: ParseClaimList(az.JWT.Claims[groupsClaim])}, nil
	default:
		return Principal{}, ErrNoIdentity
	}
}

// ParseClaimList reads a list claim as API Gateway passes it to the
// function: "[a b]", "[a, b]", "a,b" or a single value.
func ParseClaimList(v string) []string {
	v = strings.TrimSpace(v)
	v = strings.TrimSuffix(strings.TrimPrefix(v, "["), "]")
	fields := strings.FieldsFunc(v, func(r rune) bool { return r == ',' || r == ' ' })
	out := make([]string, 0, len(fields))
	for _, f := range fields {
		if f = strings.Trim(f, `"`); f != "" {
			out = append(out, f)
		}
	}
	return out
}

// Static is the local-mode resolver: every request is the same principal.
type Static struct{ ARN string }

// Principal implements Resolver.
func (s Static) Principal(*http.Request) (Principal, error) {
	if s.ARN == "" {
		return Principal{}, ErrNoIdentity
	}
	return Principal{ID: s.ARN, Raw: s.ARN}, nil
}

// NormalizeARN turns an STS assumed-role session ARN
// (arn:aws:sts::ACCOUNT:assumed-role/ROLE/SESSION) into the role's ARN
// (arn:aws:iam::ACCOUNT:role/ROLE) so a rule can name the role. Other IAM
// ARNs pass through; anything that is not an ARN is an error.
func NormalizeARN(arn string) (string, error) {
	parts := strings.SplitN(arn, ":", 6)
	if len(parts) != 6 || parts[0] != "arn" || parts[1] == "" || parts[5] == "" {
		return "", ErrNoIdentity
	}
	if parts[2] == "sts" {
		res := strings.Split(parts[5], "/")
		if len(res) == 3 && res[0] == "assumed-role" && res[1] != "" {
			return "arn:" + parts[1] + ":iam::" + parts[4] + ":role/" + res[1], nil
		}
	}
	return arn, nil
}

type ctxKey struct{}

// WithPrincipal returns a context that carries p.
func WithPrincipal(ctx context.Context, p Principal) context.Context {
	return context.WithValue(ctx, ctxKey{}, p)
}

// FromContext returns the principal WithPrincipal stored.
func FromContext(ctx context.Context) (Principal, bool) {
	p, ok := ctx.Value(ctxKey{}).(Principal)
	return p, ok
}
