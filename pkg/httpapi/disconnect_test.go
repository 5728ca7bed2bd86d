package httpapi_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"

	"github.com/keyvend/keyvend/pkg/awstest"
	"github.com/keyvend/keyvend/pkg/caller"
	"github.com/keyvend/keyvend/pkg/httpapi"
	"github.com/keyvend/keyvend/pkg/provision"
	"github.com/keyvend/keyvend/pkg/provisiontest"
)

// liveServer is keyvend's real handler behind a real http.Server on
// 127.0.0.1; served() returns once the handler has returned for a request
// (compensation included), so the state after a disconnect can be read.
type liveServer struct {
	url   string
	calls *awstest.Recorder
	iam   *iam.Client // uninstrumented, straight to moto
	sm    *secretsmanager.Client
	done  chan struct{}
}

// newLiveServer serves a provisiontest service on the AWS endpoint (moto,
// or a proxy to it); the liveServer's clients read the shared moto
// directly.
func newLiveServer(t *testing.T, endpoint string, instrument func(*aws.Config), mutate ...func(*provision.Settings)) *liveServer {
	t.Helper()
	plain := awstest.Config(t, awstest.Shared(t).URL)
	s := &liveServer{calls: &awstest.Recorder{}, iam: iam.NewFromConfig(plain), sm: secretsmanager.NewFromConfig(plain), done: make(chan struct{}, 16)}
	attach := []func(*aws.Config){s.calls.Attach}
	if instrument != nil {
		attach = append(attach, instrument)
	}
	discard := slog.New(slog.NewJSONHandler(io.Discard, nil))
	svc := provisiontest.New(t, provisiontest.Endpoint(endpoint), provisiontest.Instrument(attach...),
		provisiontest.Logger(discard), provisiontest.Settings(mutate...)).Service
	h := httpapi.New(svc, caller.Static{ARN: testCaller}, discard)
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() { s.done <- struct{}{} }()
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(ts.Close)
	s.url = ts.URL
	return s
}

// post sends a create for user through a fresh connection with ctx.
func (s *liveServer) post(ctx context.Context, user, bucket string) (*http.Response, error) {
	body := `{"user":"` + user + `","grants":[{"bucket":"` + bucket + `","access":"read-write"}],"reason":"deploys"}`
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.url+"/v1/users", strings.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	c := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	return c.Do(req)
}

// served waits until the handler has returned for one request.
func (s *liveServer) served(t *testing.T) {
	t.Helper()
	select {
	case <-s.done:
	case <-time.After(90 * time.Second):
		// A generous bound, not a timing target: the compensation alone may
		// take CompensationTimeout (20 s) when moto is slow on a loaded
		// machine; the test only needs to know the handler ended.
		t.Fatal("the handler did not return within 90 s")
	}
}

// noOrphanedKey checks that every key of user is the one in its secret,
// and reports whether the user exists and is complete.
func (s *liveServer) noOrphanedKey(t *testing.T, user string) (exists, complete bool) {
	t.Helper()
	keys, err := s.iam.ListAccessKeys(context.Background(), &iam.ListAccessKeysInput{UserName: &user})
	var nf interface{ ErrorCode() string }
	switch {
	case errors.As(err, &nf) && nf.ErrorCode() == "NoSuchEntity":
		return false, false
	case err != nil:
		t.Fatal(err)
	}
	inSecret := ""
	if sec, err := s.sm.GetSecretValue(context.Background(), &secretsmanager.GetSecretValueInput{SecretId: aws.String("keyvend/users/" + user)}); err == nil {
		var c provision.Credential
		_ = json.Unmarshal([]byte(aws.ToString(sec.SecretString)), &c)
		inSecret = c.AccessKeyID
	}
	for _, k := range keys.AccessKeyMetadata {
		if id := aws.ToString(k.AccessKeyId); id != inSecret {
			t.Errorf("user %s: access key %s is not in its secret (the secret holds %q): orphaned", user, id, inSecret)
		}
	}
	return true, inSecret != "" && len(keys.AccessKeyMetadata) == 1
}

// TestClientDisconnectAfterCreateAccessKey: the client goes away the
// moment the key exists. The server cancels the request's context, the
// store fails, and the compensation — on a context detached from the
// request's — deletes the key and the user. The retry then succeeds.
func TestClientDisconnectAfterCreateAccessKey(t *testing.T) {
	clientCtx, hangUp := context.WithCancel(context.Background())
	defer hangUp()
	var once sync.Once // the retry below must not hang up
	s := newLiveServer(t, awstest.Shared(t).URL, func(cfg *aws.Config) {
		awstest.AfterSuccess(cfg, "CreateAccessKey", func(ctx context.Context) {
			once.Do(func() {
				hangUp()
				select { // the server notices the closed connection
				case <-ctx.Done():
				case <-time.After(10 * time.Second):
					t.Error("the server did not cancel the request's context after the client left")
				}
			})
		})
	})
	user := awstest.Name("hangup")
	bucket := awstest.Name("hangup") + ".example.com"
	if resp, err := s.post(clientCtx, user, bucket); err == nil {
		resp.Body.Close()
		t.Fatalf("the client got an answer (%s) although it hung up", resp.Status)
	}
	s.served(t)
	t.Logf("calls: %v", s.calls.Calls())
	deleted := false
	for _, c := range s.calls.Calls() {
		if c.Operation == "DeleteAccessKey" && c.Err == nil {
			deleted = true
		}
	}
	if !deleted {
		t.Error("no successful DeleteAccessKey: the compensation did not run on a live context")
	}
	if exists, _ := s.noOrphanedKey(t, user); exists {
		t.Errorf("user %s still exists after its request was abandoned", user)
	}

	resp, err := s.post(context.Background(), user, bucket)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	s.served(t)
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("retry: %s", resp.Status)
	}
	if _, complete := s.noOrphanedKey(t, user); !complete {
		t.Errorf("retry left %s incomplete", user)
	}
}

// TestClientTimeoutsMidSaga: with 25 ms added to every AWS call, clients
// give up after 5 ms to 150 ms, cutting the request at every step of the
// saga. Whatever the cut, no key is left outside its secret, and the same
// request, retried once the user counts as abandoned, ends complete.
func TestClientTimeoutsMidSaga(t *testing.T) {
	srv := awstest.Shared(t)
	proxy := awstest.NewProxy(t, srv.URL)
	proxy.SetDelay(25 * time.Millisecond)
	s := newLiveServer(t, proxy.URL, nil)
	// Another instance, for which every half-made user is abandoned.
	late := newLiveServer(t, srv.URL, nil, func(s *provision.Settings) { s.RepairAfter = time.Nanosecond })
	outcomes := map[string]int{}
	for _, timeout := range []time.Duration{5, 20, 35, 50, 65, 80, 95, 110, 150} {
		timeout *= time.Millisecond
		user := awstest.Name("timeout")
		bucket := awstest.Name("timeout") + ".example.com"
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		resp, err := s.post(ctx, user, bucket)
		cancel()
		if err == nil {
			resp.Body.Close()
		}
		s.served(t)
		exists, complete := s.noOrphanedKey(t, user)
		outcome := "nothing left"
		switch {
		case complete:
			outcome = "complete"
		case exists:
			outcome = "user without key" // CreateUser reached AWS as the request was cut
		}
		outcomes[outcome]++
		t.Logf("client timeout %s: %s (%d AWS calls)", timeout, outcome, len(s.calls.Calls()))
		s.calls.Reset()

		resp, err = late.post(context.Background(), user, bucket)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		late.served(t)
		if resp.StatusCode != http.StatusCreated && resp.StatusCode != http.StatusOK {
			t.Errorf("timeout %s: retry answered %s", timeout, resp.Status)
		}
		if _, complete := late.noOrphanedKey(t, user); !complete {
			t.Errorf("timeout %s: the retry left %s incomplete", timeout, user)
		}
	}
	t.Logf("outcomes: %v", outcomes)
	if outcomes["nothing left"]+outcomes["user without key"] == 0 {
		t.Error("no timeout cut a request short: the cuts are not mid-saga")
	}
}
