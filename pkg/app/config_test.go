package app_test

import (
	"strings"
	"testing"

	"github.com/keyvend/keyvend/pkg/app"
	"github.com/keyvend/keyvend/pkg/grants"
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
