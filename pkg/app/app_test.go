package app_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"

	"github.com/keyvend/keyvend/pkg/awsclient"
	"github.com/keyvend/keyvend/pkg/awstest"
)

func TestMain(m *testing.M) { awstest.Main(m) }

const (
	testCaller   = "arn:aws:iam::123456789012:user/alice"
	testBoundary = "arn:aws:iam::123456789012:policy/keyvend/keyvend-boundary"
	testRules    = `{"rules":[{"principals":["` + testCaller + `"],"buckets":["*.example.com"],"access":["read-only","write-only","read-write","full"]}]}`
)

// loadAWS is awsclient.Load — keyvend's production SDK settings — pointed
// at endpoint with test credentials and no shared config files.
func loadAWS(t *testing.T, endpoint string) aws.Config {
	t.Helper()
	cfg, err := awsclient.Load(context.Background(),
		config.WithRegion(awstest.Region),
		config.WithBaseEndpoint(endpoint),
		config.WithCredentialsProvider(credentials.NewStaticCredentialsProvider("AKIAKEYVENDTEST00000", "keyvend-test-secret", "")),
		config.WithSharedConfigFiles(nil), config.WithSharedCredentialsFiles(nil),
	)
	if err != nil {
		t.Fatal(err)
	}
	awstest.SerializeDynamoDBWrites(&cfg) // moto's conditional writes are not atomic (awstest)
	return cfg
}

func createBody(user, bucket string) string {
	return fmt.Sprintf(`{"user":%q,"grants":[{"bucket":%q,"access":"read-write","prefix":""}],"reason":"test"}`, user, bucket)
}
