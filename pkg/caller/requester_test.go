package caller_test

import (
	"testing"

	"github.com/keyvend/keyvend/pkg/caller"
)

// TestRequesterIsTheSession: rules match an assumed role by the role
// (ID), but the requester keyvend records and compares for ownership is the
// session, so two people sharing a role (an SSO permission set) are two
// requesters. Principals whose ID is exact are their own requester.
func TestRequesterIsTheSession(t *testing.T) {
	cases := []struct {
		name, arn, wantID, wantRequester string
	}{
		{"IAM user", "arn:aws:iam::123456789012:user/alice", "arn:aws:iam::123456789012:user/alice", "arn:aws:iam::123456789012:user/alice"},
		{"assumed role, alice", "arn:aws:sts::123456789012:assumed-role/deployer/alice", "arn:aws:iam::123456789012:role/deployer", "arn:aws:sts::123456789012:assumed-role/deployer/alice"},
		{"assumed role, bob", "arn:aws:sts::123456789012:assumed-role/deployer/bob", "arn:aws:iam::123456789012:role/deployer", "arn:aws:sts::123456789012:assumed-role/deployer/bob"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p, err := caller.APIGateway{}.Principal(viaAdapter(t, event(iamAuthorizer(c.arn))))
			if err != nil {
				t.Fatal(err)
			}
			if p.ID != c.wantID || p.Requester() != c.wantRequester {
				t.Errorf("ID %s requester %s, want %s and %s", p.ID, p.Requester(), c.wantID, c.wantRequester)
			}
		})
	}
	// Display details in Raw (Slack's user name) are never the requester.
	p := caller.Principal{ID: "slack:T1/U1", Raw: "slack:T1/U1 (@alice)"}
	if p.Requester() != "slack:T1/U1" {
		t.Errorf("requester %q, want the ID", p.Requester())
	}
}
