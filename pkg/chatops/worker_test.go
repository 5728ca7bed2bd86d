package chatops_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"

	"github.com/keyvend/keyvend/pkg/approval"
	"github.com/keyvend/keyvend/pkg/awstest"
	"github.com/keyvend/keyvend/pkg/chatops"
	"github.com/keyvend/keyvend/pkg/policy"
	"github.com/keyvend/keyvend/pkg/provision"
	"github.com/keyvend/keyvend/pkg/slashcmd"
)

// posted is a message as Slack receives it at the response_url.
type posted struct {
	ResponseType string `json:"response_type"`
	Text         string `json:"text"`
	Blocks       []struct {
		Type string `json:"type"`
	} `json:"blocks"`
}

func decodePosted(t *testing.T, raw string) posted {
	t.Helper()
	var p posted
	if err := json.Unmarshal([]byte(raw), &p); err != nil {
		t.Fatalf("posted message is not JSON: %v\n%s", err, raw)
	}
	return p
}

// secretOf reads the user's secret from moto, as the credential_process
// line would.
func (e *slackEnv) secretOf(t *testing.T, user string) provision.Credential {
	t.Helper()
	out, err := e.sm.GetSecretValue(context.Background(), &secretsmanager.GetSecretValueInput{SecretId: aws.String("keyvend/users/" + user)})
	if err != nil {
		t.Fatalf("read the secret of %s: %v", user, err)
	}
	var c provision.Credential
	if err := json.Unmarshal([]byte(aws.ToString(out.SecretString)), &c); err != nil || c.SecretAccessKey == "" || c.AccessKeyID == "" {
		t.Fatalf("secret of %s: %v", user, err)
	}
	return c
}

// assertNoKey fails if msg holds the key in the user's secret.
func assertNoKey(t *testing.T, msg string, c provision.Credential) {
	t.Helper()
	if strings.Contains(msg, c.SecretAccessKey) {
		t.Errorf("the posted message holds the secret access key")
	}
	if strings.Contains(msg, c.AccessKeyID) {
		t.Errorf("the posted message holds the access key id %s", c.AccessKeyID)
	}
}

// TestSlashCommandsEndToEnd: slash command → ack → SQS → worker → the
// response_url gets the result, for provision, status, rotate, list and
// delete, through the same provisioning service as the HTTP API. No
// message ever holds the key.
func TestSlashCommandsEndToEnd(t *testing.T) {
	e := newSlackEnv(t)
	e.runWorker(t)
	user := awstest.Name("site-deployer")

	rep := e.send(t, signedRequest(e.cmd(`provision `+user+` site.example.com:read-write "blog deploys" --expires 720h`).body()))
	if !strings.Contains(rep.Text, "Working on it") {
		t.Fatalf("ack %s", rep.raw)
	}
	raw := e.slack.waitFor(t, 1)[0]
	msg := decodePosted(t, raw)
	cred := e.secretOf(t, user)
	secretName := "keyvend/users/" + user
	for _, want := range []string{user, secretName, "credential_process = aws secretsmanager get-secret-value --secret-id arn:aws:secretsmanager:", "[profile " + user + "]", "site.example.com", "read-write"} {
		if !strings.Contains(raw, want) {
			t.Errorf("provision message lacks %q:\n%s", want, raw)
		}
	}
	if msg.ResponseType != "ephemeral" || len(msg.Blocks) < 3 || !strings.Contains(msg.Text, "Provisioned") {
		t.Errorf("provision message %+v", msg)
	}
	assertNoKey(t, raw, cred)

	// The user is real, tagged with the Slack requester, with the expiry.
	got, err := e.iam.GetUser(context.Background(), &iam.GetUserInput{UserName: aws.String(user)})
	if err != nil {
		t.Fatal(err)
	}
	tags := map[string]string{}
	for _, tg := range got.User.Tags {
		tags[aws.ToString(tg.Key)] = aws.ToString(tg.Value)
	}
	if tags[provision.TagRequester] != "slack:"+team+"/"+alice || tags[provision.TagReason] != "blog deploys" || tags[provision.TagExpiresAt] == "" {
		t.Errorf("user tags %v", tags)
	}

	// status, rotate, list, delete: one message each.
	steps := []struct {
		text string
		want []string
	}{
		{`status ` + user, []string{user, "complete", secretName, "slack:" + team + "/" + alice}},
		{`rotate ` + user, []string{"New access key", secretName, "previous key keeps working until", "credential_process"}},
		{`list site.example.com`, []string{user, "site.example.com read-write"}},
		{`delete ` + user, []string{"Deprovisioned", user}},
	}
	for i, s := range steps {
		rotatedBefore := cred
		if rep := e.send(t, signedRequest(e.cmd(s.text).body())); !strings.Contains(rep.Text, "Working on it") {
			t.Fatalf("%s: ack %s", s.text, rep.raw)
		}
		raw := e.slack.waitFor(t, 2+i)[1+i]
		for _, w := range s.want {
			if !strings.Contains(raw, w) {
				t.Errorf("%s: message lacks %q:\n%s", s.text, w, raw)
			}
		}
		assertNoKey(t, raw, rotatedBefore)
		if strings.HasPrefix(s.text, "rotate") {
			cred = e.secretOf(t, user)
			if cred.AccessKeyID == rotatedBefore.AccessKeyID {
				t.Error("rotate did not change the key in the secret")
			}
			assertNoKey(t, raw, cred)
		}
	}
	if _, err := e.iam.GetUser(context.Background(), &iam.GetUserInput{UserName: aws.String(user)}); !isCode(err, "NoSuchEntity") {
		t.Errorf("after delete: %v", err)
	}
	e.waitDepth(t, e.queueURL, 0) // every job done and deleted
	if n := e.depth(t, e.dlqURL); n != 0 {
		t.Errorf("%d jobs in the dead-letter queue", n)
	}
	// The worker ran the service's code: its audit lines carry the job ids.
	if lines := e.auditLines(t, "create"); len(lines) != 1 || lines[0]["principal"] != "slack:"+team+"/"+alice || lines[0]["result"] != "ok" {
		t.Errorf("create audit lines %v", lines)
	}
}

// TestFailedJobIsRetriedThenDeadLettered: a job that keeps failing (an
// injected IAM fault) is delivered again by SQS after its visibility
// timeout; nothing is posted until the last attempt, which tells the user;
// then SQS moves the job to the dead-letter queue.
func TestFailedJobIsRetriedThenDeadLettered(t *testing.T) {
	e := newSlackEnv(t)
	e.faults.FailNth("CreateUser", 0)
	e.runWorker(t)
	user := awstest.Name("doomed")
	if rep := e.send(t, signedRequest(e.cmd(`provision `+user+` site.example.com:rw "will fail"`).body())); !strings.Contains(rep.Text, "Working on it") {
		t.Fatalf("ack %s", rep.raw)
	}
	deadline := time.Now().Add(30 * time.Second)
	for e.depth(t, e.dlqURL) == 0 && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	if n := e.depth(t, e.dlqURL); n != 1 {
		t.Fatalf("%d jobs in the dead-letter queue, want 1", n)
	}
	if n := e.depth(t, e.queueURL); n != 0 {
		t.Errorf("%d jobs left on the queue", n)
	}
	if n := e.faults.Fired(); n != 3 {
		t.Errorf("CreateUser failed %d times, want 3 (one per delivery)", n)
	}
	msgs := e.slack.messages()
	if len(msgs) != 1 {
		t.Fatalf("%d messages posted, want 1 (the last attempt's): %v", len(msgs), msgs)
	}
	m := decodePosted(t, msgs[0])
	if !strings.Contains(m.Text, "could not finish") || !strings.Contains(m.Text, "after 3 attempts") || !strings.Contains(m.Text, awstest.InjectedCode) || m.ResponseType != "ephemeral" {
		t.Errorf("failure message %s", msgs[0])
	}
	if _, err := e.iam.GetUser(context.Background(), &iam.GetUserInput{UserName: aws.String(user)}); !isCode(err, "NoSuchEntity") {
		t.Errorf("the failed job left a user: %v", err)
	}
	var warn, final int
	for _, line := range strings.Split(e.logs.String(), "\n") {
		switch {
		case strings.Contains(line, `"msg":"chatops job failed; SQS delivers it again"`):
			warn++
		case strings.Contains(line, `"msg":"chatops job"`) && strings.Contains(line, `"next":"dead-letter queue"`):
			final++
		}
	}
	if warn != 2 || final != 1 {
		t.Errorf("log: %d retry warnings (want 2), %d dead-letter errors (want 1)", warn, final)
	}
}

// TestWorkerBatch: the worker reports exactly the failed messages of a
// batch (partial batch response); a refusal by the service is an answer,
// not a failure; an unreadable job is a failure.
func TestWorkerBatch(t *testing.T) {
	e := newSlackEnv(t)
	taken := awstest.Name("taken")
	// taken exists with read-only; asking for read-write is a conflict.
	if _, err := e.svc.Create(context.Background(), provision.CreateInput{Principal: chatops.SlackPrincipal(team, alice, "alice", deploys), RequestID: "setup",
		Request: mustParse(t, `provision `+taken+` site.example.com:ro "setup"`).CreateRequest()}); err != nil {
		t.Fatal(err)
	}
	job := func(id, text string) string {
		body, err := chatops.EncodeJob(chatops.Job{ID: id, Command: mustParse(t, text), Slash: "/keyvend", TeamID: team, UserID: alice, ChannelID: deploys,
			ResponseURL: e.slack.url("/r/" + id), QueuedAt: time.Now()})
		if err != nil {
			t.Fatal(err)
		}
		return body
	}
	ev := events.SQSEvent{Records: []events.SQSMessage{
		{MessageId: "m-conflict", Body: job("j-conflict", `provision `+taken+` site.example.com:rw "other grants"`), Attributes: map[string]string{"ApproximateReceiveCount": "1"}},
		{MessageId: "m-garbage", Body: `{"id":"x","command":{"op":"launch"}}`, Attributes: map[string]string{"ApproximateReceiveCount": "1"}},
		{MessageId: "m-unknown-field", Body: `{"id":"x","evil":true}`},
	}}
	resp, err := e.worker.Handle(context.Background(), ev)
	if err != nil {
		t.Fatal(err)
	}
	failed := map[string]bool{}
	for _, f := range resp.BatchItemFailures {
		failed[f.ItemIdentifier] = true
	}
	if failed["m-conflict"] || !failed["m-garbage"] || !failed["m-unknown-field"] || len(failed) != 2 {
		t.Errorf("batch failures %v", resp.BatchItemFailures)
	}
	msgs := e.slack.waitFor(t, 1)
	if len(msgs) != 1 || !strings.Contains(msgs[0], "Conflict") {
		t.Errorf("messages %v", msgs)
	}

	// A transient failure on a first attempt: reported failed, nothing posted.
	e.faults.Clear()
	e.faults.FailNthWith("GetUser", 1, "ServiceUnavailable")
	resp, err = e.worker.Handle(context.Background(), events.SQSEvent{Records: []events.SQSMessage{
		{MessageId: "m-status", Body: job("j-status", `status `+taken), Attributes: map[string]string{"ApproximateReceiveCount": "1"}},
	}})
	if err != nil || len(resp.BatchItemFailures) != 1 || resp.BatchItemFailures[0].ItemIdentifier != "m-status" {
		t.Errorf("transient failure: %+v %v", resp, err)
	}
	if n := len(e.slack.messages()); n != 1 {
		t.Errorf("%d messages after a transient failure, want still 1", n)
	}
	// Delivered again: done, posted.
	resp, err = e.worker.Handle(context.Background(), events.SQSEvent{Records: []events.SQSMessage{
		{MessageId: "m-status", Body: job("j-status", `status `+taken), Attributes: map[string]string{"ApproximateReceiveCount": "2"}},
	}})
	if err != nil || len(resp.BatchItemFailures) != 0 {
		t.Errorf("second delivery: %+v %v", resp, err)
	}
	if msgs := e.slack.waitFor(t, 2); !strings.Contains(msgs[1], taken) || !strings.Contains(msgs[1], "complete") {
		t.Errorf("status message %s", msgs[1])
	}
}

// TestWorkerPostsOnlyToAllowedHosts: a job whose response_url is not an
// allowed host is run (the queue is keyvend's) but nothing is posted there.
func TestWorkerPostsOnlyToAllowedHosts(t *testing.T) {
	e := newSlackEnv(t)
	other := newReceiver(t)
	// other listens on 127.0.0.1 too; name it by "localhost", not allowed.
	foreign := strings.Replace(other.url("/r/1"), "127.0.0.1", "localhost", 1)
	body, err := chatops.EncodeJob(chatops.Job{ID: "j-foreign", Command: slashcmd.Command{Op: slashcmd.OpList}, TeamID: team, UserID: alice, ResponseURL: foreign})
	if err != nil {
		t.Fatal(err)
	}
	resp, err := e.worker.Handle(context.Background(), events.SQSEvent{Records: []events.SQSMessage{{MessageId: "m1", Body: body}}})
	if err != nil || len(resp.BatchItemFailures) != 0 {
		t.Errorf("%+v %v", resp, err)
	}
	if n := len(other.messages()); n != 0 {
		t.Errorf("posted %d messages to a host that is not allowed", n)
	}
	if !strings.Contains(e.logs.String(), "chatops result not posted to Slack") || strings.Contains(e.logs.String(), "/r/1") {
		t.Errorf("log does not say the result was not posted, or holds the url path:\n%s", e.logs.String())
	}
}

// TestResponderRetriesAndNeverFollowsRedirects.
func TestResponder(t *testing.T) {
	rc := newReceiver(t)
	r := &chatops.Responder{Hosts: chatops.ResponseHosts{"127.0.0.1"}, Backoff: time.Millisecond}
	msg := chatops.AckMessage(slashcmd.Command{Op: slashcmd.OpList})

	rc.mu.Lock()
	rc.status = http.StatusBadGateway
	rc.mu.Unlock()
	err := r.Post(context.Background(), rc.url("/commands/secret-path"), msg)
	if err == nil || strings.Contains(err.Error(), "secret-path") {
		t.Errorf("post to a failing receiver: %v (the url path must not appear)", err)
	}
	rc.mu.Lock()
	rc.status = 0
	rc.mu.Unlock()
	if err := r.Post(context.Background(), rc.url("/ok"), msg); err != nil || len(rc.messages()) != 1 {
		t.Errorf("post: %v, %d messages", err, len(rc.messages()))
	}

	// A redirect is not followed.
	redirector := newReceiver(t)
	redirector.srv.Config.Handler = http.RedirectHandler(rc.url("/redirected"), http.StatusTemporaryRedirect)
	if err := r.Post(context.Background(), redirector.url("/x"), msg); err == nil {
		t.Error("a redirect was taken for success")
	}
	if n := len(rc.messages()); n != 1 {
		t.Errorf("the redirect was followed: %d messages", n)
	}
}

func TestResponseHosts(t *testing.T) {
	prod := chatops.ParseResponseHosts("")
	local := chatops.ParseResponseHosts(" hooks.slack.com , 127.0.0.1,LOCALHOST")
	cases := []struct {
		hosts chatops.ResponseHosts
		url   string
		ok    bool
	}{
		{prod, "https://hooks.slack.com/commands/T1/2/abc", true},
		{prod, "https://HOOKS.slack.com/commands/T1/2/abc", true},
		{prod, "https://hooks.slack.com:443/commands/x", true},
		{prod, "https://hooks.slack.com:8443/commands/x", false},
		{prod, "http://hooks.slack.com/commands/x", false},
		{prod, "https://hooks.slack.com.evil.example/commands/x", false},
		{prod, "https://evil.example/hooks.slack.com", false},
		{prod, "https://user@hooks.slack.com/x", false},
		{prod, "http://127.0.0.1:9999/x", false},
		{prod, "hooks.slack.com/commands", false},
		{prod, "", false},
		{local, "http://127.0.0.1:9999/x", true},
		{local, "http://localhost:9999/x", true},
		{local, "https://hooks.slack.com/x", true},
		{local, "http://[::1]:9999/x", false},
		{local, "ftp://127.0.0.1/x", false},
	}
	for _, c := range cases {
		if err := c.hosts.Check(c.url); (err == nil) != c.ok {
			t.Errorf("%v.Check(%q) = %v, want ok=%v", c.hosts, c.url, err, c.ok)
		}
	}
}

func mustParse(t *testing.T, text string) slashcmd.Command {
	t.Helper()
	c, err := slashcmd.Parse(text)
	if err != nil {
		t.Fatalf("Parse(%q): %v", text, err)
	}
	return c
}

// TestWorkerPendingApproval: a provision that waits for approval is an
// answer, not a failure: the user is told the request id once, the job is
// done (not retried, not dead-lettered), and nothing is provisioned.
func TestWorkerPendingApproval(t *testing.T) {
	e := newSlackEnv(t)
	e.runWorker(t)
	user := awstest.Name("needs-approval")
	if rep := e.send(t, signedRequest(e.cmd(`provision `+user+` approvals.example.com:full "bulk cleanup"`).body())); !strings.Contains(rep.Text, "Working on it") {
		t.Fatalf("ack %s", rep.raw)
	}
	raw := e.slack.waitFor(t, 1)[0]
	if !strings.Contains(raw, "Pending approval") || !regexp.MustCompile(`apr-[0-9a-f]{20}`).MatchString(raw) || !strings.Contains(raw, "slack:T0KEYVEND/U0BOB") {
		t.Errorf("message %s: want the pending request and its approver", raw)
	}
	e.waitDepth(t, e.queueURL, 0)
	if n := e.depth(t, e.dlqURL); n != 0 {
		t.Errorf("%d jobs in the dead-letter queue", n)
	}
	if _, err := e.iam.GetUser(context.Background(), &iam.GetUserInput{UserName: aws.String(user)}); !isCode(err, "NoSuchEntity") {
		t.Errorf("a pending request provisioned %s: %v", user, err)
	}
	if lines := e.auditLines(t, "create"); len(lines) != 1 || lines[0]["result"] != "pending" {
		t.Errorf("create audit lines %v, want one, pending", lines)
	}
}

// pendingRequest has alice ask, through the service as the Slack endpoint
// would, for what needs U0BOB's approval; it returns the request id.
func (e *slackEnv) pendingRequest(t *testing.T, user string) string {
	t.Helper()
	_, err := e.svc.Create(context.Background(), provision.CreateInput{
		Principal: chatops.SlackPrincipal(team, alice, "alice", deploys), RequestID: "req-" + user,
		Request: provision.CreateRequest{User: user, Grants: []policy.Grant{{Bucket: "approvals.example.com", Access: policy.Full}}, Reason: "bulk cleanup"},
	})
	var pending *provision.Pending
	if !errors.As(err, &pending) {
		t.Fatalf("create %s: %v, want pending", user, err)
	}
	return pending.Request.ID
}

func (e *slackEnv) requestStatus(t *testing.T, id string) approval.Status {
	t.Helper()
	r, err := e.svc.GetRequest(context.Background(), chatops.SlackPrincipal(team, "U0BOB", "bob", deploys), id)
	if err != nil {
		t.Fatalf("get %s: %v", id, err)
	}
	return r.Status
}

// TestSlashApprovals: /keyvend pending, approve and deny run through the
// service's Decide as the Slack user: the requester may not decide its own
// request, a user who is not an approver is told it does not exist, and
// neither changes it; the approver's approval provisions it; a denial
// closes another.
func TestSlashApprovals(t *testing.T) {
	e := newSlackEnv(t)
	e.runWorker(t)
	user, other := awstest.Name("approved"), awstest.Name("denied")
	id, id2 := e.pendingRequest(t, user), e.pendingRequest(t, other)
	as := func(uid, name, text string) command {
		c := e.cmd(text)
		c.user, c.userName = uid, name
		return c
	}
	steps := []struct {
		c    command
		want []string
	}{
		{as(alice, "alice", "approve "+id), []string{"Not allowed", "may not decide"}},
		{as("U0CAROL", "carol", "approve "+id), []string{"no approval request " + id}},
		{as("U0BOB", "bob", "pending"), []string{"Waiting for your decision", id, id2, "slack:T0KEYVEND/U0ALICE"}},
		{as(alice, "alice", "pending"), []string{"Yours, waiting for approvers", id}},
	}
	for i, s := range steps {
		if rep := e.send(t, signedRequest(s.c.body())); !strings.Contains(rep.Text, "Working on it") {
			t.Fatalf("step %d: ack %s", i, rep.raw)
		}
		raw := e.slack.waitFor(t, i+1)[i]
		for _, w := range s.want {
			if !strings.Contains(raw, w) {
				t.Errorf("step %d (%s): message %s does not say %q", i, s.c.text, raw, w)
			}
		}
	}
	if st := e.requestStatus(t, id); st != approval.Pending {
		t.Fatalf("after refused decisions the request is %s, want pending", st)
	}
	if _, err := e.iam.GetUser(context.Background(), &iam.GetUserInput{UserName: aws.String(user)}); !isCode(err, "NoSuchEntity") {
		t.Fatalf("refused decisions provisioned %s: %v", user, err)
	}

	e.send(t, signedRequest(as("U0BOB", "bob", "approve "+id).body()))
	raw := e.slack.waitFor(t, 5)[4]
	if !strings.Contains(raw, "Approved by slack:T0KEYVEND/U0BOB (@bob)") || !strings.Contains(raw, "Provisioned") {
		t.Errorf("approval message %s", raw)
	}
	if st := e.requestStatus(t, id); st != approval.Provisioned {
		t.Errorf("approved request is %s, want provisioned", st)
	}
	if _, err := e.iam.GetUser(context.Background(), &iam.GetUserInput{UserName: aws.String(user)}); err != nil {
		t.Errorf("approved request did not provision %s: %v", user, err)
	}
	assertNoKey(t, raw, e.secretOf(t, user))

	e.send(t, signedRequest(as("U0BOB", "bob", `deny `+id2+` "use read-write"`).body()))
	raw = e.slack.waitFor(t, 6)[5]
	if !strings.Contains(raw, "Denied by slack:T0KEYVEND/U0BOB") || !strings.Contains(raw, "use read-write") {
		t.Errorf("denial message %s", raw)
	}
	if st := e.requestStatus(t, id2); st != approval.Denied {
		t.Errorf("denied request is %s", st)
	}
	if _, err := e.iam.GetUser(context.Background(), &iam.GetUserInput{UserName: aws.String(other)}); !isCode(err, "NoSuchEntity") {
		t.Errorf("a denied request provisioned %s: %v", other, err)
	}
}
