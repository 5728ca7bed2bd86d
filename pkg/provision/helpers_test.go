package provision_test

import (
	"encoding/json"
	"errors"
	"net/url"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	iamtypes "github.com/aws/aws-sdk-go-v2/service/iam/types"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	smtypes "github.com/aws/aws-sdk-go-v2/service/secretsmanager/types"

	"github.com/keyvend/keyvend/pkg/awserr"
	"github.com/keyvend/keyvend/pkg/awstest"
	"github.com/keyvend/keyvend/pkg/grants"
	"github.com/keyvend/keyvend/pkg/policy"
	"github.com/keyvend/keyvend/pkg/provision"
)

// Helpers that read and build IAM and Secrets Manager state with the
// uninstrumented verification clients (e.iam, e.sm): nothing they do is
// recorded or faulted.

// repairAfter sets Settings.RepairAfter, e.g. to 1ns so that any half-made
// user counts as abandoned and is repaired.
func repairAfter(d time.Duration) func(*provision.Settings) {
	return func(s *provision.Settings) { s.RepairAfter = d }
}

// wantKind fails unless err is a *provision.Error of kind k, and returns it.
func wantKind(t *testing.T, err error, k provision.Kind) *provision.Error {
	t.Helper()
	var pe *provision.Error
	if !errors.As(err, &pe) || pe.Kind != k {
		t.Fatalf("error = %v (kind %d), want kind %d", err, provision.KindOf(err), k)
	}
	return pe
}

func secretName(user string) string { return "keyvend/users/" + user }

// groupPolicy returns the (URL-decoded) keyvend inline policy of group.
func (e *env) groupPolicy(t *testing.T, group string) string {
	t.Helper()
	out, err := e.iam.GetGroupPolicy(ctx(), &iam.GetGroupPolicyInput{GroupName: &group, PolicyName: aws.String(policy.InlinePolicyName)})
	if err != nil {
		t.Fatalf("policy of group %s: %v", group, err)
	}
	doc, err := url.PathUnescape(aws.ToString(out.PolicyDocument))
	if err != nil {
		t.Fatal(err)
	}
	return doc
}

// assertNoTrace checks that a failed create of user left nothing that
// could hold or leak a credential: no user (it was created by the failed
// request and compensated), no access key, no secret.
func (e *env) assertNoTrace(t *testing.T, user string) {
	t.Helper()
	if ids := e.Keys(t, user); len(ids) != 0 {
		t.Errorf("orphaned access keys of %s: %v", user, ids)
	}
	if e.UserExists(t, user) {
		t.Errorf("user %s still exists after compensation", user)
	}
	if c, _, ok := e.Credential(t, user); ok {
		t.Errorf("secret of %s exists and holds key %s", user, c.AccessKeyID)
	}
}

// assertComplete checks the state a clean create leaves: one managed user
// under /keyvend/, exactly one access key, which is the one in its secret
// (and the one res reports), and membership in exactly the groups of
// grants, each under /keyvend/ with exactly its grant's policy.
func (e *env) assertComplete(t *testing.T, res *provision.CreateResult, user string, grants ...policy.Grant) {
	t.Helper()
	u, err := e.iam.GetUser(ctx(), &iam.GetUserInput{UserName: &user})
	if err != nil {
		t.Fatalf("user %s: %v", user, err)
	}
	if p := aws.ToString(u.User.Path); p != "/keyvend/" {
		t.Errorf("user path = %s", p)
	}
	if got := tagOf(u.User.Tags, provision.TagManagedBy); got != "keyvend" {
		t.Errorf("managed-by tag = %q", got)
	}
	ids := e.Keys(t, user)
	cred, arn, ok := e.Credential(t, user)
	switch {
	case !ok:
		t.Errorf("user %s has no readable secret", user)
	case len(ids) != 1 || ids[0] != cred.AccessKeyID:
		t.Errorf("keys of %s = %v, secret holds %s: want exactly the secret's key", user, ids, cred.AccessKeyID)
	case cred.Version != 1 || cred.SecretAccessKey == "":
		t.Errorf("secret credential malformed: %v", cred)
	}
	if res != nil {
		if res.AccessKeyID != cred.AccessKeyID {
			t.Errorf("result key %s, secret holds %s", res.AccessKeyID, cred.AccessKeyID)
		}
		if res.SecretARN != arn {
			t.Errorf("result secret ARN %s, secret is %s", res.SecretARN, arn)
		}
	}
	e.assertGrants(t, user, grants...)
}

func tagOf(tags []iamtypes.Tag, key string) string {
	for _, tg := range tags {
		if aws.ToString(tg.Key) == key {
			return aws.ToString(tg.Value)
		}
	}
	return ""
}

// makeManagedUser creates, by hand, a user as keyvend's CreateUser would:
// under /keyvend/ with keyvend's tags (no permissions boundary: moto drops
// it anyway).
func (e *env) makeManagedUser(t *testing.T, user string) {
	t.Helper()
	_, err := e.iam.CreateUser(ctx(), &iam.CreateUserInput{
		UserName: &user,
		Path:     aws.String("/keyvend/"),
		Tags: []iamtypes.Tag{
			{Key: aws.String(provision.TagManagedBy), Value: aws.String("keyvend")},
			{Key: aws.String(provision.TagRequester), Value: aws.String(testCaller)},
			{Key: aws.String(provision.TagReason), Value: aws.String("test deploys")},
			{Key: aws.String(provision.TagRequestID), Value: aws.String("req-crashed")},
			{Key: aws.String(provision.TagCreatedAt), Value: aws.String(time.Now().UTC().Format(time.RFC3339))},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
}

// makeGroup creates, by hand, the group of g under path with g's policy.
func (e *env) makeGroup(t *testing.T, g policy.Grant, path string) string {
	t.Helper()
	name := policy.GroupName(g)
	if _, err := e.iam.CreateGroup(ctx(), &iam.CreateGroupInput{GroupName: &name, Path: &path}); err != nil {
		t.Fatal(err)
	}
	doc, _ := policy.Document("aws", g)
	if _, err := e.iam.PutGroupPolicy(ctx(), &iam.PutGroupPolicyInput{GroupName: &name, PolicyName: aws.String(policy.InlinePolicyName), PolicyDocument: &doc}); err != nil {
		t.Fatal(err)
	}
	return name
}

// makeManagedSecret creates, by hand, user's secret holding the key id
// (with keyvend's tags, as storeKey writes them).
func (e *env) makeManagedSecret(t *testing.T, user, keyID string) string {
	t.Helper()
	value, _ := json.Marshal(provision.Credential{Version: 1, AccessKeyID: keyID, SecretAccessKey: "old-secret"})
	out, err := e.sm.CreateSecret(ctx(), &secretsmanager.CreateSecretInput{
		Name:         aws.String(secretName(user)),
		SecretString: aws.String(string(value)),
		Tags: []smtypes.Tag{
			{Key: aws.String(provision.TagManagedBy), Value: aws.String("keyvend")},
			{Key: aws.String(provision.TagUser), Value: aws.String(user)},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	return aws.ToString(out.ARN)
}

// opsLine renders calls for the log: Service:Operation(error code).
func opsLine(calls []awstest.Call) string {
	s := make([]string, len(calls))
	for i, c := range calls {
		s[i] = c.String()
	}
	return strings.Join(s, ", ")
}

// sortedOps is the multiset of operation names of calls, sorted.
func sortedOps(calls []awstest.Call) []string {
	s := make([]string, len(calls))
	for i, c := range calls {
		s[i] = c.Operation
	}
	sort.Strings(s)
	return s
}

func sorted(s ...string) []string {
	out := append([]string(nil), s...)
	sort.Strings(out)
	return out
}

func sameStrings(a, b []string) bool {
	return strings.Join(a, "\x00") == strings.Join(b, "\x00")
}

// groupMembers returns the user names in group.
func (e *env) groupMembers(t *testing.T, group string) []string {
	t.Helper()
	out, err := e.iam.GetGroup(ctx(), &iam.GetGroupInput{GroupName: &group})
	if awserr.Code(err) == "NoSuchEntity" {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, u := range out.Users {
		names = append(names, aws.ToString(u.UserName))
	}
	return names
}

// assertUndoneBeforeDeleteUser checks, from the recorded calls of a failed
// request, that its compensation explicitly deleted every access key and
// removed every membership it created, before deleting the user. This is
// needed because moto deletes a user together with its keys and
// memberships (AWS refuses with DeleteConflict), so after the user is gone
// ListAccessKeys cannot show that a key was leaked.
//
// "At least": a call the client saw fail (e.g. cancelled in flight) may
// still have been applied by the server, and compensation lists keys and
// groups to undo those too.
func assertUndoneBeforeDeleteUser(t *testing.T, calls []awstest.Call) {
	t.Helper()
	ok := func(op string) (n, last int) {
		last = -1
		for i, c := range calls {
			if c.Operation == op && c.Err == nil {
				n, last = n+1, i
			}
		}
		return n, last
	}
	created, _ := ok("CreateAccessKey")
	deleted, lastDelete := ok("DeleteAccessKey")
	joined, _ := ok("AddUserToGroup")
	removed, lastRemove := ok("RemoveUserFromGroup")
	put, _ := ok("PutUserPolicy")
	unput, lastUnput := ok("DeleteUserPolicy")
	users, deleteUser := ok("DeleteUser")
	if deleted < created {
		t.Errorf("%d keys created, %d deleted: %s", created, deleted, opsLine(calls))
	}
	if removed < joined {
		t.Errorf("%d memberships added, %d removed: %s", joined, removed, opsLine(calls))
	}
	if put > 0 && unput == 0 {
		t.Errorf("user policy put and not deleted: %s", opsLine(calls))
	}
	if users == 1 && (lastDelete > deleteUser || lastRemove > deleteUser || lastUnput > deleteUser) {
		t.Errorf("user deleted before its keys, memberships or policy: %s", opsLine(calls))
	}
}

// assertGrants checks that user holds exactly grants, the way the env's
// grant mode carries them: in grant mode policy, exactly the canonical user
// policy of grants and no keyvend group; in grant mode group, exactly
// their groups, each under /keyvend/ with exactly its grant's policy, and
// no user policy.
func (e *env) assertGrants(t *testing.T, user string, grants ...policy.Grant) {
	t.Helper()
	doc, hasPolicy := e.UserPolicy(t, user)
	var keyvendGroups []string
	for _, g := range e.Groups(t, user, "") {
		if strings.HasPrefix(g, "keyvend_") {
			keyvendGroups = append(keyvendGroups, g)
		}
	}
	if e.mode != grantsGroup {
		want, err := policy.UserDocument("aws", grants)
		if err != nil {
			t.Fatal(err)
		}
		if !hasPolicy || doc != want {
			t.Errorf("user policy of %s = %q (present %v), want %s", user, doc, hasPolicy, want)
		}
		if len(keyvendGroups) > 0 {
			t.Errorf("user %s is in keyvend groups %v in grant mode policy", user, keyvendGroups)
		}
		return
	}
	if hasPolicy {
		t.Errorf("user %s has a user policy in grant mode group: %s", user, doc)
	}
	var want []string
	for _, g := range grants {
		want = append(want, policy.GroupName(g))
	}
	sort.Strings(want)
	if got := keyvendGroups; strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("keyvend groups of %s = %v, want %v", user, got, want)
	}
	for _, g := range grants {
		name := policy.GroupName(g)
		gg, err := e.iam.GetGroup(ctx(), &iam.GetGroupInput{GroupName: &name})
		if err != nil {
			t.Fatal(err)
		}
		if p := aws.ToString(gg.Group.Path); p != "/keyvend/" {
			t.Errorf("group %s path = %s", name, p)
		}
		wantDoc, _ := policy.Document("aws", g)
		if got := e.groupPolicy(t, name); !jsonEqual(t, got, wantDoc) {
			t.Errorf("policy of group %s = %s, want %s", name, got, wantDoc)
		}
	}
}

// grant gives the hand-made user grants the way the env's grant mode
// carries them (the group of each grant is made when missing).
func (e *env) grant(t *testing.T, user string, gs ...policy.Grant) {
	t.Helper()
	if e.mode != grantsGroup {
		doc, err := policy.UserDocument("aws", gs)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := e.iam.PutUserPolicy(ctx(), &iam.PutUserPolicyInput{UserName: &user, PolicyName: aws.String(policy.UserPolicyName), PolicyDocument: &doc}); err != nil {
			t.Fatal(err)
		}
		return
	}
	for _, g := range gs {
		name := policy.GroupName(g)
		if _, err := e.iam.GetGroup(ctx(), &iam.GetGroupInput{GroupName: &name}); awserr.Code(err) == "NoSuchEntity" {
			e.makeGroup(t, g, "/keyvend/")
		}
		if _, err := e.iam.AddUserToGroup(ctx(), &iam.AddUserToGroupInput{UserName: &user, GroupName: &name}); err != nil {
			t.Fatal(err)
		}
	}
}

const grantsGroup = grants.Group
