package provision_test

// Helpers of the lifecycle tests (delete, update, list, expiry, reap):
// principals, users made by hand, and a middleware that logs each call's
// input and outcome.

import (
	"context"
	"slices"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	iamtypes "github.com/aws/aws-sdk-go-v2/service/iam/types"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"

	"github.com/keyvend/keyvend/pkg/awserr"
	"github.com/keyvend/keyvend/pkg/awstest"
	"github.com/keyvend/keyvend/pkg/caller"
	"github.com/keyvend/keyvend/pkg/grants"
	"github.com/keyvend/keyvend/pkg/policy"
	"github.com/keyvend/keyvend/pkg/provision"
)

// Principals of the lifecycle tests besides testCaller (alice).
const (
	bobARN   = "arn:aws:iam::123456789012:user/bob"
	carolARN = "arn:aws:iam::123456789012:user/carol"
	daveARN  = "arn:aws:iam::123456789012:user/dave"
	erinARN  = "arn:aws:iam::123456789012:user/erin"
)

func who(arn string) caller.Principal { return caller.Principal{ID: arn, Raw: arn} }

// groupNames are the names of the grant groups of gs in grant mode group,
// none in grant mode policy: the groups a user holding gs is in.
func (e *env) groupNames(gs ...policy.Grant) []string {
	if e.mode != grants.Group {
		return nil
	}
	var out []string
	for _, g := range gs {
		out = append(out, policy.GroupName(g))
	}
	return out
}

// managedTags are the tags keyvend's create puts on a user.
func managedTags(requester string, extra ...iamtypes.Tag) []iamtypes.Tag {
	return append([]iamtypes.Tag{
		{Key: aws.String(provision.TagManagedBy), Value: aws.String("keyvend")},
		{Key: aws.String(provision.TagRequester), Value: aws.String(requester)},
		{Key: aws.String(provision.TagReason), Value: aws.String("made by hand in a test")},
		{Key: aws.String(provision.TagRequestID), Value: aws.String("test")},
		{Key: aws.String(provision.TagCreatedAt), Value: aws.String(time.Now().UTC().Format(time.RFC3339))},
	}, extra...)
}

func expiryTag(at time.Time) iamtypes.Tag {
	return iamtypes.Tag{Key: aws.String(provision.TagExpiresAt), Value: aws.String(at.UTC().Format(time.RFC3339))}
}

// mustCreateUser creates an IAM user directly, bypassing keyvend.
func mustCreateUser(t *testing.T, c *iam.Client, name, path string, tags []iamtypes.Tag) {
	t.Helper()
	if _, err := c.CreateUser(ctx(), &iam.CreateUserInput{UserName: &name, Path: &path, Tags: tags}); err != nil {
		t.Fatalf("create user %s: %v", name, err)
	}
}

func mustCreateKey(t *testing.T, c *iam.Client, user string) string {
	t.Helper()
	out, err := c.CreateAccessKey(ctx(), &iam.CreateAccessKeyInput{UserName: &user})
	if err != nil {
		t.Fatalf("create key for %s: %v", user, err)
	}
	return aws.ToString(out.AccessKey.AccessKeyId)
}

// mustGroup makes group name exist at path (with the grant's policy when
// it is a keyvend group name).
func mustGroup(t *testing.T, c *iam.Client, name, path string) {
	t.Helper()
	_, err := c.CreateGroup(ctx(), &iam.CreateGroupInput{GroupName: &name, Path: &path})
	if err != nil && awserr.Code(err) != "EntityAlreadyExists" {
		t.Fatalf("create group %s: %v", name, err)
	}
	if g, perr := policy.ParseGroup("aws", name, ""); perr == nil {
		doc, _ := policy.Document("aws", g)
		if _, err := c.PutGroupPolicy(ctx(), &iam.PutGroupPolicyInput{GroupName: &name, PolicyName: aws.String(policy.InlinePolicyName), PolicyDocument: &doc}); err != nil {
			t.Fatal(err)
		}
	}
}

func mustJoin(t *testing.T, c *iam.Client, user, group string) {
	t.Helper()
	if _, err := c.AddUserToGroup(ctx(), &iam.AddUserToGroupInput{UserName: &user, GroupName: &group}); err != nil {
		t.Fatalf("add %s to %s: %v", user, group, err)
	}
}

// secretStatus is what Secrets Manager says of a user's secret.
type secretStatus struct {
	exists  bool
	deleted *time.Time // scheduled deletion
	tags    map[string]string
}

func secretOf(t *testing.T, c *secretsmanager.Client, user string) secretStatus {
	t.Helper()
	out, err := c.DescribeSecret(ctx(), &secretsmanager.DescribeSecretInput{SecretId: aws.String("keyvend/users/" + user)})
	if awserr.Code(err) == "ResourceNotFoundException" {
		return secretStatus{}
	}
	if err != nil {
		t.Fatalf("describe secret of %s: %v", user, err)
	}
	st := secretStatus{exists: true, deleted: out.DeletedDate, tags: map[string]string{}}
	for _, tg := range out.Tags {
		st.tags[aws.ToString(tg.Key)] = aws.ToString(tg.Value)
	}
	return st
}

func sortedCopy(s []string) []string {
	s = slices.Clone(s)
	sort.Strings(s)
	if s == nil {
		s = []string{}
	}
	return s
}

// beforeFirst runs fn once, synchronously, just before the first call of
// operation op made through cfg: a deterministic interleaving point for
// "another process acts now".
func beforeFirst(cfg *aws.Config, op string, fn func()) {
	var once sync.Once
	cfg.APIOptions = slices.Clone(cfg.APIOptions) // do not write into a shared backing array
	awstest.BeforeSend(cfg, op, func(context.Context) { once.Do(fn) })
}
