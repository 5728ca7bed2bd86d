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

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"

	"github.com/keyvend/keyvend/pkg/app"
	"github.com/keyvend/keyvend/pkg/awsclient"
	"github.com/keyvend/keyvend/pkg/awstest"
	"github.com/keyvend/keyvend/pkg/caller"
	"github.com/keyvend/keyvend/pkg/grants"
	"github.com/keyvend/keyvend/pkg/httpapi"
	"github.com/keyvend/keyvend/pkg/moto"
	"github.com/keyvend/keyvend/pkg/provision"
	"github.com/keyvend/keyvend/pkg/state"
)

const (
	benchRegion   = "us-east-1"
	benchCaller   = "arn:aws:iam::123456789012:user/bench"
	benchBoundary = "arn:aws:iam::123456789012:policy/keyvend/keyvend-boundary"
	// benchTable is keyvend's state table (KEYVEND_TABLE) in the bench's
	// moto, made as the stack makes it (state.CreateTable).
	benchTable = "keyvend-bench-state"
	benchRules = `{"rules":[{"principals":["` + benchCaller + `"],"buckets":["*.example.com"],"access":["read-only","write-only","read-write","full"],"actions":["create","describe","list","rotate","update","delete","force-delete"]}]}`
)

// grantModes are the deployments the bench measures: grant mode policy
// (the default: one user policy per user) first, then grant mode group
// (one IAM group per grant).
var grantModes = []grants.Mode{grants.Policy, grants.Group}

// stack is keyvend's real http.Handler over the production SDK settings
// (awsclient.Load: retries included), one per grant mode, both talking to the
// same moto through a loopback proxy that can add latency, and the same
// state table in it. Every AWS call the services make is counted (by one
// recorder: measure one request at a time) and timed (timeline).
type stack struct {
	moto     *moto.Server
	proxy    *awstest.Proxy
	calls    *awstest.Recorder
	timeline *timeline
	h        map[grants.Mode]http.Handler
	// cfg is the services' SDK configuration (recorder and timeline
	// attached), rules the bench's rules file: for services the bench
	// builds itself (newService).
	cfg   aws.Config
	rules string
	// iam, sm and db are clients through the same proxy that the recorder
	// does not count (the timeline times them), for the sequential
	// reference flow, checks and the table's set-up; plain is their
	// configuration.
	iam   *iam.Client
	sm    *secretsmanager.Client
	db    *dynamodb.Client
	plain aws.Config
}

func newStack(ctx context.Context, dir string) (*stack, error) {
	srv, err := moto.Start(ctx, moto.Options{})
	if err != nil {
		return nil, err
	}
	st := &stack{moto: srv, calls: &awstest.Recorder{}, timeline: &timeline{}}
	if st.proxy, err = awstest.StartProxy(srv.URL); err != nil {
		srv.Stop()
		return nil, err
	}
	rules := filepath.Join(dir, "bench-rules.json")
	if err := os.WriteFile(rules, []byte(benchRules), 0o600); err != nil {
		st.close()
		return nil, err
	}
	awsCfg, err := awsclient.Load(ctx,
		config.WithRegion(benchRegion),
		config.WithBaseEndpoint(st.proxy.URL),
		config.WithCredentialsProvider(credentials.NewStaticCredentialsProvider("AKIAKEYVENDBENCH0000", "bench-secret", "")),
		config.WithSharedConfigFiles(nil), config.WithSharedCredentialsFiles(nil),
	)
	if err != nil {
		st.close()
		return nil, err
	}
	// The reference flow's calls are timed too (its critical path).
	plain := awsCfg.Copy()
	st.timeline.Attach(&plain)
	st.iam, st.sm, st.db, st.plain = iam.NewFromConfig(plain), secretsmanager.NewFromConfig(plain), dynamodb.NewFromConfig(plain), plain
	if err := st.makeTable(ctx); err != nil {
		st.close()
		return nil, err
	}
	st.calls.Attach(&awsCfg)
	st.timeline.Attach(&awsCfg)
	st.cfg, st.rules = awsCfg, rules
	st.h = map[grants.Mode]http.Handler{}
	for _, mode := range grantModes {
		svc, err := st.newService(mode)
		if err != nil {
			st.close()
			return nil, err
		}
		if got := svc.GrantMode(); got != mode {
			st.close()
			return nil, fmt.Errorf("service built for grant mode %q runs in %q", mode, got)
		}
		st.h[mode] = httpapi.New(svc, caller.Static{ARN: benchCaller}, quietLog)
	}
	return st, nil
}

var quietLog = slog.New(slog.NewJSONHandler(io.Discard, nil))

// newService is keyvend's provisioning service in grant mode mode on the
// stack (production SDK settings, the proxy, the state table), with
// adjustments to its settings.
func (st *stack) newService(mode grants.Mode, adjust ...func(*provision.Settings)) (*provision.Service, error) {
	return app.Service(app.Config{RulesPath: st.rules, BoundaryARN: benchBoundary, GrantMode: mode, Table: benchTable}, st.cfg, quietLog, adjust...)
}

// makeTable creates the state table (uninstrumented, through the proxy).
func (st *stack) makeTable(ctx context.Context) error {
	return state.CreateTable(ctx, st.db, benchTable)
}

// emptyTable deletes the state table and makes it again, empty: moto
// copies a whole table for every item of a transaction (TransactWriteItems),
// so a table left to grow would make every commit slower as a run goes.
// The proxy's delay applies: set it to 0 first.
func (st *stack) emptyTable(ctx context.Context) error {
	if _, err := st.db.DeleteTable(ctx, &dynamodb.DeleteTableInput{TableName: aws.String(benchTable)}); err != nil {
		return fmt.Errorf("empty the state table: %w", err)
	}
	return st.makeTable(ctx)
}

// reset wipes moto (every user, secret and table) and makes the state
// table again, empty.
func (st *stack) reset(ctx context.Context) error {
	if err := st.moto.Reset(ctx); err != nil {
		return err
	}
	return st.makeTable(ctx)
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
