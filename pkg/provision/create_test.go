package provision_test

import (
	"encoding/json"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"

	"github.com/keyvend/keyvend/pkg/awstest"
	"github.com/keyvend/keyvend/pkg/grants"
	"github.com/keyvend/keyvend/pkg/provision"
)

func TestCreateLeavesExactlyTheSpecifiedState(t *testing.T) {
	bothModes(t, func(t *testing.T, mode grants.Mode) { testCreateLeavesExactlyTheSpecifiedState(t, mode) })
}

func testCreateLeavesExactlyTheSpecifiedState(t *testing.T, mode grants.Mode) {
	e := newEnv(t, grantMode(mode))
	user := awstest.Name("deployer")
	grant := rw(awstest.Name("site") + ".example.com")
	res, err := e.svc.Create(ctx(), input(user, grant))
	if err != nil {
		t.Fatal(err)
	}
	if !res.Created || res.AccessKeyID == "" || res.Path != "/keyvend/" {
		t.Fatalf("result = %+v", res)
	}

	u, err := e.iam.GetUser(ctx(), &iam.GetUserInput{UserName: &user})
	if err != nil {
		t.Fatal(err)
	}
	if aws.ToString(u.User.Path) != "/keyvend/" {
		t.Errorf("user path = %s", aws.ToString(u.User.Path))
	}
	tags := map[string]string{}
	for _, tg := range u.User.Tags {
		tags[aws.ToString(tg.Key)] = aws.ToString(tg.Value)
	}
	for k, want := range map[string]string{
		provision.TagManagedBy: "keyvend", provision.TagRequester: testCaller,
		provision.TagReason: "test deploys", provision.TagRequestID: "req-" + user,
	} {
		if tags[k] != want {
			t.Errorf("tag %s = %q, want %q", k, tags[k], want)
		}
	}
	if tags[provision.TagCreatedAt] == "" {
		t.Error("no created-at tag")
	}

	e.assertGrants(t, user, grant)
	if res.GrantMode != mode {
		t.Errorf("result grant_mode = %q, want %q", res.GrantMode, mode)
	}

	keys, err := e.iam.ListAccessKeys(ctx(), &iam.ListAccessKeysInput{UserName: &user})
	if err != nil {
		t.Fatal(err)
	}
	if len(keys.AccessKeyMetadata) != 1 || aws.ToString(keys.AccessKeyMetadata[0].AccessKeyId) != res.AccessKeyID {
		t.Fatalf("keys = %+v", keys.AccessKeyMetadata)
	}

	sec, err := e.sm.GetSecretValue(ctx(), &secretsmanager.GetSecretValueInput{SecretId: aws.String("keyvend/users/" + user)})
	if err != nil {
		t.Fatal(err)
	}
	var cred map[string]any
	if err := json.Unmarshal([]byte(aws.ToString(sec.SecretString)), &cred); err != nil {
		t.Fatal(err)
	}
	if cred["Version"] != float64(1) || cred["AccessKeyId"] != res.AccessKeyID || cred["SecretAccessKey"] == "" || len(cred) != 3 {
		t.Errorf("secret document = %v", keysOf(cred))
	}
	if aws.ToString(sec.ARN) != res.SecretARN {
		t.Errorf("secret ARN %s, result says %s", aws.ToString(sec.ARN), res.SecretARN)
	}
}

func jsonEqual(t *testing.T, a, b string) bool {
	t.Helper()
	var x, y any
	if err := json.Unmarshal([]byte(a), &x); err != nil {
		t.Fatalf("not JSON: %s", a)
	}
	if err := json.Unmarshal([]byte(b), &y); err != nil {
		t.Fatalf("not JSON: %s", b)
	}
	xb, _ := json.Marshal(x)
	yb, _ := json.Marshal(y)
	return string(xb) == string(yb)
}

func keysOf(m map[string]any) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}
