package caller_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"reflect"
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

func TestAPIGatewayJWT(t *testing.T) {
	claims := map[string]string{"sub": "00u1abcd", "email": "alice@example.com", "groups": "[deployers admins]", "roles": "ops,web"}
	auth := &events.APIGatewayV2HTTPRequestContextAuthorizerDescription{
		JWT: &events.APIGatewayV2HTTPRequestContextAuthorizerJWTDescription{Claims: claims},
	}
	cases := []struct {
		name       string
		resolver   caller.APIGateway
		wantID     string
		wantGroups []string
	}{
		{"defaults: sub and groups", caller.APIGateway{}, "jwt:00u1abcd", []string{"deployers", "admins"}},
		{"configured claims", caller.APIGateway{PrincipalClaim: "email", GroupsClaim: "roles"}, "jwt:alice@example.com", []string{"ops", "web"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p, err := c.resolver.Principal(viaAdapter(t, event(auth)))
			if err != nil {
				t.Fatal(err)
			}
			if p.ID != c.wantID || !reflect.DeepEqual(p.Groups, c.wantGroups) {
				t.Fatalf("Principal = %+v, want %s %v", p, c.wantID, c.wantGroups)
			}
			names := p.Names()
			if names[0] != c.wantID || names[1] != "jwt-group:"+c.wantGroups[0] {
				t.Errorf("Names = %v", names)
			}
		})
	}
}

func TestParseClaimList(t *testing.T) {
	for in, want := range map[string][]string{
		"":          {},
		"admins":    {"admins"},
		"[a b]":     {"a", "b"},
		"[a, b]":    {"a", "b"},
		`["a","b"]`: {"a", "b"},
		"a,b,,c":    {"a", "b", "c"},
	} {
		if got := caller.ParseClaimList(in); !reflect.DeepEqual(got, want) {
			t.Errorf("ParseClaimList(%q) = %v, want %v", in, got, want)
		}
	}
}
