package main

// Shared harness of the end-to-end tests: the keyvend binary, built once,
// run as a subprocess; the real AWS CLI; plain HTTP to the server.

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// keyvendBin is the keyvend binary TestMain builds.
var keyvendBin string

func TestMain(m *testing.M) {
	os.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	dir, err := os.MkdirTemp("", "keyvend-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "keyvend e2e:", err)
		os.Exit(1)
	}
	keyvendBin = filepath.Join(dir, "keyvend")
	build := exec.Command("go", "build", "-o", keyvendBin, ".")
	build.Stdout, build.Stderr = os.Stdout, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "keyvend e2e: go build:", err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// cleanEnv is this process's environment without any AWS_ or KEYVEND_
// variable, so neither the developer's AWS setup nor ours leaks into a
// subprocess unannounced. Files the AWS CLI and SDK would read from $HOME
// are pointed at paths in dir that do not exist.
func cleanEnv(dir string, extra ...string) []string {
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
	)
	return append(env, extra...) // later entries win in os/exec
}

// freeAddr returns a loopback address nobody listens on right now.
func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// server is a running `keyvend serve`.
type server struct {
	URL   string // http://127.0.0.1:PORT
	Ready string // the ready line it printed
	cmd   *exec.Cmd
	out   *output
	done  chan struct{}
	err   error // cmd.Wait's result, once done is closed
}

// output collects a subprocess's stdout and stderr and notices the ready line.
type output struct {
	mu      sync.Mutex
	all     bytes.Buffer
	partial []byte
	ready   chan string
	sent    bool
}

func newOutput() *output { return &output{ready: make(chan string, 1)} }

func (o *output) Write(p []byte) (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.all.Write(p)
	o.partial = append(o.partial, p...)
	for {
		i := bytes.IndexByte(o.partial, '\n')
		if i < 0 {
			break
		}
		line := string(o.partial[:i])
		o.partial = o.partial[i+1:]
		if !o.sent && strings.HasPrefix(line, "keyvend ready on http://") {
			o.sent = true
			o.ready <- line
		}
	}
	return len(p), nil
}

func (o *output) String() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.all.String()
}

// startServe runs `keyvend serve` in dir with env and waits for its ready
// line. It fails the test if keyvend exits first. At cleanup a server that
// is still running gets SIGTERM and is waited for.
func startServe(t *testing.T, dir string, env []string) *server {
	t.Helper()
	s := &server{out: newOutput(), done: make(chan struct{})}
	s.cmd = exec.Command(keyvendBin, "serve")
	s.cmd.Dir = dir
	s.cmd.Env = env
	s.cmd.Stdout = s.out
	s.cmd.Stderr = s.out
	if err := s.cmd.Start(); err != nil {
		t.Fatalf("start keyvend: %v", err)
	}
	go func() {
		s.err = s.cmd.Wait()
		close(s.done)
	}()
	t.Cleanup(func() {
		state := "still running at cleanup"
		select {
		case <-s.done:
			state = fmt.Sprintf("%v", s.cmd.ProcessState)
		default:
			_ = s.cmd.Process.Signal(syscall.SIGTERM)
			<-s.done
		}
		if t.Failed() {
			t.Logf("keyvend (%s) output:\n%s", state, s.out)
		}
	})
	// No timing is asserted here; the deadline only turns a hang into a
	// failure with keyvend's output, just before `go test` would panic.
	var hang <-chan time.Time
	if d, ok := t.Deadline(); ok {
		hang = time.After(time.Until(d) - 5*time.Second)
	}
	select {
	case line := <-s.out.ready:
		s.Ready = line
	case <-s.done:
		t.Fatalf("keyvend exited before it was ready (%v):\n%s", s.err, s.out)
	case <-hang:
		t.Fatalf("keyvend printed no ready line before the test deadline:\n%s", s.out)
	}
	addr, _, _ := strings.Cut(strings.TrimPrefix(s.Ready, "keyvend ready on "), " ")
	s.URL = addr
	return s
}

// stop sends SIGTERM and returns keyvend's exit code.
func (s *server) stop(t *testing.T) int {
	t.Helper()
	select {
	case <-s.done:
		t.Fatalf("keyvend exited (%v) before the test stopped it:\n%s", s.cmd.ProcessState, s.out)
	default:
	}
	if err := s.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatalf("SIGTERM keyvend: %v", err)
	}
	<-s.done
	return s.cmd.ProcessState.ExitCode()
}

// call makes one HTTP request to keyvend and returns the response and body.
func (s *server) call(t *testing.T, method, path, body string) (*http.Response, []byte) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, s.URL+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: read body: %v", method, path, err)
	}
	return resp, b
}

// vended is the part of a POST /v1/users answer the tests use.
type vended struct {
	User              string `json:"user"`
	UserARN           string `json:"user_arn"`
	AccessKeyID       string `json:"access_key_id"`
	SecretName        string `json:"secret_name"`
	SecretARN         string `json:"secret_arn"`
	CredentialProcess string `json:"credential_process"`
}

// vend POSTs body to /v1/users, requires 201 and returns the answer and
// the raw body.
func (s *server) vend(t *testing.T, body string) (vended, []byte) {
	t.Helper()
	resp, raw := s.call(t, http.MethodPost, "/v1/users", body)
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("POST /v1/users: %s, want 201 Created: %s", resp.Status, raw)
	}
	var v vended
	if err := json.Unmarshal(raw, &v); err != nil {
		t.Fatalf("POST /v1/users: decode %s: %v", raw, err)
	}
	if v.SecretARN == "" || v.AccessKeyID == "" {
		t.Fatalf("POST /v1/users: no secret_arn or access_key_id in %s", raw)
	}
	want := "credential_process = aws secretsmanager get-secret-value --secret-id " + v.SecretARN + " --query SecretString --output text --region us-east-1"
	if v.CredentialProcess != want {
		t.Fatalf("credential_process = %q\nwant %q", v.CredentialProcess, want)
	}
	if loc := resp.Header.Get("Location"); loc != "/v1/users/"+v.User {
		t.Errorf("Location = %q, want /v1/users/%s", loc, v.User)
	}
	return v, raw
}

// awsCLI runs the real AWS CLI in dir with env. It returns stdout, stderr
// and the error of the run (an *exec.ExitError when the CLI failed).
func awsCLI(t *testing.T, dir string, env []string, args ...string) (string, string, error) {
	t.Helper()
	cmd := exec.Command("aws", args...)
	cmd.Dir = dir
	cmd.Env = env
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatalf("run aws %s: %v", strings.Join(args, " "), err)
	}
	return stdout.String(), stderr.String(), err
}

// mustAWS runs the AWS CLI and fails the test unless it succeeds.
func mustAWS(t *testing.T, dir string, env []string, args ...string) string {
	t.Helper()
	out, errOut, err := awsCLI(t, dir, env, args...)
	if err != nil {
		t.Fatalf("aws %s: %v\nstdout: %s\nstderr: %s", strings.Join(args, " "), err, out, errOut)
	}
	return out
}

// mustAWSDenied runs the AWS CLI and fails the test unless it fails with
// AccessDenied.
func mustAWSDenied(t *testing.T, dir string, env []string, args ...string) {
	t.Helper()
	out, errOut, err := awsCLI(t, dir, env, args...)
	if err == nil {
		t.Fatalf("aws %s succeeded, want AccessDenied\nstdout: %s", strings.Join(args, " "), out)
	}
	if !strings.Contains(errOut, "AccessDenied") {
		t.Fatalf("aws %s failed (%v) but not with AccessDenied:\nstdout: %s\nstderr: %s", strings.Join(args, " "), err, out, errOut)
	}
}

// writeProfiles writes an AWS config file with one credential_process
// profile per name.
func writeProfiles(t *testing.T, path string, profiles map[string]string) {
	t.Helper()
	names := make([]string, 0, len(profiles))
	for name := range profiles {
		names = append(names, name)
	}
	sort.Strings(names)
	var b strings.Builder
	for _, name := range names {
		fmt.Fprintf(&b, "[profile %s]\n%s\n\n", name, profiles[name])
	}
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
}

// readExports parses the `export K=V` lines of a shell file.
func readExports(t *testing.T, path string) map[string]string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	vars := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		kv, ok := strings.CutPrefix(line, "export ")
		if !ok {
			continue
		}
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			t.Fatalf("%s: malformed line %q", path, line)
		}
		if len(v) >= 2 && v[0] == '\'' && v[len(v)-1] == '\'' { // shellQuote's quoting
			v = strings.ReplaceAll(v[1:len(v)-1], `'\''`, "'")
		}
		vars[k] = v
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return vars
}

// checkout is a checkout-like working directory for keyvend serve:
// rules/demo.json where serve looks for it by default; .keyvend/ is
// written there.
func checkout(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	demoRules, err := os.ReadFile(filepath.Join("..", "..", "rules", "demo.json"))
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(dir, "rules", "demo.json"), string(demoRules))
	return dir
}

// envList is exports as a process environment (KEY=value, in no order).
func envList(exports map[string]string) []string {
	var env []string
	for k, v := range exports {
		env = append(env, k+"="+v)
	}
	return env
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}
