package main

import (
	"encoding/json"
	"net"
	"net/http"
	"net/url"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/keyvend/keyvend/pkg/provision"
)

// TestServeDemo is `make run` and the README's local demo, step by step,
// as a user in a fresh checkout would run it: keyvend serve with no
// AWS_ENDPOINT_URL starts and seeds its own moto, which enforces IAM; the
// user vends site-deployer (waiting until AWS accepts the key), sources
// .keyvend/local.env, writes the credential_process profile, deploys with
// the AWS CLI and lists and reads the bucket back; the same key is denied
// the other demo bucket and IAM. Stopping keyvend stops its moto.
func TestServeDemo(t *testing.T) {
	t.Parallel()
	dir := checkout(t)

	// Terminal 1: make run (on a free port instead of 8080).
	kv := startServe(t, dir, cleanEnv(dir, "KEYVEND_LISTEN="+freeAddr(t)))
	m := regexp.MustCompile(`\(AWS: (http://127\.0\.0\.1:\d+), caller: arn:aws:iam::123456789012:user/local-dev, rules: rules/demo.json, chatops: .*, IAM: enforced\)$`).FindStringSubmatch(kv.Ready)
	if m == nil {
		t.Fatalf("ready line %q: want the embedded moto's URL, the local-dev caller, rules/demo.json and IAM enforced", kv.Ready)
	}
	motoURL := m[1]

	// 1. vend a read-write user for site.example.com, once AWS accepts its key
	v, body := kv.vend(t, `{"user":"site-deployer","grants":[{"bucket":"site.example.com","access":"read-write","prefix":""}],"reason":"blog deploys","wait":true}`)
	if v.User != "site-deployer" || v.SecretName != "keyvend/users/site-deployer" {
		t.Fatalf("POST /v1/users answered %s", body)
	}
	// The readiness check (STS and S3 on site.example.com, with the new
	// key) passes under enforcement.
	if !strings.Contains(string(body), `"ready":true`) {
		t.Fatalf("POST /v1/users with wait answered %s, want ready", body)
	}
	if strings.Contains(string(body), "SecretAccessKey") || strings.Contains(strings.ToLower(string(body)), "secret_access_key") {
		t.Fatalf("the POST answer carries a secret access key field: %s", body)
	}

	// 2. point the AWS CLI at the embedded moto (written by keyvend serve)
	exports := readExports(t, filepath.Join(dir, ".keyvend", "local.env"))
	if exports["AWS_ENDPOINT_URL"] != motoURL {
		t.Fatalf(".keyvend/local.env points at %q, keyvend at %q", exports["AWS_ENDPOINT_URL"], motoURL)
	}
	for _, k := range []string{"AWS_REGION", "AWS_DEFAULT_REGION", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"} {
		if exports[k] == "" {
			t.Fatalf(".keyvend/local.env does not export %s: %v", k, exports)
		}
	}
	shell := envList(exports)

	// 3. a profile that reads the vended key from its secret
	config := filepath.Join(dir, "keyvend-demo.config")
	writeProfiles(t, config, map[string]string{"site-deployer": v.CredentialProcess})
	cli := cleanEnv(dir, append(shell, "AWS_CONFIG_FILE="+config)...)

	// 4. deploy with it, list and read back
	writeFile(t, filepath.Join(dir, "site", "index.html"), "<h1>hello</h1>\n")
	vended := []string{"--profile", "site-deployer"}
	out := mustAWS(t, dir, cli, append(vended, "s3", "sync", "./site", "s3://site.example.com")...)
	if !strings.Contains(out, "upload: site/index.html to s3://site.example.com/index.html") {
		t.Errorf("aws s3 sync printed %q, want the upload of index.html", out)
	}
	if ls := mustAWS(t, dir, cli, append(vended, "s3", "ls", "--recursive", "s3://site.example.com")...); !strings.Contains(ls, " index.html") {
		t.Fatalf("aws s3 ls --recursive s3://site.example.com = %q, want index.html", ls)
	}
	if got := mustAWS(t, dir, cli, append(vended, "s3", "cp", "s3://site.example.com/index.html", "-")...); got != "<h1>hello</h1>\n" {
		t.Fatalf("aws s3 cp s3://site.example.com/index.html - = %q", got)
	}

	// 5. the key is scoped: the other demo bucket and IAM are denied
	mustAWSDenied(t, dir, cli, append(vended, "s3", "cp", "./site/index.html", "s3://assets.example.com/index.html")...)
	mustAWSDenied(t, dir, cli, append(vended, "s3", "ls", "--recursive", "s3://assets.example.com")...)
	mustAWSDenied(t, dir, cli, append(vended, "iam", "list-users")...)
	// ... and the admin in .keyvend/local.env is not: assets.example.com is
	// still empty, and the vended user is listed.
	if ls := mustAWS(t, dir, cli, "s3", "ls", "--recursive", "s3://assets.example.com"); ls != "" {
		t.Fatalf("assets.example.com holds %q after the denied copy, want nothing", ls)
	}
	if users := mustAWS(t, dir, cli, "iam", "list-users", "--path-prefix", "/keyvend/", "--query", "Users[].UserName", "--output", "text"); strings.TrimSpace(users) != "site-deployer" {
		t.Fatalf("the admin lists users %q, want site-deployer", users)
	}

	// 6. what keyvend knows about the user
	resp, raw := kv.call(t, http.MethodGet, "/v1/users/site-deployer", "")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /v1/users/site-deployer: %s: %s", resp.Status, raw)
	}
	var d provision.Description
	if err := json.Unmarshal(raw, &d); err != nil {
		t.Fatal(err)
	}
	if !d.Complete || d.SecretARN != v.SecretARN || len(d.AccessKeys) != 1 || d.AccessKeys[0].AccessKeyID != v.AccessKeyID || !d.AccessKeys[0].InSecret {
		t.Fatalf("GET /v1/users/site-deployer = %s: want complete, the vended key in the secret", raw)
	}
	if got := d.Tags[provision.TagRequester]; got != defaultCaller {
		t.Errorf("requester tag = %q, want %q", got, defaultCaller)
	}

	// Ctrl-C in terminal 1: keyvend exits and takes its moto with it.
	if code := kv.stop(t); code != 0 {
		t.Fatalf("keyvend exited %d after SIGTERM, want 0:\n%s", code, kv.out)
	}
	u, err := url.Parse(motoURL)
	if err != nil {
		t.Fatal(err)
	}
	if c, err := net.Dial("tcp", u.Host); err == nil {
		c.Close()
		t.Fatalf("the embedded moto still accepts connections on %s after keyvend exited", u.Host)
	}
}

// TestServeDemoWithoutEnforcement: KEYVEND_LOCAL_ENFORCE_IAM=false (or
// --enforce-iam=false) turns moto's IAM checks off, as the README says:
// the vended key is then not stopped at the other bucket — which is what
// TestServeDemo's denials owe to enforcement. A value that is not a
// boolean stops keyvend with a message naming the variable.
func TestServeDemoWithoutEnforcement(t *testing.T) {
	t.Parallel()
	dir := checkout(t)

	_, errOut, code := runKeyvend(t, keyvendBin, []string{"KEYVEND_LOCAL_ENFORCE_IAM=maybe"}, "serve")
	if code == 0 || !strings.Contains(errOut, "KEYVEND_LOCAL_ENFORCE_IAM") {
		t.Fatalf("KEYVEND_LOCAL_ENFORCE_IAM=maybe: exit %d, stderr %q; want a failure naming the variable", code, errOut)
	}

	kv := startServe(t, dir, cleanEnv(dir, "KEYVEND_LISTEN="+freeAddr(t), "KEYVEND_LOCAL_ENFORCE_IAM=false"))
	if !strings.HasSuffix(kv.Ready, ", IAM: not enforced)") {
		t.Fatalf("ready line %q: want IAM not enforced", kv.Ready)
	}
	v, _ := kv.vend(t, `{"user":"site-deployer","grants":[{"bucket":"site.example.com","access":"read-write","prefix":""}],"reason":"blog deploys"}`)
	exports := readExports(t, filepath.Join(dir, ".keyvend", "local.env"))
	shell := envList(exports)
	config := filepath.Join(dir, "keyvend-demo.config")
	writeProfiles(t, config, map[string]string{"site-deployer": v.CredentialProcess})
	cli := cleanEnv(dir, append(shell, "AWS_CONFIG_FILE="+config)...)
	writeFile(t, filepath.Join(dir, "site", "index.html"), "<h1>hello</h1>\n")
	mustAWS(t, dir, cli, "--profile", "site-deployer", "s3", "cp", "./site/index.html", "s3://assets.example.com/index.html")
	if ls := mustAWS(t, dir, cli, "s3", "ls", "--recursive", "s3://assets.example.com"); !strings.Contains(ls, " index.html") {
		t.Fatalf("assets.example.com holds %q, want the vended key's index.html (no enforcement)", ls)
	}
}
