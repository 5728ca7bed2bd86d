package slacksig_test

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"

	"github.com/keyvend/keyvend/pkg/awstest"
	"github.com/keyvend/keyvend/pkg/slacksig"
)

func TestMain(m *testing.M) { awstest.Main(m) }

const testSecret = "8f742231b10e8888abcd99yyyzzz85a5"

// signed is the headers Slack sends with body at ts, signed with secret.
func signed(secret string, ts int64, body string) http.Header {
	mac := hmac.New(sha256.New, []byte(secret))
	fmt.Fprintf(mac, "v0:%d:%s", ts, body)
	h := http.Header{}
	h.Set("X-Slack-Request-Timestamp", strconv.FormatInt(ts, 10))
	h.Set("X-Slack-Signature", "v0="+hex.EncodeToString(mac.Sum(nil)))
	return h
}

func TestReplayCache(t *testing.T) {
	t0 := time.Unix(1_800_000_000, 0)
	c := slacksig.NewReplayCache(3)
	until := t0.Add(slacksig.SignatureWindow)
	if c.Seen("a", until, t0) {
		t.Fatal("a new signature was seen")
	}
	if !c.Seen("a", until, t0.Add(4*time.Minute)) {
		t.Error("a replay within the window was not seen")
	}
	if c.Seen("a", until, t0.Add(5*time.Minute+time.Second)) {
		t.Error("a signature past its window is still remembered (Slack refuses it as stale anyway)")
	}
	// Bounded: past the capacity the oldest is forgotten first.
	for _, s := range []string{"b", "c", "d", "e"} {
		if c.Seen(s, until.Add(time.Hour), t0.Add(6*time.Minute)) {
			t.Fatalf("%s seen", s)
		}
	}
	if n := c.Len(); n != 3 {
		t.Errorf("%d signatures remembered, capacity 3", n)
	}
	if c.Seen("b", until.Add(time.Hour), t0.Add(6*time.Minute)) {
		t.Error("b, the oldest, should have been forgotten")
	}
	if !c.Seen("e", until.Add(time.Hour), t0.Add(6*time.Minute)) {
		t.Error("e, the newest, was forgotten")
	}
	// Expired entries go first when the clock moves on.
	if c.Seen("f", until.Add(2*time.Hour), t0.Add(2*time.Hour)) || c.Len() != 1 {
		t.Errorf("after every window ended: %d remembered, want only f", c.Len())
	}
}

// TestSigningSecretFromSecretsManager: the secret is read once and kept;
// a failed read is not kept (and is not a rejection: it is keyvend's
// problem, not the caller's); both the plain and the JSON form work.
// (pkg/chatops's TestUnreadableSigningSecret: the endpoint answers it 500.)
func TestSigningSecretFromSecretsManager(t *testing.T) {
	srv := awstest.Shared(t)
	cfg := awstest.Config(t, srv.URL)
	admin := secretsmanager.NewFromConfig(cfg)
	const body = "command=%2Fkeyvend&text=help"
	for name, value := range map[string]string{
		"plain": testSecret,
		"json":  `{"signing_secret":"` + testSecret + `"}`,
	} {
		t.Run(name, func(t *testing.T) {
			out, err := admin.CreateSecret(context.Background(), &secretsmanager.CreateSecretInput{Name: aws.String(awstest.Name("keyvend/slack-signing")), SecretString: aws.String(value)})
			if err != nil {
				t.Fatal(err)
			}
			calls, faults := &awstest.Recorder{}, &awstest.Faults{}
			fnCfg := cfg.Copy()
			calls.Attach(&fnCfg)
			faults.Attach(&fnCfg)
			faults.FailNthWith("GetSecretValue", 1, "InternalServiceError")
			v := &slacksig.Verifier{
				Secret: &slacksig.ManagedSecret{ARN: aws.ToString(out.ARN), Client: secretsmanager.NewFromConfig(fnCfg)},
				Replay: slacksig.NewReplayCache(0),
			}
			ctx := context.Background()
			var rej *slacksig.Rejection
			if err := v.Verify(ctx, signed(testSecret, time.Now().Unix(), body), []byte(body)); err == nil || errors.As(err, &rej) {
				t.Errorf("with the secret unreadable: %v, want an error that is not a rejection", err)
			}
			for i := 0; i < 3; i++ {
				if err := v.Verify(ctx, signed(testSecret, time.Now().Unix()-int64(i), body), []byte(body)); err != nil {
					t.Errorf("request %d: %v", i, err)
				}
			}
			if n := calls.Count("GetSecretValue"); n != 2 {
				t.Errorf("GetSecretValue called %d times, want 2 (the failed read, then once for good)", n)
			}
			err = v.Verify(ctx, signed("guess", time.Now().Unix(), body), []byte(body))
			if !errors.As(err, &rej) || rej.Reason != slacksig.RejectInvalid {
				t.Errorf("forged with the managed secret: %v, want rejected as invalid", err)
			}
		})
	}
}

// TestStaticSecret: local mode's secret; an empty one is an error, not a
// rejection.
func TestStaticSecret(t *testing.T) {
	const body = "text=help"
	v := &slacksig.Verifier{Secret: slacksig.StaticSecret("")}
	var rej *slacksig.Rejection
	if err := v.Verify(context.Background(), signed(testSecret, time.Now().Unix(), body), []byte(body)); err == nil || errors.As(err, &rej) ||
		!strings.Contains(err.Error(), "KEYVEND_SLACK_SIGNING_SECRET") {
		t.Errorf("empty static secret: %v", err)
	}
}
