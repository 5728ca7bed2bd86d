package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
)

func hostArch() string { return runtime.GOARCH }

// sizeResult is one linux/arm64 bootstrap's size and what it links.
type sizeResult struct {
	Name  string
	Bytes int64
	// Services are the AWS SDK service packages linked in; CDK counts
	// packages of the CDK (aws-cdk-go, constructs, jsii), which must be 0.
	Services []string
	CDK      int
}

// linked lists the SDK services and counts the CDK packages pkg links.
func linked(ctx context.Context, pkg string) (services []string, cdk int, err error) {
	cmd := exec.CommandContext(ctx, goTool(), "list", "-deps", "-tags", "lambda.norpc", "-f", "{{.ImportPath}}", pkg)
	cmd.Env = append(os.Environ(), "GOOS=linux", "GOARCH=arm64", "CGO_ENABLED=0")
	out, err := cmd.Output()
	if err != nil {
		return nil, 0, fmt.Errorf("go list -deps %s: %w", pkg, err)
	}
	for _, p := range strings.Fields(string(out)) {
		switch {
		case strings.Contains(p, "aws-cdk-go") || strings.Contains(p, "constructs-go") || strings.Contains(p, "jsii-runtime-go"):
			cdk++
		case strings.HasPrefix(p, "github.com/aws/aws-sdk-go-v2/service/") && strings.Count(p, "/") == 4:
			services = append(services, strings.TrimPrefix(p, "github.com/aws/aws-sdk-go-v2/service/"))
		}
	}
	sort.Strings(services)
	return services, cdk, nil
}

// measureSizes builds every function in functions/ and the empty handler
// for linux/arm64 the way `make build` does, and returns their sizes, the
// empty handler first.
func measureSizes(ctx context.Context, dir string, progress func(string)) ([]sizeResult, error) {
	entries, err := os.ReadDir("functions")
	if err != nil {
		return nil, err
	}
	var fns []string
	for _, e := range entries {
		if e.IsDir() {
			fns = append(fns, e.Name())
		}
	}
	sort.Strings(fns)
	targets := append([][2]string{{"empty aws-lambda-go handler", "./cmd/keyvend-bench/emptyfn"}}, func() [][2]string {
		var t [][2]string
		for _, f := range fns {
			t = append(t, [2]string{"functions/" + f, "./functions/" + f})
		}
		return t
	}()...)
	var out []sizeResult
	for _, t := range targets {
		progress("build " + t[0] + " for linux/arm64")
		bin := filepath.Join(dir, "arm64", filepath.Base(t[1]), "bootstrap")
		if err := buildFunction(ctx, t[1], bin, "linux", "arm64"); err != nil {
			return nil, err
		}
		fi, err := os.Stat(bin)
		if err != nil {
			return nil, err
		}
		services, cdk, err := linked(ctx, t[1])
		if err != nil {
			return nil, err
		}
		out = append(out, sizeResult{Name: t[0], Bytes: fi.Size(), Services: services, CDK: cdk})
	}
	return out, nil
}

func mib(b int64) string { return fmt.Sprintf("%.2f MiB", float64(b)/(1<<20)) }
