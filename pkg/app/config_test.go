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
