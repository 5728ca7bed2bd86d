// Command infra is keyvend's CDK app: `cdk synth` (make synth) runs it with
// the context of the repository's cdk.json.
package main

import (
	"fmt"
	"os"

	"github.com/aws/aws-cdk-go/awscdk/v2"
	"github.com/aws/jsii-runtime-go"
	"github.com/cdklabs/cdk-nag-go/cdknag/v2"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "keyvend infra:", err)
		os.Exit(1)
	}
}

func run() error {
	defer jsii.Close()
	if err := runInRepoRoot(); err != nil {
		return err
	}
	app := awscdk.NewApp(nil)
	if _, err := Build(app); err != nil {
		return err
	}
	app.Synth(nil)
	return nil
}

// runInRepoRoot makes the repository root the working directory of the
// app and of the jsii runtime's node process, which aws-cdk-lib runs in.
//
// The CDK CLI runs in the repository root and hands the app paths
// relative to it when its output directory is relative: CDK_OUTDIR, the
// file aws-cdk-lib writes an error code to (CDK_ERROR_FILE), and the file
// it writes performance counters to whenever a synth takes 10 s or more
// (CDK_PERF_COUNTERS_FILE, @aws-cdk/core.slowSynthThreshold), which a
// loaded machine reaches. The app itself runs in infra/ (cdk.json: "cd
// infra && go run ."), where those paths name the wrong place, and the
// synth failed with ENOENT writing the counters.
//
// Rewriting the variables does not reach aws-cdk-lib: jsii-runtime-go
// copies the environment for its node process when the CDK packages
// register their types (package init, before main). The node process is
// started at the first jsii call and inherits the working directory then,
// so changing directory first makes every relative path the CLI gives
// resolve against the root, as the CLI means. It must run before any
// jsii call.
func runInRepoRoot() error {
	root, err := RepoRoot()
	if err != nil {
		return err
	}
	return os.Chdir(root)
}

// Build reads the configuration from app's context, adds the keyvend stack
// and applies the cdk-nag AwsSolutions checks to everything in the app.
func Build(app awscdk.App) (*Keyvend, error) {
	cfg, err := ConfigFromContext(app.Node())
	if err != nil {
		return nil, err
	}
	k, err := NewKeyvend(app, cfg)
	if err != nil {
		return nil, err
	}
	awscdk.Aspects_Of(app).Add(cdknag.NewAwsSolutionsChecks(&cdknag.NagPackProps{Verbose: jsii.Bool(true)}), nil)
	return k, nil
}
