package provision_test

import (
	"testing"

	"github.com/keyvend/keyvend/pkg/awstest"
	"github.com/keyvend/keyvend/pkg/caller"
	"github.com/keyvend/keyvend/pkg/policy"
	"github.com/keyvend/keyvend/pkg/provision"
)

// TestAWSCallsPerProvision pins the AWS calls of one provision: with a new
// group, with a group that already exists, and the replay of a complete
// user. Every call is expected to succeed except the replay's CreateUser,
// which is the cross-process claim and fails with EntityAlreadyExists.
func TestAWSCallsPerProvision(t *testing.T) {
	e := newEnv(t)
	grant := rw(awstest.Name("calls") + ".example.com")
	first, second := awstest.Name("calls-a"), awstest.Name("calls-b")

	cases := []struct {
		name string
		user string
		want []string
		fail map[string]string // operation → expected error code
	}{
		{"new group", first, []string{"GetGroup", "CreateGroup", "PutGroupPolicy", "CreateUser", "AddUserToGroup", "CreateAccessKey", "CreateSecret"},
			map[string]string{"GetGroup": "NoSuchEntity"}},
		{"existing group", second, []string{"GetGroup", "PutGroupPolicy", "CreateUser", "AddUserToGroup", "CreateAccessKey", "CreateSecret"}, nil},
		{"replay", second, []string{"GetGroup", "PutGroupPolicy", "CreateUser", "GetUser", "ListGroupsForUser", "ListAccessKeys", "GetSecretValue"},
			map[string]string{"CreateUser": "EntityAlreadyExists"}},
	}
	for _, c := range cases {
		e.calls.Reset()
		res, err := e.svc.Create(ctx(), input(c.user, grant))
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		calls := e.calls.Calls()
		t.Logf("%s: %d calls: %s", c.name, len(calls), opsLine(calls))
		if got, want := sortedOps(calls), sorted(c.want...); !sameStrings(got, want) {
			t.Errorf("%s: calls = %v, want %v", c.name, got, want)
		}
		for _, call := range calls {
			if call.Code() != c.fail[call.Operation] {
				t.Errorf("%s: %s ended with %q, want %q", c.name, call.Operation, call.Code(), c.fail[call.Operation])
			}
		}
		e.assertComplete(t, res, c.user, grant)
	}
}

// TestForbiddenMakesNoAWSCall: a request no rule allows is refused before
// any AWS call.
func TestForbiddenMakesNoAWSCall(t *testing.T) {
	e := newEnv(t)
	user := awstest.Name("forbidden")
	for _, c := range []struct {
		name string
		in   provision.Input
	}{
		{"principal no rule names", func() provision.Input {
			in := input(user, rw(awstest.Name("f")+".example.com"))
			in.Principal = caller.Principal{ID: "arn:aws:iam::123456789012:user/mallory", Raw: "arn:aws:iam::123456789012:user/mallory"}
			return in
		}()},
		{"bucket outside the rule", input(user, rw(awstest.Name("f")+".example.org"))},
		{"one of two grants outside the rule", input(user, rw(awstest.Name("f")+".example.com"), policy.Grant{Bucket: awstest.Name("f") + ".example.org", Access: policy.ReadOnly})},
		{"anonymous", func() provision.Input {
			in := input(user, rw(awstest.Name("f")+".example.com"))
			in.Principal = caller.Principal{}
			return in
		}()},
	} {
		e.calls.Reset()
		_, err := e.svc.Create(ctx(), c.in)
		wantKind(t, err, provision.KindForbidden)
		if calls := e.calls.Calls(); len(calls) != 0 {
			t.Errorf("%s: AWS calls made: %s", c.name, opsLine(calls))
		}
	}
	if e.userExists(t, user) {
		t.Error("a forbidden request created the user")
	}
}
