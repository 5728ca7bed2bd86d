package httpapi_test

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-lambda-go/lambdacontext"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	iamtypes "github.com/aws/aws-sdk-go-v2/service/iam/types"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"

	"github.com/keyvend/keyvend/pkg/awstest"
	"github.com/keyvend/keyvend/pkg/caller"
	"github.com/keyvend/keyvend/pkg/httpapi"
	"github.com/keyvend/keyvend/pkg/policy"
	"github.com/keyvend/keyvend/pkg/provision"
	"github.com/keyvend/keyvend/pkg/provisiontest"
)

// lambdaRules: alice may vend anything on *.example.com; the deployer role
// (whoever assumed it) read-write on site.example.com.
const lambdaRules = `{"rules":[
 {"principals":["arn:aws:iam::123456789012:user/alice"],"buckets":["*.example.com"],"access":["read-only","write-only","read-write","full"]},
 {"principals":["arn:aws:iam::123456789012:role/deployer"],"buckets":["site.example.com"],"access":["read-write"]},
 {"principals":["jwt-group:deployers"],"buckets":["site.example.com"],"access":["read-only"]}]}`

// lambdaEnv is the Lambda function's handler, as functions/api wires it,
// on the shared moto, and clients to look at what it did.
type lambdaEnv struct {
	handle func(context.Context, events.APIGatewayV2HTTPRequest) (events.APIGatewayV2HTTPResponse, error)
	iam    *iam.Client
	sm     *secretsmanager.Client
	log    *syncBuffer
}

func newLambdaEnv(t *testing.T) *lambdaEnv {
	t.Helper()
	e := &lambdaEnv{log: &syncBuffer{}}
	log := slog.New(slog.NewJSONHandler(e.log, nil))
	// The service's clients check its CreateUser calls; e's look at moto.
	p := provisiontest.New(t, provisiontest.Rules(lambdaRules), provisiontest.Logger(log))
	e.iam, e.sm = p.IAM, p.SM
	e.handle = httpapi.LambdaHandler(httpapi.New(p.Service, caller.APIGateway{}, log))
	return e
}

// invoke unmarshals the fixture and hands it to the Lambda handler the way
// the runtime does: with a Lambda context in ctx.
func (e *lambdaEnv) invoke(t *testing.T, fixture string) (events.APIGatewayV2HTTPRequest, events.APIGatewayV2HTTPResponse) {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join("testdata", fixture))
	if err != nil {
		t.Fatal(err)
	}
	var ev events.APIGatewayV2HTTPRequest
	if err := json.Unmarshal(raw, &ev); err != nil {
		t.Fatalf("%s: %v", fixture, err)
	}
	if ev.RequestContext.RequestID == "" {
		t.Fatalf("%s has no requestContext.requestId", fixture)
	}
	ctx := lambdacontext.NewContext(context.Background(), &lambdacontext.LambdaContext{
		AwsRequestID:       "6f2d4c1e-0a3b-4c5d-8e9f-" + strings.ToLower(fixture[:4]) + "00000000",
		InvokedFunctionArn: "arn:aws:lambda:us-east-1:123456789012:function:keyvend-api",
	})
	resp, err := e.handle(ctx, ev)
	if err != nil {
		t.Fatalf("%s: handler error: %v", fixture, err)
	}
	if got := resp.Headers["X-Request-Id"]; got != ev.RequestContext.RequestID {
		t.Errorf("%s: X-Request-Id = %q, want the API Gateway request id %q", fixture, got, ev.RequestContext.RequestID)
	}
	return ev, resp
}

// forget removes a user the test vended, so that the shared moto can run
// the test again (-count=N) and other tests never see it.
func (e *lambdaEnv) forget(t *testing.T, user string) {
	t.Helper()
	t.Cleanup(func() {
		ctx := context.Background()
		if keys, err := e.iam.ListAccessKeys(ctx, &iam.ListAccessKeysInput{UserName: &user}); err == nil {
			for _, k := range keys.AccessKeyMetadata {
				_, _ = e.iam.DeleteAccessKey(ctx, &iam.DeleteAccessKeyInput{UserName: &user, AccessKeyId: k.AccessKeyId})
			}
		}
		if groups, err := e.iam.ListGroupsForUser(ctx, &iam.ListGroupsForUserInput{UserName: &user}); err == nil {
			for _, g := range groups.Groups {
				_, _ = e.iam.RemoveUserFromGroup(ctx, &iam.RemoveUserFromGroupInput{UserName: &user, GroupName: g.GroupName})
			}
		}
		_, _ = e.iam.DeleteUserPolicy(ctx, &iam.DeleteUserPolicyInput{UserName: &user, PolicyName: aws.String(policy.UserPolicyName)})
		_, _ = e.iam.DeleteUser(ctx, &iam.DeleteUserInput{UserName: &user})
		_, _ = e.sm.DeleteSecret(ctx, &secretsmanager.DeleteSecretInput{SecretId: aws.String("keyvend/users/" + user), ForceDeleteWithoutRecovery: aws.Bool(true)})
	})
}

// created checks a 201 answer to a POST fixture and that the user it names
// exists in moto, under /keyvend/, holding the grant of group (grant mode
// policy: in its user policy), with its key in its secret, tagged with
// requester and the API Gateway request id.
func (e *lambdaEnv) created(t *testing.T, fixture string, ev events.APIGatewayV2HTTPRequest, resp events.APIGatewayV2HTTPResponse, user, group, requester string) {
	t.Helper()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("%s: status %d, want 201: %s\nlog: %s", fixture, resp.StatusCode, resp.Body, e.log)
	}
	if ct := resp.Headers["Content-Type"]; ct != "application/json" {
		t.Errorf("%s: Content-Type %q, want application/json", fixture, ct)
	}
	if loc := resp.Headers["Location"]; loc != "/v1/users/"+user {
		t.Errorf("%s: Location %q, want /v1/users/%s", fixture, loc, user)
	}
	var res provision.CreateResult
	if err := json.Unmarshal([]byte(resp.Body), &res); err != nil {
		t.Fatalf("%s: body %q: %v", fixture, resp.Body, err)
	}
	grant, err := policy.ParseGroup("aws", group, "")
	if err != nil {
		t.Fatal(err)
	}
	if res.User != user || res.GrantMode != "policy" || len(res.Groups) != 0 || len(res.Grants) != 1 || res.Grants[0] != grant || !strings.Contains(res.CredentialProcess, res.SecretARN) {
		t.Fatalf("%s: answer %s: want user %s with %v in its user policy, a credential_process for its secret", fixture, resp.Body, user, grant)
	}

	ctx := context.Background()
	got, err := e.iam.GetUser(ctx, &iam.GetUserInput{UserName: &user})
	if err != nil {
		t.Fatalf("%s: user %s is not in moto: %v", fixture, user, err)
	}
	if p := aws.ToString(got.User.Path); p != "/keyvend/" {
		t.Errorf("%s: user path %q, want /keyvend/", fixture, p)
	}
	tags := tagMap(got.User.Tags)
	for k, want := range map[string]string{
		provision.TagManagedBy: "keyvend",
		provision.TagRequester: requester,
		provision.TagRequestID: ev.RequestContext.RequestID,
	} {
		if tags[k] != want {
			t.Errorf("%s: tag %s = %q, want %q (all tags: %v)", fixture, k, tags[k], want, tags)
		}
	}
	pol, err := e.iam.GetUserPolicy(ctx, &iam.GetUserPolicyInput{UserName: &user, PolicyName: aws.String(policy.UserPolicyName)})
	if err != nil {
		t.Fatalf("%s: user policy of %s: %v", fixture, user, err)
	}
	userDoc, _ := url.PathUnescape(aws.ToString(pol.PolicyDocument))
	if want, _ := policy.UserDocument("aws", []policy.Grant{grant}); userDoc != want {
		t.Errorf("%s: user policy %s, want %s", fixture, userDoc, want)
	}
	secret, err := e.sm.GetSecretValue(ctx, &secretsmanager.GetSecretValueInput{SecretId: aws.String(res.SecretARN)})
	if err != nil {
		t.Fatalf("%s: read secret %s: %v", fixture, res.SecretARN, err)
	}
	var doc struct {
		AccessKeyID     string `json:"AccessKeyId"`
		SecretAccessKey string
	}
	if err := json.Unmarshal([]byte(aws.ToString(secret.SecretString)), &doc); err != nil || doc.AccessKeyID != res.AccessKeyID || doc.SecretAccessKey == "" {
		t.Fatalf("%s: secret %s does not hold key %s (%v)", fixture, res.SecretARN, res.AccessKeyID, err)
	}
	if strings.Contains(resp.Body, doc.SecretAccessKey) || strings.Contains(e.log.String(), doc.SecretAccessKey) {
		t.Fatalf("%s: the secret access key is in the answer or the log", fixture)
	}
}

// unauthenticated checks a 401 problem+json answer and that user was not made.
func (e *lambdaEnv) unauthenticated(t *testing.T, fixture string, ev events.APIGatewayV2HTTPRequest, resp events.APIGatewayV2HTTPResponse, user string) {
	t.Helper()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("%s: status %d, want 401: %s", fixture, resp.StatusCode, resp.Body)
	}
	if ct := resp.Headers["Content-Type"]; ct != "application/problem+json" {
		t.Errorf("%s: Content-Type %q, want application/problem+json", fixture, ct)
	}
	var p httpapi.Problem
	if err := json.Unmarshal([]byte(resp.Body), &p); err != nil {
		t.Fatalf("%s: body %q: %v", fixture, resp.Body, err)
	}
	if p.Type != "https://keyvend.dev/problems/unauthenticated" || p.Status != http.StatusUnauthorized || p.RequestID != ev.RequestContext.RequestID {
		t.Errorf("%s: problem %s: want type …/unauthenticated, status 401, request_id %s", fixture, resp.Body, ev.RequestContext.RequestID)
	}
	_, err := e.iam.GetUser(context.Background(), &iam.GetUserInput{UserName: &user})
	var nse *iamtypes.NoSuchEntityException
	if !errors.As(err, &nse) {
		t.Fatalf("%s: GetUser(%s) = %v, want NoSuchEntity: a request with no identity created a user", fixture, user, err)
	}
}

// TestLambdaAPIGatewayEvents feeds hand-written API Gateway HTTP API
// (payload 2.0, IAM authorizer) events through the Lambda adapter into the
// real handler and provisioning service on moto.
func TestLambdaAPIGatewayEvents(t *testing.T) {
	e := newLambdaEnv(t)
	for _, u := range []string{"lambda-alice-rw", "lambda-alice-ro", "lambda-deployer-rw", "lambda-jwt-carol"} {
		e.forget(t, u)
	}
	const alice = "arn:aws:iam::123456789012:user/alice"

	// A JWT caller (API Gateway JWT authorizer): the principal is jwt:<sub>,
	// and the rule names one of its groups.
	t.Run("JWT caller", func(t *testing.T) {
		ev, resp := e.invoke(t, "create_user_jwt.json")
		e.created(t, "create_user_jwt.json", ev, resp, "lambda-jwt-carol", "keyvend_read-only_site.example.com", "jwt:00u1carol")
	})

	// An authorizer shape keyvend does not know (a Lambda authorizer whose
	// context claims an IAM ARN) is not an identity.
	t.Run("unknown authorizer shape", func(t *testing.T) {
		ev, resp := e.invoke(t, "create_user_lambda_authorizer.json")
		e.unauthenticated(t, "create_user_lambda_authorizer.json", ev, resp, "lambda-custom-auth")
	})

	t.Run("IAM user", func(t *testing.T) {
		ev, resp := e.invoke(t, "create_user_iam_user.json")
		e.created(t, "create_user_iam_user.json", ev, resp, "lambda-alice-rw", "keyvend_read-write_site.example.com", alice)
		tags := e.userTags(t, "lambda-alice-rw")
		if tags[provision.TagReason] != "blog deploys" {
			t.Errorf("reason tag %q, want %q", tags[provision.TagReason], "blog deploys")
		}
	})

	t.Run("base64 body", func(t *testing.T) {
		ev, resp := e.invoke(t, "create_user_base64.json")
		if !ev.IsBase64Encoded || strings.HasPrefix(ev.Body, "{") {
			t.Fatal("create_user_base64.json must carry a base64-encoded body")
		}
		e.created(t, "create_user_base64.json", ev, resp, "lambda-alice-ro", "keyvend_read-only_assets.example.com", alice)
	})

	// Rules match the role (the fixture's rules name it); the requester
	// recorded is the session, so people sharing the role do not own each
	// other's users (encoded losslessly: '=' escapes in the tag value).
	t.Run("assumed-role session is recorded as the session", func(t *testing.T) {
		ev, resp := e.invoke(t, "create_user_assumed_role.json")
		if arn := ev.RequestContext.Authorizer.IAM.UserARN; arn != "arn:aws:sts::123456789012:assumed-role/deployer/alice" {
			t.Fatalf("fixture userArn %q", arn)
		}
		e.created(t, "create_user_assumed_role.json", ev, resp, "lambda-deployer-rw", "keyvend_read-write_site.example.com", "arn:aws:sts::123456789012:assumed-role/deployer/alice")
	})

	t.Run("no authorizer is 401", func(t *testing.T) {
		ev, resp := e.invoke(t, "create_user_no_authorizer.json")
		if ev.RequestContext.Authorizer != nil {
			t.Fatal("create_user_no_authorizer.json must have no authorizer")
		}
		e.unauthenticated(t, "create_user_no_authorizer.json", ev, resp, "lambda-anonymous")
	})

	// The adapter's Proxy (not ProxyWithContext) passes the request context
	// in the X-GoLambdaProxy-ApiGw-Context header; the fixture forges it,
	// and X-GoLambdaProxy-ApiGateway-Context too, with a JSON value free of
	// commas so that the adapter's splitting of header values keeps it whole.
	t.Run("forged context header is 401", func(t *testing.T) {
		ev, resp := e.invoke(t, "create_user_forged_context_header.json")
		forged := ev.Headers["x-golambdaproxy-apigw-context"]
		if ev.RequestContext.Authorizer != nil || !strings.Contains(forged, alice) || strings.Contains(forged, ",") {
			t.Fatal("create_user_forged_context_header.json must have no authorizer and a comma-free forged context header naming alice")
		}
		e.unauthenticated(t, "create_user_forged_context_header.json", ev, resp, "lambda-forged")
	})

	t.Run("describe", func(t *testing.T) {
		ev, resp := e.invoke(t, "describe_user.json")
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("status %d, want 200: %s", resp.StatusCode, resp.Body)
		}
		if ct := resp.Headers["Content-Type"]; ct != "application/json" {
			t.Errorf("Content-Type %q, want application/json", ct)
		}
		var d provision.Description
		if err := json.Unmarshal([]byte(resp.Body), &d); err != nil {
			t.Fatalf("body %q: %v", resp.Body, err)
		}
		if d.User != "lambda-alice-rw" || !d.Complete || len(d.AccessKeys) != 1 || !d.AccessKeys[0].InSecret ||
			d.Tags[provision.TagRequester] != alice || d.Tags[provision.TagRequestID] != "Fq3kXjMwoAMEVxw=" {
			t.Errorf("GET %s = %s: want lambda-alice-rw, complete, one key in its secret, requested by alice in request Fq3kXjMwoAMEVxw=", ev.RawPath, resp.Body)
		}
	})

	// The access log names the request by API Gateway's id, the caller by
	// its normalised ARN (what the rules saw) and by the session ARN the
	// authorizer reported (who it really was).
	var sawRole bool
	for _, line := range strings.Split(strings.TrimSpace(e.log.String()), "\n") {
		var entry struct {
			Msg       string `json:"msg"`
			RequestID string `json:"request_id"`
			Principal string `json:"principal"`
			CallerARN string `json:"caller_arn"`
		}
		if json.Unmarshal([]byte(line), &entry) != nil || entry.Msg != "request" {
			continue
		}
		if entry.RequestID == "Fq3kZ2lzIAMEc1Q=" && entry.Principal == "arn:aws:iam::123456789012:role/deployer" &&
			entry.CallerARN == "arn:aws:sts::123456789012:assumed-role/deployer/alice" {
			sawRole = true
		}
	}
	if !sawRole {
		t.Errorf("no access log line for request Fq3kZ2lzIAMEc1Q= with principal role/deployer and caller_arn assumed-role/deployer/alice:\n%s", e.log)
	}
}

func (e *lambdaEnv) userTags(t *testing.T, user string) map[string]string {
	t.Helper()
	got, err := e.iam.GetUser(context.Background(), &iam.GetUserInput{UserName: &user})
	if err != nil {
		t.Fatal(err)
	}
	return tagMap(got.User.Tags)
}

func tagMap(tags []iamtypes.Tag) map[string]string {
	m := map[string]string{}
	for _, t := range tags {
		m[aws.ToString(t.Key)] = aws.ToString(t.Value)
	}
	return m
}

// syncBuffer is awstest.SyncBuffer: goroutines share it.
type syncBuffer = awstest.SyncBuffer
