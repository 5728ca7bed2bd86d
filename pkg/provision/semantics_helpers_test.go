package provision_test

// Helpers of the tests of grant modes (modes_test.go), fail-closed
// authorization (fence_test.go), ownership (ownership_test.go), the expiry
// rules of PUT grants (update_expiry_test.go) and secret adoption
// (adoption_test.go). Names start with sem so they do not collide with the
// helpers of other test files.

import (
	"bufio"
	"encoding/json"
	"maps"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	smtypes "github.com/aws/aws-sdk-go-v2/service/secretsmanager/types"

	"github.com/keyvend/keyvend/pkg/awserr"
	"github.com/keyvend/keyvend/pkg/awstest"
	"github.com/keyvend/keyvend/pkg/policy"
	"github.com/keyvend/keyvend/pkg/provision"
)

// semLogLines decodes the JSON lines a service logged.
func semLogLines(t *testing.T, out string) []map[string]any {
	t.Helper()
	var lines []map[string]any
	sc := bufio.NewScanner(strings.NewReader(out))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("log line %q is not JSON: %v", sc.Text(), err)
		}
		lines = append(lines, m)
	}
	return lines
}

// semKMSKey is the KMS key of the deployments that set Settings.KMSKeyID;
// semOtherKMSKey is someone else's. moto keeps whatever KmsKeyId a secret
// is created with and checks none of them.
const (
	semKMSKey      = "arn:aws:kms:us-east-1:123456789012:key/11111111-2222-3333-4444-keyvend00001"
	semOtherKMSKey = "arn:aws:kms:us-east-1:123456789012:key/99999999-8888-7777-6666-theirs000001"
)

func semWithKMS(key string) func(*provision.Settings) {
	return func(s *provision.Settings) { s.KMSKeyID = key }
}

// semReadPolicy is a resource policy that lets another account read a
// secret: what keyvend must never put keys under.
const semReadPolicy = `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::999999999999:root"},"Action":"secretsmanager:GetSecretValue","Resource":"*"}]}`

// semSecretSpec describes a secret a test leaves at keyvend/users/<user>.
type semSecretSpec struct {
	managed   bool   // tagged keyvend:managed-by=keyvend
	userTag   string // keyvend:user (none when "")
	kms       string // KmsKeyId (none when "")
	policy    bool   // with semReadPolicy as resource policy
	scheduled bool   // scheduled for deletion
}

// semMakeSecret creates user's secret as spec says, holding a credential
// for keyID, and returns its ARN.
func semMakeSecret(t *testing.T, sm *secretsmanager.Client, user, keyID string, spec semSecretSpec) string {
	t.Helper()
	name := secretName(user)
	value, _ := json.Marshal(provision.Credential{Version: 1, AccessKeyID: keyID, SecretAccessKey: "their-secret"})
	in := &secretsmanager.CreateSecretInput{Name: &name, SecretString: aws.String(string(value))}
	if spec.managed {
		in.Tags = append(in.Tags, smtypes.Tag{Key: aws.String(provision.TagManagedBy), Value: aws.String("keyvend")})
	}
	if spec.userTag != "" {
		in.Tags = append(in.Tags, smtypes.Tag{Key: aws.String(provision.TagUser), Value: aws.String(spec.userTag)})
	}
	if spec.kms != "" {
		in.KmsKeyId = aws.String(spec.kms)
	}
	out, err := sm.CreateSecret(ctx(), in)
	if err != nil {
		t.Fatalf("create secret %s: %v", name, err)
	}
	if spec.policy {
		semPutSecretPolicy(t, sm, user)
	}
	if spec.scheduled {
		if _, err := sm.DeleteSecret(ctx(), &secretsmanager.DeleteSecretInput{SecretId: &name, RecoveryWindowInDays: aws.Int64(7)}); err != nil {
			t.Fatal(err)
		}
	}
	return aws.ToString(out.ARN)
}

// semPutSecretPolicy gives user's secret semReadPolicy.
func semPutSecretPolicy(t *testing.T, sm *secretsmanager.Client, user string) {
	t.Helper()
	if _, err := sm.PutResourcePolicy(ctx(), &secretsmanager.PutResourcePolicyInput{SecretId: aws.String(secretName(user)), ResourcePolicy: aws.String(semReadPolicy)}); err != nil {
		t.Fatalf("put resource policy on the secret of %s: %v", user, err)
	}
}

// semSecretState is everything about a secret a write could change.
type semSecretState struct {
	versions  map[string][]string // version id → stages
	value     string              // current value ("" when scheduled for deletion: unreadable)
	scheduled bool
	tags      map[string]string
	kms       string
	policy    string
}

func semSecret(t *testing.T, sm *secretsmanager.Client, user string) semSecretState {
	t.Helper()
	name := secretName(user)
	d, err := sm.DescribeSecret(ctx(), &secretsmanager.DescribeSecretInput{SecretId: &name})
	if err != nil {
		t.Fatalf("describe secret %s: %v", name, err)
	}
	st := semSecretState{versions: map[string][]string{}, scheduled: d.DeletedDate != nil, tags: map[string]string{}, kms: aws.ToString(d.KmsKeyId)}
	for id, stages := range d.VersionIdsToStages {
		s := slices.Clone(stages)
		sort.Strings(s)
		st.versions[id] = s
	}
	for _, tg := range d.Tags {
		st.tags[aws.ToString(tg.Key)] = aws.ToString(tg.Value)
	}
	if p, err := sm.GetResourcePolicy(ctx(), &secretsmanager.GetResourcePolicyInput{SecretId: &name}); err == nil {
		st.policy = aws.ToString(p.ResourcePolicy)
	}
	if !st.scheduled {
		v, err := sm.GetSecretValue(ctx(), &secretsmanager.GetSecretValueInput{SecretId: &name})
		if err != nil {
			t.Fatalf("read secret %s: %v", name, err)
		}
		st.value = aws.ToString(v.SecretString)
	}
	return st
}

func (a semSecretState) equal(b semSecretState) bool {
	return a.value == b.value && a.scheduled == b.scheduled && a.kms == b.kms && a.policy == b.policy &&
		maps.Equal(a.tags, b.tags) && maps.EqualFunc(a.versions, b.versions, slices.Equal)
}

// semNoSecretWrites fails if the recorded calls wrote to a secret.
func semNoSecretWrites(t *testing.T, calls *awstest.Recorder) {
	t.Helper()
	for _, op := range []string{"PutSecretValue", "RestoreSecret", "TagResource", "UpdateSecret", "DeleteSecret", "PutResourcePolicy"} {
		if n := calls.Count(op); n != 0 {
			t.Errorf("%s called %d times: %s", op, n, opsLine(calls.Calls()))
		}
	}
}

// semGroupExists reports whether the IAM group exists.
func semGroupExists(t *testing.T, c *iam.Client, group string) bool {
	t.Helper()
	_, err := c.GetGroup(ctx(), &iam.GetGroupInput{GroupName: &group})
	switch {
	case err == nil:
		return true
	case awserr.Code(err) == "NoSuchEntity":
		return false
	}
	t.Fatalf("get group %s: %v", group, err)
	return false
}

// semBucket is a fresh bucket name under *.example.com.
func semBucket(prefix string) string { return awstest.Name(prefix) + ".example.com" }

// semPrefixed is a prefixed grant on a fresh bucket: its group's name does
// not say its prefix, so keyvend reads its group policy.
func semPrefixed(prefix string) policy.Grant {
	return policy.Grant{Bucket: semBucket(prefix), Access: policy.ReadOnly, Prefix: "logs/"}
}
