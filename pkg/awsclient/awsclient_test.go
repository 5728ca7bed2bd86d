package awsclient_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"

	"github.com/keyvend/keyvend/pkg/app"
	"github.com/keyvend/keyvend/pkg/awstest"
	"github.com/keyvend/keyvend/pkg/caller"
	"github.com/keyvend/keyvend/pkg/provisiontest"
)

func TestMain(m *testing.M) { awstest.Main(m) }

// functionTimeout is the API function's timeout (infra/stack.go).
const functionTimeout = 28 * time.Second

// newHandler is keyvend's real HTTP API, as app.Serve assembles it,
// over cfg, with every request made by provisiontest.Caller. If the test fails, the
// service's error log lines are shown.
func newHandler(t *testing.T, cfg aws.Config) http.Handler {
	t.Helper()
	rules := filepath.Join(t.TempDir(), "rules.json")
	if err := os.WriteFile(rules, []byte(provisiontest.DefaultRules), 0o600); err != nil {
		t.Fatal(err)
	}
	logs := &errorLog{}
	t.Cleanup(func() { logs.report(t) })
	awstest.RequireBoundary(t, &cfg, provisiontest.Boundary)
	srv, err := app.Serve(app.Config{RulesPath: rules, BoundaryARN: provisiontest.Boundary, Table: awstest.Table(t, cfg).Table()}, cfg, caller.Static{ARN: provisiontest.Caller}, slog.New(slog.NewJSONHandler(logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	return srv.Handler
}

func createBody(user, bucket string) string {
	return fmt.Sprintf(`{"user":%q,"grants":[{"bucket":%q,"access":"read-write","prefix":""}],"reason":"load test"}`, user, bucket)
}

// checker reads moto directly (no proxy, no faults) to verify state.
type checker struct {
	iam *iam.Client
	sm  *secretsmanager.Client
}

func newChecker(t *testing.T, endpoint string) *checker {
	cfg := awstest.Config(t, endpoint)
	return &checker{iam: iam.NewFromConfig(cfg), sm: secretsmanager.NewFromConfig(cfg)}
}

// keys returns the user's access key ids and the key id in its secret ("" if none).
func (c *checker) keys(t *testing.T, user string) (ids []string, inSecret string) {
	t.Helper()
	out, err := c.iam.ListAccessKeys(context.Background(), &iam.ListAccessKeysInput{UserName: &user})
	if err != nil {
		t.Fatalf("list keys of %s: %v", user, err)
	}
	for _, k := range out.AccessKeyMetadata {
		ids = append(ids, aws.ToString(k.AccessKeyId))
	}
	sort.Strings(ids)
	sec, err := c.sm.GetSecretValue(context.Background(), &secretsmanager.GetSecretValueInput{SecretId: aws.String("keyvend/users/" + user)})
	if err != nil {
		return ids, ""
	}
	var cred struct{ AccessKeyId string }
	if err := json.Unmarshal([]byte(aws.ToString(sec.SecretString)), &cred); err != nil {
		t.Fatalf("secret of %s: %v", user, err)
	}
	return ids, cred.AccessKeyId
}

// TestThrottledProvisions: a proxy answers 30% of the IAM and Secrets
// Manager calls with Throttling, in each service's wire shape. With
// keyvend's production retry settings (awsclient.Retryer: adaptive mode) every
// provision still succeeds, each with exactly the key in its secret, and
// the adaptive rate limiter and the retry quota do not starve the calls.
func TestThrottledProvisions(t *testing.T) {
	srv := awstest.Shared(t)
	proxy := awstest.NewProxy(t, srv.URL)
	proxy.Throttle(0.3, 42)
	cfg := awstest.Production(t, proxy.URL)
	calls := &awstest.Recorder{}
	calls.Attach(&cfg)
	h := newHandler(t, cfg)
	check := newChecker(t, srv.URL)
	setup := proxy.Stats() // the state table made for the test went through the proxy, unrecorded

	const n, workers = 24, 8
	bucket := awstest.Name("throttle") + ".example.com"
	users := make([]string, n)
	for i := range users {
		users[i] = awstest.Name(fmt.Sprintf("throttle%02d", i))
	}
	var (
		mu      sync.Mutex
		slowest time.Duration
	)
	start := time.Now()
	next := make(chan string)
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for user := range next {
				t0 := time.Now()
				req := httptest.NewRequest(http.MethodPost, "/v1/users", strings.NewReader(createBody(user, bucket)))
				req.Header.Set("Content-Type", "application/json")
				w := httptest.NewRecorder()
				h.ServeHTTP(w, req)
				d := time.Since(t0)
				mu.Lock()
				slowest = max(slowest, d)
				mu.Unlock()
				if w.Code != http.StatusCreated {
					t.Errorf("provision %s: HTTP %d after %s: %s", user, w.Code, d.Round(time.Millisecond), w.Body)
				}
			}
		}()
	}
	for _, u := range users {
		next <- u
	}
	close(next)
	wg.Wait()
	elapsed := time.Since(start)

	stats := proxy.Stats()
	stats.Requests -= setup.Requests
	stats.Throttled -= setup.Throttled
	ops := len(calls.Calls())
	retries := stats.Requests - ops
	t.Logf("%d provisions in %s (slowest %s): %d AWS calls, %d attempts, %d throttled, %d server errors, %d retries",
		n, elapsed.Round(time.Millisecond), slowest.Round(time.Millisecond), ops, stats.Requests, stats.Throttled, stats.ServerErrors, retries)
	if retries <= 0 || stats.Throttled == 0 {
		t.Errorf("no call was retried (%d throttled): the fault proxy did not throttle", stats.Throttled)
	}
	if retries != stats.Throttled+stats.ServerErrors {
		t.Errorf("%d retries for %d throttled attempts and %d server errors: every one should be retried once", retries, stats.Throttled, stats.ServerErrors)
	}
	// Starvation: unthrottled, these provisions take ~2 s in all. The
	// API function has 28 s; with the limiter unbounded the slowest took
	// 48 s and the run 130 s (see awsclient.RateLimitMaxWait).
	if slowest > functionTimeout || elapsed > time.Minute {
		t.Errorf("slowest provision %s, all %s: the retry rate limiter starves calls", slowest, elapsed)
	}
	for _, u := range users {
		ids, inSecret := check.keys(t, u)
		if len(ids) != 1 || ids[0] != inSecret {
			t.Errorf("user %s: keys %v, secret holds %q: want exactly the secret's key", u, ids, inSecret)
		}
	}
}

// errorLog keeps the service's log and, when the test fails, shows its
// error lines (why a request answered 5xx).
type errorLog struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *errorLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *errorLog) report(t *testing.T) {
	if !t.Failed() {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, line := range strings.Split(l.b.String(), "\n") {
		if strings.Contains(line, `"level":"ERROR"`) && n < 10 {
			t.Logf("service log: %s", line)
			n++
		}
	}
}
