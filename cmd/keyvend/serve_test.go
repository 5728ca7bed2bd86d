package main

import (
	"bufio"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/keyvend/keyvend/pkg/awstest"
)

// TestServeChatops runs the built `keyvend serve` on the embedded moto with
// a Slack signing secret, as the README's demo does: the API and the Slack
// route share the port; the Slack route is verified by signature, not by
// the local caller; a signed slash command is acked, queued on the
// embedded moto's SQS queue, run by the in-process worker, and its result
// posted to a loopback response_url.
func TestServeChatops(t *testing.T) {
	bin := buildKeyvend(t)
	secret := "serve-test-signing-secret"
	addr := freeAddr(t)
	dir := t.TempDir()

	var mu sync.Mutex
	var posts []string
	slack := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		posts = append(posts, string(b))
		mu.Unlock()
	}))
	defer slack.Close()

	cmd := exec.Command(bin, "serve", "--env-file", filepath.Join(dir, "local.env"))
	cmd.Dir = filepath.Join("..", "..") // rules/demo.json
	// The test's environment (moto_server may need it) without any AWS or
	// keyvend setting: serve starts its embedded moto.
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "AWS_") && !strings.HasPrefix(kv, "KEYVEND_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, "AWS_EC2_METADATA_DISABLED=true", "KEYVEND_LISTEN="+addr, "KEYVEND_SLACK_SIGNING_SECRET="+secret)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("keyvend serve exited with %v after SIGTERM", err)
			}
		case <-time.After(20 * time.Second):
			_ = cmd.Process.Kill()
			t.Error("keyvend serve did not stop on SIGTERM")
		}
	}()
	ready := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if strings.HasPrefix(sc.Text(), "keyvend ready") {
				ready <- sc.Text()
			}
		}
	}()
	select {
	case line := <-ready:
		if !strings.Contains(line, "chatops: POST /v1/chatops/slack") || !strings.Contains(line, "/v1/chatops/slack/interactive") {
			t.Errorf("ready line does not announce the Slack route: %s", line)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("keyvend serve did not get ready")
	}
	base := "http://" + addr

	// The API still answers as the local caller.
	resp, err := http.Get(base + "/v1/openapi.json")
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /v1/openapi.json: %v %v", err, resp)
	}
	resp.Body.Close()

	user := awstest.Name("serve-slack")
	form := url.Values{"team_id": {"T0KEYVEND"}, "user_id": {"U0ALICE"}, "user_name": {"alice"}, "channel_id": {"C0DEPLOYS"},
		"command": {"/keyvend"}, "text": {`provision ` + user + ` site.example.com:read-write "blog deploys"`},
		"response_url": {slack.URL + "/commands/T0KEYVEND/1/x"}}.Encode()

	// Unsigned: the local caller does not count on this route.
	resp, err = http.Post(base+"/v1/chatops/slack", "application/x-www-form-urlencoded", strings.NewReader(form))
	if err != nil || resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("unsigned slash command: %v %v", err, resp)
	}
	resp.Body.Close()
	// The interactivity endpoint is served next to it, verified the same
	// way (not the API's 404 or the local caller).
	resp, err = http.Post(base+"/v1/chatops/slack/interactive", "application/x-www-form-urlencoded", strings.NewReader("payload={}"))
	if err != nil || resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("unsigned click: %v %v", err, resp)
	}
	resp.Body.Close()

	ts := time.Now().Unix()
	mac := hmac.New(sha256.New, []byte(secret))
	fmt.Fprintf(mac, "v0:%d:%s", ts, form)
	req, _ := http.NewRequestWithContext(context.Background(), http.MethodPost, base+"/v1/chatops/slack", strings.NewReader(form))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("X-Slack-Request-Timestamp", strconv.FormatInt(ts, 10))
	req.Header.Set("X-Slack-Signature", "v0="+hex.EncodeToString(mac.Sum(nil)))
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var ack struct {
		ResponseType string `json:"response_type"`
		Text         string `json:"text"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&ack); err != nil || resp.StatusCode != http.StatusOK || !strings.Contains(ack.Text, "Working on it") || ack.ResponseType != "ephemeral" {
		t.Fatalf("ack %d %+v %v", resp.StatusCode, ack, err)
	}
	resp.Body.Close()

	deadline := time.Now().Add(30 * time.Second)
	for {
		mu.Lock()
		n := len(posts)
		mu.Unlock()
		if n > 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(posts) != 1 || !strings.Contains(posts[0], "keyvend/users/"+user) || !strings.Contains(posts[0], "credential_process") {
		t.Fatalf("posted to the response_url: %v", posts)
	}
	// The user is the API's too, and it is slack:T0KEYVEND/U0ALICE's: the
	// local caller, whom no rule lets describe it, is told it does not
	// exist, as for any user it may not see.
	resp, err = http.Get(base + "/v1/users/" + user)
	if err != nil || resp.StatusCode != http.StatusNotFound {
		t.Errorf("GET the Slack-made user as the local caller: %v %v", err, resp)
	}
}
