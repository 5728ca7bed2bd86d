package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials/processcreds"
	"github.com/aws/aws-sdk-go-v2/service/cloudformation"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/keyvend/keyvend/pkg/awstest"
	"github.com/keyvend/keyvend/pkg/provision"
)

// cliRun is one run of the keyvend binary as a client.
type cliRun struct {
	stdout, stderr string
	code           int
}

// runCLI runs keyvend with args in dir with env and returns its output
// and exit code.
func runCLI(t *testing.T, dir string, env []string, args ...string) cliRun {
	t.Helper()
	cmd := exec.Command(keyvendBin, args...)
	cmd.Dir, cmd.Env = dir, env
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatalf("run keyvend %s: %v", strings.Join(args, " "), err)
	}
	return cliRun{stdout.String(), stderr.String(), cmd.ProcessState.ExitCode()}
}

// TestCLIAgainstServe is the CLI as a developer uses it against `make run`
// (keyvend serve with its embedded moto), with no --api flag: vend, show,
// profile, the AWS CLI through keyvend's credentials helper, list,
// history, grants, rotate while a long-lived SDK client keeps working,
// delete. Exit codes are checked at every step; no output but the
// helper's holds a secret access key.
func TestCLIAgainstServe(t *testing.T) {
	t.Parallel()
	dir := checkout(t)
	kv := startServe(t, dir, cleanEnv(dir, "KEYVEND_LISTEN="+freeAddr(t)))
	exports := readExports(t, filepath.Join(dir, ".keyvend", "local.env"))
	shell := envList(exports)
	config := filepath.Join(dir, "aws", "config")
	// The environment of a shell that sourced .keyvend/local.env and
	// exported KEYVEND_API (the test's serve is not on 8080).
	env := cleanEnv(dir, append(shell, "KEYVEND_API="+kv.URL, "AWS_CONFIG_FILE="+config)...)

	var printed strings.Builder // everything but the helper's output
	run := func(want int, args ...string) cliRun {
		t.Helper()
		r := runCLI(t, dir, env, args...)
		printed.WriteString(r.stdout + r.stderr)
		if r.code != want {
			t.Fatalf("keyvend %s: exit code %d, want %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), r.code, want, r.stdout, r.stderr)
		}
		return r
	}

	// 1. vend, flags after the arguments, one before.
	r := run(0, "vend", "--expires", "720h", "site-deployer", "site.example.com:read-write", "assets.example.com:read-only:img/", "--reason", "cli e2e", "--wait")
	for _, want := range []string{"site-deployer", "site.example.com read-write", "assets.example.com read-only img/*", "credential_process = aws secretsmanager get-secret-value", "credential_process = keyvend credentials --secret arn:aws:secretsmanager:"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("vend printed no %q:\n%s", want, r.stdout)
		}
	}
	// Ready under moto's enforced IAM, with a prefixed grant first by name
	// (the readiness check's listing under img/ never got past moto's
	// signature check: ready false after the whole bound).
	if !regexp.MustCompile(`(?m)^ready\s+true$`).MatchString(r.stdout) {
		t.Errorf("vend --wait printed no \"ready true\":\n%s", r.stdout)
	}
	// Again: a conflict, exit code 5, problem detail and request id on stderr.
	r = run(5, "vend", "site-deployer", "other.example.com", "--reason", "again")
	if !strings.Contains(r.stderr, "409") || !strings.Contains(r.stderr, "request id: ") {
		t.Errorf("a second vend's stderr has no 409 or request id: %s", r.stderr)
	}
	run(2, "vend", "site-deployer", "site.example.com:bogus", "--reason", "x")
	run(2, "vend", "site-deployer", "site.example.com")

	// 2. show --json is the API's description.
	r = run(0, "show", "--json", "site-deployer")
	var d provision.Description
	if err := json.Unmarshal([]byte(r.stdout), &d); err != nil {
		t.Fatalf("show --json printed %q: %v", r.stdout, err)
	}
	if d.User != "site-deployer" || d.SecretARN == "" || len(d.Grants) != 2 || d.ExpiresAt == nil {
		t.Fatalf("show --json = %s: want site-deployer with a secret, two grants, an expiry", r.stdout)
	}
	if r = run(4, "show", "nobody-here"); !strings.Contains(r.stderr, "request id: ") {
		t.Errorf("show of a missing user: stderr has no request id: %s", r.stderr)
	}

	// 3. profile, next to a profile of the user's own, twice.
	writeFile(t, config, "[profile mine]\nregion = eu-west-1\n")
	run(0, "profile", "site-deployer", "--name", "site")
	first, err := os.ReadFile(config)
	if err != nil {
		t.Fatal(err)
	}
	run(0, "profile", "--name", "site", "site-deployer")
	again, _ := os.ReadFile(config)
	want := "[profile mine]\nregion = eu-west-1\n\n[profile site]\ncredential_process = " + keyvendBin + " credentials --secret " + d.SecretARN + "\nregion = us-east-1\n"
	if string(first) != want || string(again) != want {
		t.Fatalf("config after profile:\n%s\nafter a second profile:\n%s\nwant:\n%s", first, again, want)
	}
	if fi, err := os.Stat(config); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("config mode: %v, %v; want 0600", fi.Mode(), err)
	}

	// 4. The AWS CLI through the helper: the vended user, syncing its bucket.
	if who := mustAWS(t, dir, env, "--profile", "site", "sts", "get-caller-identity", "--query", "Arn", "--output", "text"); !strings.Contains(who, "user/keyvend/site-deployer") {
		t.Fatalf("aws sts get-caller-identity --profile site = %q, want the vended user", who)
	}
	writeFile(t, filepath.Join(dir, "site", "index.html"), "<h1>hello</h1>\n")
	if out := mustAWS(t, dir, env, "--profile", "site", "s3", "sync", "./site", "s3://site.example.com"); !strings.Contains(out, "upload: site/index.html") {
		t.Errorf("aws s3 sync printed %q, want the upload", out)
	}

	// 5. The helper itself: credential_process JSON with an Expiration.
	helper := func() (id, secret string) {
		t.Helper()
		h := runCLI(t, dir, env, "credentials", "--secret", d.SecretARN)
		if h.code != 0 {
			t.Fatalf("keyvend credentials: exit %d: %s", h.code, h.stderr)
		}
		var c struct {
			Version         int
			AccessKeyID     string `json:"AccessKeyId"`
			SecretAccessKey string
			Expiration      time.Time
		}
		if err := json.Unmarshal([]byte(h.stdout), &c); err != nil {
			t.Fatalf("keyvend credentials printed %q: %v", h.stdout, err)
		}
		if ahead := time.Until(c.Expiration); c.Version != 1 || c.AccessKeyID == "" || len(c.SecretAccessKey) < 20 || ahead < 15*time.Minute || ahead > 21*time.Minute {
			t.Fatalf("keyvend credentials = %s: want version 1, a key, an Expiration about 20 minutes ahead", h.stdout)
		}
		return c.AccessKeyID, c.SecretAccessKey
	}
	oldID, oldSecret := helper()
	if r := runCLI(t, dir, env, "credentials"); r.code != 2 {
		t.Errorf("keyvend credentials without --secret: exit %d, want 2", r.code)
	}

	// 6. list and history.
	if r = run(0, "list"); !strings.Contains(r.stdout, "site-deployer") || !strings.HasPrefix(r.stdout, "USER") {
		t.Errorf("list printed %q, want a table with site-deployer", r.stdout)
	}
	if r = run(0, "list", "--bucket", "other.example.com", "--json"); strings.TrimSpace(r.stdout) != `{"users":[]}` {
		t.Errorf("list --bucket other.example.com --json = %q, want no users", r.stdout)
	}
	if r = run(0, "history", "site-deployer"); !strings.Contains(r.stdout, "create") {
		t.Errorf("history printed %q, want the create", r.stdout)
	}

	// The API URL from a stack's ApiUrl output (a stand-in stack in the
	// embedded moto, which cannot create keyvend's HTTP API).
	cfn := cloudformation.NewFromConfig(awstest.ConfigWithKeys(t, exports["AWS_ENDPOINT_URL"], exports["AWS_ACCESS_KEY_ID"], exports["AWS_SECRET_ACCESS_KEY"]))
	if _, err := cfn.CreateStack(context.Background(), &cloudformation.CreateStackInput{
		StackName:    aws.String("keyvend-cli-e2e"),
		TemplateBody: aws.String(`{"Resources":{"Q":{"Type":"AWS::SQS::Queue","Properties":{"QueueName":"keyvend-cli-e2e"}}},"Outputs":{"ApiUrl":{"Value":"` + kv.URL + `"}}}`),
	}); err != nil {
		t.Fatal(err)
	}
	byStack := cleanEnv(dir, append(shell, "KEYVEND_STACK=keyvend-cli-e2e")...)
	if r := runCLI(t, dir, byStack, "list"); r.code != 0 || !strings.Contains(r.stdout, "site-deployer") {
		t.Errorf("list with KEYVEND_STACK: exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
	if r := runCLI(t, dir, byStack, "list", "--stack", "no-such-stack"); r.code != 1 || !strings.Contains(r.stderr, "no-such-stack") {
		t.Errorf("list --stack no-such-stack: exit %d, stderr %q; want 1 and the stack named", r.code, r.stderr)
	}

	// 7. grants: the user's new grant list.
	run(0, "grants", "site-deployer", "site.example.com:read-only")
	r = run(0, "show", "site-deployer", "--json")
	if err := json.Unmarshal([]byte(r.stdout), &d); err != nil || len(d.Grants) != 1 || d.Grants[0].Access != "read-only" {
		t.Fatalf("after grants, show = %s (%v): want one read-only grant", r.stdout, err)
	}

	// A change between the CLI's read and its write (made by a proxy just
	// before it forwards the CLI's PUT) is refused, not overwritten: 412,
	// exit code 5, and the user keeps the concurrent change.
	target, err := url.Parse(kv.URL)
	if err != nil {
		t.Fatal(err)
	}
	rp := httputil.NewSingleHostReverseProxy(target)
	race := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPut { // not kv.call: no t.Fatal off the test's goroutine
			req, _ := http.NewRequest(http.MethodPut, kv.URL+r.URL.Path, strings.NewReader(`{"grants":[{"bucket":"site.example.com","access":"read-write"}]}`))
			req.Header.Set("Content-Type", "application/json")
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Errorf("the concurrent PUT: %v", err)
			} else if resp.Body.Close(); resp.StatusCode != http.StatusOK {
				t.Errorf("the concurrent PUT: %s", resp.Status)
			}
		}
		rp.ServeHTTP(w, r)
	}))
	defer race.Close()
	if r = run(5, "grants", "site-deployer", "assets.example.com:full", "--api", race.URL); !strings.Contains(r.stderr, "412") {
		t.Errorf("grants over a concurrent change: stderr %q, want the 412", r.stderr)
	}
	r = run(0, "show", "site-deployer", "--json")
	if err := json.Unmarshal([]byte(r.stdout), &d); err != nil || len(d.Grants) != 1 || d.Grants[0].Access != "read-write" || d.Grants[0].Bucket != "site.example.com" {
		t.Fatalf("after a refused grants, show = %s (%v): want the concurrent change's grant", r.stdout, err)
	}

	// 8. rotate while a long-lived SDK client keeps working: an S3 client
	// whose credentials come from the helper, as credential_process gives
	// them to any SDK (cached until the helper's Expiration), made before
	// the rotation, still writes after it — the previous key stays active
	// for the rotation grace (moto enforces IAM here: a deleted key would
	// be refused). The helper then reads the new key.
	longLived := s3.NewFromConfig(aws.Config{
		Region:       exports["AWS_REGION"],
		BaseEndpoint: aws.String(exports["AWS_ENDPOINT_URL"]),
		Credentials: aws.NewCredentialsCache(processcreds.NewProviderCommand(processcreds.NewCommandBuilderFunc(func(ctx context.Context) (*exec.Cmd, error) {
			cmd := exec.CommandContext(ctx, keyvendBin, "credentials", "--secret", d.SecretARN)
			cmd.Dir, cmd.Env = dir, env
			return cmd, nil
		}))),
	}, func(o *s3.Options) { o.UsePathStyle = true })
	put := func(key string) error {
		_, err := longLived.PutObject(context.Background(), &s3.PutObjectInput{Bucket: aws.String("site.example.com"), Key: aws.String(key), Body: strings.NewReader("deploy\n")})
		return err
	}
	if err := put("before-rotate.txt"); err != nil {
		t.Fatalf("the long-lived client before the rotate: %v", err)
	}
	r = run(0, "rotate", "site-deployer")
	newID, newSecret := helper()
	if newID == oldID || !strings.Contains(r.stdout, newID) || !strings.Contains(r.stdout, oldID) {
		t.Fatalf("rotate printed %q; the helper reads %s (was %s)", r.stdout, newID, oldID)
	}
	if err := put("after-rotate.txt"); err != nil {
		t.Fatalf("the long-lived client broke at the rotate: %v", err)
	}
	if creds, err := longLived.Options().Credentials.Retrieve(context.Background()); err != nil || creds.AccessKeyID != oldID {
		t.Errorf("the long-lived client wrote with %q (%v), want the previous key %s (cached until its Expiration)", creds.AccessKeyID, err, oldID)
	}

	// 9. delete, then the user is gone.
	run(0, "delete", "site-deployer")
	run(4, "show", "site-deployer")
	run(4, "rotate", "site-deployer")

	for _, s := range []string{oldSecret, newSecret} {
		if strings.Contains(printed.String(), s) {
			t.Fatalf("a CLI verb other than credentials printed a secret access key:\n%s", printed.String())
		}
	}
}
