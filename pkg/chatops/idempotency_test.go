package chatops_test

import (
	"context"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	"github.com/slack-go/slack"

	"github.com/keyvend/keyvend/pkg/awstest"
	"github.com/keyvend/keyvend/pkg/chatops"
	"github.com/keyvend/keyvend/pkg/idempotency"
	"github.com/keyvend/keyvend/pkg/provision"
	"github.com/keyvend/keyvend/pkg/state"
)

// withIdempotency gives the env's worker idempotency keys in a fresh state
// table on the shared moto, and returns the store.
func (e *slackEnv) withIdempotency(t *testing.T) *idempotency.Store {
	t.Helper()
	db := dynamodb.NewFromConfig(awstest.Config(t, awstest.Shared(t).URL))
	table := awstest.Name("idem")
	if err := state.CreateTable(context.Background(), db, table); err != nil {
		t.Fatal(err)
	}
	s, err := idempotency.New(db, table)
	if err != nil {
		t.Fatal(err)
	}
	e.worker.Idempotency = s
	return s
}

// job is a job of alice's in the deploys channel, posting to the receiver.
func (e *slackEnv) job(t *testing.T, id, text string) chatops.Job {
	t.Helper()
	return chatops.Job{ID: id, Command: mustParse(t, text), Slash: "/keyvend", TeamID: team, UserID: alice, UserName: "alice",
		ChannelID: deploys, ResponseURL: e.slack.url("/r/" + id), QueuedAt: time.Now().UTC()}
}

// deliver hands j to the worker as SQS's receive-th delivery of it, and
// reports whether the worker reported it failed.
func (e *slackEnv) deliver(t *testing.T, j chatops.Job, receive int) (failed bool) {
	t.Helper()
	body, err := chatops.EncodeJob(j)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := e.worker.Handle(context.Background(), events.SQSEvent{Records: []events.SQSMessage{{
		MessageId: "m-" + j.ID, Body: body, Attributes: map[string]string{"ApproximateReceiveCount": strconv.Itoa(receive)},
	}}})
	if err != nil {
		t.Fatal(err)
	}
	return len(resp.BatchItemFailures) == 1
}

func (e *slackEnv) accessKeys(t *testing.T, user string) []string {
	t.Helper()
	out, err := e.iam.ListAccessKeys(context.Background(), &iam.ListAccessKeysInput{UserName: aws.String(user)})
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, k := range out.AccessKeyMetadata {
		ids = append(ids, aws.ToString(k.AccessKeyId))
	}
	return ids
}

// TestRedeliveredJobActsOnce: SQS delivers at least once. A provision,
// rotate or delete job delivered again — or sent again with a later
// queued_at — is the same job: one CreateAccessKey, one posted message.
func TestRedeliveredJobActsOnce(t *testing.T) {
	e := newSlackEnv(t)
	e.withIdempotency(t)
	user := awstest.Name("redelivered")

	p := e.job(t, "j-provision-"+user, `provision `+user+` site.example.com:rw "redelivery"`)
	for receive := 1; receive <= 2; receive++ {
		if e.deliver(t, p, receive) {
			t.Fatalf("provision, delivery %d: reported failed", receive)
		}
	}
	if n := e.calls.Count("CreateAccessKey"); n != 1 {
		t.Errorf("provision delivered twice: CreateAccessKey called %d times, want 1", n)
	}
	if msgs := e.slack.messages(); len(msgs) != 1 || !strings.Contains(msgs[0], "Provisioned") {
		t.Fatalf("provision delivered twice: %d messages posted, want 1: %v", len(msgs), msgs)
	}

	r := e.job(t, "j-rotate-"+user, `rotate `+user)
	if e.deliver(t, r, 1) || e.deliver(t, r, 2) {
		t.Fatal("rotate: a delivery reported failed")
	}
	resent := r
	resent.QueuedAt = r.QueuedAt.Add(time.Minute)
	if e.deliver(t, resent, 1) {
		t.Fatal("rotate sent again: reported failed")
	}
	if n := e.calls.Count("CreateAccessKey"); n != 2 {
		t.Errorf("rotate delivered three times: CreateAccessKey called %d times in all, want 2 (the provision's, one rotate's)", n)
	}
	if keys := e.accessKeys(t, user); len(keys) != 2 {
		t.Errorf("keys in IAM %v, want 2 (the rotate's and the previous one, in its grace)", keys)
	}
	if msgs := e.slack.messages(); len(msgs) != 2 || !strings.Contains(msgs[1], "New access key") {
		t.Fatalf("%d messages posted, want 2: %v", len(msgs), msgs)
	}

	d := e.job(t, "j-delete-"+user, `delete `+user)
	if e.deliver(t, d, 1) || e.deliver(t, d, 2) {
		t.Fatal("delete: a delivery reported failed")
	}
	if n := e.calls.Count("DeleteUser"); n != 1 {
		t.Errorf("delete delivered twice: DeleteUser called %d times, want 1", n)
	}
	if msgs := e.slack.messages(); len(msgs) != 3 || !strings.Contains(msgs[2], "Deprovisioned") {
		t.Errorf("%d messages posted, want 3 (the second delete delivery posts no 'not found'): %v", len(msgs), msgs)
	}
}

// TestStoredOutcomePostedOnRedelivery: when the result of a job was
// stored but never reached Slack (the worker died, or Slack failed), the
// next delivery posts the stored result without acting again; once it is
// posted, a later delivery posts nothing.
func TestStoredOutcomePostedOnRedelivery(t *testing.T) {
	e := newSlackEnv(t)
	e.withIdempotency(t)
	user := awstest.Name("unposted")
	if _, err := e.svc.Create(context.Background(), provision.CreateInput{Principal: chatops.SlackPrincipal(team, alice, "alice", deploys), RequestID: "setup",
		Request: mustParse(t, `provision `+user+` site.example.com:ro "setup"`).CreateRequest()}); err != nil {
		t.Fatal(err)
	}
	e.calls.Reset()
	r := e.job(t, "j-rotate-"+user, `rotate `+user)

	e.slack.mu.Lock()
	e.slack.status = http.StatusBadGateway
	e.slack.mu.Unlock()
	if e.deliver(t, r, 1) {
		t.Fatal("first delivery reported failed")
	}
	e.slack.mu.Lock()
	e.slack.status = 0
	e.slack.mu.Unlock()
	if n := len(e.slack.messages()); n != 0 {
		t.Fatalf("%d messages while Slack failed", n)
	}

	if e.deliver(t, r, 2) {
		t.Fatal("second delivery reported failed")
	}
	msgs := e.slack.messages()
	if len(msgs) != 1 || !strings.Contains(msgs[0], "New access key") {
		t.Fatalf("second delivery: messages %v, want the stored result", msgs)
	}
	if e.deliver(t, r, 3) {
		t.Fatal("third delivery reported failed")
	}
	if n := len(e.slack.messages()); n != 1 {
		t.Errorf("%d messages after a delivery of a posted job, want still 1", n)
	}
	if n := e.calls.Count("CreateAccessKey"); n != 1 {
		t.Errorf("CreateAccessKey called %d times, want 1", n)
	}
}

// TestJobInProgressElsewhereIsAFailedAttempt: a delivery that finds
// another delivery of the same job running does nothing and is reported
// failed (SQS delivers it again), even on the last attempt — the running
// one posts the result; once the key is free the job runs. A job id
// reused for another command is refused the same way.
func TestJobInProgressElsewhereIsAFailedAttempt(t *testing.T) {
	e := newSlackEnv(t)
	store := e.withIdempotency(t)
	user := awstest.Name("busy")
	p := e.job(t, "j-provision-"+user, `provision `+user+` site.example.com:rw "busy"`)
	held, err := store.Begin(context.Background(), p.Principal().Requester(), p.ID, chatops.JobFingerprint(p))
	if err != nil || held.Outcome != idempotency.Proceed {
		t.Fatalf("hold the job's key: %v %v", held, err)
	}
	for _, receive := range []int{1, 3} {
		if !e.deliver(t, p, receive) {
			t.Errorf("delivery %d while another runs: not reported failed", receive)
		}
	}
	if n := len(e.slack.messages()); n != 0 {
		t.Errorf("%d messages posted while another delivery runs", n)
	}
	if ws := e.stateWrites(); len(ws) != 0 {
		t.Errorf("writes while another delivery runs: %v", ws)
	}
	if !strings.Contains(e.logs.String(), "another delivery of the job is in progress") {
		t.Errorf("the log does not say why:\n%s", e.logs.String())
	}

	other := p
	other.Command = mustParse(t, `provision `+user+` site.example.com:ro "busy"`)
	if !e.deliver(t, other, 1) {
		t.Error("a job id reused for another command: not reported failed")
	}

	if err := store.Abandon(context.Background(), held); err != nil {
		t.Fatal(err)
	}
	if e.deliver(t, p, 2) {
		t.Fatal("delivery after the key was freed: reported failed")
	}
	if msgs := e.slack.messages(); len(msgs) != 1 || !strings.Contains(msgs[0], "Provisioned") {
		t.Errorf("messages %v", msgs)
	}
}

// TestStoredMessagesRoundTrip: a job's message survives being stored as
// JSON and read back (the posted JSON is the same), for every kind of
// message a provision, rotate or delete job posts.
func TestStoredMessagesRoundTrip(t *testing.T) {
	exp := time.Date(2027, 1, 2, 3, 4, 5, 0, time.UTC)
	res := &provision.CreateResult{Created: true, User: "site-deployer", UserARN: "arn:aws:iam::123456789012:user/keyvend/site-deployer", Path: "/keyvend/",
		Grants: mustParse(t, `provision site-deployer site.example.com:rw "r"`).CreateRequest().Grants, AccessKeyID: "AKIAEXAMPLE",
		SecretName: "keyvend/users/site-deployer", SecretARN: "arn:aws:secretsmanager:us-east-1:123456789012:secret:keyvend/users/site-deployer-AbCdEf",
		CredentialProcess: "credential_process = aws secretsmanager get-secret-value", ExpiresAt: &exp}
	msgs := map[string]*slack.WebhookMessage{
		"provision": chatops.ProvisionMessage(res, "j-1"),
		"rotate": chatops.RotateMessage(&provision.RotateResult{User: "site-deployer", AccessKeyID: "AKIANEW", PreviousAccessKeyID: "AKIAOLD",
			PreviousKeyDeleted: true, SecretName: res.SecretName, SecretARN: res.SecretARN, CredentialProcess: res.CredentialProcess}, "j-2"),
		"delete":  chatops.DeleteMessage("site-deployer", "j-3"),
		"refusal": chatops.RefusalMessage(mustParse(t, `rotate site-deployer`), &provision.Error{Kind: provision.KindForbidden, Detail: "not yours"}),
	}
	for name, m := range msgs {
		want, err := json.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		var back slack.WebhookMessage
		if err := json.Unmarshal(want, &back); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		got, err := json.Marshal(&back)
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != string(want) {
			t.Errorf("%s: stored and read back:\n%s\nwant\n%s", name, got, want)
		}
	}
}
