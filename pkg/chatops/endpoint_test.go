package chatops_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	"github.com/aws/smithy-go"

	"github.com/keyvend/keyvend/pkg/awstest"
	"github.com/keyvend/keyvend/pkg/chatops"
	"github.com/keyvend/keyvend/pkg/httpapi"
	"github.com/keyvend/keyvend/pkg/policy"
	"github.com/keyvend/keyvend/pkg/slacksig"
	"github.com/keyvend/keyvend/pkg/slashcmd"
)

// TestRejectsRequestsSlackDidNotSign: forged, stale, unsigned, tampered
// and replayed requests get 401 with one generic body, make no AWS call,
// queue nothing (the real SQS queue stays empty) and log one audit line
// each, saying why.
func TestRejectsRequestsSlackDidNotSign(t *testing.T) {
	e := newSlackEnv(t)
	user := awstest.Name("unsigned")
	body := e.cmd("provision " + user + " site.example.com:rw \"blog deploys\"").body()
	now := time.Now().Unix()
	nowS := strconv.FormatInt(now, 10)
	stale := time.Now().Add(-6 * time.Minute).Unix()
	future := time.Now().Add(6 * time.Minute).Unix()

	// A valid help request, accepted once: its replay must be refused.
	helpBody := e.cmd("help").body()
	helpSig := sign(testSecret, now, helpBody)
	if rep := e.send(t, request(helpBody, nowS, helpSig)); rep.Status != http.StatusOK || !strings.Contains(rep.Text, "provision") {
		t.Fatalf("the original help request: %d %s", rep.Status, rep.raw)
	}

	cases := []struct {
		name   string
		req    *http.Request
		reason string
	}{
		{"forged: another secret", request(body, nowS, sign("not-the-signing-secret", now, body)), slacksig.RejectInvalid},
		{"stale: 6 minutes old", request(body, strconv.FormatInt(stale, 10), sign(testSecret, stale, body)), slacksig.RejectStale},
		{"stale: 6 minutes ahead", request(body, strconv.FormatInt(future, 10), sign(testSecret, future, body)), slacksig.RejectStale},
		{"no signature header", request(body, nowS, ""), slacksig.RejectMissing},
		{"no timestamp header", request(body, "", sign(testSecret, now, body)), slacksig.RejectMissing},
		{"no headers at all", request(body, "", ""), slacksig.RejectMissing},
		{"body tampered", request(strings.Replace(body, "site.example.com%3Arw", "site.example.com%3Afull", 1), nowS, sign(testSecret, now, body)), slacksig.RejectInvalid},
		{"timestamp tampered", request(body, strconv.FormatInt(now-1, 10), sign(testSecret, now, body)), slacksig.RejectInvalid},
		{"signature not hex", request(body, nowS, "v0=not-hex"), slacksig.RejectInvalid},
		{"signature of another scheme", request(body, nowS, strings.Replace(sign(testSecret, now, body), "v0=", "v1=", 1)), slacksig.RejectInvalid},
		{"replayed", request(helpBody, nowS, helpSig), slacksig.RejectReplayed},
		{"replayed with the signature in capitals", request(helpBody, nowS, "v0="+strings.ToUpper(strings.TrimPrefix(helpSig, "v0="))), slacksig.RejectReplayed},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e.logs.Reset()
			e.calls.Reset()
			rep := e.send(t, c.req)
			if rep.Status != http.StatusUnauthorized || strings.TrimSpace(rep.raw) != `{"error":"unauthorized"}` {
				t.Errorf("answer %d %s, want 401 with the generic body", rep.Status, rep.raw)
			}
			lines := e.auditLines(t, "chatops.slack")
			if len(lines) != 1 {
				t.Fatalf("%d audit lines, want 1:\n%s", len(lines), e.logs.String())
			}
			if lines[0]["result"] != "unauthenticated" || lines[0]["reason"] != c.reason || lines[0]["status"] != float64(401) {
				t.Errorf("audit line %v, want result unauthenticated, reason %s", lines[0], c.reason)
			}
			if strings.Contains(e.logs.String(), testSecret) {
				t.Error("the signing secret is in the log")
			}
			if calls := e.calls.Calls(); len(calls) != 0 {
				t.Errorf("AWS calls for an unsigned request: %v", calls)
			}
		})
	}
	if n := e.depth(t, e.queueURL); n != 0 {
		t.Errorf("%d messages queued by rejected requests", n)
	}
	if _, err := e.iam.GetUser(context.Background(), &iam.GetUserInput{UserName: aws.String(user)}); !isCode(err, "NoSuchEntity") {
		t.Errorf("GetUser %s after rejected requests: %v, want NoSuchEntity", user, err)
	}
}

// TestQueuesAnAllowedCommand: a signed, allowed provision is answered at
// once with an ephemeral ack and becomes one job on the queue; nothing is
// created yet.
func TestQueuesAnAllowedCommand(t *testing.T) {
	e := newSlackEnv(t)
	user := awstest.Name("queued")
	c := e.cmd(`provision ` + user + ` site.example.com:read-write "blog deploys" --expires 720h`)
	rep := e.send(t, signedRequest(c.body()))
	if rep.Status != http.StatusOK || rep.ResponseType != "ephemeral" || !strings.Contains(rep.Text, "Working on it") || !strings.Contains(rep.Text, user) {
		t.Fatalf("ack %d %s", rep.Status, rep.raw)
	}
	if w := e.stateWrites(); len(w) != 0 {
		t.Errorf("the endpoint changed IAM or Secrets Manager: %v", w)
	}
	jobs := e.receiveJobs(t)
	if len(jobs) != 1 {
		t.Fatalf("%d jobs queued, want 1", len(jobs))
	}
	j := jobs[0]
	want := slashcmd.Command{Op: slashcmd.OpProvision, User: user, Grants: []policy.Grant{{Bucket: "site.example.com", Access: policy.ReadWrite}}, Reason: "blog deploys", ExpiresIn: "720h"}
	if j.TeamID != team || j.UserID != alice || j.ChannelID != deploys || j.UserName != "alice" || j.ResponseURL != c.responseURL || j.Slash != "/keyvend" || j.ID == "" {
		t.Errorf("job %+v", j)
	}
	if got, _ := json.Marshal(j.Command); string(got) != mustJSON(want) {
		t.Errorf("job command %s, want %s", got, mustJSON(want))
	}
	if p := j.Principal(); p.ID != "slack:"+team+"/"+alice || p.Channel != deploys {
		t.Errorf("principal %+v", p)
	}
	lines := e.auditLines(t, "chatops.slack")
	if len(lines) != 1 || lines[0]["result"] != "queued" || lines[0]["request_id"] != j.ID || lines[0]["principal"] != "slack:"+team+"/"+alice {
		t.Errorf("audit lines %v", lines)
	}
	if _, err := e.iam.GetUser(context.Background(), &iam.GetUserInput{UserName: aws.String(user)}); !isCode(err, "NoSuchEntity") {
		t.Errorf("the endpoint created the user: %v", err)
	}
}

// TestRefusesWhatTheRulesDoNotAllow: a Slack user the rules do not allow
// (or not in this channel, or on a user it may not touch) gets an
// ephemeral denial; nothing is created and nothing is queued.
func TestRefusesWhatTheRulesDoNotAllow(t *testing.T) {
	e := newSlackEnv(t)
	existing := awstest.Name("theirs")
	mine := e.cmd(`provision ` + existing + ` site.example.com:rw "alice deploys"`)
	if rep := e.send(t, signedRequest(mine.body())); !strings.Contains(rep.Text, "Working on it") {
		t.Fatalf("setup: %s", rep.raw)
	}
	stopWorker := e.runWorker(t)
	if msgs := e.slack.waitFor(t, 1); !strings.Contains(msgs[0], "Provisioned") {
		t.Fatalf("setup: %s", msgs[0])
	}
	e.waitDepth(t, e.queueURL, 0)
	stopWorker() // from here on, anything queued stays on the queue

	mallory := func(c command) command { c.user, c.userName = "U0MALLORY", "mallory"; return c }
	otherTeam := func(c command) command { c.team = "T0OTHER"; return c }
	random := func(c command) command { c.channel = "C0RANDOM"; return c }
	fresh := awstest.Name("denied")
	cases := []struct {
		name   string
		cmd    command
		want   string
		result string
	}{
		{"other team", otherTeam(e.cmd(`provision ` + fresh + ` site.example.com:rw`)), "Not allowed", "forbidden"},
		{"read-write outside the deploys channel", random(e.cmd(`provision ` + fresh + ` site.example.com:rw`)), "Not allowed", "forbidden"},
		{"full access nobody may vend", e.cmd(`provision ` + fresh + ` site.example.com:full`), "Not allowed", "forbidden"},
		{"a bucket outside the rules", e.cmd(`provision ` + fresh + ` prod.example.org:ro`), "Not allowed", "forbidden"},
		{"invalid values", e.cmd(`provision ` + fresh + ` Not_A_Bucket:ro --expires soon`), "not valid", "invalid"},
		// Who may not see a user (no rule on its grants here) is told it
		// does not exist; who may see it but not act is not allowed.
		// Neither answer names the user's bucket or access.
		{"rotate in a channel without a rotate rule", mallory(random(e.cmd(`rotate ` + existing))), "Not found", "not-found"},
		{"delete of another user's user", mallory(e.cmd(`delete ` + existing)), "Not allowed", "forbidden"},
		{"status of another user's user outside the list channel", mallory(random(e.cmd(`status ` + existing))), "Not found", "not-found"},
		{"status of no such user", e.cmd(`status ` + awstest.Name("nobody")), "Not found", "not-found"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e.logs.Reset()
			e.calls.Reset()
			rep := e.send(t, signedRequest(c.cmd.body()))
			if rep.Status != http.StatusOK || rep.ResponseType != "ephemeral" || !strings.Contains(rep.Text, c.want) {
				t.Errorf("answer %d %s, want an ephemeral %q", rep.Status, rep.raw, c.want)
			}
			if strings.Contains(c.cmd.text, existing) && !strings.HasPrefix(c.cmd.text, "provision") && (strings.Contains(rep.Text, "site.example.com") || strings.Contains(rep.Text, "read-write")) {
				t.Errorf("the refusal names %s's grant: %s", existing, rep.Text)
			}
			if w := e.calls.Writes(); len(w) != 0 {
				t.Errorf("AWS writes (SQS included): %v", w)
			}
			if lines := e.auditLines(t, "chatops.slack"); len(lines) != 1 || lines[0]["result"] != c.result {
				t.Errorf("audit %v, want result %s", lines, c.result)
			}
		})
	}
	if n := e.depth(t, e.queueURL); n != 0 {
		t.Errorf("%d jobs queued by refused commands", n)
	}
	if got := e.slack.messages(); len(got) != 1 {
		t.Errorf("%d messages posted, want only the setup's", len(got))
	}
	if _, err := e.iam.GetUser(context.Background(), &iam.GetUserInput{UserName: aws.String(fresh)}); !isCode(err, "NoSuchEntity") {
		t.Errorf("a refused provision created %s: %v", fresh, err)
	}
}

// TestUsageAnsweredAtOnce: help and text that is not a command are
// answered at once with the usage, ephemeral, and nothing is queued.
func TestUsageAnsweredAtOnce(t *testing.T) {
	e := newSlackEnv(t)
	for text, want := range map[string]string{
		"":                             "provision &lt;user&gt;",
		"help":                         "provision &lt;user&gt;",
		"frobnicate the widgets":       `unknown command`,
		"provision site-deployer":      "at least one bucket",
		`provision u a.example.com "x`: "quote is not closed",
		"rotate":                       "takes one user name",
	} {
		rep := e.send(t, signedRequest(e.cmd(text).body()))
		if rep.Status != http.StatusOK || rep.ResponseType != "ephemeral" || !strings.Contains(rep.Text, want) || !strings.Contains(rep.Text, "/keyvend status") {
			t.Errorf("%q: %d %s, want the usage and %q", text, rep.Status, rep.raw, want)
		}
	}
	if n := e.depth(t, e.queueURL); n != 0 {
		t.Errorf("%d jobs queued", n)
	}
}

// TestRefusesForeignResponseURL: keyvend only queues jobs whose
// response_url it may post to.
func TestRefusesForeignResponseURL(t *testing.T) {
	e := newSlackEnv(t)
	for _, u := range []string{"https://evil.example.com/hooks/1", "http://hooks.slack.com/commands/1", "ftp://127.0.0.1/x", "/relative", ""} {
		c := e.cmd(`list`)
		c.responseURL = u
		rep := e.send(t, signedRequest(c.body()))
		if rep.Status != http.StatusOK || !strings.Contains(rep.Text, "response_url") {
			t.Errorf("%q: %d %s", u, rep.Status, rep.raw)
		}
	}
	if n := e.depth(t, e.queueURL); n != 0 {
		t.Errorf("%d jobs queued", n)
	}
}

// TestBase64BodyThroughTheLambdaAdapter: API Gateway hands the function a
// base64-encoded body; the adapter decodes it before the signature is
// checked over the raw bytes, and the job carries API Gateway's request id.
func TestBase64BodyThroughTheLambdaAdapter(t *testing.T) {
	e := newSlackEnv(t)
	handler := httpapi.LambdaHandler(e.endpoint)
	body := e.cmd(`list site.example.com`).body()
	ts := time.Now().Unix()
	event := func(sig string, encoded string) events.APIGatewayV2HTTPRequest {
		return events.APIGatewayV2HTTPRequest{
			Version: "2.0", RouteKey: "POST " + chatops.Path, RawPath: chatops.Path,
			Headers: map[string]string{ // API Gateway lower-cases header names
				"content-type":              "application/x-www-form-urlencoded",
				"x-slack-request-timestamp": strconv.FormatInt(ts, 10),
				"x-slack-signature":         sig,
				"user-agent":                "Slackbot 1.0 (+https://api.slack.com/robots)",
			},
			Body: encoded, IsBase64Encoded: true,
			RequestContext: events.APIGatewayV2HTTPRequestContext{
				RequestID: "apigw-" + awstest.Name("req"), Stage: "$default", RouteKey: "POST " + chatops.Path,
				HTTP: events.APIGatewayV2HTTPRequestContextHTTPDescription{Method: http.MethodPost, Path: chatops.Path, SourceIP: "203.0.113.7"},
			},
		}
	}
	encoded := base64.StdEncoding.EncodeToString([]byte(body))

	// Signed over the base64 text instead of the body: not Slack's signature.
	resp, err := handler(context.Background(), event(sign(testSecret, ts, encoded), encoded))
	if err != nil || resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("signature over the encoded text: %v %d %s", err, resp.StatusCode, resp.Body)
	}

	ev := event(sign(testSecret, ts, body), encoded)
	resp, err = handler(context.Background(), ev)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("base64 body: %v %d %s", err, resp.StatusCode, resp.Body)
	}
	var ack struct{ Text string }
	if err := json.Unmarshal([]byte(resp.Body), &ack); err != nil || !strings.Contains(ack.Text, "Working on it") {
		t.Fatalf("ack %s (%v)", resp.Body, err)
	}
	jobs := e.receiveJobs(t)
	if len(jobs) != 1 || jobs[0].ID != ev.RequestContext.RequestID || jobs[0].Command.Op != slashcmd.OpList || jobs[0].Command.Bucket != "site.example.com" {
		t.Fatalf("jobs %+v", jobs)
	}
}

// TestPrecheckFailureQueuesNothing: when AWS fails the precheck, the user
// hears so at once and nothing is queued.
func TestPrecheckFailureQueuesNothing(t *testing.T) {
	e := newSlackEnv(t)
	e.faults.FailNthWith("GetUser", 0, "ServiceUnavailable")
	rep := e.send(t, signedRequest(e.cmd(`rotate `+awstest.Name("slow")).body()))
	if rep.Status != http.StatusOK || !strings.Contains(rep.Text, "could not finish") || !strings.Contains(rep.Text, "ServiceUnavailable") {
		t.Errorf("answer %d %s", rep.Status, rep.raw)
	}
	if lines := e.auditLines(t, "chatops.slack"); len(lines) != 1 || lines[0]["result"] != "error" {
		t.Errorf("audit %v", lines)
	}
	if n := e.depth(t, e.queueURL); n != 0 {
		t.Errorf("%d jobs queued", n)
	}
}

func TestEndpointRefusesOtherMethodsAndHugeBodies(t *testing.T) {
	e := newSlackEnv(t)
	r := signedRequest("team_id=T1")
	r.Method = http.MethodGet
	if rep := e.send(t, r); rep.Status != http.StatusMethodNotAllowed {
		t.Errorf("GET: %d", rep.Status)
	}
	big := strings.Repeat("a", 70<<10)
	if rep := e.send(t, signedRequest(big)); rep.Status != http.StatusRequestEntityTooLarge {
		t.Errorf("70 KiB body: %d", rep.Status)
	}
	// Slack checking the URL's certificate: signed, answered 200, nothing else.
	e.logs.Reset()
	if rep := e.send(t, signedRequest("ssl_check=1&token=legacy-token")); rep.Status != http.StatusOK {
		t.Errorf("ssl_check: %d %s", rep.Status, rep.raw)
	}
	if lines := e.auditLines(t, "chatops.slack"); len(lines) != 1 || lines[0]["result"] != "ssl-check" {
		t.Errorf("ssl_check audit %v", lines)
	}
	if rep := e.send(t, request("ssl_check=1&token=legacy-token", "", "")); rep.Status != http.StatusUnauthorized {
		t.Errorf("unsigned ssl_check: %d", rep.Status)
	}
	// Signed, but not a slash command form.
	if rep := e.send(t, signedRequest("team_id=T1&user_id=not%2Fan%2Fid&text=list")); rep.Status != http.StatusBadRequest {
		t.Errorf("bad ids: %d %s", rep.Status, rep.raw)
	}
	if n := e.depth(t, e.queueURL); n != 0 {
		t.Errorf("%d jobs queued", n)
	}
}

func isCode(err error, code string) bool {
	var ae smithy.APIError
	return errors.As(err, &ae) && ae.ErrorCode() == code
}

func mustJSON(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

// TestUnreadableSigningSecret: while the signing secret cannot be read
// the endpoint answers 500 (keyvend's problem, not a forged request) and
// nothing more; once it can, the same endpoint answers. (pkg/slacksig
// tests the secret's caching and forms.)
func TestUnreadableSigningSecret(t *testing.T) {
	e := newSlackEnv(t)
	out, err := e.sm.CreateSecret(context.Background(), &secretsmanager.CreateSecretInput{Name: aws.String(awstest.Name("keyvend/slack-signing")), SecretString: aws.String(testSecret)})
	if err != nil {
		t.Fatal(err)
	}
	faults := &awstest.Faults{}
	fnCfg := awstest.Config(t, awstest.Shared(t).URL)
	faults.Attach(&fnCfg)
	faults.FailNthWith("GetSecretValue", 1, "InternalServiceError")
	e.endpoint.Verifier.Secret = &slacksig.ManagedSecret{ARN: aws.ToString(out.ARN), Client: secretsmanager.NewFromConfig(fnCfg)}
	if rep := e.send(t, signedRequest(e.cmd("help").body())); rep.Status != http.StatusInternalServerError || strings.Contains(rep.raw, "provision") {
		t.Errorf("with the secret unreadable: %d %s, want 500", rep.Status, rep.raw)
	}
	if lines := e.auditLines(t, "chatops.slack"); len(lines) != 1 || lines[0]["result"] != "error" || lines[0]["reason"] != "signing secret" {
		t.Errorf("audit %v, want one error line for the signing secret", lines)
	}
	if rep := e.send(t, signedRequest(e.cmd("help").body())); rep.Status != http.StatusOK || !strings.Contains(rep.Text, "provision") {
		t.Errorf("with the secret readable again: %d %s", rep.Status, rep.raw)
	}
}
