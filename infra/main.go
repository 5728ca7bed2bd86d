// Command infra is keyvend's CDK app: `cdk synth` (make synth) runs it with
// the context of the repository's cdk.json.
package main

import (
	"fmt"
	"os"
	"path/filepath"

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
	props := &awscdk.AppProps{}
	// The CLI runs the app in infra/ (cdk.json: "cd infra && go run .")
	// and names its output directory relative to the repository root.
	if out := os.Getenv("CDK_OUTDIR"); out != "" && !filepath.IsAbs(out) {
		root, err := RepoRoot()
		if err != nil {
			return err
		}
		props.Outdir = jsii.String(filepath.Join(root, out))
	}
	app := awscdk.NewApp(props)
	if _, err := Build(app); err != nil {
		return err
	}
	app.Synth(nil)
	return nil
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
