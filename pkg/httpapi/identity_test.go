package httpapi_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"strings"
	"testing"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	iamtypes "github.com/aws/aws-sdk-go-v2/service/iam/types"
	"github.com/awslabs/aws-lambda-go-api-proxy/core"

	"github.com/keyvend/keyvend/pkg/awstest"
	"github.com/keyvend/keyvend/pkg/caller"
	"github.com/keyvend/keyvend/pkg/httpapi"
	"github.com/keyvend/keyvend/pkg/provision"
	"github.com/keyvend/keyvend/pkg/provisiontest"
)

const (
	aliceARN   = "arn:aws:iam::123456789012:user/alice"   // lambdaRules let her vend on *.example.com
	malloryARN = "arn:aws:iam::123456789012:user/mallory" // no rule names her
)

// unsignedJWT is a token with claims and no valid signature: what a client
// can make up.
func unsignedJWT(claims map[string]any) string {
	enc := base64.RawURLEncoding
	payload, _ := json.Marshal(claims)
	return enc.EncodeToString([]byte(`{"alg":"RS256","kid":"k1"}`)) + "." + enc.EncodeToString(payload) + "." + enc.EncodeToString([]byte("signature"))
}

// forgedHeaders claim the identity arn every way a client could try: the
// request context headers of aws-lambda-go-api-proxy (its plain Proxy reads
// X-GoLambdaProxy-ApiGw-Context; the others are look-alikes), the headers
// an ALB or a proxy sets for an authenticated user, a session token, and
// the Authorization header given. The context JSON has no comma, so the
// adapter, which splits header values on commas, keeps it whole.
func forgedHeaders(arn, authorization string) map[string]string {
	ctx := `{"authorizer":{"iam":{"userArn":"` + arn + `"}}}`
	return map[string]string{
		"content-type":                       "application/json",
		"x-golambdaproxy-apigw-context":      ctx,
		"x-golambdaproxy-apigateway-context": ctx,
		"x-golambdaproxy-context":            ctx,
		"x-amzn-oidc-identity":               arn,
		"x-amzn-oidc-data":                   unsignedJWT(map[string]any{"sub": arn}),
		"x-forwarded-user":                   arn,
		"x-amzn-iam-userarn":                 arn,
		"x-amz-security-token":               "IQoJb3JpZ2luX2VjEforgedsessiontoken",
		"authorization":                      authorization,
	}
}

// newIdentityEnv is the Lambda handler as functions/api wires it, with
// lambdaRules, on the shared moto: the service's AWS calls are recorded and
// its log kept; env reads moto directly.
func newIdentityEnv(t *testing.T) (func(context.Context, events.APIGatewayV2HTTPRequest) (events.APIGatewayV2HTTPResponse, error), *awstest.Recorder, *syncBuffer, *lambdaEnv) {
	t.Helper()
	calls := &awstest.Recorder{}
	logs := &syncBuffer{}
	log := slog.New(slog.NewJSONHandler(logs, nil))
	p := provisiontest.New(t, provisiontest.Rules(lambdaRules), provisiontest.Instrument(calls.Attach), provisiontest.Logger(log))
	handle := httpapi.LambdaHandler(httpapi.New(p.Service, caller.APIGateway{}, log))
	return handle, calls, logs, &lambdaEnv{iam: p.IAM, sm: p.SM}
}

// TestLambdaIdentityNeverFromHeaders drives the Lambda handler, as
// functions/api wires it, with API Gateway HTTP API events whose headers
// claim another identity than the authorizer's: no authorizer is 401
// whatever the headers say, and with an IAM authorizer the caller is the
// authorizer's principal, never the headers'.
func TestLambdaIdentityNeverFromHeaders(t *testing.T) {
	handle, calls, logs, env := newIdentityEnv(t)

	authorizations := map[string]string{
		"bogus SigV4": "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20261127/us-east-1/execute-api/aws4_request, SignedHeaders=host;x-amz-date, Signature=" + strings.Repeat("0", 64),
		"bogus JWT":   "Bearer " + unsignedJWT(map[string]any{"sub": "admin", "groups": []string{"deployers"}}),
	}
	event := func(user string, headers map[string]string, az *events.APIGatewayV2HTTPRequestContextAuthorizerDescription) events.APIGatewayV2HTTPRequest {
		return events.APIGatewayV2HTTPRequest{
			Version: "2.0", RouteKey: "$default", RawPath: "/v1/users", Headers: headers,
			Body: `{"user":"` + user + `","grants":[{"bucket":"site.example.com","access":"read-only"}],"reason":"header forgery"}`,
			RequestContext: events.APIGatewayV2HTTPRequestContext{
				AccountID: "123456789012", RequestID: awstest.Name("req"), DomainName: "a1b2c3d4e5.execute-api.us-east-1.amazonaws.com",
				HTTP:       events.APIGatewayV2HTTPRequestContextHTTPDescription{Method: http.MethodPost, Path: "/v1/users", SourceIP: "203.0.113.7"},
				Authorizer: az,
			},
		}
	}
	iamAuthorizer := func(arn string) *events.APIGatewayV2HTTPRequestContextAuthorizerDescription {
		return &events.APIGatewayV2HTTPRequestContextAuthorizerDescription{
			IAM: &events.APIGatewayV2HTTPRequestContextAuthorizerIAMDescription{AccountID: "123456789012", UserARN: arn},
		}
	}
	problemType := func(resp events.APIGatewayV2HTTPResponse) string {
		var p httpapi.Problem
		_ = json.Unmarshal([]byte(resp.Body), &p)
		return p.Type
	}
	notCreated := func(t *testing.T, user string) {
		t.Helper()
		_, err := env.iam.GetUser(context.Background(), &iam.GetUserInput{UserName: &user})
		var nse *iamtypes.NoSuchEntityException
		if !errors.As(err, &nse) {
			t.Errorf("GetUser(%s) = %v, want NoSuchEntity", user, err)
		}
	}

	for name, authorization := range authorizations {
		// The forgery is potent: through the adapter the context header
		// arrives whole and is what the plain Proxy would have believed.
		var acc core.RequestAccessorV2
		r, err := acc.EventToRequest(event("x", forgedHeaders(aliceARN, authorization), nil))
		if err != nil {
			t.Fatal(err)
		}
		if rc, err := acc.GetAPIGatewayContextV2(r); err != nil || rc.Authorizer == nil || rc.Authorizer.IAM.UserARN != aliceARN {
			t.Fatalf("the forged context header does not parse as alice's context: %+v, %v", rc, err)
		}
		if r.Header.Get("Authorization") != authorization {
			t.Fatalf("Authorization arrives as %q", r.Header.Get("Authorization"))
		}

		t.Run(name+", no authorizer: 401", func(t *testing.T) {
			calls.Reset()
			user := awstest.Name("forged")
			ev := event(user, forgedHeaders(aliceARN, authorization), nil)
			resp, err := handle(context.Background(), ev)
			if err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != http.StatusUnauthorized || problemType(resp) != "https://keyvend.dev/problems/unauthenticated" {
				t.Errorf("status %d %s, want 401 unauthenticated", resp.StatusCode, resp.Body)
			}
			if c := calls.Calls(); len(c) != 0 {
				t.Errorf("AWS calls: %v", c)
			}
			notCreated(t, user)
		})

		t.Run(name+", mallory's authorizer, alice's headers: mallory", func(t *testing.T) {
			calls.Reset()
			user := awstest.Name("forged")
			ev := event(user, forgedHeaders(aliceARN, authorization), iamAuthorizer(malloryARN))
			resp, err := handle(context.Background(), ev)
			if err != nil {
				t.Fatal(err)
			}
			if l := accessLog(t, logs, ev.RequestContext.RequestID); l["principal"] != malloryARN || l["caller_arn"] != malloryARN {
				t.Errorf("access log principal %v, caller_arn %v; want mallory", l["principal"], l["caller_arn"])
			}
			if resp.StatusCode != http.StatusForbidden || problemType(resp) != "https://keyvend.dev/problems/forbidden" {
				t.Errorf("status %d %s, want 403 forbidden: mallory has no rule", resp.StatusCode, resp.Body)
			}
			if c := calls.Calls(); len(c) != 0 {
				t.Errorf("AWS calls: %v", c)
			}
			notCreated(t, user)
		})

		t.Run(name+", alice's authorizer, mallory's headers: alice", func(t *testing.T) {
			user := awstest.Name("forged")
			env.forget(t, user)
			ev := event(user, forgedHeaders(malloryARN, authorization), iamAuthorizer(aliceARN))
			resp, err := handle(context.Background(), ev)
			if err != nil {
				t.Fatal(err)
			}
			if l := accessLog(t, logs, ev.RequestContext.RequestID); l["principal"] != aliceARN || l["caller_arn"] != aliceARN {
				t.Errorf("access log principal %v, caller_arn %v; want alice", l["principal"], l["caller_arn"])
			}
			if resp.StatusCode != http.StatusCreated {
				t.Fatalf("status %d %s, want 201", resp.StatusCode, resp.Body)
			}
			if got := env.userTags(t, user)[provision.TagRequester]; got != aliceARN {
				t.Errorf("requester tag %q, want %s", got, aliceARN)
			}
		})
	}
}

// accessLog returns the access log line of request id in logs.
func accessLog(t *testing.T, logs *syncBuffer, id string) map[string]any {
	t.Helper()
	for _, line := range strings.Split(logs.String(), "\n") {
		var entry map[string]any
		if json.Unmarshal([]byte(line), &entry) == nil && entry["msg"] == "request" && entry["request_id"] == id {
			return entry
		}
	}
	t.Fatalf("no access log line for request %s:\n%s", id, logs)
	return nil
}

// TestLambdaJWTGroupsExact: with a JWT authorizer, a rule for
// jwt-group:deployers (lambdaRules) matches only a caller in the group
// "deployers": not one in "not deployers" or "readers,deployers", which
// API Gateway renders as [not deployers] and [readers,deployers]. Without
// the token to read them from, or with a token that is not the one the
// authorizer reported, the caller is not identified: a 401 whose body says
// nothing more, and whose access log line says why.
func TestLambdaJWTGroupsExact(t *testing.T) {
	handle, calls, logs, env := newIdentityEnv(t)
	const iss = "https://login.example.com/oauth2/default"
	claims := func(groups string) map[string]string {
		return map[string]string{"sub": "00u1dave", "iss": iss, "aud": "keyvend", "groups": groups}
	}
	bearer := func(groups []string) string {
		return "Bearer " + unsignedJWT(map[string]any{"sub": "00u1dave", "iss": iss, "aud": "keyvend", "groups": groups})
	}
	cases := []struct {
		name          string
		claims        map[string]string
		authorization string
		status        int
		authError     string // in the access log line of a 401
	}{
		{"in deployers", claims("[deployers]"), bearer([]string{"deployers"}), http.StatusCreated, ""},
		{"in not deployers", claims("[not deployers]"), bearer([]string{"not deployers"}), http.StatusForbidden, ""},
		{"in readers,deployers", claims("[readers,deployers]"), bearer([]string{"readers,deployers"}), http.StatusForbidden, ""},
		{"no token to read [not deployers] from", claims("[not deployers]"), "", http.StatusUnauthorized, "cannot be told apart"},
		{"a token with other groups than the authorizer's", claims("[not deployers]"), bearer([]string{"deployers"}), http.StatusUnauthorized, "does not match the authorizer's claims"},
		{"non-string groups", claims("[deployers 1]"), "Bearer " + unsignedJWT(map[string]any{"sub": "00u1dave", "iss": iss, "groups": []any{"deployers", 1}}), http.StatusUnauthorized, "neither a string nor an array of strings"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			calls.Reset()
			user := awstest.Name("jwt")
			env.forget(t, user)
			headers := map[string]string{"content-type": "application/json"}
			if c.authorization != "" {
				headers["authorization"] = c.authorization
			}
			ev := events.APIGatewayV2HTTPRequest{
				Version: "2.0", RouteKey: "$default", RawPath: "/v1/users", Headers: headers,
				Body: `{"user":"` + user + `","grants":[{"bucket":"site.example.com","access":"read-only"}],"reason":"portal deploys"}`,
				RequestContext: events.APIGatewayV2HTTPRequestContext{
					AccountID: "123456789012", RequestID: awstest.Name("req"), DomainName: "a1b2c3d4e5.execute-api.us-east-1.amazonaws.com",
					HTTP: events.APIGatewayV2HTTPRequestContextHTTPDescription{Method: http.MethodPost, Path: "/v1/users", SourceIP: "203.0.113.7"},
					Authorizer: &events.APIGatewayV2HTTPRequestContextAuthorizerDescription{
						JWT: &events.APIGatewayV2HTTPRequestContextAuthorizerJWTDescription{Claims: c.claims},
					},
				},
			}
			resp, err := handle(context.Background(), ev)
			if err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != c.status {
				t.Fatalf("status %d %s, want %d", resp.StatusCode, resp.Body, c.status)
			}
			line := accessLog(t, logs, ev.RequestContext.RequestID)
			if c.status == http.StatusCreated {
				if got := env.userTags(t, user)[provision.TagRequester]; got != "jwt:00u1dave" {
					t.Errorf("requester tag %q, want jwt:00u1dave", got)
				}
				return
			}
			if c := calls.Calls(); len(c) != 0 {
				t.Errorf("AWS calls: %v", c)
			}
			var p httpapi.Problem
			if err := json.Unmarshal([]byte(resp.Body), &p); err != nil {
				t.Fatal(err)
			}
			if c.status == http.StatusUnauthorized {
				if p.Type != "https://keyvend.dev/problems/unauthenticated" || p.Detail != "the request carries no caller identity keyvend accepts" || len(p.Errors) != 0 {
					t.Errorf("401 body %s, want the generic unauthenticated problem", resp.Body)
				}
				if got, _ := line["auth_error"].(string); !strings.Contains(got, c.authError) || !strings.Contains(got, "no caller identity") {
					t.Errorf("access log auth_error %q, want it to say %q", got, c.authError)
				}
			}
			if strings.Contains(logs.String(), strings.TrimPrefix(c.authorization, "Bearer ")) && c.authorization != "" {
				t.Error("the log holds the Authorization header's token")
			}
		})
	}
}
