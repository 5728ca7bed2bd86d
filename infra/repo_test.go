package main

import (
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestBuildOutputsAreNotTracked: the CDK app's build outputs (the binary
// `go build` leaves in infra/, cdk.out) are ignored and none is tracked.
// A 127 MB infra/infra binary was committed once.
func TestBuildOutputsAreNotTracked(t *testing.T) {
	root, err := RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	git := func(args ...string) (string, error) {
		cmd := exec.Command("git", append([]string{"-C", root}, args...)...)
		out, err := cmd.Output()
		return string(out), err
	}
	if _, err := git("rev-parse", "--git-dir"); err != nil {
		t.Skipf("not a git checkout (%v): nothing to check", err)
	}
	outputs := []string{"infra/infra", "infra/cdk.out/manifest.json", "cdk.out/manifest.json", "cdk.out.slack/manifest.json",
		"dist/api/bootstrap", "infra/infra.test"}
	for _, p := range outputs {
		if out, _ := git("ls-files", "--", p); strings.TrimSpace(out) != "" {
			t.Errorf("%s is tracked: git rm --cached it", p)
		}
		// check-ignore --no-index: ignored by the rules, tracked or not.
		if _, err := git("check-ignore", "-q", "--no-index", "--", p); err != nil {
			t.Errorf("%s is not ignored by .gitignore", p)
		}
	}
	// Nothing tracked under infra/ but sources and the module files.
	out, err := git("ls-files", "--", "infra")
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range strings.Fields(out) {
		switch filepath.Ext(f) {
		case ".go", ".mod", ".sum", ".md", ".json":
		default:
			t.Errorf("infra/ tracks %s, which is not source", f)
		}
	}
}
