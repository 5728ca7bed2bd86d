package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"

	"github.com/keyvend/keyvend/pkg/awstest"
	"github.com/keyvend/keyvend/pkg/caller"
	"github.com/keyvend/keyvend/pkg/policy"
	"github.com/keyvend/keyvend/pkg/provision"
	"github.com/keyvend/keyvend/pkg/provisiontest"
	"github.com/keyvend/keyvend/pkg/state"
)

const (
	reapBoundary  = provisiontest.Boundary
	reapRequester = "arn:aws:iam::123456789012:user/alice"
	reapKeyID     = "AKIAKEYVENDTEST00000" // awstest.Config's key
)

// buildKeyvend builds this command into a temporary directory.
func buildKeyvend(t *testing.T) string {
	t.Helper()
	gobin, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("go tool: %v", err)
	}
	bin := filepath.Join(t.TempDir(), "keyvend")
	out, err := exec.Command(gobin, "build", "-o", bin, ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// runKeyvend runs bin with exactly env (plus a private HOME with no AWS
// configuration) and returns its stdout, stderr and exit code.
func runKeyvend(t *testing.T, bin string, env []string, args ...string) (string, string, int) {
	t.Helper()
	home := t.TempDir()
	cmd := exec.Command(bin, args...)
	cmd.Env = append([]string{
		"HOME=" + home,
		"AWS_CONFIG_FILE=" + filepath.Join(home, "config"),
		"AWS_SHARED_CREDENTIALS_FILE=" + filepath.Join(home, "credentials"),
		"AWS_EC2_METADATA_DISABLED=true",
		"AWS_ACCESS_KEY_ID=" + reapKeyID,
		"AWS_SECRET_ACCESS_KEY=keyvend-test-secret",
		"AWS_REGION=" + awstest.Region,
		"KEYVEND_BOUNDARY_ARN=" + reapBoundary,
	}, env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	var exit *exec.ExitError
	switch {
	case errors.As(err, &exit):
		code = exit.ExitCode()
	case err != nil:
		t.Fatalf("run %s: %v", bin, err)
	}
	return stdout.String(), stderr.String(), code
}

func TestReapCommand(t *testing.T) {
	bin := buildKeyvend(t)
	srv := awstest.Dedicated(t)
	p := provisiontest.New(t, provisiontest.Endpoint(srv.URL),
		provisiontest.Rules(`{"rules":[{"principals":["`+reapRequester+`"],"buckets":["*.example.com"],"access":["read-write"]}]}`))
	svc, store := p.Service, p.Store
	user := awstest.Name("expiring")
	res, err := svc.Create(t.Context(), provision.CreateInput{
		Principal: caller.Principal{ID: reapRequester},
		RequestID: "cmd-reap",
		Request: provision.CreateRequest{User: user, Reason: "reap command test", ExpiresIn: "1h",
			Grants: []policy.Grant{{Bucket: "reap-cmd.example.com", Access: policy.ReadWrite}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.ExpiresAt == nil {
		t.Fatal("no expiry")
	}
	now := res.ExpiresAt.Add(time.Minute).Format(time.RFC3339)
	sm := p.SM

	t.Run("without AWS_ENDPOINT_URL or --aws it refuses and calls nothing", func(t *testing.T) {
		// The per-service endpoints lead to moto through a proxy that counts
		// requests: were the guard missing, the reaper would get there.
		proxy := awstest.NewProxy(t, srv.URL)
		stdout, stderr, code := runKeyvend(t, bin, []string{
			"AWS_ENDPOINT_URL_IAM=" + proxy.URL,
			"AWS_ENDPOINT_URL_SECRETS_MANAGER=" + proxy.URL,
			"AWS_ENDPOINT_URL_DYNAMODB=" + proxy.URL,
			"KEYVEND_TABLE=" + store.Table(),
		}, "reap", "--now", now)
		if code == 0 {
			t.Fatalf("exit 0, want non-zero; stdout %q", stdout)
		}
		if !strings.Contains(stderr, "AWS_ENDPOINT_URL") || !strings.Contains(stderr, "--aws") {
			t.Errorf("stderr %q does not say what is missing", stderr)
		}
		if stdout != "" {
			t.Errorf("stdout %q, want nothing", stdout)
		}
		if n := proxy.Seen(reapKeyID); n != 0 {
			t.Errorf("%d AWS requests made", n)
		}
		if !p.UserExists(t, user) {
			t.Error("the expired user was deleted")
		}
	})

	t.Run("reaps the expired user and prints only the JSON report", func(t *testing.T) {
		stdout, stderr, code := runKeyvend(t, bin, []string{"AWS_ENDPOINT_URL=" + srv.URL, "KEYVEND_TABLE=" + store.Table()}, "reap", "--now", now)
		if code != 0 {
			t.Fatalf("exit %d\nstdout: %s\nstderr: %s", code, stdout, stderr)
		}
		dec := json.NewDecoder(strings.NewReader(stdout))
		dec.DisallowUnknownFields()
		var rep provision.ReapReport
		if err := dec.Decode(&rep); err != nil {
			t.Fatalf("stdout is not a report: %v\n%s", err, stdout)
		}
		if rest, _ := io.ReadAll(dec.Buffered()); strings.TrimSpace(string(rest)) != "" || dec.More() {
			t.Errorf("stdout has more than the report: %q", rest)
		}
		if !strings.HasPrefix(stdout, "{") {
			t.Errorf("stdout does not begin with the report: %q", stdout)
		}
		// Expiry comes from the table (one user due); the reconciliation
		// then finds no user left and reaches the end of every walk.
		if len(rep.Expired) != 1 || rep.Expired[0] != user || rep.Due != 1 || rep.Checked != 0 ||
			len(rep.HalfMadeDeleted)+len(rep.StrayKeysDeleted)+len(rep.Repaired)+len(rep.Adopted)+
				len(rep.RecordsRemoved)+len(rep.OrphanSecretsDeleted)+len(rep.Errors) != 0 ||
			rep.Reconciled != (provision.ReconcileProgress{Users: true, Records: true, Secrets: true}) {
			t.Errorf("report = %+v, want only %s due and expired, every walk complete", rep, user)
		}
		if want := res.ExpiresAt.Add(time.Minute); !rep.StartedAt.Equal(want) {
			t.Errorf("started_at %s, want --now %s", rep.StartedAt, want)
		}
		// The logs went to stderr: the reaper's audit line names the user.
		if !strings.Contains(stderr, `"action":"reap-expired"`) || !strings.Contains(stderr, user) {
			t.Errorf("stderr has no audit line for the reaped user:\n%s", stderr)
		}
		if p.UserExists(t, user) {
			t.Error("the expired user still exists")
		}
		if _, err := store.Get(t.Context(), user); !errors.Is(err, state.ErrNotFound) {
			t.Errorf("record of the expired user: %v, want none", err)
		}
		hist, err := store.History(t.Context(), user, 10, "")
		if err != nil || len(hist.Entries) == 0 || hist.Entries[0].Action != "reap-expired" || hist.Entries[0].Principal != provision.ReaperPrincipal {
			t.Errorf("history of the expired user: %+v, %v; want the reaper's reap-expired last", hist, err)
		}
		sec, err := sm.DescribeSecret(t.Context(), &secretsmanager.DescribeSecretInput{SecretId: aws.String("keyvend/users/" + user)})
		if err != nil || sec.DeletedDate == nil {
			t.Errorf("secret: %v, deleted %v; want it scheduled for deletion", err, sec)
		}
	})
}
