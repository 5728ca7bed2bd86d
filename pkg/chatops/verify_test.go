package chatops_test

import (
	"context"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"

	"github.com/keyvend/keyvend/pkg/awstest"
	"github.com/keyvend/keyvend/pkg/chatops"
)

func TestReplayCache(t *testing.T) {
	t0 := time.Unix(1_800_000_000, 0)
	c := chatops.NewReplayCache(3)
	until := t0.Add(chatops.SignatureWindow)
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
// a failed read is not kept; both the plain and the JSON form work.
func TestSigningSecretFromSecretsManager(t *testing.T) {
	srv := awstest.Shared(t)
	cfg := awstest.Config(t, srv.URL)
	admin := secretsmanager.NewFromConfig(cfg)
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
			e := newSlackEnv(t)
			e.endpoint.Verifier.Secret = &chatops.ManagedSecret{ARN: aws.ToString(out.ARN), Client: secretsmanager.NewFromConfig(fnCfg)}

			help := func() *http.Request { return signedRequest(e.cmd("help").body()) }
			if rep := e.send(t, help()); rep.Status != http.StatusInternalServerError || strings.Contains(rep.raw, "provision") {
				t.Errorf("with the secret unreadable: %d %s, want 500", rep.Status, rep.raw)
			}
			for i := 0; i < 3; i++ {
				req := help()
				ts := time.Now().Unix() - int64(i) // one clock reading for header and signature
				req.Header.Set("X-Slack-Request-Timestamp", strconv.FormatInt(ts, 10))
				req.Header.Set("X-Slack-Signature", sign(testSecret, ts, e.cmd("help").body()))
				if rep := e.send(t, req); rep.Status != http.StatusOK {
					t.Errorf("request %d: %d %s", i, rep.Status, rep.raw)
				}
			}
			if n := calls.Count("GetSecretValue"); n != 2 {
				t.Errorf("GetSecretValue called %d times, want 2 (the failed read, then once for good)", n)
			}
			now := time.Now().Unix()
			forged := request(e.cmd("help").body(), strconv.FormatInt(now, 10), sign("guess", now, e.cmd("help").body()))
			if rep := e.send(t, forged); rep.Status != http.StatusUnauthorized {
				t.Errorf("forged with the managed secret: %d", rep.Status)
			}
		})
	}
}
