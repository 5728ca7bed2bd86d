package chatops_test

import (
	"strings"
	"testing"

	"github.com/keyvend/keyvend/pkg/chatops"
	"github.com/keyvend/keyvend/pkg/provision"
)

// TestRefusalMessageLimit: a create refused for a rule's max_users says so.
func TestRefusalMessageLimit(t *testing.T) {
	m := chatops.RefusalMessage(mustParse(t, `provision site-deployer site.example.com:rw "r"`),
		&provision.Error{Kind: provision.KindLimit, Detail: "slack:T0KEYVEND/U1 holds 2 users under rules[2] (max_users 2)"})
	if !strings.HasPrefix(m.Text, ":no_entry_sign: Limit reached (`") || !strings.Contains(m.Text, "holds 2 users under rules[2] (max_users 2)") {
		t.Errorf("text = %q", m.Text)
	}
}
