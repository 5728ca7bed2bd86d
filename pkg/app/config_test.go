package app_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/keyvend/keyvend/pkg/app"
	"github.com/keyvend/keyvend/pkg/awstest"
	"github.com/keyvend/keyvend/pkg/grants"
	"github.com/keyvend/keyvend/pkg/provision"
	"github.com/keyvend/keyvend/pkg/provisiontest"
)

// TestGrantModeFromEnv: KEYVEND_GRANT_MODE picks how grants reach IAM;
// unset is policy (the fenced default); anything else stops keyvend from
// starting with a message naming the variable.
func TestGrantModeFromEnv(t *testing.T) {
	for value, want := range map[string]grants.Mode{"": grants.Policy, "policy": grants.Policy, "group": grants.Group} {
		t.Setenv("KEYVEND_GRANT_MODE", value)
		c, err := app.FromEnv()
		if err != nil || c.GrantMode != want {
			t.Errorf("KEYVEND_GRANT_MODE=%q: mode %q, %v; want %q", value, c.GrantMode, err, want)
		}
	}
	for _, bad := range []string{"groups", "Policy", "user"} {
		t.Setenv("KEYVEND_GRANT_MODE", bad)
		if _, err := app.FromEnv(); err == nil || !strings.Contains(err.Error(), "KEYVEND_GRANT_MODE") {
			t.Errorf("KEYVEND_GRANT_MODE=%q: %v, want an error naming the variable", bad, err)
		}
	}
}

// TestStateSettingsFromEnv: KEYVEND_TABLE names the state table and
// KEYVEND_HISTORY_RETENTION_DAYS how long a deleted user's history is kept
// (unset: the service's 400 days); a retention that is not 1 to 3650 days
// stops keyvend from starting with a message naming the variable.
func TestStateSettingsFromEnv(t *testing.T) {
	t.Setenv("KEYVEND_GRANT_MODE", "")
	t.Setenv("KEYVEND_TABLE", "keyvend-state-x")
	t.Setenv("KEYVEND_HISTORY_RETENTION_DAYS", "30")
	c, err := app.FromEnv()
	if err != nil || c.Table != "keyvend-state-x" || c.HistoryDays != 30 {
		t.Errorf("table %q, history %d days, %v; want keyvend-state-x, 30", c.Table, c.HistoryDays, err)
	}
	for _, bad := range []string{"0", "-1", "3651", "400d", "1.5"} {
		t.Setenv("KEYVEND_HISTORY_RETENTION_DAYS", bad)
		if _, err := app.FromEnv(); err == nil || !strings.Contains(err.Error(), "KEYVEND_HISTORY_RETENTION_DAYS") {
			t.Errorf("KEYVEND_HISTORY_RETENTION_DAYS=%q: %v, want an error naming the variable", bad, err)
		}
	}
}

// TestReadySuccessesFromEnv: KEYVEND_READY_SUCCESSES is how many checks in
// a row make a new key ready (unset: keycheck's default); a count that is
// not 1 to 20 stops keyvend from starting with a message naming it.
func TestReadySuccessesFromEnv(t *testing.T) {
	t.Setenv("KEYVEND_GRANT_MODE", "")
	t.Setenv("KEYVEND_READY_SUCCESSES", "")
	if c, err := app.FromEnv(); err != nil || c.ReadySuccesses != 0 {
		t.Errorf("unset: %d, %v; want 0 (keycheck's default)", c.ReadySuccesses, err)
	}
	t.Setenv("KEYVEND_READY_SUCCESSES", "5")
	if c, err := app.FromEnv(); err != nil || c.ReadySuccesses != 5 {
		t.Errorf("5: %d, %v; want 5", c.ReadySuccesses, err)
	}
	for _, bad := range []string{"0", "-1", "21", "three", "1.5"} {
		t.Setenv("KEYVEND_READY_SUCCESSES", bad)
		if _, err := app.FromEnv(); err == nil || !strings.Contains(err.Error(), "KEYVEND_READY_SUCCESSES") {
			t.Errorf("KEYVEND_READY_SUCCESSES=%q: %v, want an error naming the variable", bad, err)
		}
	}
}

// TestRotationGraceFromEnv: KEYVEND_ROTATION_GRACE is how long a rotated-out
// key stays active: unset is the service's default (1h), 0 deletes it at
// once, a negative, malformed or over-a-week value stops keyvend from
// starting with a message naming the variable.
func TestRotationGraceFromEnv(t *testing.T) {
	t.Setenv("KEYVEND_GRANT_MODE", "")
	for value, want := range map[string]time.Duration{"": 0, "90m": 90 * time.Minute, "0": provision.NoGrace, "0s": provision.NoGrace, "168h": 168 * time.Hour} {
		t.Setenv("KEYVEND_ROTATION_GRACE", value)
		c, err := app.FromEnv()
		if err != nil || c.RotationGrace != want {
			t.Errorf("KEYVEND_ROTATION_GRACE=%q: %v, %v; want %v", value, c.RotationGrace, err, want)
		}
	}
	for _, bad := range []string{"-1m", "1d", "169h", "soon"} {
		t.Setenv("KEYVEND_ROTATION_GRACE", bad)
		if _, err := app.FromEnv(); err == nil || !strings.Contains(err.Error(), "KEYVEND_ROTATION_GRACE") {
			t.Errorf("KEYVEND_ROTATION_GRACE=%q: %v, want an error naming the variable", bad, err)
		}
	}
}

// TestRotateEveryNeedsTheRotationFunctionARN: a rules file with
// rotate_every needs KEYVEND_ROTATION_FUNCTION_ARN: without it keyvend
// does not start, and the message names the variable.
func TestRotateEveryNeedsTheRotationFunctionARN(t *testing.T) {
	t.Setenv("KEYVEND_GRANT_MODE", "")
	rules := filepath.Join(t.TempDir(), "rules.json")
	if err := os.WriteFile(rules, []byte(`{"rules":[{"principals":["*"],"buckets":["*.example.com"],"access":["read-write"],"rotate_every":"2160h"}]}`), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("KEYVEND_RULES", rules)
	t.Setenv("KEYVEND_BOUNDARY_ARN", provisiontest.Boundary)
	t.Setenv("KEYVEND_TABLE", "keyvend-state")
	awsCfg := awstest.Config(t, "http://127.0.0.1:1")
	for arn, ok := range map[string]bool{"": false, "arn:aws:lambda:us-east-1:123456789012:function:keyvend-rotate": true} {
		t.Setenv("KEYVEND_ROTATION_FUNCTION_ARN", arn)
		c, err := app.FromEnv()
		if err != nil || c.RotationFunctionARN != arn {
			t.Fatalf("FromEnv: %q, %v", c.RotationFunctionARN, err)
		}
		_, err = app.Service(c, awsCfg, nil)
		if ok && err != nil {
			t.Errorf("with the rotation function: %v", err)
		}
		if !ok && (err == nil || !strings.Contains(err.Error(), "KEYVEND_ROTATION_FUNCTION_ARN")) {
			t.Errorf("without the rotation function: %v, want an error naming KEYVEND_ROTATION_FUNCTION_ARN", err)
		}
	}
}

// TestApprovalsChannelFromEnv: KEYVEND_SLACK_APPROVALS_CHANNEL takes a
// channel id and needs a bot token (or its secret's ARN); a Slack API URL
// must end in '/'. A bad setting stops keyvend with the variable named.
func TestApprovalsChannelFromEnv(t *testing.T) {
	for _, k := range []string{"KEYVEND_SLACK_APPROVALS_CHANNEL", "KEYVEND_SLACK_BOT_TOKEN", "KEYVEND_SLACK_BOT_TOKEN_ARN", "KEYVEND_SLACK_API_URL"} {
		t.Setenv(k, "")
	}
	t.Setenv("KEYVEND_SLACK_APPROVALS_CHANNEL", "C0APPROVALS")
	t.Setenv("KEYVEND_SLACK_BOT_TOKEN_ARN", "arn:aws:secretsmanager:eu-west-1:111122223333:secret:slack-bot-AbCdEf")
	t.Setenv("KEYVEND_SLACK_API_URL", "http://127.0.0.1:9/api/")
	if c, err := app.FromEnv(); err != nil || c.SlackApprovalsChannel != "C0APPROVALS" || c.SlackAPIURL != "http://127.0.0.1:9/api/" {
		t.Fatalf("%+v, %v", c, err)
	}
	for name, env := range map[string][2]string{
		"not a channel id":  {"KEYVEND_SLACK_APPROVALS_CHANNEL", "#approvals"},
		"no bot token":      {"KEYVEND_SLACK_BOT_TOKEN_ARN", ""},
		"API URL without /": {"KEYVEND_SLACK_API_URL", "https://slack.com/api"},
	} {
		t.Run(name, func(t *testing.T) {
			t.Setenv(env[0], env[1])
			if _, err := app.FromEnv(); err == nil || !strings.Contains(err.Error(), "KEYVEND_SLACK_") {
				t.Errorf("%s=%q: %v, want an error naming the variable", env[0], env[1], err)
			}
		})
	}
}
