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
	"sync"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"

	"github.com/keyvend/keyvend/pkg/moto"
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
		shared, sharedErr = moto.Start(context.Background(), moto.Options{})
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
// (moto's default admin unless IAM is enforced) and the SDK's standard
// retries, as in production. moto's server sometimes resets a connection
// under concurrent load; the SDK retries that like any reset. Faults
// injected by Faults are not retried: they fire in the Initialize step,
// before the retry middleware.
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
		config.WithRetryer(func() aws.Retryer { return retry.NewStandard() }),
	)
	if err != nil {
		tb.Fatalf("aws config: %v", err)
	}
	return cfg
}

// Name returns prefix plus a random suffix: a resource name no other test
// on the shared server uses.
func Name(prefix string) string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return fmt.Sprintf("%s-%s", prefix, hex.EncodeToString(b[:]))
}
