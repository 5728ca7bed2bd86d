// Package localenv is keyvend's embedded default: a moto_server on a
// loopback port, seeded with a permissions boundary, demo buckets and the
// Slack command's job queues, so `make run` works on a machine with no AWS
// account.
//
// By default the embedded moto enforces IAM, as AWS does: every request
// is signature- and policy-checked, so a vended key can use its granted
// bucket and is denied everything else. keyvend itself (and the shell that
// sources .keyvend/local.env) uses the key of a seeded admin user whose
// policy allows everything; moto's limits under enforcement are in
// ../shared/reference/moto.md ("Enforcing IAM").
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

// Region, credentials and names of the embedded environment. AccessKeyID
// and SecretKey only seed moto, before IAM is enforced.
const (
	Region       = "us-east-1"
	AccessKeyID  = "keyvend-local"
	SecretKey    = "keyvend-local-secret"
	BoundaryName = "keyvend-boundary"
	// AdminUser is the IAM user whose key keyvend and the demo shell use:
	// its inline policy allows every action on every resource.
	AdminUser = "keyvend-local-admin"
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

// Options configure Start.
type Options struct {
	// EnforceIAM turns on moto's signature and policy checks once the
	// environment is seeded. Without it any key may do anything.
	EnforceIAM bool
}

// Env is a running embedded environment.
type Env struct {
	Moto *moto.Server
	// AWS is the SDK configuration keyvend uses: the admin's key.
	AWS         aws.Config
	BoundaryARN string
	// AdminKeyID and AdminSecret are the admin's key (AdminUser).
	AdminKeyID, AdminSecret string
	// IAMEnforced says whether moto checks every request's signature and
	// policy.
	IAMEnforced bool
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

// Start runs moto_server, seeds it with the admin user (whose key the
// environment's AWS configuration then uses), the boundary, the buckets,
// the state table and the queues, and then, with opts.EnforceIAM, turns on
// moto's IAM checks. Stop it with env.Moto.Stop.
func Start(ctx context.Context, motoLog io.Writer, opts Options) (*Env, error) {
	srv, err := moto.Start(ctx, moto.Options{Output: motoLog})
	if err != nil {
		return nil, err
	}
	env, err := start(ctx, srv, opts)
	if err != nil {
		srv.Stop()
		return nil, err
	}
	return env, nil
}

func start(ctx context.Context, srv *moto.Server, opts Options) (*Env, error) {
	cfg, err := Config(ctx, srv.URL, AccessKeyID, SecretKey)
	if err != nil {
		return nil, err
	}
	env := &Env{Moto: srv, AWS: cfg}
	if err := env.seedAdmin(ctx); err != nil {
		return nil, err
	}
	if env.AWS, err = Config(ctx, srv.URL, env.AdminKeyID, env.AdminSecret); err != nil {
		return nil, err
	}
	if err := env.seed(ctx); err != nil {
		return nil, err
	}
	if opts.EnforceIAM {
		if err := srv.EnforceIAM(ctx, true); err != nil {
			return nil, fmt.Errorf("enforce IAM: %w", err)
		}
		env.IAMEnforced = true
	}
	return env, nil
}

// Config is an AWS SDK configuration for the moto endpoint url with the
// key id/secret, with keyvend's client policy (awsclient.Load) as a
// deployment has it.
func Config(ctx context.Context, url, id, secret string) (aws.Config, error) {
	return awsclient.Load(ctx,
		config.WithRegion(Region),
		config.WithBaseEndpoint(url),
		config.WithCredentialsProvider(credentials.NewStaticCredentialsProvider(id, secret, "")),
	)
}

// adminDocument allows everything: the admin is the local account's root.
const adminDocument = `{"Version":"2012-10-17","Statement":[{"Sid":"LocalAdmin","Effect":"Allow","Action":"*","Resource":"*"}]}`

// seedAdmin creates AdminUser, its policy and its key (before enforcement,
// with any key).
func (e *Env) seedAdmin(ctx context.Context) error {
	c := iam.NewFromConfig(e.AWS)
	if _, err := c.CreateUser(ctx, &iam.CreateUserInput{UserName: aws.String(AdminUser)}); err != nil {
		return fmt.Errorf("seed admin user: %w", err)
	}
	if _, err := c.PutUserPolicy(ctx, &iam.PutUserPolicyInput{UserName: aws.String(AdminUser), PolicyName: aws.String("admin"), PolicyDocument: aws.String(adminDocument)}); err != nil {
		return fmt.Errorf("seed admin policy: %w", err)
	}
	key, err := c.CreateAccessKey(ctx, &iam.CreateAccessKeyInput{UserName: aws.String(AdminUser)})
	if err != nil {
		return fmt.Errorf("seed admin key: %w", err)
	}
	e.AdminKeyID, e.AdminSecret = aws.ToString(key.AccessKey.AccessKeyId), aws.ToString(key.AccessKey.SecretAccessKey)
	return nil
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
// moto as its admin (AdminUser's key: with IAM enforced, no other key but
// a vended one gets anywhere), for the README's demo: `. .keyvend/local.env`. They
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
		{"AWS_ACCESS_KEY_ID", e.AdminKeyID}, {"AWS_SECRET_ACCESS_KEY", e.AdminSecret}, {"AWS_EC2_METADATA_DISABLED", "true"},
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
