// Package caller establishes who is calling keyvend: from the API Gateway
// request context in Lambda, or a fixed local principal in local mode. A
// client-supplied header is never a source of identity.
package caller

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
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
// that the Lambda adapter put in the request's context. Headers are never a
// source of identity.
//
//   - IAM (SigV4) authorizer: the caller's ARN, with assumed-role sessions
//     normalised to the role.
//   - JWT authorizer: "jwt:" + the PrincipalClaim (default "sub"), and the
//     groups in GroupsClaim (default "groups"), read as jwtGroups says.
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
		id, err := normalizeARN(raw)
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
		sub := az.JWT.Claims[claim]
		if strings.TrimSpace(sub) == "" {
			return Principal{}, fmt.Errorf("%w: the JWT has no %s claim", ErrNoIdentity, claim)
		}
		groupsClaim := a.GroupsClaim
		if groupsClaim == "" {
			groupsClaim = "groups"
		}
		groups, err := jwtGroups(r, az.JWT.Claims, claim, groupsClaim)
		if err != nil {
			return Principal{}, err
		}
		return Principal{ID: "jwt:" + sub, Raw: "jwt:" + sub, Groups: groups}, nil
	default:
		return Principal{}, ErrNoIdentity
	}
}

// jwtGroups returns the caller's groups, exactly as its token names them.
//
// API Gateway hands the function each claim as a string: a string claim as
// itself, a list claim as "[" + its elements joined by spaces + "]". That
// cannot tell the groups ["not platform"] from ["not", "platform"], or
// ["readers,platform"] from ["readers", "platform"], so the rendering is
// never split. The authorizer validated the JWT in the request's
// Authorization header ("Bearer <jwt>" or the bare token); its payload is
// read (the signature cannot be checked here, and API Gateway did) and used
// only if it is provably that token: its principal claim and iss equal the
// authorizer's, and its groups claim — a string, or an array of strings —
// renders to exactly the authorizer's value (both absent counts). Then the
// groups are the array's elements, or the one string. Without a token, a
// rendering with no space, comma, bracket or quote is one group name; any
// other is refused. Refusals are ErrNoIdentity with the reason. An empty
// name is no group.
func jwtGroups(r *http.Request, claims map[string]string, principalClaim, groupsClaim string) ([]string, error) {
	rendered, has := claims[groupsClaim]
	auth := r.Header.Values("Authorization")
	if len(auth) == 0 {
		switch {
		case !has:
			return nil, nil
		case strings.ContainsAny(rendered, " \t\n\r,[]\""):
			return nil, fmt.Errorf("%w: the JWT's %s claim %q cannot be told apart (a list, or a name with a space, comma, bracket or quote) and the request has no Authorization header to read it from", ErrNoIdentity, groupsClaim, rendered)
		}
		return nonEmpty([]string{rendered}), nil
	}
	payload, err := jwtPayload(auth)
	if err != nil {
		return nil, fmt.Errorf("%w: the Authorization header is not a JWT keyvend can read: %v", ErrNoIdentity, err)
	}
	for _, name := range []string{principalClaim, "iss"} {
		var v string
		raw, ok := payload[name]
		if !ok || json.Unmarshal(raw, &v) != nil || v != claims[name] || v == "" {
			return nil, fmt.Errorf("%w: the Authorization header's token does not match the authorizer's claims: its %s claim differs", ErrNoIdentity, name)
		}
	}
	raw, tokenHas := payload[groupsClaim]
	raw = bytes.TrimSpace(raw)
	var groups []string
	var rendering string
	if tokenHas {
		var one string
		var list []*string // a null element is not a string
		switch {
		case bytes.HasPrefix(raw, []byte(`"`)) && json.Unmarshal(raw, &one) == nil:
			groups, rendering = []string{one}, one
		case bytes.HasPrefix(raw, []byte("[")) && json.Unmarshal(raw, &list) == nil && !slices.Contains(list, nil):
			for _, g := range list {
				groups = append(groups, *g)
			}
			rendering = "[" + strings.Join(groups, " ") + "]"
		default:
			return nil, fmt.Errorf("%w: the token's %s claim is neither a string nor an array of strings: %s", ErrNoIdentity, groupsClaim, raw)
		}
	}
	if tokenHas != has || rendering != rendered {
		return nil, fmt.Errorf("%w: the Authorization header's token does not match the authorizer's claims: its %s claim renders as %q, the authorizer reported %q (present: %v)", ErrNoIdentity, groupsClaim, rendering, rendered, has)
	}
	return nonEmpty(groups), nil
}

// jwtPayload decodes the payload of the one JWT in an Authorization
// header ("Bearer <jwt>", the scheme in any case, or the bare token): a
// JSON object with no member given twice.
func jwtPayload(auth []string) (map[string]json.RawMessage, error) {
	if len(auth) != 1 {
		return nil, errors.New("more than one Authorization header")
	}
	tok := auth[0]
	if scheme, rest, ok := strings.Cut(tok, " "); ok && strings.EqualFold(scheme, "Bearer") {
		tok = rest
	}
	parts := strings.Split(tok, ".")
	if len(parts) != 3 || parts[0] == "" || parts[1] == "" {
		return nil, errors.New("not a JWT (three base64url parts)")
	}
	for _, p := range parts {
		if strings.Trim(p, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_") != "" {
			return nil, errors.New("not a JWT (three base64url parts)")
		}
	}
	data, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return nil, errors.New("not a JWT (its payload is not base64url)")
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return nil, errors.New("not a JWT (its payload is not a JSON object)")
	}
	payload := map[string]json.RawMessage{}
	for dec.More() {
		key, err := dec.Token()
		if err != nil {
			return nil, errors.New("not a JWT (its payload is not a JSON object)")
		}
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return nil, errors.New("not a JWT (its payload is not a JSON object)")
		}
		name := key.(string)
		if _, dup := payload[name]; dup {
			return nil, fmt.Errorf("its payload has the claim %q more than once", name)
		}
		payload[name] = v
	}
	if _, err := dec.Token(); err != nil {
		return nil, errors.New("not a JWT (its payload is not a JSON object)")
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("not a JWT (its payload is not one JSON object)")
	}
	return payload, nil
}

func nonEmpty(names []string) []string {
	var out []string
	for _, n := range names {
		if n != "" {
			out = append(out, n)
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

// normalizeARN turns an STS assumed-role session ARN
// (arn:aws:sts::ACCOUNT:assumed-role/ROLE/SESSION) into the role's ARN
// (arn:aws:iam::ACCOUNT:role/ROLE) so a rule can name the role. Other IAM
// ARNs pass through; anything that is not an ARN is an error.
func normalizeARN(arn string) (string, error) {
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
