// Package localenv is keyvend's embedded default: a moto_server on a
// loopback port, seeded with a permissions boundary, demo buckets and the
// Slack command's job queues, so `make run` works on a machine with no AWS
// account.
package localenv

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/keyvend/keyvend/pkg/awsclient"
	"github.com/keyvend/keyvend/pkg/moto"
	"github.com/keyvend/keyvend/pkg/policy"
	"github.com/keyvend/keyvend/pkg/state"
)

// Region, credentials and names of the embedded environment.
const (
	Region       = "us-east-1"
	AccessKeyID  = "keyvend-local"
	SecretKey    = "keyvend-local-secret"
	BoundaryName = "keyvend-boundary"
	// Table is the state table (KEYVEND_TABLE).
	Table = "keyvend-state"
)

// Buckets are the demo buckets the embedded environment creates.
var Buckets = []string{"site.example.com", "assets.example.com"}

// The Slack command's job queue and its dead-letter queue: SQS moves a job
// there after MaxReceives deliveries, VisibilityTimeout apart.
const (
	QueueName         = "keyvend-chatops"
	DeadLetterName    = "keyvend-chatops-dlq"
	MaxReceives       = 3
	VisibilityTimeout = 30 // seconds
)

// Env is a running embedded environment.
type Env struct {
	Moto        *moto.Server
	AWS         aws.Config
	BoundaryARN string
	// QueueURL and DeadLetterURL are the Slack command's queues.
	QueueURL      string
	DeadLetterURL string
}

// boundaryDocument allows S3 only, and only on the demo buckets, and never
// bucket administration (policy.BucketAdminActions): what a vended user
// can ever do, whatever policy or groups it gets — as the stack's
// boundary (infra/boundary.go). moto does not evaluate boundaries; it is
// here so the local account looks like a deployed one.
func boundaryDocument() string {
	doc := map[string]any{"Version": "2012-10-17", "Statement": []any{
		map[string]any{"Sid": "OnlyDemoBuckets", "Effect": "Allow", "Action": "s3:*",
			"Resource": []string{"arn:aws:s3:::*.example.com", "arn:aws:s3:::*.example.com/*"}},
		map[string]any{"Sid": "NeverBucketAdministration", "Effect": "Deny", "Action": policy.BucketAdminActions, "Resource": "*"},
	}}
	b, _ := json.Marshal(doc)
	return string(b)
}

// Start runs moto_server and seeds it. Stop it with env.Moto.Stop.
func Start(ctx context.Context, motoLog io.Writer) (*Env, error) {
	srv, err := moto.Start(ctx, moto.Options{Output: motoLog})
	if err != nil {
		return nil, err
	}
	cfg, err := Config(ctx, srv.URL)
	if err != nil {
		srv.Stop()
		return nil, err
	}
	env := &Env{Moto: srv, AWS: cfg}
	if err := env.seed(ctx); err != nil {
		srv.Stop()
		return nil, err
	}
	return env, nil
}

// Config is an AWS SDK configuration for the moto endpoint url, with
// keyvend's client policy (awsclient.Load) as a deployment has it.
func Config(ctx context.Context, url string) (aws.Config, error) {
	return awsclient.Load(ctx,
		config.WithRegion(Region),
		config.WithBaseEndpoint(url),
		config.WithCredentialsProvider(credentials.NewStaticCredentialsProvider(AccessKeyID, SecretKey, "")),
	)
}

func (e *Env) seed(ctx context.Context) error {
	out, err := iam.NewFromConfig(e.AWS).CreatePolicy(ctx, &iam.CreatePolicyInput{
		PolicyName:     aws.String(BoundaryName),
		Path:           aws.String("/keyvend/"),
		PolicyDocument: aws.String(boundaryDocument()),
		Description:    aws.String("keyvend: the most any vended user may do"),
	})
	if err != nil {
		return fmt.Errorf("seed boundary policy: %w", err)
	}
	e.BoundaryARN = aws.ToString(out.Policy.Arn)
	s3c := s3.NewFromConfig(e.AWS, func(o *s3.Options) { o.UsePathStyle = true })
	for _, b := range Buckets {
		if _, err := s3c.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(b)}); err != nil {
			return fmt.Errorf("seed bucket %s: %w", b, err)
		}
	}
	if err := state.CreateTable(ctx, dynamodb.NewFromConfig(e.AWS), Table); err != nil {
		return fmt.Errorf("seed state table: %w", err)
	}
	return e.createQueues(ctx)
}

// createQueues makes the job queue, with its redrive to the dead-letter
// queue, as the stack does (SQS-managed encryption).
func (e *Env) createQueues(ctx context.Context) error {
	c := sqs.NewFromConfig(e.AWS)
	dlq, err := c.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String(DeadLetterName),
		Attributes: map[string]string{"SqsManagedSseEnabled": "true", "MessageRetentionPeriod": "1209600"}})
	if err != nil {
		return fmt.Errorf("create queue %s: %w", DeadLetterName, err)
	}
	attrs, err := c.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{QueueUrl: dlq.QueueUrl,
		AttributeNames: []sqstypes.QueueAttributeName{sqstypes.QueueAttributeNameQueueArn}})
	if err != nil {
		return fmt.Errorf("read queue %s: %w", DeadLetterName, err)
	}
	redrive := fmt.Sprintf(`{"deadLetterTargetArn":%q,"maxReceiveCount":"%d"}`, attrs.Attributes[string(sqstypes.QueueAttributeNameQueueArn)], MaxReceives)
	q, err := c.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String(QueueName), Attributes: map[string]string{
		"SqsManagedSseEnabled": "true", "VisibilityTimeout": fmt.Sprint(VisibilityTimeout), "RedrivePolicy": redrive,
	}})
	if err != nil {
		return fmt.Errorf("create queue %s: %w", QueueName, err)
	}
	e.QueueURL, e.DeadLetterURL = aws.ToString(q.QueueUrl), aws.ToString(dlq.QueueUrl)
	return nil
}

// WriteEnvFile writes shell exports that point the AWS CLI at the embedded
// moto (as an admin), for the README's demo: `. .keyvend/local.env`. They
// are every setting a second `keyvend serve` needs to share this moto's
// state — as a second Lambda instance would: the endpoint, the boundary,
// the state table, the queues and the rules file (rules, made absolute).
func (e *Env) WriteEnvFile(path, rules string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	if rules != "" {
		if abs, err := filepath.Abs(rules); err == nil {
			rules = abs
		}
	}
	var b strings.Builder
	b.WriteString("# written by keyvend serve: the embedded local AWS (moto)\n")
	for _, kv := range [][2]string{
		{"AWS_ENDPOINT_URL", e.Moto.URL}, {"AWS_REGION", Region}, {"AWS_DEFAULT_REGION", Region},
		{"AWS_ACCESS_KEY_ID", AccessKeyID}, {"AWS_SECRET_ACCESS_KEY", SecretKey}, {"AWS_EC2_METADATA_DISABLED", "true"},
		{"KEYVEND_BOUNDARY_ARN", e.BoundaryARN}, {"KEYVEND_TABLE", Table}, {"KEYVEND_RULES", rules},
		{"KEYVEND_CHATOPS_QUEUE_URL", e.QueueURL}, {"KEYVEND_CHATOPS_DLQ_URL", e.DeadLetterURL},
	} {
		fmt.Fprintf(&b, "export %s=%s\n", kv[0], shellQuote(kv[1]))
	}
	return os.WriteFile(path, []byte(b.String()), 0o600)
}

// shellQuote quotes s for a POSIX shell.
func shellQuote(s string) string {
	if s != "" && strings.IndexFunc(s, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("-_./:=,@", r))
	}) < 0 {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
