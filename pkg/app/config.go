package app

import (
	"errors"
	"fmt"
	"net/url"
	"os"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/keyvend/keyvend/pkg/caller"
	"github.com/keyvend/keyvend/pkg/grants"
	"github.com/keyvend/keyvend/pkg/provision"
	"github.com/keyvend/keyvend/pkg/slacksig"
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
	// KEYVEND_ROTATION_GRACE: how long a rotated-out key stays active (1h;
	// 0 deletes it at once). Held as provision.Settings.RotationGrace
	// (zero: the default, provision.NoGrace: none).
	RotationGrace time.Duration
	// KEYVEND_ROTATION_FUNCTION_ARN: the rotation function the secrets of
	// users covered by a rule's rotate_every rotate with (required when a
	// rule has rotate_every).
	RotationFunctionARN string

	// KEYVEND_READY_SUCCESSES: consecutive successful checks (STS and S3
	// on the first grant's bucket) that make a new key ready (3).
	ReadySuccesses int

	// The Slack command (pkg/chatops).
	SlackSigningSecret    string // KEYVEND_SLACK_SIGNING_SECRET: the signing secret itself (local mode)
	SlackSigningSecretARN string // KEYVEND_SLACK_SIGNING_SECRET_ARN: the Secrets Manager secret holding it (Lambda)
	SlackResponseHosts    string // KEYVEND_SLACK_RESPONSE_HOSTS: hosts results are posted to (hooks.slack.com)
	ChatopsQueueURL       string // KEYVEND_CHATOPS_QUEUE_URL: the job queue
	ChatopsMaxReceives    int    // KEYVEND_CHATOPS_MAX_RECEIVES: the queue's maxReceiveCount (3)
	// Posting pending approval requests to a channel (the worker): all
	// three of the channel and a bot token (or its secret) are needed.
	SlackApprovalsChannel string // KEYVEND_SLACK_APPROVALS_CHANNEL: the channel's id (C…)
	SlackBotToken         string // KEYVEND_SLACK_BOT_TOKEN: the bot token itself (local mode)
	SlackBotTokenARN      string // KEYVEND_SLACK_BOT_TOKEN_ARN: the Secrets Manager secret holding it (Lambda)
	SlackAPIURL           string // KEYVEND_SLACK_API_URL: the Slack Web API (https://slack.com/api/; a loopback listener locally)
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

		RotationFunctionARN: os.Getenv("KEYVEND_ROTATION_FUNCTION_ARN"),
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
	c.SlackApprovalsChannel = os.Getenv("KEYVEND_SLACK_APPROVALS_CHANNEL")
	c.SlackBotToken = os.Getenv("KEYVEND_SLACK_BOT_TOKEN")
	c.SlackBotTokenARN = os.Getenv("KEYVEND_SLACK_BOT_TOKEN_ARN")
	c.SlackAPIURL = os.Getenv("KEYVEND_SLACK_API_URL")
	if c.SlackApprovalsChannel != "" && !regexp.MustCompile(`^[A-Z0-9]{1,32}$`).MatchString(c.SlackApprovalsChannel) {
		return c, fmt.Errorf("KEYVEND_SLACK_APPROVALS_CHANNEL=%q: want a Slack channel id such as C0123ABCD", c.SlackApprovalsChannel)
	}
	if c.SlackApprovalsChannel != "" && c.SlackBotToken == "" && c.SlackBotTokenARN == "" {
		return c, errors.New("KEYVEND_SLACK_APPROVALS_CHANNEL needs a bot token: set KEYVEND_SLACK_BOT_TOKEN_ARN (or KEYVEND_SLACK_BOT_TOKEN locally)")
	}
	if c.SlackAPIURL != "" {
		if u, err := url.Parse(c.SlackAPIURL); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || !strings.HasSuffix(u.Path, "/") {
			return c, fmt.Errorf("KEYVEND_SLACK_API_URL=%q: want a URL ending in /, such as https://slack.com/api/", c.SlackAPIURL)
		}
	}
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
	if v := os.Getenv("KEYVEND_READY_SUCCESSES"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 20 {
			return c, fmt.Errorf("KEYVEND_READY_SUCCESSES=%q: want 1 to 20 consecutive successful checks", v)
		}
		c.ReadySuccesses = n
	}
	if v := os.Getenv("KEYVEND_ROTATION_GRACE"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d < 0 || d > MaxRotationGrace {
			return c, fmt.Errorf("KEYVEND_ROTATION_GRACE=%q: want a Go duration from 0 (delete the previous key at once) to %s, such as 1h", v, MaxRotationGrace)
		}
		c.RotationGrace = d
		if d == 0 {
			c.RotationGrace = provision.NoGrace
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

// MaxRotationGrace bounds KEYVEND_ROTATION_GRACE: a rotated-out key should
// not outlive a week.
const MaxRotationGrace = 7 * 24 * time.Hour

// resolver is the Lambda caller resolver: the API Gateway authorizer
// context, with the configured JWT claims.
func (c Config) resolver() caller.APIGateway {
	return caller.APIGateway{PrincipalClaim: c.JWTPrincipal, GroupsClaim: c.JWTGroups}
}

// ChatopsEnabled reports whether the Slack command is configured (a signing
// secret, or the secret that holds it).
func (c Config) ChatopsEnabled() bool {
	return c.SlackSigningSecret != "" || c.SlackSigningSecretARN != ""
}

// signingSecret is the configured source of the Slack signing secret; the
// ARN wins over a literal secret.
func (c Config) signingSecret(secrets slacksig.SecretsGetter) (slacksig.SecretSource, error) {
	switch {
	case c.SlackSigningSecretARN != "":
		return &slacksig.ManagedSecret{ARN: c.SlackSigningSecretARN, Client: secrets}, nil
	case c.SlackSigningSecret != "":
		return slacksig.StaticSecret(c.SlackSigningSecret), nil
	}
	return nil, errors.New("chatops: no Slack signing secret: set KEYVEND_SLACK_SIGNING_SECRET_ARN (or KEYVEND_SLACK_SIGNING_SECRET locally)")
}
