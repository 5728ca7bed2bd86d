// Package awstest is keyvend's test harness for real AWS behaviour: it runs
// moto_server over HTTP and instruments the real SDK clients with smithy
// middleware, to count the calls they make and to inject faults. It holds
// no fakes of the AWS SDK.
package awstest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsmiddleware "github.com/aws/aws-sdk-go-v2/aws/middleware"
	"github.com/aws/aws-sdk-go-v2/aws/ratelimit"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/smithy-go/middleware"

	"github.com/keyvend/keyvend/pkg/awsclient"
	"github.com/keyvend/keyvend/pkg/moto"
	"github.com/keyvend/keyvend/pkg/state"
)

// Region of every test configuration.
const Region = "us-east-1"

var (
	sharedOnce sync.Once
	shared     *moto.Server
	sharedErr  error
)

// Main runs a package's tests and stops the shared moto afterwards. Call it
// from TestMain.
func Main(m *testing.M) {
	os.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	code := m.Run()
	if shared != nil {
		shared.Stop()
	}
	os.Exit(code)
}

// Shared returns the package's moto_server, starting it on first use. Tests
// that share it must use distinct resource names (see Name).
func Shared(tb testing.TB) *moto.Server {
	tb.Helper()
	sharedOnce.Do(func() {
		os.Setenv("AWS_EC2_METADATA_DISABLED", "true")
		var opts moto.Options
		if os.Getenv("KEYVEND_MOTO_LOG") != "" { // moto's own log on stderr, to debug a 500
			opts.Output = os.Stderr
		}
		shared, sharedErr = moto.Start(context.Background(), opts)
	})
	if sharedErr != nil {
		tb.Fatalf("start moto: %v", sharedErr)
	}
	return shared
}

// Dedicated starts a moto_server for this test alone, stopped at cleanup.
func Dedicated(tb testing.TB, env ...string) *moto.Server {
	tb.Helper()
	os.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	s, err := moto.Start(context.Background(), moto.Options{Env: env})
	if err != nil {
		tb.Fatalf("start moto: %v", err)
	}
	tb.Cleanup(s.Stop)
	return s
}

// Config returns an SDK configuration for endpoint with static credentials
// (moto's default admin unless IAM is enforced). Only a read (Get, List,
// Describe) is retried, and only when its connection broke: moto resets
// one now and then ("connection reset"). Injected faults and AWS errors
// are never retried away, and neither is a write, which moto may have
// applied before the reset. Its HTTP client sends a copy of each request
// body (awsclient.OwnBodies): with the SDK's own, a call moto answered could fail
// with "use of closed network connection".
func Config(tb testing.TB, endpoint string) aws.Config {
	tb.Helper()
	return ConfigWithKeys(tb, endpoint, "AKIAKEYVENDTEST00000", "keyvend-test-secret")
}

// ConfigWithKeys is Config with the given access key.
func ConfigWithKeys(tb testing.TB, endpoint, id, secret string) aws.Config {
	tb.Helper()
	cfg, err := config.LoadDefaultConfig(context.Background(),
		config.WithRegion(Region),
		config.WithBaseEndpoint(endpoint),
		config.WithCredentialsProvider(credentials.NewStaticCredentialsProvider(id, secret, "")),
		config.WithRetryer(connectionRetryer),
	)
	if err != nil {
		tb.Fatalf("aws config: %v", err)
	}
	cfg.HTTPClient = awsclient.OwnBodies(cfg.HTTPClient)
	cfg.APIOptions = append(cfg.APIOptions, noRetryForWrites)
	SerializeDynamoDBWrites(&cfg)
	return cfg
}

// Production is awsclient.Load — keyvend's own SDK settings, retries and
// all — pointed at endpoint with test credentials and no shared config
// files, for tests of how keyvend's clients behave. moto's conditional
// writes are serialized as in Config.
func Production(tb testing.TB, endpoint string) aws.Config {
	tb.Helper()
	cfg, err := awsclient.Load(context.Background(),
		config.WithRegion(Region),
		config.WithBaseEndpoint(endpoint),
		config.WithCredentialsProvider(credentials.NewStaticCredentialsProvider("AKIAKEYVENDTEST00000", "keyvend-test-secret", "")),
		config.WithSharedConfigFiles(nil), config.WithSharedCredentialsFiles(nil),
	)
	if err != nil {
		tb.Fatal(err)
	}
	SerializeDynamoDBWrites(&cfg)
	return cfg
}

// connectionRetryer retries broken connections only, up to 3 attempts,
// without a retry quota; noRetryForWrites exempts writes.
func connectionRetryer() aws.Retryer {
	return retry.NewStandard(func(o *retry.StandardOptions) {
		o.MaxAttempts = 3
		o.Retryables = []retry.IsErrorRetryable{retry.NoRetryCanceledError{}, retry.RetryableError{}, retry.RetryableConnectionError{}}
		o.RateLimiter = ratelimit.None
	})
}

// noRetryForWrites marks every failed attempt of a write as not retryable
// (it runs inside the retry loop, once per attempt).
func noRetryForWrites(stack *middleware.Stack) error {
	return stack.Finalize.Insert(middleware.FinalizeMiddlewareFunc("awstest.NoRetryForWrites",
		func(ctx context.Context, in middleware.FinalizeInput, next middleware.FinalizeHandler) (middleware.FinalizeOutput, middleware.Metadata, error) {
			out, md, err := next.HandleFinalize(ctx, in)
			if err != nil && (Call{Operation: awsmiddleware.GetOperationName(ctx)}).Write() {
				err = notRetryable{err}
			}
			return out, md, err
		}), "Retry", middleware.After)
}

// notRetryable tells the retryer (retry.RetryableError) not to retry err.
type notRetryable struct{ error }

func (notRetryable) RetryableError() bool { return false }
func (e notRetryable) Unwrap() error      { return e.error }

// Name returns prefix plus a random suffix: a resource name no other test
// on the shared server uses.
func Name(prefix string) string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return fmt.Sprintf("%s-%s", prefix, hex.EncodeToString(b[:]))
}

// Table returns a store on the state table of the moto at cfg's endpoint
// for tb's top-level test, creating it on first use (as the stack and the
// embedded moto make it: state.CreateTable). Every service of one test
// (and its subtests) on one moto shares it, as Lambda instances share the
// deployment's table; each call returns its own Store (its own lease
// clock). A table per test keeps each small: moto copies a whole table for
// every transaction.
func Table(tb testing.TB, cfg aws.Config) *state.Store {
	tb.Helper()
	db := dynamodb.NewFromConfig(cfg)
	top, _, _ := strings.Cut(tb.Name(), "/")
	endpoint := aws.ToString(cfg.BaseEndpoint) + " " + top
	tables.Lock()
	name, ok := tables.names[endpoint]
	if !ok {
		name = Name("keyvend-state")
		// Made through a plain client: a test's recorder or faults on cfg
		// see the service's calls, not the setup's.
		plain := dynamodb.NewFromConfig(Config(tb, aws.ToString(cfg.BaseEndpoint)))
		if err := state.CreateTable(context.Background(), plain, name); err != nil {
			tables.Unlock()
			tb.Fatalf("create state table: %v", err)
		}
		if tables.names == nil {
			tables.names = map[string]string{}
		}
		tables.names[endpoint] = name
	}
	tables.Unlock()
	s, err := state.New(db, name)
	if err != nil {
		tb.Fatal(err)
	}
	return s
}

// tables are the state tables made, by endpoint.
var tables struct {
	sync.Mutex
	names map[string]string
}
