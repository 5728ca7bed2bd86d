package main

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// runAppEnv makes the test binary run the app (TestMain) instead of the
// tests, so a test can run the app as the CDK CLI does.
const runAppEnv = "KEYVEND_INFRA_TEST_RUN_APP"

// TestCLIRelativePaths runs the app the way `cdk synth` does: in infra/,
// with CDK_OUTDIR, CDK_PERF_COUNTERS_FILE and CDK_ERROR_FILE relative to
// the repository root (where the CLI runs), and with
// @aws-cdk/core.slowSynthThreshold=0 so aws-cdk-lib writes the
// performance-counters file, as it does whenever a synth takes 10 s or
// more on a loaded machine. Every file must land in the output directory.
func TestCLIRelativePaths(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a full synth in a subprocess")
	}
	root, err := RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	tmp := t.TempDir()
	dist := filepath.Join(tmp, "dist")
	if err := fakeDist(dist); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(tmp, "cdk.out")
	if err := os.MkdirAll(out, 0o755); err != nil { // the CLI creates it before running the app
		t.Fatal(err)
	}
	rel, err := filepath.Rel(root, out)
	if err != nil {
		t.Fatal(err)
	}
	ctx, err := cdkJSONContext(root)
	if err != nil {
		t.Fatal(err)
	}
	ctx["distDir"] = dist
	ctx["@aws-cdk/core.slowSynthThreshold"] = 0
	ctxJSON, _ := json.Marshal(ctx)

	cmd := exec.Command(os.Args[0])
	cmd.Dir = filepath.Join(root, "infra")
	cmd.Env = append(os.Environ(),
		runAppEnv+"=1",
		"CDK_OUTDIR="+rel,
		"CDK_PERF_COUNTERS_FILE="+filepath.Join(rel, "performance-counters.json"),
		"CDK_ERROR_FILE="+filepath.Join(rel, "error.txt"),
		"CDK_CONTEXT_JSON="+string(ctxJSON),
	)
	b, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("the app failed as the CDK CLI runs it: %v\n%s", err, b)
	}
	for _, f := range []string{"manifest.json", "keyvend.template.json", "performance-counters.json"} {
		if _, err := os.Stat(filepath.Join(out, f)); err != nil {
			t.Errorf("%s not in the output directory: %v", f, err)
		}
	}
}
