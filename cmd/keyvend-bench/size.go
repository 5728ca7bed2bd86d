package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sort"
)

func hostArch() string { return runtime.GOARCH }

// sizeResult is one linux/arm64 bootstrap's size.
type sizeResult struct {
	Name  string
	Bytes int64
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
		out = append(out, sizeResult{Name: t[0], Bytes: fi.Size()})
	}
	return out, nil
}

func mib(b int64) string { return fmt.Sprintf("%.2f MiB", float64(b)/(1<<20)) }
