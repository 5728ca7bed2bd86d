package main

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"

	"github.com/keyvend/keyvend/pkg/awstest"
	"github.com/keyvend/keyvend/pkg/provision"
)

const (
	e2eCaller = "arn:aws:iam::123456789012:user/e2e-deployer"
	bucketA   = "site.example.com"
	bucketB   = "other.example.com"
)

// e2eBoundary allows S3 on *.example.com only (moto does not evaluate
// boundaries; keyvend needs one to exist and be named).
const e2eBoundary = `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:*","Resource":["arn:aws:s3:::*.example.com","arn:aws:s3:::*.example.com/*"]}]}`

// TestServeVendedKeysAreScoped is the seed scenario on a moto that enforces
// IAM: keyvend, running against an endpoint it did not start, vends a
// read-write user for bucket A; the AWS CLI, reading the key through the
// credential_process line keyvend answered, can sync into A and nothing
// else; a read-only user can read A and not write it. The secret key is in
// no answer and no log line, and stopping keyvend leaves the endpoint alone.
func TestServeVendedKeysAreScoped(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dir := t.TempDir()
	srv := awstest.Dedicated(t)

	// Seed, while moto still lets anyone do anything: an admin with a key,
	// the boundary, the two buckets.
	seed := awstest.Config(t, srv.URL)
	seedIAM := iam.NewFromConfig(seed)
	if _, err := seedIAM.CreateUser(ctx, &iam.CreateUserInput{UserName: aws.String("e2e-admin")}); err != nil {
		t.Fatal(err)
	}
	if _, err := seedIAM.PutUserPolicy(ctx, &iam.PutUserPolicyInput{
		UserName:       aws.String("e2e-admin"),
		PolicyName:     aws.String("admin"),
		PolicyDocument: aws.String(`{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"*","Resource":"*"}]}`),
	}); err != nil {
		t.Fatal(err)
	}
	key, err := seedIAM.CreateAccessKey(ctx, &iam.CreateAccessKeyInput{UserName: aws.String("e2e-admin")})
	if err != nil {
		t.Fatal(err)
	}
	adminID, adminSecret := aws.ToString(key.AccessKey.AccessKeyId), aws.ToString(key.AccessKey.SecretAccessKey)
	boundary, err := seedIAM.CreatePolicy(ctx, &iam.CreatePolicyInput{
		PolicyName:     aws.String("keyvend-boundary"),
		Path:           aws.String("/keyvend/"),
		PolicyDocument: aws.String(e2eBoundary),
	})
	if err != nil {
		t.Fatal(err)
	}
	seedS3 := s3.NewFromConfig(seed, func(o *s3.Options) { o.UsePathStyle = true })
	for _, b := range []string{bucketA, bucketB} {
		if _, err := seedS3.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(b)}); err != nil {
			t.Fatal(err)
		}
	}
	rulesPath := filepath.Join(dir, "rules.json")
	writeFile(t, rulesPath, `{"rules":[{"principals":["`+e2eCaller+`"],"buckets":["*.example.com"],"access":["read-only","read-write"]}]}`)

	table := awstest.Table(t, seed).Table()
	if err := srv.EnforceIAM(ctx, true); err != nil {
		t.Fatal(err)
	}
	// Enforcement is on: the seeding key, which has no IAM user, is refused.
	if _, err := seedIAM.ListUsers(ctx, &iam.ListUsersInput{}); err == nil {
		t.Fatal("moto accepted an unknown key after EnforceIAM(true): the denials below would prove nothing")
	}
	admin := awstest.ConfigWithKeys(t, srv.URL, adminID, adminSecret)
	adminIAM := iam.NewFromConfig(admin)
	adminS3 := s3.NewFromConfig(admin, func(o *s3.Options) { o.UsePathStyle = true })
	adminSM := secretsmanager.NewFromConfig(admin)

	// The admin's environment: keyvend's, and the CLI's for the
	// credential_process child (which reads the secret with it).
	adminEnv := []string{
		"AWS_ENDPOINT_URL=" + srv.URL,
		"AWS_REGION=us-east-1",
		"AWS_DEFAULT_REGION=us-east-1",
		"AWS_ACCESS_KEY_ID=" + adminID,
		"AWS_SECRET_ACCESS_KEY=" + adminSecret,
	}
	kv := startServe(t, dir, cleanEnv(dir, append(adminEnv,
		"KEYVEND_LISTEN="+freeAddr(t),
		"KEYVEND_BOUNDARY_ARN="+aws.ToString(boundary.Policy.Arn),
		"KEYVEND_TABLE="+table,
		"KEYVEND_RULES="+rulesPath,
		"KEYVEND_LOCAL_CALLER="+e2eCaller,
	)...))
	if !strings.Contains(kv.Ready, "AWS: "+srv.URL) {
		t.Errorf("ready line %q does not name the endpoint %s", kv.Ready, srv.URL)
	}

	// 1. A read-write user for bucket A.
	rw, rwBody := kv.vend(t, `{"user":"e2e-site-rw","grants":[{"bucket":"`+bucketA+`","access":"read-write"}],"reason":"e2e deploys"}`)
	rwSecret := readSecret(t, adminSM, rw)
	if strings.Contains(string(rwBody), rwSecret) {
		t.Fatalf("the POST answer contains the secret access key: %s", rwBody)
	}

	// GET tells the same story, with the caller as requester.
	resp, raw := kv.call(t, http.MethodGet, "/v1/users/e2e-site-rw", "")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /v1/users/e2e-site-rw: %s: %s", resp.Status, raw)
	}
	var d provision.Description
	if err := json.Unmarshal(raw, &d); err != nil {
		t.Fatal(err)
	}
	if !d.Complete || d.Tags[provision.TagRequester] != e2eCaller || d.SecretARN != rw.SecretARN {
		t.Errorf("GET /v1/users/e2e-site-rw = %s: want complete, requester %s, secret %s", raw, e2eCaller, rw.SecretARN)
	}
	if strings.Contains(string(raw), rwSecret) {
		t.Fatalf("the GET answer contains the secret access key: %s", raw)
	}

	// 2. The AWS CLI with a credential_process profile syncs into A.
	config := filepath.Join(dir, "aws-config")
	profiles := map[string]string{"vended": rw.CredentialProcess}
	writeProfiles(t, config, profiles)
	cli := cleanEnv(dir, append(adminEnv, "AWS_CONFIG_FILE="+config)...)
	site := filepath.Join(dir, "site")
	files := map[string]string{
		"index.html":   "<h1>hello from e2e</h1>\n",
		"about.html":   "<p>about</p>\n",
		"css/site.css": "body { margin: 0 }\n",
	}
	for name, content := range files {
		writeFile(t, filepath.Join(site, name), content)
	}
	mustAWS(t, dir, cli, "--profile", "vended", "s3", "sync", site, "s3://"+bucketA)
	if got, want := listKeys(t, adminS3, bucketA), sortedKeys(files); strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("bucket %s holds %v after sync, want %v", bucketA, got, want)
	}
	if got := getObject(t, adminS3, bucketA, "index.html"); got != files["index.html"] {
		t.Fatalf("s3://%s/index.html = %q, want %q", bucketA, got, files["index.html"])
	}

	// 3. The same key may not write B nor call IAM.
	mustAWSDenied(t, dir, cli, "--profile", "vended", "s3", "cp", filepath.Join(site, "index.html"), "s3://"+bucketB+"/x")
	if got := listKeys(t, adminS3, bucketB); len(got) != 0 {
		t.Fatalf("bucket %s holds %v, want nothing", bucketB, got)
	}
	mustAWSDenied(t, dir, cli, "--profile", "vended", "iam", "list-users")

	// 4. A read-only user on A reads and does not write.
	ro, roBody := kv.vend(t, `{"user":"e2e-site-ro","grants":[{"bucket":"`+bucketA+`","access":"read-only"}],"reason":"e2e reads"}`)
	roSecret := readSecret(t, adminSM, ro)
	if strings.Contains(string(roBody), roSecret) {
		t.Fatalf("the POST answer contains the secret access key: %s", roBody)
	}
	profiles["ro"] = ro.CredentialProcess
	writeProfiles(t, config, profiles)
	mustAWSDenied(t, dir, cli, "--profile", "ro", "s3", "cp", filepath.Join(site, "index.html"), "s3://"+bucketA+"/y")
	if got := mustAWS(t, dir, cli, "--profile", "ro", "s3", "cp", "s3://"+bucketA+"/index.html", "-"); got != files["index.html"] {
		t.Fatalf("read-only download = %q, want %q", got, files["index.html"])
	}
	if got := listKeys(t, adminS3, bucketA); len(got) != len(files) {
		t.Fatalf("bucket %s holds %v after the read-only user's attempts, want %v", bucketA, got, sortedKeys(files))
	}

	// 5. SIGTERM: keyvend exits 0 and leaves the endpoint it did not start running.
	if code := kv.stop(t); code != 0 {
		t.Fatalf("keyvend exited %d after SIGTERM, want 0:\n%s", code, kv.out)
	}
	users, err := adminIAM.ListUsers(ctx, &iam.ListUsersInput{PathPrefix: aws.String("/keyvend/")})
	if err != nil {
		t.Fatalf("moto after keyvend stopped: %v", err)
	}
	var names []string
	for _, u := range users.Users {
		names = append(names, aws.ToString(u.UserName))
	}
	sort.Strings(names)
	if strings.Join(names, ",") != "e2e-site-ro,e2e-site-rw" {
		t.Errorf("users under /keyvend/ after keyvend stopped: %v, want e2e-site-ro, e2e-site-rw", names)
	}

	// No log line holds a secret key; the log did record the requests.
	logs := kv.out.String()
	if !strings.Contains(logs, `"path":"/v1/users"`) {
		t.Fatalf("keyvend's output has no access log of POST /v1/users; the check below would be vacuous:\n%s", logs)
	}
	for _, secret := range []string{rwSecret, roSecret} {
		if strings.Contains(logs, secret) {
			t.Fatalf("keyvend's output contains a secret access key:\n%s", logs)
		}
	}
}

// readSecret reads v's secret with the admin client, checks it is the
// credential_process document for v's key and returns the secret key.
func readSecret(t *testing.T, sm *secretsmanager.Client, v vended) string {
	t.Helper()
	out, err := sm.GetSecretValue(context.Background(), &secretsmanager.GetSecretValueInput{SecretId: aws.String(v.SecretARN)})
	if err != nil {
		t.Fatalf("read secret %s: %v", v.SecretARN, err)
	}
	var doc struct {
		Version         int
		AccessKeyID     string `json:"AccessKeyId"`
		SecretAccessKey string
	}
	if err := json.Unmarshal([]byte(aws.ToString(out.SecretString)), &doc); err != nil {
		t.Fatalf("secret %s is not JSON: %v", v.SecretARN, err)
	}
	if doc.Version != 1 || doc.AccessKeyID != v.AccessKeyID || len(doc.SecretAccessKey) < 20 {
		t.Fatalf("secret %s holds version %d, key %q (secret key %d chars); want version 1, key %q, a secret key",
			v.SecretARN, doc.Version, doc.AccessKeyID, len(doc.SecretAccessKey), v.AccessKeyID)
	}
	return doc.SecretAccessKey
}

// listKeys lists bucket without a delimiter (moto rejects the signature of
// delimited listings under enforcement).
func listKeys(t *testing.T, c *s3.Client, bucket string) []string {
	t.Helper()
	out, err := c.ListObjectsV2(context.Background(), &s3.ListObjectsV2Input{Bucket: aws.String(bucket)})
	if err != nil {
		t.Fatalf("list %s: %v", bucket, err)
	}
	keys := []string{}
	for _, o := range out.Contents {
		keys = append(keys, aws.ToString(o.Key))
	}
	sort.Strings(keys)
	return keys
}

func getObject(t *testing.T, c *s3.Client, bucket, key string) string {
	t.Helper()
	out, err := c.GetObject(context.Background(), &s3.GetObjectInput{Bucket: aws.String(bucket), Key: aws.String(key)})
	if err != nil {
		t.Fatalf("get s3://%s/%s: %v", bucket, key, err)
	}
	defer out.Body.Close()
	b, err := io.ReadAll(out.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
