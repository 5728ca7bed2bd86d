package chatops_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/iam"

	"github.com/keyvend/keyvend/pkg/approval"
	"github.com/keyvend/keyvend/pkg/chatops"
)

// click is the form Slack posts when user (of team) clicks the button
// action on a message in the deploys channel.
func (e *slackEnv) click(user, name, action, value string) string {
	payload, _ := json.Marshal(map[string]any{
		"type":       "block_actions",
		"team":       map[string]string{"id": team, "domain": "keyvend-test"},
		"user":       map[string]string{"id": user, "username": name, "team_id": team},
		"api_app_id": "A0KEYVEND", "token": "deprecated-verification-token", "trigger_id": "1.2.3",
		"channel":      map[string]string{"id": deploys, "name": "deploys"},
		"container":    map[string]any{"type": "message", "message_ts": "1700000000.000100", "channel_id": deploys},
		"response_url": e.slack.url("/actions/" + team + "/5678/ghijkl"),
		"actions": []map[string]any{{"action_id": action, "block_id": "decide", "value": value, "type": "button",
			"text": map[string]any{"type": "plain_text", "text": "Approve"}, "action_ts": "1700000001.000200"}},
	})
	return url.Values{"payload": {string(payload)}}.Encode()
}

func (e *slackEnv) interact(t *testing.T, r *http.Request) (int, string) {
	t.Helper()
	w := httptest.NewRecorder()
	e.endpoint.Interactive().ServeHTTP(w, r)
	return w.Code, w.Body.String()
}

// TestInteractiveRejectsWhatSlackDidNotSign: a click that is forged,
// stale or replayed is 401 and queues nothing; a malformed one is 400.
func TestInteractiveRejectsWhatSlackDidNotSign(t *testing.T) {
	e := newSlackEnv(t)
	id := e.pendingRequest(t, "forged-click")
	body := e.click("U0BOB", "bob", chatops.ActionApprove, id)
	now := time.Now().Unix()
	stale := now - 6*60
	for name, r := range map[string]*http.Request{
		"forged":   request(body, strconv.FormatInt(now, 10), sign("not-the-secret", now, body)),
		"unsigned": request(body, "", ""),
		"stale":    request(body, strconv.FormatInt(stale, 10), sign(testSecret, stale, body)),
		"tampered": request(strings.Replace(body, "U0BOB", "U0EVE", 1), strconv.FormatInt(now, 10), sign(testSecret, now, body)),
	} {
		if code, raw := e.interact(t, r); code != http.StatusUnauthorized {
			t.Errorf("%s click: %d %s, want 401", name, code, raw)
		}
	}
	if n := e.depth(t, e.queueURL); n != 0 {
		t.Fatalf("unverified clicks queued %d jobs", n)
	}
	for name, b := range map[string]string{
		"no payload":     "foo=bar",
		"not JSON":       url.Values{"payload": {"{"}}.Encode(),
		"other action":   e.click("U0BOB", "bob", "something_else", id),
		"not an id":      e.click("U0BOB", "bob", chatops.ActionApprove, "apr-1"),
		"bad user id":    e.click("U0bob/*", "bob", chatops.ActionApprove, id),
		"foreign answer": strings.Replace(e.click("U0BOB", "bob", chatops.ActionApprove, id), url.QueryEscape(e.slack.url("")), url.QueryEscape("https://evil.example.com"), 1),
	} {
		code, raw := e.interact(t, signedRequest(b))
		if name == "foreign answer" {
			if code != http.StatusOK || !strings.Contains(raw, "KEYVEND_SLACK_RESPONSE_HOSTS") {
				t.Errorf("%s: %d %s", name, code, raw)
			}
			continue
		}
		if code != http.StatusBadRequest {
			t.Errorf("%s: %d %s, want 400", name, code, raw)
		}
	}
	if n := e.depth(t, e.queueURL); n != 0 {
		t.Fatalf("invalid clicks queued %d jobs", n)
	}
	signed := signedRequest(body)
	again := signedRequest(body)
	again.Header = signed.Header.Clone()
	if code, raw := e.interact(t, signed); code != http.StatusOK {
		t.Fatalf("signed click: %d %s", code, raw)
	}
	if code, raw := e.interact(t, again); code != http.StatusUnauthorized {
		t.Errorf("replayed click: %d %s, want 401", code, raw)
	}
	if n := e.depth(t, e.queueURL); n != 1 {
		t.Errorf("queue holds %d jobs, want the one signed click", n)
	}
	if st := e.requestStatus(t, id); st != approval.Pending {
		t.Errorf("request is %s before any worker ran", st)
	}
}

// TestInteractiveDecides: a click decides as the clicking Slack user. A
// user who is not an approver is refused (told so, only to them) and the
// request is unchanged; the approver's Deny closes a request and its
// Approve provisions one, each replacing the message with who decided.
func TestInteractiveDecides(t *testing.T) {
	e := newSlackEnv(t)
	e.runWorker(t)
	user, other := "clicked-"+strconv.FormatInt(time.Now().UnixNano()%1e9, 36), "clicked-deny-"+strconv.FormatInt(time.Now().UnixNano()%1e9, 36)
	id, id2 := e.pendingRequest(t, user), e.pendingRequest(t, other)

	if code, raw := e.interact(t, signedRequest(e.click("U0CAROL", "carol", chatops.ActionApprove, id))); code != http.StatusOK {
		t.Fatalf("carol's click: %d %s", code, raw)
	}
	got := decodeClick(t, e.slack.waitFor(t, 1)[0])
	if got.ReplaceOriginal || got.ResponseType != "ephemeral" || !strings.Contains(got.Text, "no approval request "+id) {
		t.Errorf("non-approver's answer %+v: want an ephemeral refusal that leaves the message", got)
	}
	if code, raw := e.interact(t, signedRequest(e.click(alice, "alice", chatops.ActionApprove, id))); code != http.StatusOK {
		t.Fatalf("alice's click: %d %s", code, raw)
	}
	if got := decodeClick(t, e.slack.waitFor(t, 2)[1]); got.ReplaceOriginal || !strings.Contains(got.Text, "may not decide") {
		t.Errorf("requester's own click answered %+v", got)
	}
	if st := e.requestStatus(t, id); st != approval.Pending {
		t.Fatalf("refused clicks left the request %s, want pending", st)
	}
	if _, err := e.iam.GetUser(context.Background(), &iam.GetUserInput{UserName: aws.String(user)}); !isCode(err, "NoSuchEntity") {
		t.Fatalf("refused clicks provisioned %s: %v", user, err)
	}

	e.interact(t, signedRequest(e.click("U0BOB", "bob", chatops.ActionDeny, id2)))
	got = decodeClick(t, e.slack.waitFor(t, 3)[2])
	if !got.ReplaceOriginal || got.ResponseType != "in_channel" || !strings.Contains(got.Text, "Denied by slack:T0KEYVEND/U0BOB (@bob)") {
		t.Errorf("deny click answered %+v", got)
	}
	if st := e.requestStatus(t, id2); st != approval.Denied {
		t.Errorf("denied request is %s", st)
	}

	e.interact(t, signedRequest(e.click("U0BOB", "bob", chatops.ActionApprove, id)))
	raw := e.slack.waitFor(t, 4)[3]
	got = decodeClick(t, raw)
	if !got.ReplaceOriginal || !strings.Contains(got.Text, "Approved by slack:T0KEYVEND/U0BOB (@bob)") || !strings.Contains(got.Text, "Provisioned") {
		t.Errorf("approve click answered %+v", got)
	}
	if st := e.requestStatus(t, id); st != approval.Provisioned {
		t.Errorf("approved request is %s, want provisioned", st)
	}
	if _, err := e.iam.GetUser(context.Background(), &iam.GetUserInput{UserName: aws.String(user)}); err != nil {
		t.Errorf("the approval did not provision %s: %v", user, err)
	}
	assertNoKey(t, raw, e.secretOf(t, user))
	if lines := e.auditLines(t, "chatops.slack.interactive"); len(lines) != 4 || lines[0]["result"] != "queued" || lines[0]["principal"] != "slack:T0KEYVEND/U0CAROL" {
		t.Errorf("interactive audit lines %v", lines)
	}
}

type clickAnswer struct {
	Text            string `json:"text"`
	ResponseType    string `json:"response_type"`
	ReplaceOriginal bool   `json:"replace_original"`
}

func decodeClick(t *testing.T, raw string) clickAnswer {
	t.Helper()
	var a clickAnswer
	if err := json.Unmarshal([]byte(raw), &a); err != nil {
		t.Fatalf("posted %q: %v", raw, err)
	}
	return a
}
