// Package app assembles keyvend from its configuration: the AWS clients,
// the rules, the provisioning service and the HTTP handler. The Lambda
// entry points and the local server share it.
package app

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"

	"github.com/keyvend/keyvend/pkg/authz"
	"github.com/keyvend/keyvend/pkg/awsclient"
	"github.com/keyvend/keyvend/pkg/caller"
	"github.com/keyvend/keyvend/pkg/grants"
	"github.com/keyvend/keyvend/pkg/httpapi"
	"github.com/keyvend/keyvend/pkg/idempotency"
	"github.com/keyvend/keyvend/pkg/keycheck"
	"github.com/keyvend/keyvend/pkg/provision"
	"github.com/keyvend/keyvend/pkg/rotation"
	"github.com/keyvend/keyvend/pkg/state"
)

// Config is keyvend's configuration, from KEYVEND_* environment variables.
type Config struct {
	RulesPath    string        // KEYVEND_RULES: rules file; empty denies everything
	BoundaryARN  string        // KEYVEND_BOUNDARY_ARN: permissions boundary of vended users (required)
	SecretPrefix string        // KEYVEND_SECRET_PREFIX (keyvend/users/)
	UserPath     string        // KEYVEND_USER_PATH (/keyvend/)
	GrantMode    grants.Mode   // KEYVEND_GRANT_MODE: policy (default) or group
	KMSKeyID     string        // KEYVEND_KMS_KEY_ID: key for the secrets (account default)
	RepairAfter  time.Duration // KEYVEND_REPAIR_AFTER: age before a half-made user is repaired (1m)
	ReadyTimeout time.Duration // KEYVEND_READY_TIMEOUT: bound of the "wait" readiness check (10s)
	RecoveryDays int32         // KEYVEND_SECRET_RECOVERY_DAYS: window of a deleted user's secret (7)
	CORSOrigins  []string      // KEYVEND_CORS_ORIGINS: comma-separated portal origins (none)
	JWTPrincipal string        // KEYVEND_JWT_PRINCIPAL_CLAIM (sub)
	JWTGroups    string        // KEYVEND_JWT_GROUPS_CLAIM (groups)
	Table        string        // KEYVEND_TABLE: keyvend's state table (required)
	HistoryDays  int           // KEYVEND_HISTORY_RETENTION_DAYS: how long a deleted user's history is kept (400)

	// The Slack command (pkg/chatops).
	SlackSigningSecret    string // KEYVEND_SLACK_SIGNING_SECRET: the signing secret itself (local mode)
	SlackSigningSecretARN string // KEYVEND_SLACK_SIGNING_SECRET_ARN: the Secrets Manager secret holding it (Lambda)
	SlackResponseHosts    string // KEYVEND_SLACK_RESPONSE_HOSTS: hosts results are posted to (hooks.slack.com)
	ChatopsQueueURL       string // KEYVEND_CHATOPS_QUEUE_URL: the job queue
	ChatopsMaxReceives    int    // KEYVEND_CHATOPS_MAX_RECEIVES: the queue's maxReceiveCount (3)
}

// FromEnv reads the configuration from the environment.
func FromEnv() (Config, error) {
	c := Config{
		RulesPath:    os.Getenv("KEYVEND_RULES"),
		BoundaryARN:  os.Getenv("KEYVEND_BOUNDARY_ARN"),
		SecretPrefix: os.Getenv("KEYVEND_SECRET_PREFIX"),
		UserPath:     os.Getenv("KEYVEND_USER_PATH"),
		KMSKeyID:     os.Getenv("KEYVEND_KMS_KEY_ID"),
		Table:        os.Getenv("KEYVEND_TABLE"),
	}
	mode, err := grants.ParseMode(os.Getenv("KEYVEND_GRANT_MODE"))
	if err != nil {
		return c, fmt.Errorf("KEYVEND_GRANT_MODE: %w", err)
	}
	c.GrantMode = mode
	c.JWTPrincipal = os.Getenv("KEYVEND_JWT_PRINCIPAL_CLAIM")
	c.JWTGroups = os.Getenv("KEYVEND_JWT_GROUPS_CLAIM")
	c.SlackSigningSecret = os.Getenv("KEYVEND_SLACK_SIGNING_SECRET")
	c.SlackSigningSecretARN = os.Getenv("KEYVEND_SLACK_SIGNING_SECRET_ARN")
	c.SlackResponseHosts = os.Getenv("KEYVEND_SLACK_RESPONSE_HOSTS")
	c.ChatopsQueueURL = os.Getenv("KEYVEND_CHATOPS_QUEUE_URL")
	if v := os.Getenv("KEYVEND_CHATOPS_MAX_RECEIVES"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 1000 {
			return c, fmt.Errorf("KEYVEND_CHATOPS_MAX_RECEIVES=%q: want the queue's maxReceiveCount, 1 to 1000", v)
		}
		c.ChatopsMaxReceives = n
	}
	for _, o := range strings.Split(os.Getenv("KEYVEND_CORS_ORIGINS"), ",") {
		if o = strings.TrimSpace(o); o != "" {
			c.CORSOrigins = append(c.CORSOrigins, o)
		}
	}
	for key, dst := range map[string]*time.Duration{"KEYVEND_REPAIR_AFTER": &c.RepairAfter, "KEYVEND_READY_TIMEOUT": &c.ReadyTimeout} {
		if v := os.Getenv(key); v != "" {
			d, err := time.ParseDuration(v)
			if err != nil || d <= 0 {
				return c, fmt.Errorf("%s=%q: want a positive Go duration such as 10s", key, v)
			}
			*dst = d
		}
	}
	if v := os.Getenv("KEYVEND_HISTORY_RETENTION_DAYS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 3650 {
			return c, fmt.Errorf("KEYVEND_HISTORY_RETENTION_DAYS=%q: want 1 to 3650 days", v)
		}
		c.HistoryDays = n
	}
	if v := os.Getenv("KEYVEND_SECRET_RECOVERY_DAYS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 7 || n > 30 {
			return c, fmt.Errorf("KEYVEND_SECRET_RECOVERY_DAYS=%q: want 7 to 30", v)
		}
		c.RecoveryDays = int32(n)
	}
	return c, nil
}

// Resolver is the Lambda caller resolver: the API Gateway authorizer
// context, with the configured JWT claims.
func (c Config) Resolver() caller.APIGateway {
	return caller.APIGateway{PrincipalClaim: c.JWTPrincipal, GroupsClaim: c.JWTGroups}
}

// NewService builds the provisioning service. A bad rules file or setting
// is an error: keyvend refuses to start rather than run misconfigured.
func NewService(c Config, awsCfg aws.Config, log *slog.Logger) (*provision.Service, error) {
	return NewServiceWith(c, awsCfg, log)
}

// NewServiceWith is NewService with adjustments to the settings.
func NewServiceWith(c Config, awsCfg aws.Config, log *slog.Logger, adjust ...func(*provision.Settings)) (*provision.Service, error) {
	rules, err := authz.Load(c.RulesPath)
	if err != nil {
		return nil, err
	}
	return newService(c, awsCfg, rules, log, adjust...)
}

// NewStore is the state table named by c.Table (KEYVEND_TABLE).
func NewStore(c Config, awsCfg aws.Config) (*state.Store, error) {
	return state.New(dynamodb.NewFromConfig(awsCfg), c.Table)
}

// NewIdempotency is the store of idempotency keys, in the state table
// named by c.Table; nil when there is none (the API then refuses requests
// with an Idempotency-Key, and the worker runs jobs without keys).
func NewIdempotency(c Config, awsCfg aws.Config) (*idempotency.Store, error) {
	if c.Table == "" {
		return nil, nil
	}
	return idempotency.New(dynamodb.NewFromConfig(awsCfg), c.Table)
}

// newService builds the provisioning service with rules already loaded.
func newService(c Config, awsCfg aws.Config, rules *authz.Rules, log *slog.Logger, adjust ...func(*provision.Settings)) (*provision.Service, error) {
	store, err := NewStore(c, awsCfg)
	if err != nil {
		return nil, err
	}
	settings := provision.Settings{
		Store:              store,
		HistoryRetention:   time.Duration(c.HistoryDays) * 24 * time.Hour,
		UserPath:           c.UserPath,
		GrantMode:          c.GrantMode,
		BoundaryARN:        c.BoundaryARN,
		SecretPrefix:       c.SecretPrefix,
		KMSKeyID:           c.KMSKeyID,
		Region:             awsCfg.Region,
		RepairAfter:        c.RepairAfter,
		SecretRecoveryDays: c.RecoveryDays,
		KeyCheck:           &keycheck.Checker{Base: awsCfg, Timeout: c.ReadyTimeout},
	}
	for _, f := range adjust {
		f(&settings)
	}
	return provision.New(iam.NewFromConfig(awsCfg), secretsmanager.NewFromConfig(awsCfg), rules, settings, log)
}

// NewHandler builds the HTTP handler for callers established by who.
func NewHandler(c Config, awsCfg aws.Config, who caller.Resolver, log *slog.Logger) (http.Handler, error) {
	svc, err := NewService(c, awsCfg, log)
	if err != nil {
		return nil, err
	}
	idem, err := NewIdempotency(c, awsCfg)
	if err != nil {
		return nil, err
	}
	return httpapi.New(svc, who, log, httpapi.WithCORSOrigins(c.CORSOrigins...), httpapi.WithIdempotency(idem)), nil
}

// Logger is keyvend's JSON logger on stdout.
func Logger() *slog.Logger {
	return LoggerTo(os.Stdout)
}

// LoggerTo is keyvend's JSON logger on w.
func LoggerTo(w io.Writer) *slog.Logger {
	return slog.New(slog.NewJSONHandler(w, nil))
}

// fromEnv is what every Lambda entry point starts with: the configuration
// and the AWS SDK configuration, both from the environment.
func fromEnv(ctx context.Context) (Config, aws.Config, error) {
	c, err := FromEnv()
	if err != nil {
		return c, aws.Config{}, err
	}
	awsCfg, err := awsclient.Load(ctx)
	return c, awsCfg, err
}

// LambdaHandlerFromEnv builds the HTTP handler from the environment alone,
// with callers from the API Gateway authorizer context, as the Lambda
// function does.
func LambdaHandlerFromEnv(ctx context.Context, log *slog.Logger) (http.Handler, error) {
	c, awsCfg, err := fromEnv(ctx)
	if err != nil {
		return nil, err
	}
	return NewHandler(c, awsCfg, c.Resolver(), log)
}

// ServiceFromEnv builds the provisioning service from the environment, as
// the reaper function does.
func ServiceFromEnv(ctx context.Context, log *slog.Logger) (*provision.Service, error) {
	c, awsCfg, err := fromEnv(ctx)
	if err != nil {
		return nil, err
	}
	return NewService(c, awsCfg, log)
}

// NewRotator builds the rotation function's handler. It acts only on
// secrets and users made with c's secret prefix, KMS key, user path and
// permissions boundary; without a boundary (KEYVEND_BOUNDARY_ARN) or with
// a malformed setting it is an error: the function refuses to start.
func NewRotator(c Config, awsCfg aws.Config, log *slog.Logger) (*rotation.Rotator, error) {
	r := &rotation.Rotator{
		IAM:          iam.NewFromConfig(awsCfg),
		Secrets:      secretsmanager.NewFromConfig(awsCfg),
		Check:        &keycheck.Checker{Base: awsCfg, Timeout: c.ReadyTimeout},
		Log:          log,
		SecretPrefix: c.SecretPrefix,
		UserPath:     c.UserPath,
		KMSKeyID:     c.KMSKeyID,
		BoundaryARN:  c.BoundaryARN,
	}
	if c.Table != "" {
		store, err := NewStore(c, awsCfg)
		if err != nil {
			return nil, err
		}
		r.Store = store
	}
	if err := r.CheckSettings(); err != nil {
		return nil, err
	}
	return r, nil
}

// RotatorFromEnv builds the rotation handler from the environment:
// KEYVEND_SECRET_PREFIX, KEYVEND_KMS_KEY_ID, KEYVEND_USER_PATH and
// KEYVEND_BOUNDARY_ARN (required) describe what keyvend makes.
func RotatorFromEnv(ctx context.Context, log *slog.Logger) (*rotation.Rotator, error) {
	c, awsCfg, err := fromEnv(ctx)
	if err != nil {
		return nil, err
	}
	return NewRotator(c, awsCfg, log)
}
