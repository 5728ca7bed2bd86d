package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"

	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"

	"github.com/keyvend/keyvend/pkg/app"
	"github.com/keyvend/keyvend/pkg/awstest"
	"github.com/keyvend/keyvend/pkg/caller"
	"github.com/keyvend/keyvend/pkg/grants"
	"github.com/keyvend/keyvend/pkg/httpapi"
	"github.com/keyvend/keyvend/pkg/moto"
)

const (
	benchRegion   = "us-east-1"
	benchCaller   = "arn:aws:iam::123456789012:user/bench"
	benchBoundary = "arn:aws:iam::123456789012:policy/keyvend/keyvend-boundary"
	benchRules    = `{"rules":[{"principals":["` + benchCaller + `"],"buckets":["*.example.com"],"access":["read-only","write-only","read-write","full"],"actions":["create","describe","list","rotate","update","delete","force-delete"]}]}`
)

// grantModes are the deployments the bench measures: grant mode policy
// (the default: one user policy per user) first, then grant mode group
// (one IAM group per grant).
var grantModes = []grants.Mode{grants.Policy, grants.Group}

// stack is keyvend's real http.Handler over the production SDK settings
// (app.LoadAWS: retries included), one per grant mode, both talking to the
// same moto through a loopback proxy that can add latency. Every AWS call
// the services make is counted (by one recorder: measure one request at a
// time).
type stack struct {
	moto  *moto.Server
	proxy *awstest.Proxy
	calls *awstest.Recorder
	h     map[grants.Mode]http.Handler
	// iam and sm are uninstrumented clients through the same proxy, for the
	// sequential reference flow and for checks.
	iam *iam.Client
	sm  *secretsmanager.Client
}

func newStack(ctx context.Context, dir string) (*stack, error) {
	srv, err := moto.Start(ctx, moto.Options{})
	if err != nil {
		return nil, err
	}
	st := &stack{moto: srv, calls: &awstest.Recorder{}}
	if st.proxy, err = awstest.StartProxy(srv.URL); err != nil {
		srv.Stop()
		return nil, err
	}
	rules := filepath.Join(dir, "bench-rules.json")
	if err := os.WriteFile(rules, []byte(benchRules), 0o600); err != nil {
		st.close()
		return nil, err
	}
	awsCfg, err := app.LoadAWS(ctx,
		config.WithRegion(benchRegion),
		config.WithBaseEndpoint(st.proxy.URL),
		config.WithCredentialsProvider(credentials.NewStaticCredentialsProvider("AKIAKEYVENDBENCH0000", "bench-secret", "")),
		config.WithSharedConfigFiles(nil), config.WithSharedCredentialsFiles(nil),
	)
	if err != nil {
		st.close()
		return nil, err
	}
	plain := awsCfg.Copy()
	st.iam, st.sm = iam.NewFromConfig(plain), secretsmanager.NewFromConfig(plain)
	st.calls.Attach(&awsCfg)
	discard := slog.New(slog.NewJSONHandler(io.Discard, nil))
	st.h = map[grants.Mode]http.Handler{}
	for _, mode := range grantModes {
		svc, err := app.NewServiceWith(app.Config{RulesPath: rules, BoundaryARN: benchBoundary, GrantMode: mode}, awsCfg, discard)
		if err != nil {
			st.close()
			return nil, err
		}
		if got := svc.GrantMode(); got != mode {
			st.close()
			return nil, fmt.Errorf("service built for grant mode %q runs in %q", mode, got)
		}
		st.h[mode] = httpapi.New(svc, caller.Static{ARN: benchCaller}, discard)
	}
	return st, nil
}

func (st *stack) close() {
	if st.proxy != nil {
		st.proxy.Close()
	}
	st.moto.Stop()
}

// do sends one request through the handler of grant mode mode and returns
// its status and body.
func (st *stack) do(ctx context.Context, mode grants.Mode, method, path, body string) (int, string) {
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req := httptest.NewRequestWithContext(ctx, method, path, rd)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	w := httptest.NewRecorder()
	st.h[mode].ServeHTTP(w, req)
	return w.Code, w.Body.String()
}

func createBody(user string, buckets ...string) string {
	var grants []string
	for _, b := range buckets {
		grants = append(grants, fmt.Sprintf(`{"bucket":%q,"access":"read-write","prefix":""}`, b))
	}
	return fmt.Sprintf(`{"user":%q,"grants":[%s],"reason":"benchmark"}`, user, strings.Join(grants, ","))
}

// must fails the benchmark (it could not measure) unless status is want.
func must(what string, status int, body string, want ...int) error {
	for _, w := range want {
		if status == w {
			return nil
		}
	}
	return fmt.Errorf("%s: HTTP %d: %s", what, status, strings.TrimSpace(body))
}
