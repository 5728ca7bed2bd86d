package caller_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/aws/aws-lambda-go/events"
	"github.com/awslabs/aws-lambda-go-api-proxy/core"

	"github.com/keyvend/keyvend/pkg/caller"
)

func TestNormalizeARN(t *testing.T) {
	cases := []struct {
		in, want string
		ok       bool
	}{
		{"arn:aws:sts::123456789012:assumed-role/deployer/session-1", "arn:aws:iam::123456789012:role/deployer", true},
		{"arn:aws:sts::123456789012:assumed-role/deployer/alice@example.com", "arn:aws:iam::123456789012:role/deployer", true},
		{"arn:aws-cn:sts::123456789012:assumed-role/r/s", "arn:aws-cn:iam::123456789012:role/r", true},
		{"arn:aws-us-gov:sts::123456789012:assumed-role/r/s", "arn:aws-us-gov:iam::123456789012:role/r", true},
		{"arn:aws:iam::123456789012:user/alice", "arn:aws:iam::123456789012:user/alice", true},
		{"arn:aws:iam::123456789012:user/team/alice", "arn:aws:iam::123456789012:user/team/alice", true},
		{"arn:aws:iam::123456789012:role/deployer", "arn:aws:iam::123456789012:role/deployer", true},
		{"arn:aws:iam::123456789012:root", "arn:aws:iam::123456789012:root", true},
		// STS ARNs that are not a role session pass through unchanged.
		{"arn:aws:sts::123456789012:federated-user/bob", "arn:aws:sts::123456789012:federated-user/bob", true},
		{"arn:aws:sts::123456789012:assumed-role/deployer", "arn:aws:sts::123456789012:assumed-role/deployer", true},
		{"arn:aws:sts::123456789012:assumed-role//s", "arn:aws:sts::123456789012:assumed-role//s", true},
		{"", "", false},
		{"alice", "", false},
		{"arn:aws:iam", "", false},
		{"arn:aws:iam::123456789012", "", false},
		{"arn::iam::123456789012:user/alice", "", false},
		{"arn:aws:iam::123456789012:", "", false},
		{"ARN:aws:iam::123456789012:user/alice", "", false},
		{"urn:aws:iam::123456789012:user/alice", "", false},
	}
	for _, c := range cases {
		got, err := caller.NormalizeARN(c.in)
		switch {
		case c.ok && err != nil:
			t.Errorf("NormalizeARN(%q): %v", c.in, err)
		case c.ok && got != c.want:
			t.Errorf("NormalizeARN(%q) = %q, want %q", c.in, got, c.want)
		case !c.ok && err == nil:
			t.Errorf("NormalizeARN(%q) = %q, want an error", c.in, got)
		case !c.ok && !errors.Is(err, caller.ErrNoIdentity):
			t.Errorf("NormalizeARN(%q) error = %v, want ErrNoIdentity", c.in, err)
		}
	}
}

// viaAdapter turns an API Gateway HTTP API event into the *http.Request the
// Lambda adapter hands keyvend's handler.
func viaAdapter(t *testing.T, ev events.APIGatewayV2HTTPRequest) *http.Request {
	t.Helper()
	var acc core.RequestAccessorV2
	r, err := acc.EventToRequestWithContext(context.Background(), ev)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func event(authorizer *events.APIGatewayV2HTTPRequestContextAuthorizerDescription) events.APIGatewayV2HTTPRequest {
	return events.APIGatewayV2HTTPRequest{
		Version:  "2.0",
		RouteKey: "POST /v1/users",
		RawPath:  "/v1/users",
		Headers:  map[string]string{"content-type": "application/json"},
		Body:     `{}`,
		RequestContext: events.APIGatewayV2HTTPRequestContext{
			AccountID:  "123456789012",
			RequestID:  "req-1",
			DomainName: "api.example.com",
			HTTP:       events.APIGatewayV2HTTPRequestContextHTTPDescription{Method: "POST", Path: "/v1/users", SourceIP: "127.0.0.1"},
			Authorizer: authorizer,
		},
	}
}

func iamAuthorizer(arn string) *events.APIGatewayV2HTTPRequestContextAuthorizerDescription {
	return &events.APIGatewayV2HTTPRequestContextAuthorizerDescription{
		IAM: &events.APIGatewayV2HTTPRequestContextAuthorizerIAMDescription{
			AccountID: "123456789012",
			UserARN:   arn,
		},
	}
}

func TestAPIGatewayPrincipal(t *testing.T) {
	cases := []struct {
		name, arn, wantID string
	}{
		{"IAM user", "arn:aws:iam::123456789012:user/alice", "arn:aws:iam::123456789012:user/alice"},
		{"assumed role", "arn:aws:sts::123456789012:assumed-role/deployer/ci-run-42", "arn:aws:iam::123456789012:role/deployer"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := viaAdapter(t, event(iamAuthorizer(c.arn)))
			p, err := caller.APIGateway{}.Principal(r)
			if err != nil {
				t.Fatal(err)
			}
			if p.ID != c.wantID || p.Raw != c.arn {
				t.Errorf("Principal = %+v, want ID %s, Raw %s", p, c.wantID, c.arn)
			}
		})
	}
}

func TestAPIGatewayNoIdentity(t *testing.T) {
	cases := []struct {
		name string
		auth *events.APIGatewayV2HTTPRequestContextAuthorizerDescription
	}{
		{"no authorizer", nil},
		{"JWT without the principal claim", &events.APIGatewayV2HTTPRequestContextAuthorizerDescription{
			JWT: &events.APIGatewayV2HTTPRequestContextAuthorizerJWTDescription{Claims: map[string]string{"email": "alice@example.com"}},
		}},
		{"JWT and IAM at once", &events.APIGatewayV2HTTPRequestContextAuthorizerDescription{
			JWT: &events.APIGatewayV2HTTPRequestContextAuthorizerJWTDescription{Claims: map[string]string{"sub": "alice"}},
			IAM: iamAuthorizer("arn:aws:iam::123456789012:user/alice").IAM,
		}},
		{"lambda authorizer", &events.APIGatewayV2HTTPRequestContextAuthorizerDescription{
			Lambda: map[string]any{"userArn": "arn:aws:iam::123456789012:user/alice"},
		}},
		{"IAM with empty ARN", iamAuthorizer("")},
		{"IAM with garbage ARN", iamAuthorizer("alice")},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ev := event(c.auth)
			// Client headers claiming an identity change nothing.
			forged, err := json.Marshal(event(iamAuthorizer("arn:aws:iam::123456789012:user/admin")).RequestContext)
			if err != nil {
				t.Fatal(err)
			}
			ev.Headers[core.APIGwContextHeader] = string(forged)
			ev.Headers["x-amzn-iam-userarn"] = "arn:aws:iam::123456789012:user/alice"
			r := viaAdapter(t, ev)
			p, err := caller.APIGateway{}.Principal(r)
			if !errors.Is(err, caller.ErrNoIdentity) {
				t.Errorf("Principal = %+v, %v; want ErrNoIdentity", p, err)
			}
		})
	}
}

// TestAPIGatewayIgnoresForgedContextHeader: the adapter's non-context mode
// passes the request context in a header; a client that sends that header
// itself must not be believed.
func TestAPIGatewayIgnoresForgedContextHeader(t *testing.T) {
	forged, err := json.Marshal(event(iamAuthorizer("arn:aws:iam::123456789012:user/admin")).RequestContext)
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range []string{core.APIGwContextHeader, "X-GoLambdaProxy-ApiGateway-Context"} {
		t.Run(h, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodPost, "/v1/users", nil)
			r.Header.Set(h, string(forged))
			// The header is well formed: the adapter itself would read it.
			if h == core.APIGwContextHeader {
				var acc core.RequestAccessorV2
				rc, err := acc.GetAPIGatewayContextV2(r)
				if err != nil || rc.Authorizer == nil || rc.Authorizer.IAM.UserARN == "" {
					t.Fatalf("forged header does not parse as a context: %+v, %v", rc, err)
				}
			}
			p, err := caller.APIGateway{}.Principal(r)
			if !errors.Is(err, caller.ErrNoIdentity) {
				t.Errorf("Principal = %+v, %v; want ErrNoIdentity", p, err)
			}
		})
	}
	// Through the adapter too: a client header next to a real identity
	// does not replace it.
	ev := event(iamAuthorizer("arn:aws:iam::123456789012:user/alice"))
	ev.Headers[core.APIGwContextHeader] = string(forged)
	p, err := caller.APIGateway{}.Principal(viaAdapter(t, ev))
	if err != nil || p.ID != "arn:aws:iam::123456789012:user/alice" {
		t.Errorf("Principal = %+v, %v; want alice", p, err)
	}
}

func TestStatic(t *testing.T) {
	r := httptest.NewRequest(http.MethodGet, "/", nil)
	p, err := caller.Static{ARN: "arn:aws:iam::123456789012:user/local-dev"}.Principal(r)
	if err != nil || p.ID != "arn:aws:iam::123456789012:user/local-dev" || p.Raw != p.ID {
		t.Errorf("Static.Principal = %+v, %v", p, err)
	}
	if p, err := (caller.Static{}).Principal(r); !errors.Is(err, caller.ErrNoIdentity) {
		t.Errorf("empty Static.Principal = %+v, %v; want ErrNoIdentity", p, err)
	}
}

func TestPrincipalContext(t *testing.T) {
	if p, ok := caller.FromContext(context.Background()); ok {
		t.Errorf("FromContext(empty) = %+v, true", p)
	}
	want := caller.Principal{ID: "arn:aws:iam::1:role/r", Raw: "arn:aws:sts::1:assumed-role/r/s"}
	got, ok := caller.FromContext(caller.WithPrincipal(context.Background(), want))
	if !ok || !reflect.DeepEqual(got, want) {
		t.Errorf("FromContext = %+v, %v; want %+v", got, ok, want)
	}
}

const issuer = "https://login.example.com/oauth2/default"

// token is an unsigned JWT with claims: keyvend cannot check a signature
// (API Gateway did), so the tests need none.
func token(claims map[string]any) string {
	payload, err := json.Marshal(claims)
	if err != nil {
		panic(err)
	}
	return tokenPayload(string(payload))
}

func tokenPayload(payload string) string {
	enc := base64.RawURLEncoding
	return enc.EncodeToString([]byte(`{"alg":"RS256","kid":"k1"}`)) + "." + enc.EncodeToString([]byte(payload)) + "." + enc.EncodeToString([]byte("sig"))
}

// jwtRequest is the request the adapter hands keyvend for a JWT-authorized
// event: the authorizer's claims as API Gateway renders them, and the
// Authorization header ("" for none).
func jwtRequest(t *testing.T, claims map[string]string, authorization string) *http.Request {
	t.Helper()
	ev := event(&events.APIGatewayV2HTTPRequestContextAuthorizerDescription{
		JWT: &events.APIGatewayV2HTTPRequestContextAuthorizerJWTDescription{Claims: claims},
	})
	if authorization != "" {
		ev.Headers["authorization"] = authorization
	}
	return viaAdapter(t, ev)
}

// TestAPIGatewayJWT: API Gateway renders a list claim as "[a b]", which
// cannot tell the groups ["not platform"] from ["not", "platform"], nor
// ["readers,platform"] from ["readers", "platform"]. The groups come from
// the Authorization header's token, used only when its principal claim,
// iss and groups rendering are what the authorizer reported; otherwise,
// unless the rendering is unambiguous, the caller is not identified.
func TestAPIGatewayJWT(t *testing.T) {
	base := func(groups any) map[string]any {
		c := map[string]any{"sub": "00u1carol", "iss": issuer, "aud": "keyvend", "exp": 1795758601, "email": "carol@example.com"}
		if groups != nil {
			c["groups"] = groups
		}
		return c
	}
	ctx := func(groups string) map[string]string {
		c := map[string]string{"sub": "00u1carol", "iss": issuer, "aud": "keyvend", "exp": "1795758601", "email": "carol@example.com"}
		if groups != "-" {
			c["groups"] = groups
		}
		return c
	}
	bearer := func(claims map[string]any) string { return "Bearer " + token(claims) }
	cases := []struct {
		name          string
		resolver      caller.APIGateway
		claims        map[string]string // the authorizer context
		authorization string
		wantID        string
		wantGroups    []string
		refused       string // the reason a refusal names; "" for a caller
	}{
		{name: "array", claims: ctx("[deployers admins]"), authorization: bearer(base([]string{"deployers", "admins"})), wantGroups: []string{"deployers", "admins"}},
		{name: "group name with a space", claims: ctx("[not platform]"), authorization: bearer(base([]string{"not platform"})), wantGroups: []string{"not platform"}},
		{name: "group name with a comma", claims: ctx("[readers,platform]"), authorization: bearer(base([]string{"readers,platform"})), wantGroups: []string{"readers,platform"}},
		{name: "names with brackets and quotes", claims: ctx(`[[a] "b" c,d]`), authorization: bearer(base([]string{"[a]", `"b"`, "c,d"})), wantGroups: []string{"[a]", `"b"`, "c,d"}},
		{name: "empty array", claims: ctx("[]"), authorization: bearer(base([]string{})), wantGroups: nil},
		{name: "string claim", claims: ctx("platform"), authorization: bearer(base("platform")), wantGroups: []string{"platform"}},
		{name: "string claim with a space", claims: ctx("not platform"), authorization: bearer(base("not platform")), wantGroups: []string{"not platform"}},
		{name: "string claim that looks like a list", claims: ctx("[a b]"), authorization: bearer(base("[a b]")), wantGroups: []string{"[a b]"}},
		{name: "no groups claim", claims: ctx("-"), authorization: bearer(base(nil)), wantGroups: nil},
		{name: "token without the Bearer prefix", claims: ctx("[not platform]"), authorization: token(base([]string{"not platform"})), wantGroups: []string{"not platform"}},
		{name: "bearer in lower case", claims: ctx("[not platform]"), authorization: "bearer " + token(base([]string{"not platform"})), wantGroups: []string{"not platform"}},
		{name: "payload with white space", claims: ctx("[not platform]"), authorization: "Bearer " + tokenPayload("{ \"sub\" : \"00u1carol\",\n \"iss\":\t\""+issuer+"\", \"groups\": [ \"not platform\" ] }"), wantGroups: []string{"not platform"}},
		{name: "configured claims", resolver: caller.APIGateway{PrincipalClaim: "email", GroupsClaim: "roles"},
			claims:        map[string]string{"sub": "00u1carol", "email": "carol@example.com", "iss": issuer, "roles": "[ops web]", "groups": "[x y]"},
			authorization: bearer(map[string]any{"sub": "00u1carol", "email": "carol@example.com", "iss": issuer, "roles": []string{"ops", "web"}, "groups": []int{1}}),
			wantID:        "jwt:carol@example.com", wantGroups: []string{"ops", "web"}},

		// No token: only a rendering without a space, comma, bracket or
		// quote is unambiguous (it is one string).
		{name: "no token, one plain group", claims: ctx("platform"), wantGroups: []string{"platform"}},
		{name: "no token, no groups claim", claims: ctx("-"), wantGroups: nil},
		{name: "no token, a list", claims: ctx("[deployers platform]"), refused: "cannot be told apart"},
		{name: "no token, one-element list", claims: ctx("[platform]"), refused: "cannot be told apart"},
		{name: "no token, a space", claims: ctx("not platform"), refused: "cannot be told apart"},
		{name: "no token, a comma", claims: ctx("readers,platform"), refused: "cannot be told apart"},
		{name: "no token, a quote", claims: ctx(`"platform"`), refused: "cannot be told apart"},

		// A token that is not provably the one the authorizer validated.
		{name: "forged token with other groups", claims: ctx("[not platform]"), authorization: bearer(base([]string{"platform"})), refused: "does not match"},
		{name: "forged token, the same names split otherwise", claims: ctx("[readers,platform]"), authorization: bearer(base([]string{"readers", "platform"})), refused: "does not match"},
		{name: "token of another subject", claims: ctx("[a b]"), authorization: bearer(map[string]any{"sub": "00u1mallory", "iss": issuer, "groups": []string{"a", "b"}}), refused: "sub"},
		{name: "token of another issuer", claims: ctx("[a b]"), authorization: bearer(map[string]any{"sub": "00u1carol", "iss": "https://evil.example.net", "groups": []string{"a", "b"}}), refused: "iss"},
		{name: "token without iss", claims: ctx("[a b]"), authorization: bearer(map[string]any{"sub": "00u1carol", "groups": []string{"a", "b"}}), refused: "iss"},
		{name: "token with groups, context without", claims: ctx("-"), authorization: bearer(base([]string{"platform"})), refused: "does not match"},
		{name: "context with groups, token without", claims: ctx("platform"), authorization: bearer(base(nil)), refused: "does not match"},
		{name: "non-string array elements", claims: ctx("[a 1]"), authorization: bearer(base([]any{"a", 1})), refused: "neither a string nor an array of strings"},
		{name: "null array element", claims: ctx("[a <nil>]"), authorization: bearer(base([]any{"a", nil})), refused: "neither a string nor an array of strings"},
		{name: "groups an object", claims: ctx("map[a:b]"), authorization: bearer(base(map[string]string{"a": "b"})), refused: "neither a string nor an array of strings"},
		{name: "groups a number", claims: ctx("7"), authorization: bearer(base(7)), refused: "neither a string nor an array of strings"},
		{name: "groups claim twice in the token", claims: ctx("[readers]"), authorization: "Bearer " + tokenPayload(`{"sub":"00u1carol","iss":"`+issuer+`","groups":["readers"],"groups":["platform"]}`), refused: "more than once"},
		{name: "not a JWT", claims: ctx("[a b]"), authorization: "Bearer not-a-token", refused: "not a JWT"},
		{name: "payload not base64url", claims: ctx("[a b]"), authorization: "Bearer eyJhbGciOiJSUzI1NiJ9.e30+.c2ln", refused: "not a JWT"},
		{name: "payload not JSON", claims: ctx("[a b]"), authorization: "Bearer " + tokenPayload(`{"sub":`), refused: "not a JWT"},
		{name: "two tokens", claims: ctx("[a b]"), authorization: bearer(base([]string{"a", "b"})) + ", " + bearer(base([]string{"a", "b"})), refused: "not a JWT"},
		{name: "SigV4 Authorization", claims: ctx("[a b]"), authorization: "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20261127/us-east-1/execute-api/aws4_request, SignedHeaders=host, Signature=00", refused: "not a JWT"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p, err := c.resolver.Principal(jwtRequest(t, c.claims, c.authorization))
			if c.refused != "" {
				if !errors.Is(err, caller.ErrNoIdentity) || !strings.Contains(err.Error(), c.refused) {
					t.Fatalf("Principal = %+v, %v; want ErrNoIdentity saying %q", p, err, c.refused)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			wantID := c.wantID
			if wantID == "" {
				wantID = "jwt:00u1carol"
			}
			if p.ID != wantID || p.Raw != wantID || !reflect.DeepEqual(p.Groups, c.wantGroups) {
				t.Fatalf("Principal = %+v (groups %q), want %s with groups %q", p, p.Groups, wantID, c.wantGroups)
			}
			wantNames := []string{wantID}
			for _, g := range c.wantGroups {
				wantNames = append(wantNames, "jwt-group:"+g)
			}
			if names := p.Names(); !reflect.DeepEqual(names, wantNames) {
				t.Errorf("Names = %q, want %q", names, wantNames)
			}
		})
	}
}

// TestAPIGatewayJWTNoSplitting: a rule for jwt-group:platform must not
// match a caller whose only group is "not platform" or "readers,platform".
func TestAPIGatewayJWTNoSplitting(t *testing.T) {
	for _, g := range []string{"not platform", "readers,platform", "platform readers"} {
		claims := map[string]string{"sub": "00u1carol", "iss": issuer, "groups": "[" + g + "]"}
		for _, auth := range []string{"", "Bearer " + token(map[string]any{"sub": "00u1carol", "iss": issuer, "groups": []string{g}})} {
			p, err := caller.APIGateway{}.Principal(jwtRequest(t, claims, auth))
			if err != nil {
				if auth != "" {
					t.Errorf("group %q with its token: %v", g, err)
				}
				continue
			}
			if slices.Contains(p.Names(), "jwt-group:platform") {
				t.Errorf("group %q (token %v): Names = %q include jwt-group:platform", g, auth != "", p.Names())
			}
		}
	}
}
