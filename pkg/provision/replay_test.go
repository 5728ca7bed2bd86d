package provision_test

import (
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/iam"

	"github.com/keyvend/keyvend/pkg/awstest"
	"github.com/keyvend/keyvend/pkg/grants"
	"github.com/keyvend/keyvend/pkg/policy"
	"github.com/keyvend/keyvend/pkg/provision"
)

// TestReplayReturnsTheSameUser: the same request twice. The second answers
// with the same key, creates nothing, and changes nothing (in grant mode
// group, but the group policy it re-puts: drift repair of a shared group).
// Its CreateUser, the cross-process claim on the name, is a write call
// that IAM refuses (EntityAlreadyExists).
func TestReplayReturnsTheSameUser(t *testing.T) {
	bothModes(t, func(t *testing.T, mode grants.Mode) { testReplayReturnsTheSameUser(t, newEnv(t, grantMode(mode))) })
}

func testReplayReturnsTheSameUser(t *testing.T, e *env) {
	user := awstest.Name("replay")
	grant := rw(awstest.Name("replay") + ".example.com")
	first, err := e.svc.Create(ctx(), input(user, grant))
	if err != nil {
		t.Fatal(err)
	}
	e.calls.Reset()
	second, err := e.svc.Create(ctx(), input(user, grant))
	if err != nil {
		t.Fatal(err)
	}
	if !first.Created || second.Created || second.Repaired {
		t.Errorf("Created first=%v second=%v, Repaired=%v", first.Created, second.Created, second.Repaired)
	}
	if second.AccessKeyID != first.AccessKeyID || second.SecretARN != first.SecretARN || second.UserARN != first.UserARN {
		t.Errorf("replay answered %+v, first %+v", second, first)
	}
	e.assertComplete(t, second, user, grant)

	writes := e.calls.Writes()
	t.Logf("replay writes: %s", opsLine(writes))
	var want []string
	if e.mode == grants.Group {
		want = []string{"PutGroupPolicy"}
	}
	if got := sortedOps(e.calls.SucceededWrites()); !sameStrings(got, want) {
		t.Errorf("replay changed state with %v, want %v", got, want)
	}
	for _, w := range writes {
		if w.Err != nil && !(w.Operation == "CreateUser" && w.Code() == "EntityAlreadyExists") {
			t.Errorf("unexpected failed write %s", w)
		}
	}
	for _, op := range []string{"CreateAccessKey", "AddUserToGroup", "CreateSecret", "PutSecretValue", "DeleteAccessKey", "CreateGroup", "PutUserPolicy"} {
		if n := e.calls.Count(op); n != 0 {
			t.Errorf("replay called %s %d times", op, n)
		}
	}
}

// TestReplayRepairsGroupPolicyDrift: someone edits a keyvend group's
// inline policy by hand; the next request for a user of that group puts the
// grant's policy back.
func TestReplayRepairsGroupPolicyDrift(t *testing.T) {
	e := newEnv(t, grantMode(grants.Group))
	user := awstest.Name("drift")
	grant := rw(awstest.Name("drift") + ".example.com")
	if _, err := e.svc.Create(ctx(), input(user, grant)); err != nil {
		t.Fatal(err)
	}
	group := policy.GroupName(grant)
	drifted := `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:*","Resource":"*"}]}`
	if _, err := e.iam.PutGroupPolicy(ctx(), &iam.PutGroupPolicyInput{GroupName: &group, PolicyName: aws.String(policy.InlinePolicyName), PolicyDocument: &drifted}); err != nil {
		t.Fatal(err)
	}
	if got := e.groupPolicy(t, group); !jsonEqual(t, got, drifted) {
		t.Fatalf("hand edit did not take: %s", got)
	}
	res, err := e.svc.Create(ctx(), input(user, grant))
	if err != nil {
		t.Fatal(err)
	}
	if res.Created {
		t.Error("replay says Created")
	}
	e.assertComplete(t, res, user, grant) // includes: the group's policy is the grant's again
}

// TestReplayRepairsUserPolicyDrift: someone widens a keyvend user's
// policy by hand; the next identical request puts the grants' policy back
// (and, until then, the user's grants are not intact: only its requester
// may act on it).
func TestReplayRepairsUserPolicyDrift(t *testing.T) {
	e := newEnv(t)
	user := awstest.Name("pdrift")
	grant := rw(awstest.Name("pdrift") + ".example.com")
	if _, err := e.svc.Create(ctx(), input(user, grant)); err != nil {
		t.Fatal(err)
	}
	doc, _ := e.UserPolicy(t, user)
	drifted := strings.Replace(doc, `"Statement":[`, `"Statement":[{"Sid":"Extra","Effect":"Allow","Action":"s3:*","Resource":["*"]},`, 1)
	if _, err := e.iam.PutUserPolicy(ctx(), &iam.PutUserPolicyInput{UserName: &user, PolicyName: aws.String(policy.UserPolicyName), PolicyDocument: &drifted}); err != nil {
		t.Fatal(err)
	}
	d, err := e.svc.Describe(ctx(), alice(), user)
	if err != nil {
		t.Fatal(err)
	}
	if d.GrantsIntact || len(d.Grants) != 1 || d.Grants[0] != grant {
		t.Errorf("drifted user described with grants %v intact %v, want %v not intact", d.Grants, d.GrantsIntact, grant)
	}
	e.calls.Reset()
	res, err := e.svc.Create(ctx(), input(user, grant))
	if err != nil {
		t.Fatal(err)
	}
	if res.Created || e.calls.Count("PutUserPolicy") != 1 {
		t.Errorf("replay Created=%v, PutUserPolicy %d times; want a replay that puts the policy again", res.Created, e.calls.Count("PutUserPolicy"))
	}
	e.assertComplete(t, res, user, grant)
}

// TestConflicts: existing state that contradicts the request is a 409 and
// is left as it was.
func TestConflicts(t *testing.T) {
	bothModes(t, func(t *testing.T, mode grants.Mode) { testConflicts(t, newEnv(t, grantMode(mode))) })
}

func testConflicts(t *testing.T, e *env) {

	t.Run("same user, other grants", func(t *testing.T) {
		user := awstest.Name("conflict")
		grant := rw(awstest.Name("conflict") + ".example.com")
		first, err := e.svc.Create(ctx(), input(user, grant))
		if err != nil {
			t.Fatal(err)
		}
		for _, other := range [][]policy.Grant{
			{{Bucket: grant.Bucket, Access: policy.ReadOnly}},                // other access
			{grant, rw(awstest.Name("conflict") + ".example.com")},           // a superset
			{{Bucket: grant.Bucket, Access: policy.ReadWrite, Prefix: "a/"}}, // a prefix
		} {
			e.calls.Reset()
			_, err := e.svc.Create(ctx(), input(user, other...))
			wantKind(t, err, provision.KindConflict)
			for _, op := range []string{"CreateAccessKey", "AddUserToGroup", "DeleteAccessKey", "RemoveUserFromGroup", "DeleteUser", "CreateSecret", "PutSecretValue"} {
				if n := e.calls.Count(op); n != 0 {
					t.Errorf("grants %v: %s called %d times", other, op, n)
				}
			}
		}
		e.assertComplete(t, first, user, grant)
	})

	t.Run("unmanaged user of that name", func(t *testing.T) {
		user := awstest.Name("foreign")
		grant := rw(awstest.Name("foreign") + ".example.com")
		if _, err := e.iam.CreateUser(ctx(), &iam.CreateUserInput{UserName: &user, Path: aws.String("/")}); err != nil {
			t.Fatal(err)
		}
		e.calls.Reset()
		_, err := e.svc.Create(ctx(), input(user, grant))
		wantKind(t, err, provision.KindConflict)
		for _, w := range e.calls.SucceededWrites() {
			if w.Operation != "PutGroupPolicy" && w.Operation != "CreateGroup" { // the shared group may be made ready
				t.Errorf("write to foreign user's world: %s", w)
			}
		}
		u, err := e.iam.GetUser(ctx(), &iam.GetUserInput{UserName: &user})
		if err != nil {
			t.Fatal(err)
		}
		if aws.ToString(u.User.Path) != "/" || len(u.User.Tags) != 0 {
			t.Errorf("foreign user changed: path %s tags %v", aws.ToString(u.User.Path), u.User.Tags)
		}
		if ids := e.Keys(t, user); len(ids) != 0 {
			t.Errorf("foreign user got keys %v", ids)
		}
		if g := e.Groups(t, user, ""); len(g) != 0 {
			t.Errorf("foreign user got groups %v", g)
		}
		if _, _, ok := e.Credential(t, user); ok {
			t.Error("a secret was created for the foreign user")
		}
	})

	if e.mode != grants.Group {
		return // grant mode policy uses no group
	}
	t.Run("group of that name under another path", func(t *testing.T) {
		user := awstest.Name("grp")
		grant := rw(awstest.Name("grp") + ".example.com")
		group := policy.GroupName(grant)
		theirs := `{"Version":"2012-10-17","Statement":[{"Effect":"Deny","Action":"s3:*","Resource":"*"}]}`
		if _, err := e.iam.CreateGroup(ctx(), &iam.CreateGroupInput{GroupName: &group, Path: aws.String("/team/")}); err != nil {
			t.Fatal(err)
		}
		if _, err := e.iam.PutGroupPolicy(ctx(), &iam.PutGroupPolicyInput{GroupName: &group, PolicyName: aws.String(policy.InlinePolicyName), PolicyDocument: &theirs}); err != nil {
			t.Fatal(err)
		}
		e.calls.Reset()
		_, err := e.svc.Create(ctx(), input(user, grant))
		wantKind(t, err, provision.KindConflict)
		// CreateAccessKey runs alongside the group check (it is on the
		// critical path); compensation deletes it. Nothing touches their group
		// and no key is ever stored.
		for _, op := range []string{"PutGroupPolicy", "AddUserToGroup", "CreateSecret"} {
			if n := e.calls.Count(op); n != 0 {
				t.Errorf("%s called %d times", op, n)
			}
		}
		if got := e.groupPolicy(t, group); !jsonEqual(t, got, theirs) {
			t.Errorf("their group's policy changed to %s", got)
		}
		g, err := e.iam.GetGroup(ctx(), &iam.GetGroupInput{GroupName: &group})
		if err != nil {
			t.Fatal(err)
		}
		if aws.ToString(g.Group.Path) != "/team/" || len(g.Users) != 0 {
			t.Errorf("their group changed: path %s members %v", aws.ToString(g.Group.Path), g.Users)
		}
		// CreateUser ran alongside the group check; it was compensated.
		assertUndoneBeforeDeleteUser(t, e.calls.Calls())
		e.assertNoTrace(t, user)
	})
}
