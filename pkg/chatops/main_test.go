package chatops_test

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/keyvend/keyvend/pkg/awstest"
	"github.com/keyvend/keyvend/pkg/chatops"
	"github.com/keyvend/keyvend/pkg/provision"
	"github.com/keyvend/keyvend/pkg/provisiontest"
	"github.com/keyvend/keyvend/pkg/slacksig"
)

func TestMain(m *testing.M) { awstest.Main(m) }

const (
	testSecret = "8f742231b10e8888abcd99yyyzzz85a5"
	team       = "T0KEYVEND"
	alice      = "U0ALICE"
	deploys    = "C0DEPLOYS"
)

// testRules: everyone in the team may vend and rotate read-only and
// read-write on *.example.com, and list, from the deploys channel; alice
// may also vend read-only from anywhere; full on approvals.example.com
// waits for U0BOB's approval.
const testRules = `{"rules":[
 {"principals":["slack:T0KEYVEND/*"],"channels":["C0DEPLOYS"],"buckets":["approvals.example.com"],"access":["full"],"approval":{"approvers":["slack:T0KEYVEND/U0BOB"]}},
 {"principals":["slack:T0KEYVEND/*"],"channels":["C0DEPLOYS"],"buckets":["*.example.com"],"access":["read-only","read-write"],"actions":["create","rotate","list"]},
 {"principals":["slack:T0KEYVEND/U0ALICE"],"buckets":["*.example.com"],"access":["read-only"]}
]}`

// slackEnv is the Slack endpoint and worker over a real provisioning
// service and real SQS queues (a queue and its dead-letter queue) on the
// shared moto, with a loopback receiver standing in for Slack's
// response_url. The service's AWS calls are recorded and can be faulted.
type slackEnv struct {
	endpoint *chatops.Endpoint
	worker   *chatops.Worker
	svc      *provision.Service
	sqs      *sqs.Client
	iam      *iam.Client
	sm       *secretsmanager.Client
	calls    *awstest.Recorder
	faults   *awstest.Faults
	queueURL string
	dlqURL   string
	slack    *receiver
	logs     *syncBuffer
}

func newSlackEnv(t *testing.T) *slackEnv {
	t.Helper()
	e := &slackEnv{calls: &awstest.Recorder{}, faults: &awstest.Faults{}, logs: &syncBuffer{}}
	log := slog.New(slog.NewJSONHandler(e.logs, nil))
	p := provisiontest.New(t, provisiontest.Rules(testRules), provisiontest.Logger(log),
		provisiontest.Instrument(e.calls.Attach, e.faults.Attach))
	svcCfg := p.Config
	e.svc, e.iam, e.sm = p.Service, p.IAM, p.SM
	e.sqs = sqs.NewFromConfig(awstest.Config(t, p.URL))
	e.queueURL, e.dlqURL = createQueues(t, e.sqs, awstest.Name("chatops"))
	e.slack = newReceiver(t)
	hosts := chatops.ResponseHosts{"127.0.0.1"}
	e.endpoint = &chatops.Endpoint{
		Verifier: &slacksig.Verifier{Secret: slacksig.StaticSecret(testSecret), Replay: slacksig.NewReplayCache(0)},
		Checks:   e.svc,
		Queue:    chatops.SQSQueue{Client: sqs.NewFromConfig(svcCfg), URL: e.queueURL},
		Hosts:    hosts,
		Log:      log,
	}
	e.worker = &chatops.Worker{
		Service:     e.svc,
		Poster:      &chatops.Responder{Hosts: hosts, Backoff: 10 * time.Millisecond},
		MaxReceives: 3,
		Log:         log,
	}
	return e
}

// stateWrites are the recorded calls that may change IAM or Secrets
// Manager (sending to the queue is not one).
func (e *slackEnv) stateWrites() []awstest.Call {
	var out []awstest.Call
	for _, c := range e.calls.Writes() {
		if c.Service != "SQS" {
			out = append(out, c)
		}
	}
	return out
}

// createQueues makes a queue whose messages move to a dead-letter queue
// after 3 receives, with a 1-second visibility timeout so retries are quick.
func createQueues(t *testing.T, c *sqs.Client, name string) (queue, dlq string) {
	t.Helper()
	d, err := c.CreateQueue(context.Background(), &sqs.CreateQueueInput{QueueName: aws.String(name + "-dlq")})
	if err != nil {
		t.Fatal(err)
	}
	attrs, err := c.GetQueueAttributes(context.Background(), &sqs.GetQueueAttributesInput{QueueUrl: d.QueueUrl,
		AttributeNames: []sqstypes.QueueAttributeName{sqstypes.QueueAttributeNameQueueArn}})
	if err != nil {
		t.Fatal(err)
	}
	redrive := fmt.Sprintf(`{"deadLetterTargetArn":%q,"maxReceiveCount":"3"}`, attrs.Attributes["QueueArn"])
	q, err := c.CreateQueue(context.Background(), &sqs.CreateQueueInput{QueueName: aws.String(name),
		Attributes: map[string]string{"VisibilityTimeout": "1", "RedrivePolicy": redrive, "SqsManagedSseEnabled": "true"}})
	if err != nil {
		t.Fatal(err)
	}
	return aws.ToString(q.QueueUrl), aws.ToString(d.QueueUrl)
}

// depth is how many messages the queue holds, visible or in flight.
func (e *slackEnv) depth(t *testing.T, queueURL string) int {
	t.Helper()
	out, err := e.sqs.GetQueueAttributes(context.Background(), &sqs.GetQueueAttributesInput{QueueUrl: aws.String(queueURL),
		AttributeNames: []sqstypes.QueueAttributeName{sqstypes.QueueAttributeNameApproximateNumberOfMessages, sqstypes.QueueAttributeNameApproximateNumberOfMessagesNotVisible}})
	if err != nil {
		t.Fatal(err)
	}
	a, _ := strconv.Atoi(out.Attributes[string(sqstypes.QueueAttributeNameApproximateNumberOfMessages)])
	b, _ := strconv.Atoi(out.Attributes[string(sqstypes.QueueAttributeNameApproximateNumberOfMessagesNotVisible)])
	return a + b
}

// receiveJobs takes every visible message off the queue (for inspection).
func (e *slackEnv) receiveJobs(t *testing.T) []chatops.Job {
	t.Helper()
	out, err := e.sqs.ReceiveMessage(context.Background(), &sqs.ReceiveMessageInput{QueueUrl: aws.String(e.queueURL), MaxNumberOfMessages: 10})
	if err != nil {
		t.Fatal(err)
	}
	var jobs []chatops.Job
	for _, m := range out.Messages {
		j, err := chatops.DecodeJob(aws.ToString(m.Body))
		if err != nil {
			t.Fatalf("queued message is not a job: %v\n%s", err, aws.ToString(m.Body))
		}
		jobs = append(jobs, j)
		if _, err := e.sqs.DeleteMessage(context.Background(), &sqs.DeleteMessageInput{QueueUrl: aws.String(e.queueURL), ReceiptHandle: m.ReceiptHandle}); err != nil {
			t.Fatal(err)
		}
	}
	return jobs
}

// runWorker stands in for Lambda's SQS event source (as keyvend serve's
// poller does) until stop is called or the test ends: it receives jobs
// with their attributes, hands each batch to the worker and deletes the
// messages the worker does not report failed; SQS delivers those again
// after the visibility timeout, then moves them to the dead-letter queue.
func (e *slackEnv) runWorker(t *testing.T) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ctx.Err() == nil {
			out, err := e.sqs.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: aws.String(e.queueURL), MaxNumberOfMessages: 5, WaitTimeSeconds: 1,
				MessageSystemAttributeNames: []sqstypes.MessageSystemAttributeName{sqstypes.MessageSystemAttributeNameAll}})
			if err != nil {
				time.Sleep(100 * time.Millisecond)
				continue
			}
			var ev events.SQSEvent
			for _, m := range out.Messages {
				ev.Records = append(ev.Records, events.SQSMessage{MessageId: aws.ToString(m.MessageId), ReceiptHandle: aws.ToString(m.ReceiptHandle),
					Body: aws.ToString(m.Body), Attributes: m.Attributes, EventSource: "aws:sqs"})
			}
			resp, _ := e.worker.Handle(ctx, ev) // never fails the whole batch
			failed := map[string]bool{}
			for _, f := range resp.BatchItemFailures {
				failed[f.ItemIdentifier] = true
			}
			for _, m := range ev.Records {
				if !failed[m.MessageId] {
					_, _ = e.sqs.DeleteMessage(context.WithoutCancel(ctx), &sqs.DeleteMessageInput{QueueUrl: aws.String(e.queueURL), ReceiptHandle: aws.String(m.ReceiptHandle)})
				}
			}
		}
	}()
	var once sync.Once
	stop = func() { once.Do(func() { cancel(); <-done }) }
	t.Cleanup(stop)
	return stop
}

// waitDepth waits until the queue holds want messages (the poller deletes
// a job after the worker has posted its result), failing after 30 s.
func (e *slackEnv) waitDepth(t *testing.T, queueURL string, want int) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for e.depth(t, queueURL) != want {
		if time.Now().After(deadline) {
			t.Fatalf("queue %s holds %d messages, want %d", queueURL, e.depth(t, queueURL), want)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// command is a slash command as Slack would send it.
type command struct {
	team, user, userName, channel, text, responseURL string
}

func (e *slackEnv) cmd(text string) command {
	return command{team: team, user: alice, userName: "alice", channel: deploys, text: text, responseURL: e.slack.url("/commands/" + team + "/1234/abcdef")}
}

func (c command) body() string {
	return url.Values{
		"token": {"deprecated-verification-token"}, "team_id": {c.team}, "team_domain": {"keyvend-test"},
		"channel_id": {c.channel}, "channel_name": {"deploys"}, "user_id": {c.user}, "user_name": {c.userName},
		"command": {"/keyvend"}, "text": {c.text}, "response_url": {c.responseURL},
		"trigger_id": {"13345224609.738474920.8088930838d88f008e0"}, "api_app_id": {"A0KEYVEND"},
	}.Encode()
}

// sign returns Slack's v0 signature of body at ts with secret.
func sign(secret string, ts int64, body string) string {
	mac := hmac.New(sha256.New, []byte(secret))
	fmt.Fprintf(mac, "v0:%d:%s", ts, body)
	return "v0=" + hex.EncodeToString(mac.Sum(nil))
}

// signedRequest is a POST of body signed now with the test secret.
func signedRequest(body string) *http.Request {
	ts := time.Now().Unix()
	return request(body, strconv.FormatInt(ts, 10), sign(testSecret, ts, body))
}

func request(body, ts, sig string) *http.Request {
	r := httptest.NewRequest(http.MethodPost, chatops.Path, strings.NewReader(body))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if ts != "" {
		r.Header.Set("X-Slack-Request-Timestamp", ts)
	}
	if sig != "" {
		r.Header.Set("X-Slack-Signature", sig)
	}
	return r
}

// reply is the endpoint's answer.
type reply struct {
	Status       int
	ResponseType string `json:"response_type"`
	Text         string `json:"text"`
	Error        string `json:"error"`
	raw          string
}

func (e *slackEnv) send(t *testing.T, r *http.Request) reply {
	t.Helper()
	w := httptest.NewRecorder()
	e.endpoint.ServeHTTP(w, r)
	rep := reply{Status: w.Code, raw: w.Body.String()}
	if err := json.Unmarshal(w.Body.Bytes(), &rep); err != nil {
		t.Fatalf("answer is not JSON: %v\n%s", err, w.Body.String())
	}
	return rep
}

// auditLines returns the audit lines logged since the buffer was reset.
func (e *slackEnv) auditLines(t *testing.T, action string) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, line := range strings.Split(e.logs.String(), "\n") {
		if line == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("log line is not JSON: %q", line)
		}
		if m["msg"] == "audit" && m["action"] == action {
			out = append(out, m)
		}
	}
	return out
}

// receiver is a loopback response_url: it records every message posted.
type receiver struct {
	srv    *httptest.Server
	mu     sync.Mutex
	posts  []string
	status int // answer with this status instead of 200 while non-zero
}

func newReceiver(t *testing.T) *receiver {
	t.Helper()
	rc := &receiver{}
	rc.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		rc.mu.Lock()
		status := rc.status
		if status == 0 {
			rc.posts = append(rc.posts, string(b))
		}
		rc.mu.Unlock()
		if status != 0 {
			w.WriteHeader(status)
			return
		}
		_, _ = w.Write([]byte("ok"))
	}))
	t.Cleanup(rc.srv.Close)
	return rc
}

func (rc *receiver) url(path string) string { return rc.srv.URL + path }

func (rc *receiver) messages() []string {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]string(nil), rc.posts...)
}

// waitFor waits until the receiver holds n messages (or fails after 30 s).
func (rc *receiver) waitFor(t *testing.T, n int) []string {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if m := rc.messages(); len(m) >= n {
			return m
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("the response_url got %d messages, want %d: %v", len(rc.messages()), n, rc.messages())
	return nil
}

// syncBuffer is awstest.SyncBuffer: goroutines share it.
type syncBuffer = awstest.SyncBuffer
