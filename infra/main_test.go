package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/aws/aws-cdk-go/awscdk/v2"
	"github.com/aws/aws-cdk-go/awscdk/v2/assertions"
	"github.com/aws/constructs-go/constructs/v10"
	"github.com/aws/jsii-runtime-go"
)

// TestMain closes the jsii runtime (its node process and the
// /tmp/jsii-runtime.* folder) after the tests, and removes the shared
// stack's fake dist directory.
func TestMain(m *testing.M) {
	if os.Getenv(runAppEnv) == "1" {
		// TestCLIRelativePaths runs this binary as the CDK app.
		if err := run(); err != nil {
			fmt.Fprintln(os.Stderr, "keyvend infra:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	code := m.Run()
	jsii.Close()
	for _, syn := range []*synthesized{defaultSyn, slackSyn, groupSyn} {
		if syn != nil {
			os.RemoveAll(syn.DistDir)
		}
	}
	os.Exit(code)
}

// synthesized is one app built the way `cdk synth` builds it.
type synthesized struct {
	K        *Keyvend
	Template assertions.Template
	JSON     map[string]any // the CloudFormation template
	DistDir  string
}

var (
	defaultOnce sync.Once
	defaultSyn  *synthesized
	defaultErr  error

	slackOnce sync.Once
	slackSyn  *synthesized
	slackErr  error

	groupOnce sync.Once
	groupSyn  *synthesized
	groupErr  error
)

// testSigningSecretARN is the Slack signing secret of slackStack, in the
// escalation tests' account and region.
const testSigningSecretARN = "arn:aws:secretsmanager:" + testRegion + ":" + testAccount + ":secret:keyvend/slack-signing-AbCdEf"

// slackStack is the stack with cdk.json's context and the Slack command
// (slackSigningSecretArn set), synthesized once.
func slackStack(t *testing.T) *synthesized {
	t.Helper()
	slackOnce.Do(func() {
		dir, err := os.MkdirTemp("", "keyvend-infra-test-dist-")
		if err != nil {
			slackErr = err
			return
		}
		slackSyn, slackErr = synth(dir, map[string]any{"slackSigningSecretArn": testSigningSecretARN})
	})
	if slackErr != nil {
		t.Fatal(slackErr)
	}
	return slackSyn
}

// groupStack is slackStack in grant mode "group", synthesized once.
func groupStack(t *testing.T) *synthesized {
	t.Helper()
	groupOnce.Do(func() {
		dir, err := os.MkdirTemp("", "keyvend-infra-test-dist-")
		if err != nil {
			groupErr = err
			return
		}
		groupSyn, groupErr = synth(dir, map[string]any{"slackSigningSecretArn": testSigningSecretARN, "grantMode": GrantModeGroup})
	})
	if groupErr != nil {
		t.Fatal(groupErr)
	}
	return groupSyn
}

// modeStacks are the stacks with every function, one per grant mode.
func modeStacks(t *testing.T) map[string]*synthesized {
	t.Helper()
	return map[string]*synthesized{GrantModePolicy: slackStack(t), GrantModeGroup: groupStack(t)}
}

// defaultStack is the stack with cdk.json's context, synthesized once.
func defaultStack(t *testing.T) *synthesized {
	t.Helper()
	defaultOnce.Do(func() {
		dir, err := os.MkdirTemp("", "keyvend-infra-test-dist-")
		if err != nil {
			defaultErr = err
			return
		}
		defaultSyn, defaultErr = synth(dir, nil)
	})
	if defaultErr != nil {
		t.Fatal(defaultErr)
	}
	return defaultSyn
}

// synthWith synthesizes the stack with cdk.json's context plus overrides,
// with fake Lambda builds in a temporary dist directory.
func synthWith(t *testing.T, overrides map[string]any) (*synthesized, error) {
	t.Helper()
	return synth(t.TempDir(), overrides)
}

// synth passes cdk.json's context (the assertions API does not read
// cdk.json) with dist pointing at fake bootstraps, so tests do not depend
// on `make build`.
func synth(distDir string, overrides map[string]any) (*synthesized, error) {
	if err := fakeDist(distDir); err != nil {
		return nil, err
	}
	return synthIn(distDir, overrides)
}

// fakeDist writes a stand-in bootstrap for every function.
func fakeDist(distDir string) error {
	for _, fn := range AllFunctions {
		if err := os.MkdirAll(filepath.Join(distDir, fn), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(distDir, fn, "bootstrap"), []byte("#!/bin/sh\necho fake "+fn+"\n"), 0o755); err != nil {
			return err
		}
	}
	return nil
}

// synthIn synthesizes with the Lambda builds in distDir as they are.
func synthIn(distDir string, overrides map[string]any) (s *synthesized, err error) {
	defer func() {
		if r := recover(); r != nil { // jsii reports JavaScript errors as panics
			err = fmt.Errorf("synth panicked: %v", r)
		}
	}()
	root, err := RepoRoot()
	if err != nil {
		return nil, err
	}
	ctx, err := cdkJSONContext(root)
	if err != nil {
		return nil, err
	}
	ctx["distDir"] = distDir
	for k, v := range overrides {
		ctx[k] = v
	}
	app := awscdk.NewApp(&awscdk.AppProps{Context: &ctx})
	k, err := Build(app)
	if err != nil {
		return nil, err
	}
	tmpl := assertions.Template_FromStack(k.Stack, nil)
	return &synthesized{K: k, Template: tmpl, JSON: *tmpl.ToJSON(), DistDir: distDir}, nil
}

// resources returns the template's resources of type typ by logical id.
func (s *synthesized) resources(typ string) map[string]map[string]any {
	out := map[string]map[string]any{}
	for id, r := range s.JSON["Resources"].(map[string]any) {
		res := r.(map[string]any)
		if res["Type"] == typ {
			out[id] = res
		}
	}
	return out
}

// props returns the Properties of the resource with logical id id.
func (s *synthesized) props(id string) map[string]any {
	r, ok := s.JSON["Resources"].(map[string]any)[id].(map[string]any)
	if !ok {
		return nil
	}
	p, _ := r["Properties"].(map[string]any)
	return p
}

// id is the CloudFormation logical id of a construct's resource.
func (s *synthesized) id(c constructs.IConstruct) string {
	return *s.K.Stack.GetLogicalId(c.Node().DefaultChild().(awscdk.CfnElement))
}

// noPanic runs f, turning a jsii assertion panic into a test error.
func noPanic(t *testing.T, what string, f func()) {
	t.Helper()
	defer func() {
		if r := recover(); r != nil {
			t.Errorf("%s: %v", what, r)
		}
	}()
	f()
}

// cdkJSONContext reads the context object of the cdk.json at root.
func cdkJSONContext(root string) (map[string]any, error) {
	b, err := os.ReadFile(filepath.Join(root, "cdk.json"))
	if err != nil {
		return nil, err
	}
	var doc struct {
		Context map[string]any `json:"context"`
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		return nil, fmt.Errorf("cdk.json: %w", err)
	}
	return doc.Context, nil
}
