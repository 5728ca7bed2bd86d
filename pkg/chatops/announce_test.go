package chatops_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"

	"github.com/keyvend/keyvend/pkg/approval"
	"github.com/keyvend/keyvend/pkg/awstest"
	"github.com/keyvend/keyvend/pkg/chatops"
)

// slackAPI is a loopback Slack Web API: it records chat.postMessage calls.
type slackAPI struct {
	srv   *httptest.Server
	mu    sync.Mutex
	posts []url.Values
	auth  []string
}

func newSlackAPI(t *testing.T) *slackAPI {
	t.Helper()
	a := &slackAPI{}
	a.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		form, _ := url.ParseQuery(string(b))
		a.mu.Lock()
		if r.URL.Path == "/chat.postMessage" {
			a.posts = append(a.posts, form)
			a.auth = append(a.auth, r.Header.Get("Authorization"))
		}
		a.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"ok":true,"channel":"C0APPROVALS","ts":"1700000000.000100"}`))
	}))
	t.Cleanup(a.srv.Close)
	return a
}

func (a *slackAPI) waitFor(t *testing.T, n int) ([]url.Values, []string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		a.mu.Lock()
		posts, auth := append([]url.Values(nil), a.posts...), append([]string(nil), a.auth...)
		a.mu.Unlock()
		if len(posts) >= n || time.Now().After(deadline) {
			if len(posts) < n {
				t.Fatalf("chat.postMessage called %d times, want %d", len(posts), n)
			}
			return posts, auth
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestPendingRequestPostedWithButtons: a provision that waits for
// approval is posted once to the approvals channel as the bot (its token
// read from Secrets Manager, never logged), with Approve and Deny buttons
// that carry the request id; a click on Approve by the approver then
// provisions it.
func TestPendingRequestPostedWithButtons(t *testing.T) {
	e := newSlackEnv(t)
	api := newSlackAPI(t)
	const token = "xoxb-keyvend-test-bot-token"
	sec, err := e.sm.CreateSecret(context.Background(), &secretsmanager.CreateSecretInput{Name: aws.String(awstest.Name("slack-bot")), SecretString: aws.String(`{"bot_token":"` + token + `"}`)})
	if err != nil {
		t.Fatal(err)
	}
	e.worker.Announcer = &chatops.Announcer{Token: &chatops.ManagedToken{ARN: aws.ToString(sec.ARN), Client: e.sm}, Channel: "C0APPROVALS", APIURL: api.srv.URL + "/"}
	e.runWorker(t)
	user := awstest.Name("announced")
	e.send(t, signedRequest(e.cmd(`provision `+user+` approvals.example.com:full "bulk cleanup"`).body()))
	e.slack.waitFor(t, 1)
	posts, auth := api.waitFor(t, 1)
	id := regexp.MustCompile(`apr-[0-9a-f]{20}`).FindString(posts[0].Get("text"))
	if len(posts) != 1 || posts[0].Get("channel") != "C0APPROVALS" || (auth[0] != "Bearer "+token && posts[0].Get("token") != token) || !approval.ValidID(id) ||
		!strings.Contains(posts[0].Get("text"), user) || !strings.Contains(posts[0].Get("text"), "slack:T0KEYVEND/U0ALICE") {
		t.Fatalf("posted %v with %v", posts, auth)
	}
	var blocks []map[string]any
	if err := json.Unmarshal([]byte(posts[0].Get("blocks")), &blocks); err != nil {
		t.Fatalf("blocks %q: %v", posts[0].Get("blocks"), err)
	}
	buttons := map[string]string{}
	for _, b := range blocks {
		if b["type"] != "actions" {
			continue
		}
		for _, el := range b["elements"].([]any) {
			m := el.(map[string]any)
			buttons[m["action_id"].(string)] = m["value"].(string)
		}
	}
	if buttons[chatops.ActionApprove] != id || buttons[chatops.ActionDeny] != id || len(buttons) != 2 {
		t.Fatalf("buttons %v, want Approve and Deny on %s", buttons, id)
	}
	if strings.Contains(e.logs.String(), token) {
		t.Error("the bot token is in the log")
	}

	e.interact(t, signedRequest(e.click("U0BOB", "bob", chatops.ActionApprove, buttons[chatops.ActionApprove])))
	got := decodeClick(t, e.slack.waitFor(t, 2)[1])
	if !got.ReplaceOriginal || !strings.Contains(got.Text, "Approved by slack:T0KEYVEND/U0BOB") {
		t.Errorf("click answered %+v", got)
	}
	if st := e.requestStatus(t, id); st != approval.Provisioned {
		t.Errorf("request %s is %s, want provisioned", id, st)
	}
	if posts, _ := api.waitFor(t, 1); len(posts) != 1 {
		t.Errorf("posted %d times, want once", len(posts))
	}
}
