package provision_test

import (
	"testing"

	"github.com/keyvend/keyvend/pkg/awstest"
	"github.com/keyvend/keyvend/pkg/caller"
	"github.com/keyvend/keyvend/pkg/grants"
	"github.com/keyvend/keyvend/pkg/policy"
	"github.com/keyvend/keyvend/pkg/provision"
)

// TestAWSCallsPerProvision pins the AWS calls of one provision in each
// grant mode: with a new group, with a group that already exists (group
// mode), and the replay of a complete user. The state table's writes go
// alongside the IAM calls: the claim (PutItem) beside CreateUser, the
// commit (TransactWriteItems) beside CreateSecret. Every call is expected
// to succeed except the replay's claims: CreateUser fails with
// EntityAlreadyExists and the table's claim with a failed condition; the
// replay then leases the record (UpdateItem), reads IAM, and releases it
// (UpdateItem). Grant mode policy makes fewer calls than grant mode group:
// no group to read, create or join.
func TestAWSCallsPerProvision(t *testing.T) {
	type want struct {
		name string
		ops  []string
		fail map[string]string // operation → expected error code
	}
	replayReads := []string{"CreateUser", "PutItem", "UpdateItem", "GetUser", "ListGroupsForUser", "GetUserPolicy", "ListAccessKeys", "GetSecretValue", "UpdateItem"}
	claimed := map[string]string{"CreateUser": "EntityAlreadyExists", "PutItem": "ConditionalCheckFailedException"}
	with := func(m map[string]string, k, v string) map[string]string {
		out := map[string]string{k: v}
		for a, b := range m {
			out[a] = b
		}
		return out
	}
	cases := map[grants.Mode][]want{
		grants.Policy: {
			{"new user", []string{"CreateUser", "PutItem", "CreateAccessKey", "PutUserPolicy", "CreateSecret", "TransactWriteItems"}, nil},
			{"second user, same grant", []string{"CreateUser", "PutItem", "CreateAccessKey", "PutUserPolicy", "CreateSecret", "TransactWriteItems"}, nil},
			{"replay", replayReads, with(claimed, "GetUserPolicy", "")},
		},
		grants.Group: {
			{"new group", []string{"GetGroup", "CreateGroup", "PutGroupPolicy", "CreateUser", "PutItem", "AddUserToGroup", "CreateAccessKey", "CreateSecret", "TransactWriteItems"},
				map[string]string{"GetGroup": "NoSuchEntity"}},
			{"existing group", []string{"GetGroup", "PutGroupPolicy", "CreateUser", "PutItem", "AddUserToGroup", "CreateAccessKey", "CreateSecret", "TransactWriteItems"}, nil},
			{"replay", append([]string{"GetGroup", "PutGroupPolicy", "GetGroupPolicy"}, replayReads...),
				with(claimed, "GetUserPolicy", "NoSuchEntity")},
		},
	}
	firstCalls := map[grants.Mode]int{}
	bothModes(t, func(t *testing.T, mode grants.Mode) {
		e := newEnv(t, grantMode(mode))
		grant := rw(awstest.Name("calls") + ".example.com")
		users := []string{awstest.Name("calls-a"), awstest.Name("calls-b")}
		for i, c := range cases[mode] {
			user := users[min(i, 1)]
			e.calls.Reset()
			res, err := e.svc.Create(ctx(), input(user, grant))
			if err != nil {
				t.Fatalf("%s: %v", c.name, err)
			}
			calls := e.calls.Calls()
			t.Logf("%s: %d calls: %s", c.name, len(calls), opsLine(calls))
			if i == 0 {
				firstCalls[mode] = len(calls)
			}
			if got, want := sortedOps(calls), sorted(c.ops...); !sameStrings(got, want) {
				t.Errorf("%s: calls = %v, want %v", c.name, got, want)
			}
			for _, call := range calls {
				if call.Code() != c.fail[call.Operation] {
					t.Errorf("%s: %s ended with %q, want %q", c.name, call.Operation, call.Code(), c.fail[call.Operation])
				}
			}
			if c.name == "replay" && res.Created {
				t.Errorf("replay created a key")
			}
			e.assertComplete(t, res, user, grant)
		}
	})
	if firstCalls[grants.Policy] >= firstCalls[grants.Group] {
		t.Errorf("a provision in grant mode policy makes %d calls, in grant mode group %d: want fewer", firstCalls[grants.Policy], firstCalls[grants.Group])
	}
}

// TestForbiddenMakesNoAWSCall: a request no rule allows is refused before
// any AWS call.
func TestForbiddenMakesNoAWSCall(t *testing.T) {
	e := newEnv(t)
	user := awstest.Name("forbidden")
	for _, c := range []struct {
		name string
		in   provision.CreateInput
	}{
		{"principal no rule names", func() provision.CreateInput {
			in := input(user, rw(awstest.Name("f")+".example.com"))
			in.Principal = caller.Principal{ID: "arn:aws:iam::123456789012:user/mallory", Raw: "arn:aws:iam::123456789012:user/mallory"}
			return in
		}()},
		{"bucket outside the rule", input(user, rw(awstest.Name("f")+".example.org"))},
		{"one of two grants outside the rule", input(user, rw(awstest.Name("f")+".example.com"), policy.Grant{Bucket: awstest.Name("f") + ".example.org", Access: policy.ReadOnly})},
		{"anonymous", func() provision.CreateInput {
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
	if e.UserExists(t, user) {
		t.Error("a forbidden request created the user")
	}
}
