package provision_test

import (
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/iam"

	"github.com/keyvend/keyvend/pkg/awstest"
	"github.com/keyvend/keyvend/pkg/caller"
	"github.com/keyvend/keyvend/pkg/grants"
	"github.com/keyvend/keyvend/pkg/policy"
	"github.com/keyvend/keyvend/pkg/provision"
)

func alice() caller.Principal { return caller.Principal{ID: testCaller, Raw: testCaller} }

func TestDescribe(t *testing.T) {
	bothModes(t, func(t *testing.T, mode grants.Mode) { testDescribe(t, newEnv(t, grantMode(mode))) })
}

func testDescribe(t *testing.T, e *env) {
	user := awstest.Name("describe")
	plain := rw(awstest.Name("desc") + ".example.com")
	prefixed := policy.Grant{Bucket: awstest.Name("desc") + ".example.com", Access: policy.ReadOnly, Prefix: "logs/app/"}
	res, err := e.svc.Create(ctx(), input(user, plain, prefixed))
	if err != nil {
		t.Fatal(err)
	}

	e.calls.Reset()
	d, err := e.svc.Describe(ctx(), alice(), user)
	if err != nil {
		t.Fatal(err)
	}
	if w := e.calls.Writes(); len(w) != 0 {
		t.Errorf("Describe wrote: %s", opsLine(w))
	}
	// Grant mode policy reads the user policy; grant mode group reads each
	// group's policy too: the prefix of a prefixed grant is only there, and
	// a group grants what its policy says, whatever its name.
	wantReads := map[string]int{"GetUserPolicy": 1, "GetGroupPolicy": 0}
	if e.mode == grants.Group {
		wantReads["GetGroupPolicy"] = 2
	}
	for op, n := range wantReads {
		if got := e.calls.Count(op); got != n {
			t.Errorf("%s called %d times, want %d", op, got, n)
		}
	}
	if d.GrantMode != e.mode || !d.GrantsIntact || d.Requester != testCaller {
		t.Errorf("grant_mode %q intact %v requester %q, want %q, true, %s", d.GrantMode, d.GrantsIntact, d.Requester, e.mode, testCaller)
	}
	if d.User != user || d.UserARN != res.UserARN || d.Path != "/keyvend/" || !d.Complete || d.UserID == "" || d.CreatedAt.IsZero() {
		t.Errorf("description = %+v", d)
	}
	wantGrants := map[string]policy.Grant{policy.GroupName(plain): plain, policy.GroupName(prefixed): prefixed}
	if len(d.Grants) != 2 || len(d.Groups) != len(e.groupNames(plain, prefixed)) {
		t.Fatalf("grants %v groups %v", d.Grants, d.Groups)
	}
	for _, g := range d.Grants {
		if wantGrants[policy.GroupName(g)] != g {
			t.Errorf("grant %+v not requested", g)
		}
	}
	resARN := map[string]string{}
	for _, g := range res.Groups {
		resARN[g.Name] = g.ARN
	}
	for _, g := range d.Groups {
		if want, ok := wantGrants[g.Name]; !ok || g.Grant != want || g.ARN == "" || g.ARN != resARN[g.Name] {
			t.Errorf("group %+v, want grant %+v and ARN %s", g, want, resARN[g.Name])
		}
	}
	if len(d.AccessKeys) != 1 || d.AccessKeys[0].AccessKeyID != res.AccessKeyID || !d.AccessKeys[0].InSecret || d.AccessKeys[0].Status != "Active" {
		t.Errorf("access keys = %+v, want %s in the secret", d.AccessKeys, res.AccessKeyID)
	}
	if d.SecretName != secretName(user) || d.SecretARN != res.SecretARN || d.SecretARN == "" {
		t.Errorf("secret %s %s, want %s %s", d.SecretName, d.SecretARN, secretName(user), res.SecretARN)
	}
	for k, want := range map[string]string{
		provision.TagManagedBy: "keyvend", provision.TagRequester: testCaller,
		provision.TagReason: "test deploys", provision.TagRequestID: "req-" + user,
	} {
		if d.Tags[k] != want {
			t.Errorf("tag %s = %q, want %q", k, d.Tags[k], want)
		}
	}

	t.Run("unknown user", func(t *testing.T) {
		_, err := e.svc.Describe(ctx(), alice(), awstest.Name("nobody"))
		wantKind(t, err, provision.KindNotFound)
	})
	t.Run("unmanaged user", func(t *testing.T) {
		other := awstest.Name("unmanaged")
		if _, err := e.iam.CreateUser(ctx(), &iam.CreateUserInput{UserName: &other, Path: aws.String("/")}); err != nil {
			t.Fatal(err)
		}
		_, err := e.svc.Describe(ctx(), alice(), other)
		wantKind(t, err, provision.KindNotFound)
	})
	t.Run("principal no rule allows: told it does not exist", func(t *testing.T) {
		bob := caller.Principal{ID: "arn:aws:iam::123456789012:user/bob", Raw: "arn:aws:iam::123456789012:user/bob"}
		_, err := e.svc.Describe(ctx(), bob, user)
		pe := wantKind(t, err, provision.KindNotFound)
		if _, unknown := e.svc.Describe(ctx(), bob, awstest.Name("nobody")); unknown == nil || pe.Detail != strings.Replace(unknown.Error(), "nobody", "", 1) && !strings.Contains(pe.Detail, user) {
			t.Errorf("answer for a user bob may not see (%q) differs in kind from one for a user that does not exist (%v)", pe.Detail, unknown)
		}
		if strings.Contains(err.Error(), plain.Bucket) || strings.Contains(err.Error(), prefixed.Bucket) {
			t.Errorf("refusal names the user's buckets: %v", err)
		}
	})
	t.Run("invalid name", func(t *testing.T) {
		// . and .. are IAM user names, but no canonical URL path names them
		for _, name := range []string{"no/slashes", ".", ".."} {
			e.calls.Reset()
			_, err := e.svc.Describe(ctx(), alice(), name)
			wantKind(t, err, provision.KindInvalid)
			if _, err := e.svc.Create(ctx(), input(name, plain)); provision.KindOf(err) != provision.KindInvalid {
				t.Errorf("create %q: %v, want invalid", name, err)
			}
			if n := len(e.calls.Calls()); n != 0 {
				t.Errorf("%d AWS calls for the invalid name %q", n, name)
			}
		}
	})
}

// TestDescribeHalfMadeUser: a managed user without a secret is described
// as incomplete, its stray key not in any secret.
func TestDescribeHalfMadeUser(t *testing.T) {
	bothModes(t, func(t *testing.T, mode grants.Mode) { testDescribeHalfMadeUser(t, newEnv(t, grantMode(mode))) })
}

func testDescribeHalfMadeUser(t *testing.T, e *env) {
	user := awstest.Name("half")
	grant := rw(awstest.Name("half") + ".example.com")
	e.makeManagedUser(t, user)
	e.grant(t, user, grant)
	key := e.handKey(t, user)
	d, err := e.svc.Describe(ctx(), alice(), user)
	if err != nil {
		t.Fatal(err)
	}
	if d.Complete || d.SecretARN != "" || len(d.AccessKeys) != 1 || d.AccessKeys[0].AccessKeyID != key || d.AccessKeys[0].InSecret {
		t.Errorf("description = %+v", d)
	}
	if len(d.Grants) != 1 || d.Grants[0] != grant {
		t.Errorf("grants = %v", d.Grants)
	}
}
