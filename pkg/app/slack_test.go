package app_test

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"github.com/keyvend/keyvend/pkg/app"
	"github.com/keyvend/keyvend/pkg/awstest"
	"github.com/keyvend/keyvend/pkg/chatops"
)

// opCounter is a loopback proxy in front of moto that records the AWS
// operation of every request that passes: what the function really sent.
type opCounter struct {
	URL string
	mu  sync.Mutex
	ops []string
}

func newOpCounter(t *testing.T, target string) *opCounter {
	t.Helper()
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	c := &opCounter{}
	rp := httputil.NewSingleHostReverseProxy(u)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		op := r.Header.Get("X-Amz-Target") // JSON protocols: secretsmanager.GetSecretValue, AmazonSQS.SendMessage
		if op == "" {                      // query protocol (IAM): Action=GetUser in the form body
			b, _ := io.ReadAll(r.Body)
			r.Body = io.NopCloser(bytes.NewReader(b))
			form, _ := url.ParseQuery(string(b))
			op = "iam." + form.Get("Action")
		}
		c.mu.Lock()
		c.ops = append(c.ops, op)
		c.mu.Unlock()
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	c.URL = srv.URL
	return c
}

func (c *opCounter) take() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	ops := c.ops
	c.ops = nil
	return ops
}

const signingSecret = "app-test-signing-secret"

// slackFunctionEnv sets the environment of the Slack function: the rules,
// the signing secret's ARN, the queue, and AWS behind the counting proxy.
func slackFunctionEnv(t *testing.T) (*opCounter, string) {
	t.Helper()
	srv := awstest.Shared(t)
	cfg := awstest.Config(t, srv.URL)
	sec, err := secretsmanager.NewFromConfig(cfg).CreateSecret(context.Background(), &secretsmanager.CreateSecretInput{
		Name: aws.String(awstest.Name("keyvend/slack")), SecretString: aws.String(signingSecret)})
	if err != nil {
		t.Fatal(err)
	}
	q, err := sqs.NewFromConfig(cfg).CreateQueue(context.Background(), &sqs.CreateQueueInput{QueueName: aws.String(awstest.Name("app-chatops"))})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	rules := filepath.Join(dir, "rules.json")
	if err := os.WriteFile(rules, []byte(`{"rules":[{"principals":["slack:T1/*"],"buckets":["*.example.com"],"access":["read-only"]}]}`), 0o600); err != nil {
		t.Fatal(err)
	}
	counter := newOpCounter(t, srv.URL)
	for k, v := range map[string]string{
		"AWS_ENDPOINT_URL": counter.URL, "AWS_REGION": awstest.Region, "AWS_ACCESS_KEY_ID": "AKIAKEYVENDTEST00000",
		"AWS_SECRET_ACCESS_KEY": "keyvend-test-secret", "AWS_CONFIG_FILE": filepath.Join(dir, "config"),
		"AWS_SHARED_CREDENTIALS_FILE": filepath.Join(dir, "credentials"), "AWS_PROFILE": "",
		"KEYVEND_RULES": rules, "KEYVEND_BOUNDARY_ARN": "arn:aws:iam::123456789012:policy/keyvend/keyvend-boundary",
		"KEYVEND_TABLE":                    awstest.Table(t, awstest.Config(t, srv.URL)).Table(),
		"KEYVEND_SLACK_SIGNING_SECRET_ARN": aws.ToString(sec.ARN), "KEYVEND_SLACK_SIGNING_SECRET": "",
		"KEYVEND_CHATOPS_QUEUE_URL": aws.ToString(q.QueueUrl), "KEYVEND_SLACK_RESPONSE_HOSTS": "127.0.0.1",
	} {
		t.Setenv(k, v)
	}
	return counter, aws.ToString(q.QueueUrl)
}

func slashRequest(t *testing.T, secret, text string) *http.Request {
	t.Helper()
	body := url.Values{"team_id": {"T1"}, "user_id": {"U1"}, "user_name": {"u1"}, "channel_id": {"C1"}, "command": {"/keyvend"},
		"text": {text}, "response_url": {"http://127.0.0.1:9/commands/1"}}.Encode()
	return signedSlackRequest(secret, chatops.Path, body)
}

// clickRequest is an Approve click on approval request id, signed with
// secret.
func clickRequest(secret, id string) *http.Request {
	payload := `{"type":"block_actions","team":{"id":"T1"},"user":{"id":"U2","username":"u2"},"channel":{"id":"C1"},` +
		`"response_url":"http://127.0.0.1:9/actions/1","actions":[{"action_id":"` + chatops.ActionApprove + `","value":"` + id + `"}]}`
	return signedSlackRequest(secret, chatops.InteractivePath, url.Values{"payload": {payload}}.Encode())
}

func signedSlackRequest(secret, path, body string) *http.Request {
	ts := time.Now().Unix()
	mac := hmac.New(sha256.New, []byte(secret))
	fmt.Fprintf(mac, "v0:%d:%s", ts, body)
	r := httptest.NewRequest(http.MethodPost, path, strings.NewReader(body))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	r.Header.Set("X-Slack-Request-Timestamp", strconv.FormatInt(ts, 10))
	r.Header.Set("X-Slack-Signature", "v0="+hex.EncodeToString(mac.Sum(nil)))
	return r
}

// TestSlackFunctionIsLazy: the Slack function makes no AWS call at start;
// the first request reads the signing secret and nothing else, and keeps
// it; help needs nothing more; a provision sends to the queue (its
// precheck needs no AWS call); only a command on an existing user reads
// IAM.
func TestSlackFunctionIsLazy(t *testing.T) {
	counter, _ := slackFunctionEnv(t)
	log := slog.New(slog.NewJSONHandler(io.Discard, nil))
	h, err := slackFromEnv(log)
	if err != nil {
		t.Fatal(err)
	}
	if ops := counter.take(); len(ops) != 0 {
		t.Errorf("AWS calls at start: %v", ops)
	}
	steps := []struct {
		name   string
		req    *http.Request
		status int
		want   []string
	}{
		{"forged", slashRequest(t, "guessed", "help"), http.StatusUnauthorized, []string{"secretsmanager.GetSecretValue"}},
		{"forged again", slashRequest(t, "guessed", "help"), http.StatusUnauthorized, nil},
		{"help", slashRequest(t, signingSecret, "help"), http.StatusOK, nil},
		{"provision", slashRequest(t, signingSecret, `provision `+awstest.Name("lazy")+` a.example.com "lazy"`), http.StatusOK, []string{"AmazonSQS.SendMessage"}},
		// the user and its grants, in one round trip
		{"status", slashRequest(t, signingSecret, `status `+awstest.Name("nobody")), http.StatusOK, []string{"iam.GetUser", "iam.GetUserPolicy", "iam.ListGroupsForUser"}},
		// the interactivity endpoint, verified with the same secret; a
		// click is queued for the worker to decide
		{"forged click", clickRequest("guessed", "apr-0123456789abcdef0123"), http.StatusUnauthorized, nil},
		{"click", clickRequest(signingSecret, "apr-0123456789abcdef0123"), http.StatusOK, []string{"AmazonSQS.SendMessage"}},
		{"no such route", signedSlackRequest(signingSecret, "/v1/users", "x=1"), http.StatusNotFound, nil},
	}
	for _, s := range steps {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, s.req)
		if w.Code != s.status {
			t.Errorf("%s: %d %s", s.name, w.Code, w.Body.String())
		}
		if ops := counter.take(); strings.Join(sortedStrings(ops), ",") != strings.Join(s.want, ",") {
			t.Errorf("%s: AWS calls %v, want %v", s.name, ops, s.want)
		}
	}
}

func TestSlackFunctionRefusesToStartMisconfigured(t *testing.T) {
	counter, _ := slackFunctionEnv(t)
	log := slog.New(slog.NewJSONHandler(io.Discard, nil))
	for name, env := range map[string]map[string]string{
		"no signing secret": {"KEYVEND_SLACK_SIGNING_SECRET_ARN": ""},
		"no queue":          {"KEYVEND_CHATOPS_QUEUE_URL": ""},
		"bad rules":         {"KEYVEND_RULES": "/nonexistent/rules.json"},
		"bad max receives":  {"KEYVEND_CHATOPS_MAX_RECEIVES": "0"},
	} {
		t.Run(name, func(t *testing.T) {
			for k, v := range env {
				t.Setenv(k, v)
			}
			if _, err := slackFromEnv(log); err == nil {
				t.Error("started")
			}
		})
	}
	if ops := counter.take(); len(ops) != 0 {
		t.Errorf("AWS calls while refusing to start: %v", ops)
	}
}

func sortedStrings(s []string) []string {
	out := append([]string(nil), s...)
	sort.Strings(out)
	return out
}

// slackFromEnv builds the Slack function's handler as its main does: the
// configuration from the environment, then app.Slack.
func slackFromEnv(log *slog.Logger) (http.Handler, error) {
	c, err := app.FromEnv()
	if err != nil {
		return nil, err
	}
	return app.Slack(c, log)
}
