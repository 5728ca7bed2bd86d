// Package provision vends bucket-scoped IAM users: the provisioning saga,
// its compensation, repair of half-made users, and describing what exists.
// It talks to IAM and Secrets Manager through the small interfaces below,
// which the AWS SDK v2 clients satisfy; how grants reach IAM (a user policy
// or groups) is pkg/grants'.
package provision

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/iam"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"

	"github.com/keyvend/keyvend/pkg/approval"
	"github.com/keyvend/keyvend/pkg/authz"
	"github.com/keyvend/keyvend/pkg/grants"
	"github.com/keyvend/keyvend/pkg/policy"
	"github.com/keyvend/keyvend/pkg/state"
)

// IAM is the part of the IAM API keyvend uses.
type IAM interface {
	CreateUser(context.Context, *iam.CreateUserInput, ...func(*iam.Options)) (*iam.CreateUserOutput, error)
	GetUser(context.Context, *iam.GetUserInput, ...func(*iam.Options)) (*iam.GetUserOutput, error)
	DeleteUser(context.Context, *iam.DeleteUserInput, ...func(*iam.Options)) (*iam.DeleteUserOutput, error)
	CreateAccessKey(context.Context, *iam.CreateAccessKeyInput, ...func(*iam.Options)) (*iam.CreateAccessKeyOutput, error)
	DeleteAccessKey(context.Context, *iam.DeleteAccessKeyInput, ...func(*iam.Options)) (*iam.DeleteAccessKeyOutput, error)
	ListAccessKeys(context.Context, *iam.ListAccessKeysInput, ...func(*iam.Options)) (*iam.ListAccessKeysOutput, error)
	TagUser(context.Context, *iam.TagUserInput, ...func(*iam.Options)) (*iam.TagUserOutput, error)
	RemoveUserFromGroup(context.Context, *iam.RemoveUserFromGroupInput, ...func(*iam.Options)) (*iam.RemoveUserFromGroupOutput, error)
	ListGroupsForUser(context.Context, *iam.ListGroupsForUserInput, ...func(*iam.Options)) (*iam.ListGroupsForUserOutput, error)
	ListUsers(context.Context, *iam.ListUsersInput, ...func(*iam.Options)) (*iam.ListUsersOutput, error)
	ListUserTags(context.Context, *iam.ListUserTagsInput, ...func(*iam.Options)) (*iam.ListUserTagsOutput, error)
	ListUserPolicies(context.Context, *iam.ListUserPoliciesInput, ...func(*iam.Options)) (*iam.ListUserPoliciesOutput, error)
	ListAttachedUserPolicies(context.Context, *iam.ListAttachedUserPoliciesInput, ...func(*iam.Options)) (*iam.ListAttachedUserPoliciesOutput, error)
	GetUserPolicy(context.Context, *iam.GetUserPolicyInput, ...func(*iam.Options)) (*iam.GetUserPolicyOutput, error)
	DeleteUserPolicy(context.Context, *iam.DeleteUserPolicyInput, ...func(*iam.Options)) (*iam.DeleteUserPolicyOutput, error)
	DetachUserPolicy(context.Context, *iam.DetachUserPolicyInput, ...func(*iam.Options)) (*iam.DetachUserPolicyOutput, error)
	// and what the grant carriers call
	grants.IAM
}

// Secrets is the part of the Secrets Manager API keyvend uses.
type Secrets interface {
	CreateSecret(context.Context, *secretsmanager.CreateSecretInput, ...func(*secretsmanager.Options)) (*secretsmanager.CreateSecretOutput, error)
	DescribeSecret(context.Context, *secretsmanager.DescribeSecretInput, ...func(*secretsmanager.Options)) (*secretsmanager.DescribeSecretOutput, error)
	GetSecretValue(context.Context, *secretsmanager.GetSecretValueInput, ...func(*secretsmanager.Options)) (*secretsmanager.GetSecretValueOutput, error)
	PutSecretValue(context.Context, *secretsmanager.PutSecretValueInput, ...func(*secretsmanager.Options)) (*secretsmanager.PutSecretValueOutput, error)
	RestoreSecret(context.Context, *secretsmanager.RestoreSecretInput, ...func(*secretsmanager.Options)) (*secretsmanager.RestoreSecretOutput, error)
	TagResource(context.Context, *secretsmanager.TagResourceInput, ...func(*secretsmanager.Options)) (*secretsmanager.TagResourceOutput, error)
	DeleteSecret(context.Context, *secretsmanager.DeleteSecretInput, ...func(*secretsmanager.Options)) (*secretsmanager.DeleteSecretOutput, error)
	// the reconciliation's walk over keyvend's secrets (reconcile.go)
	ListSecrets(context.Context, *secretsmanager.ListSecretsInput, ...func(*secretsmanager.Options)) (*secretsmanager.ListSecretsOutput, error)
	GetResourcePolicy(context.Context, *secretsmanager.GetResourcePolicyInput, ...func(*secretsmanager.Options)) (*secretsmanager.GetResourcePolicyOutput, error)
	// a secret's rotation schedule, as the rules' rotate_every asks (schedule.go)
	RotateSecret(context.Context, *secretsmanager.RotateSecretInput, ...func(*secretsmanager.Options)) (*secretsmanager.RotateSecretOutput, error)
	CancelRotateSecret(context.Context, *secretsmanager.CancelRotateSecretInput, ...func(*secretsmanager.Options)) (*secretsmanager.CancelRotateSecretOutput, error)
}

// Settings configure a Service. Zero values take the defaults noted.
type Settings struct {
	// UserPath is the IAM path of vended users and their groups ("/keyvend/").
	UserPath string
	// GrantMode is how grants reach IAM (grants.Policy, the default: one
	// user policy fenced by the boundary; or grants.Group).
	GrantMode grants.Mode
	// BoundaryARN is the permissions boundary every vended user gets. Required.
	BoundaryARN string
	// SecretPrefix is prepended to the user name to name its secret ("keyvend/users/").
	SecretPrefix string
	// KMSKeyID encrypts the secrets; empty means the account's aws/secretsmanager key.
	KMSKeyID string
	// Region is written into the credential_process line.
	Region string
	// RepairAfter is how long a request holds a user's lease (60s): a
	// lease older than that is stale, its holder presumed dead, and the
	// next request takes it over and finishes or undoes what it left. It
	// must exceed the longest time one request can take.
	RepairAfter time.Duration
	// Store is keyvend's state table (records, leases, history, the
	// index). Required.
	Store *state.Store
	// ReapBatch bounds how many due users one reaper run handles (500);
	// the rest are due on the next run.
	ReapBatch int
	// ReconcileSlice is how many IAM users, records and secrets one
	// reaper run reconciles (100); the next run resumes after them.
	ReconcileSlice int
	// HistoryRetention is how long a deleted user's history is kept
	// (400 days), by the table's TTL.
	HistoryRetention time.Duration
	// CompensationTimeout bounds the undo of a failed saga, which runs on a
	// context detached from the request's (20s).
	CompensationTimeout time.Duration
	// Now is the clock (time.Now).
	Now func() time.Time
	// KeyCheck confirms new keys work when a request asks to wait; nil
	// answers ready=false with a hint.
	KeyCheck KeyChecker
	// SecretRecoveryDays is the recovery window of a deleted user's secret
	// (7; Secrets Manager allows 7 to 30).
	SecretRecoveryDays int32
	// RotationGrace is how long a key a rotation replaced stays active, so
	// clients that still hold it keep working until they re-read the
	// secret (1h; NoGrace deletes it at once). The reaper deletes it when
	// the grace ends, or the next rotation does, first.
	RotationGrace time.Duration
	// RotationFunctionARN is keyvend's rotation function (functions/rotate):
	// the secrets of users whose grants a rule with rotate_every covers
	// rotate on that schedule with it. Required when a rule has
	// rotate_every; empty otherwise disables scheduling (and Describe's
	// schedule).
	RotationFunctionARN string
}

// NoGrace as Settings.RotationGrace deletes a rotated-out key at once.
const NoGrace time.Duration = -1

// DefaultRotationGrace is Settings.RotationGrace's default.
const DefaultRotationGrace = time.Hour

// Service provisions and describes vended users.
type Service struct {
	iam   IAM
	sm    Secrets
	rules *authz.Rules
	cfg   Settings
	log   *slog.Logger
	// store is the state table; instance names this Service in lease
	// holders (with each operation's request id).
	store    *state.Store
	instance string
	seq      atomic.Int64
	// grants carries grants to IAM in the deployment's mode.
	grants *grants.Carrier
	// partition is the boundary ARN's: every ARN keyvend writes names it.
	partition string
	// approvals are the requests waiting for approval (approval.go).
	approvals *approval.Store
}

// New returns a Service. rules nil means deny all; log nil means slog.Default.
func New(iamClient IAM, sm Secrets, rules *authz.Rules, cfg Settings, log *slog.Logger) (*Service, error) {
	if cfg.UserPath == "" {
		cfg.UserPath = "/keyvend/"
	}
	if cfg.SecretPrefix == "" {
		cfg.SecretPrefix = "keyvend/users/"
	}
	if cfg.RepairAfter == 0 {
		cfg.RepairAfter = time.Minute
	}
	if cfg.ReapBatch <= 0 {
		cfg.ReapBatch = 500
	}
	if cfg.ReconcileSlice <= 0 {
		cfg.ReconcileSlice = 100
	}
	if cfg.HistoryRetention <= 0 {
		cfg.HistoryRetention = 400 * 24 * time.Hour
	}
	if cfg.CompensationTimeout == 0 {
		cfg.CompensationTimeout = 20 * time.Second
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.GrantMode == "" {
		cfg.GrantMode = grants.Policy
	}
	if cfg.SecretRecoveryDays == 0 {
		cfg.SecretRecoveryDays = 7
	}
	if cfg.RotationGrace == 0 {
		cfg.RotationGrace = DefaultRotationGrace
	}
	if rules == nil {
		rules = &authz.Rules{}
	}
	if log == nil {
		log = slog.Default()
	}
	var problems []string
	if cfg.Store == nil {
		problems = append(problems, "a state table is required (KEYVEND_TABLE)")
	}
	if cfg.BoundaryARN == "" {
		problems = append(problems, "a permissions boundary ARN is required (KEYVEND_BOUNDARY_ARN)")
	} else if policy.PartitionOf(cfg.BoundaryARN) == "" || !strings.Contains(cfg.BoundaryARN, ":policy/") {
		problems = append(problems, fmt.Sprintf("boundary %q is not an IAM policy ARN", cfg.BoundaryARN))
	}
	if !strings.HasPrefix(cfg.UserPath, "/") || !strings.HasSuffix(cfg.UserPath, "/") || len(cfg.UserPath) < 3 {
		problems = append(problems, fmt.Sprintf("user path %q must look like /name/", cfg.UserPath))
	}
	if cfg.SecretRecoveryDays < 7 || cfg.SecretRecoveryDays > 30 {
		problems = append(problems, fmt.Sprintf("secret recovery window %d days: Secrets Manager allows 7 to 30", cfg.SecretRecoveryDays))
	}
	if _, err := grants.ParseMode(string(cfg.GrantMode)); err != nil {
		problems = append(problems, err.Error())
	}
	if msg := checkSecretPrefix(cfg.SecretPrefix); msg != "" {
		problems = append(problems, msg)
	}
	if rules.AskRotation() && cfg.RotationFunctionARN == "" {
		problems = append(problems, "a rule has rotate_every but no rotation function is configured (KEYVEND_ROTATION_FUNCTION_ARN)")
	}
	if a := cfg.RotationFunctionARN; a != "" && (policy.PartitionOf(a) == "" || !strings.Contains(a, ":lambda:") || !strings.Contains(a, ":function:")) {
		problems = append(problems, fmt.Sprintf("rotation function %q is not a Lambda function ARN (KEYVEND_ROTATION_FUNCTION_ARN)", a))
	}
	if len(problems) > 0 {
		return nil, errors.New("provision settings: " + strings.Join(problems, "; "))
	}
	partition := policy.PartitionOf(cfg.BoundaryARN)
	carrier := grants.New(iamClient, grants.Config{Mode: cfg.GrantMode, Partition: partition, Path: cfg.UserPath}, log)
	var id [6]byte
	_, _ = rand.Read(id[:])
	return &Service{iam: iamClient, sm: sm, rules: rules, cfg: cfg, log: log, grants: carrier, partition: partition,
		store: cfg.Store, instance: hex.EncodeToString(id[:]), approvals: approval.New(cfg.Store.DB(), cfg.Store.Table())}, nil
}

// SecretName is the name of the secret that holds user's access key.
func (s *Service) SecretName(user string) string { return s.cfg.SecretPrefix + user }

// holder names one operation of this Service as a lease holder: the
// instance, the request, and a sequence number (one request may lease
// twice, e.g. a repair after a claim).
func (s *Service) holder(requestID string) string {
	return fmt.Sprintf("%s/%s/%d", s.instance, requestID, s.seq.Add(1))
}

// GrantMode is the deployment's grant mode.
func (s *Service) GrantMode() grants.Mode { return s.cfg.GrantMode }

// Tag keys keyvend writes on users and secrets.
const (
	TagManagedBy = "keyvend:managed-by"
	// TagRequester holds the requester exactly, as encodeRequester writes it.
	TagRequester = "keyvend:requester"
	TagReason    = "keyvend:reason"
	TagRequestID = "keyvend:request-id"
	TagCreatedAt = "keyvend:created-at"
	TagUser      = "keyvend:user"
	// TagGrants, on a user, fingerprints the grants its creating request
	// asked for (grantsFingerprint): while the user is young, another
	// request can tell a provision still joining its groups from a user
	// made with other grants.
	TagGrants = "keyvend:grants"

	managedByValue = "keyvend"
)
