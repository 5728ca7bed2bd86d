package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/aws/aws-lambda-go/events"

	"github.com/keyvend/keyvend/pkg/awstest"
)

// lambdaFlags are the Makefile's LAMBDA_FLAGS: how the bootstraps are built.
var lambdaFlags = []string{"-tags", "lambda.norpc", "-trimpath", "-ldflags=-s -w"}

// buildFunction builds the Go package pkg into out for goos/goarch the way
// `make build` builds the Lambda bootstraps.
func buildFunction(ctx context.Context, pkg, out, goos, goarch string) error {
	args := append([]string{"build"}, lambdaFlags...)
	args = append(args, "-o", out, pkg)
	cmd := exec.CommandContext(ctx, goTool(), args...)
	cmd.Env = append(os.Environ(), "GOOS="+goos, "GOARCH="+goarch, "CGO_ENABLED=0")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("go build %s for %s/%s: %v: %s", pkg, goos, goarch, err, strings.TrimSpace(stderr.String()))
	}
	return nil
}

func goTool() string {
	if g := os.Getenv("GO"); g != "" {
		return g
	}
	return "go"
}

// coldRun is one launch of a function under the runtime interface emulator.
type coldRun struct {
	ToFirstAnswer time.Duration // RIE launched → first invocation answered
	Init          time.Duration // the function's init as RIE reports it (INIT REPORT)
}

// coldResult is the cold-start figures of one function.
type coldResult struct {
	Name   string
	Runs   []coldRun
	Warm   []time.Duration // later invocations, one launch
	Status int             // HTTP status in the function's answer (API functions)
	// PackageInit is the Go package initialisation before main
	// (GODEBUG=inittrace=1), and the package that takes longest.
	PackageInit    time.Duration
	TopPackage     string
	TopPackageInit time.Duration
}

var inittraceRE = regexp.MustCompile(`(?m)^init (\S+) @\S+ ms, ([0-9.]+) ms clock`)

// packageInit runs bootstrap once outside the emulator with
// GODEBUG=inittrace=1 and sums the package init times it prints (the
// function then fails to reach a runtime API, which does not matter).
func packageInit(ctx context.Context, fn fnUnderTest) (total time.Duration, top string, topDur time.Duration) {
	cmd := exec.CommandContext(ctx, fn.bootstrap)
	cmd.Env = append(append([]string(nil), fn.env...), "GODEBUG=inittrace=1", "AWS_LAMBDA_RUNTIME_API=127.0.0.1:1")
	out, _ := cmd.CombinedOutput()
	for _, m := range inittraceRE.FindAllStringSubmatch(string(out), -1) {
		v, err := strconv.ParseFloat(m[2], 64)
		if err != nil {
			continue
		}
		d := time.Duration(v * float64(time.Millisecond))
		total += d
		if d > topDur {
			top, topDur = m[1], d
		}
	}
	return total, top, topDur
}

func (c coldResult) firstAnswers() []time.Duration {
	out := make([]time.Duration, len(c.Runs))
	for i, r := range c.Runs {
		out[i] = r.ToFirstAnswer
	}
	return out
}

func (c coldResult) inits() []time.Duration {
	var out []time.Duration
	for _, r := range c.Runs {
		if r.Init > 0 {
			out = append(out, r.Init)
		}
	}
	return out
}

// fnUnderTest is a bootstrap, its environment and the event to invoke it
// with.
type fnUnderTest struct {
	name      string
	bootstrap string
	env       []string
	event     []byte
	status    int // the statusCode the answer must carry; 0: any answer
}

var initReportRE = regexp.MustCompile(`INIT REPORT\(durationMs: ([0-9.]+)\)`)

// launch starts the emulator with fn and invokes it until it answers, then
// invokes it warm more times. The emulator and the function run in their
// own process group, killed on return.
func launch(ctx context.Context, rie string, fn fnUnderTest, warm int) (coldRun, []time.Duration, error) {
	var run coldRun
	addr, err := freeAddr()
	if err != nil {
		return run, nil, err
	}
	apiAddr, err := freeAddr()
	if err != nil {
		return run, nil, err
	}
	cmd := exec.Command(rie, "--log-level", "info", "--runtime-interface-emulator-address", addr, "--runtime-api-address", apiAddr, fn.bootstrap)
	cmd.Dir = filepath.Dir(fn.bootstrap)
	cmd.Env = fn.env
	var out syncBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	url := "http://" + addr + "/2015-03-31/functions/function/invocations"
	client := &http.Client{Timeout: 30 * time.Second}
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return run, nil, fmt.Errorf("start %s: %w", rie, err)
	}
	defer func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		_ = cmd.Wait()
	}()
	deadline := start.Add(30 * time.Second)
	// The emulator starts its runtime API server in a goroutine and the
	// function on the first invocation; invoked at once on a busy machine,
	// the function can dial the runtime API before it listens, and exits
	// (seen once in ~60 launches). So wait for that port first: part of the
	// emulator's start, which the figure includes either way.
	for {
		c, err := net.DialTimeout("tcp", apiAddr, time.Second)
		if err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			return run, nil, fmt.Errorf("%s: the emulator's runtime API never listened: %v\n%s", fn.name, err, out.String())
		}
		time.Sleep(time.Millisecond)
	}
	for {
		err = invoke(ctx, client, url, fn)
		if err == nil {
			break
		}
		var refused *connRefused
		if !errors.As(err, &refused) || time.Now().After(deadline) {
			return run, nil, fmt.Errorf("%s: first invocation: %v\n%s", fn.name, err, out.String())
		}
		time.Sleep(time.Millisecond)
	}
	run.ToFirstAnswer = time.Since(start)
	var warmRuns []time.Duration
	for range warm {
		t0 := time.Now()
		if err := invoke(ctx, client, url, fn); err != nil {
			return run, nil, fmt.Errorf("%s: warm invocation: %v", fn.name, err)
		}
		warmRuns = append(warmRuns, time.Since(t0))
	}
	if m := initReportRE.FindStringSubmatch(out.String()); m != nil {
		if ms, err := strconv.ParseFloat(m[1], 64); err == nil {
			run.Init = time.Duration(ms * float64(time.Millisecond))
		}
	}
	return run, warmRuns, nil
}

type connRefused struct{ err error }

func (c *connRefused) Error() string { return c.err.Error() }

func invoke(ctx context.Context, client *http.Client, url string, fn fnUnderTest) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(fn.event))
	if err != nil {
		return err
	}
	resp, err := client.Do(req)
	if err != nil {
		if errors.Is(err, syscall.ECONNREFUSED) {
			return &connRefused{err}
		}
		return err
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("emulator answered %s: %s", resp.Status, body)
	}
	if fn.status != 0 {
		var ans struct {
			StatusCode int `json:"statusCode"`
		}
		if err := json.Unmarshal(body, &ans); err != nil || ans.StatusCode != fn.status {
			return fmt.Errorf("function answered %s, want statusCode %d", body, fn.status)
		}
	}
	return nil
}

// apiEvent is an API Gateway HTTP API (payload 2.0) event for a GET of
// path by an IAM-authorized caller.
func apiEvent(path string) []byte {
	ev := events.APIGatewayV2HTTPRequest{
		Version:  "2.0",
		RouteKey: "$default",
		RawPath:  path,
		Headers:  map[string]string{"accept": "application/json", "host": "bench.execute-api.us-east-1.amazonaws.com"},
		RequestContext: events.APIGatewayV2HTTPRequestContext{
			AccountID:  "123456789012",
			APIID:      "bench",
			RequestID:  "bench-request",
			Stage:      "$default",
			RouteKey:   "$default",
			DomainName: "bench.execute-api.us-east-1.amazonaws.com",
			HTTP:       events.APIGatewayV2HTTPRequestContextHTTPDescription{Method: "GET", Path: path, Protocol: "HTTP/1.1", SourceIP: "127.0.0.1"},
			Authorizer: &events.APIGatewayV2HTTPRequestContextAuthorizerDescription{
				IAM: &events.APIGatewayV2HTTPRequestContextAuthorizerIAMDescription{AccountID: "123456789012", UserARN: benchCaller, CallerID: "AIDABENCH"},
			},
		},
	}
	b, _ := json.Marshal(ev)
	return b
}

// functionEnv is a clean environment for a function under the emulator:
// no AWS_ or KEYVEND_ variable of the caller's, no shared AWS files.
func functionEnv(dir string, extra ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "AWS_") || strings.HasPrefix(kv, "KEYVEND_") {
			continue
		}
		env = append(env, kv)
	}
	env = append(env,
		"AWS_EC2_METADATA_DISABLED=true",
		"AWS_CONFIG_FILE="+filepath.Join(dir, "no-aws-config"),
		"AWS_SHARED_CREDENTIALS_FILE="+filepath.Join(dir, "no-aws-credentials"),
		"AWS_LAMBDA_FUNCTION_TIMEOUT=28",
	)
	return append(env, extra...)
}

func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// syncBuffer is awstest.SyncBuffer: goroutines share it.
type syncBuffer = awstest.SyncBuffer

// measureColdStart builds functions/api and the empty handler for this
// machine and launches each under the emulator runs times, interleaved.
// The API function answers GET /v1/openapi.json (no AWS call) and, as a
// separate figure, GET /v1/users/<unknown> (one GetUser to moto: 404).
func measureColdStart(ctx context.Context, rie, dir, motoURL string, runs, warm int, progress func(string)) ([]coldResult, error) {
	api, empty := filepath.Join(dir, "host", "api", "bootstrap"), filepath.Join(dir, "host", "empty", "bootstrap")
	progress("build functions/api and the empty handler for this machine")
	if err := buildFunction(ctx, "./functions/api", api, "linux", hostArch()); err != nil {
		return nil, err
	}
	if err := buildFunction(ctx, "./cmd/keyvend-bench/emptyfn", empty, "linux", hostArch()); err != nil {
		return nil, err
	}
	rules := filepath.Join(dir, "bench-rules.json")
	apiEnv := functionEnv(dir,
		"AWS_REGION="+benchRegion, "AWS_ENDPOINT_URL="+motoURL,
		"AWS_ACCESS_KEY_ID=AKIAKEYVENDBENCH0000", "AWS_SECRET_ACCESS_KEY=bench-secret",
		"KEYVEND_BOUNDARY_ARN="+benchBoundary, "KEYVEND_RULES="+rules, "KEYVEND_TABLE="+benchTable)
	fns := []fnUnderTest{
		{name: "empty aws-lambda-go handler", bootstrap: empty, env: functionEnv(dir), event: []byte(`{}`)},
		{name: "functions/api: GET /v1/openapi.json (no AWS call)", bootstrap: api, env: apiEnv, event: apiEvent("/v1/openapi.json"), status: http.StatusOK},
		{name: "functions/api: GET /v1/users/{unknown} (one AWS call)", bootstrap: api, env: apiEnv, event: apiEvent("/v1/users/no-such-user"), status: http.StatusNotFound},
	}
	results := make([]coldResult, len(fns))
	for i, fn := range fns {
		results[i].Name = fn.name
		results[i].Status = fn.status
		results[i].PackageInit, results[i].TopPackage, results[i].TopPackageInit = packageInit(ctx, fn)
	}
	for r := range runs {
		for i, fn := range fns {
			w := 0
			if r == 0 {
				w = warm
			}
			run, warmRuns, err := launch(ctx, rie, fn, w)
			if err != nil {
				return nil, err
			}
			results[i].Runs = append(results[i].Runs, run)
			results[i].Warm = append(results[i].Warm, warmRuns...)
		}
		progress(fmt.Sprintf("cold start: %d/%d launches of each function", r+1, runs))
	}
	return results, nil
}
