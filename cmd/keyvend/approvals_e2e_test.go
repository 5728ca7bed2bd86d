package main

import (
	"encoding/json"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/keyvend/keyvend/pkg/approval"
)

// TestCLIApprovals is the README's approval flow with two people: make
// run's keyvend serve (local-dev) and a second serve on the same embedded
// moto and state table as local-ops. local-ops asks for full access on
// assets.example.com, which rules/demo.json gives only with local-dev's
// approval: vend prints the pending request (exit 0) and provisions
// nothing; local-ops approving its own request is refused (exit 3);
// local-dev's queue holds it; local-dev approves and the user exists,
// owned by local-ops, with both people in its history; a denial closes
// another request.
func TestCLIApprovals(t *testing.T) {
	t.Parallel()
	dir := checkout(t)
	dev := startServe(t, dir, cleanEnv(dir, "KEYVEND_LISTEN="+freeAddr(t)))
	shell := envList(readExports(t, filepath.Join(dir, ".keyvend", "local.env")))
	const localOps = "arn:aws:iam::123456789012:user/local-ops"
	ops := startServe(t, dir, cleanEnv(dir, append(shell, "KEYVEND_LISTEN="+freeAddr(t), "KEYVEND_LOCAL_CALLER="+localOps)...))
	asDev := cleanEnv(dir, append(shell, "KEYVEND_API="+dev.URL)...)
	asOps := cleanEnv(dir, append(shell, "KEYVEND_API="+ops.URL)...)
	run := func(env []string, want int, args ...string) cliRun {
		t.Helper()
		r := runCLI(t, dir, env, args...)
		if r.code != want {
			t.Fatalf("keyvend %s: exit code %d, want %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), r.code, want, r.stdout, r.stderr)
		}
		return r
	}

	r := run(asOps, 0, "vend", "ops-uploader", "assets.example.com:full", "--reason", "bulk asset cleanup")
	m := regexp.MustCompile(`(?m)^pending approval: (apr-[0-9a-f]{20})$`).FindStringSubmatch(r.stdout)
	if m == nil {
		t.Fatalf("vend printed no \"pending approval: <id>\":\n%s", r.stdout)
	}
	id := m[1]
	run(asOps, 4, "show", "ops-uploader") // nothing provisioned
	if r = run(asOps, 3, "approve", id); !strings.Contains(r.stderr, "403") {
		t.Errorf("self-approval: stderr %s, want a 403", r.stderr)
	}
	run(asDev, 2, "deny", id) // a denial needs a reason
	if r = run(asDev, 0, "requests", "--status", "pending"); !strings.Contains(r.stdout, id) || !strings.Contains(r.stdout, localOps) {
		t.Errorf("local-dev's queue does not hold %s:\n%s", id, r.stdout)
	}
	r = run(asDev, 0, "approve", id, "--reason", "ticket OPS-42", "--json")
	var got approval.Request
	if err := json.Unmarshal([]byte(r.stdout), &got); err != nil {
		t.Fatalf("approve --json printed %q: %v", r.stdout, err)
	}
	if got.Status != approval.Provisioned || got.Answer == nil || got.Answer.Status != 201 {
		t.Fatalf("after approval: %s", r.stdout)
	}
	if r = run(asOps, 0, "show", "ops-uploader"); !strings.Contains(r.stdout, localOps) || !strings.Contains(r.stdout, "assets.example.com full") {
		t.Errorf("show ops-uploader:\n%s\nwant local-ops as its requester and full on assets", r.stdout)
	}
	r = run(asOps, 0, "history", "ops-uploader", "--json")
	for _, want := range []string{`"approval-request"`, `"approval-approve"`, `"create"`, `"approved_by"`, "user/local-dev", "user/local-ops"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("history has no %s:\n%s", want, r.stdout)
		}
	}
	run(asDev, 5, "approve", id) // decided already: 409

	r = run(asOps, 0, "vend", "ops-bulk", "assets.example.com:full", "--reason", "bulk cleanup")
	id2 := regexp.MustCompile(`apr-[0-9a-f]{20}`).FindString(r.stdout)
	if r = run(asDev, 0, "deny", id2, "--reason", "use ops-uploader"); !regexp.MustCompile(`(?m)^status\s+denied$`).MatchString(r.stdout) {
		t.Errorf("deny printed:\n%s", r.stdout)
	}
	run(asOps, 4, "show", "ops-bulk")
	if r = run(asOps, 0, "requests"); !strings.Contains(r.stdout, id) || !strings.Contains(r.stdout, id2) {
		t.Errorf("local-ops's requests:\n%s", r.stdout)
	}
	if strings.Contains(r.stdout+r.stderr, "SecretAccessKey") {
		t.Error("a secret key was printed")
	}
}
