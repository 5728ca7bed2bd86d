package provision_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/keyvend/keyvend/pkg/awstest"
	"github.com/keyvend/keyvend/pkg/keycheck"
	"github.com/keyvend/keyvend/pkg/policy"
	"github.com/keyvend/keyvend/pkg/provision"
)

// rotReadyEnv is an env whose readiness check polls STS through a loopback
// proxy in front of moto that rejects each new key for its first reject
// requests. The service's own clients talk to moto directly, so only the
// checker's requests pass the proxy.
func rotReadyEnv(t *testing.T, reject int, timeout time.Duration) (*env, *awstest.Proxy) {
	t.Helper()
	srv := awstest.Shared(t)
	proxy := awstest.NewProxy(t, srv.URL)
	proxy.RejectNewKeys(reject)
	checker := &keycheck.Checker{Base: awstest.Config(t, proxy.URL), First: time.Millisecond, Max: 5 * time.Millisecond, Timeout: timeout}
	return newEnv(t, func(s *provision.Settings) { s.KeyCheck = checker }), proxy
}

func TestRotateWaitReportsReadyOnceAWSAcceptsTheNewKey(t *testing.T) {
	e, proxy := rotReadyEnv(t, 2, 5*time.Second)
	user := awstest.Name("rot-ready")
	rotCreate(t, e, user)
	res, err := e.svc.Rotate(ctx(), provision.RotateInput{Principal: rotAlice, User: user, Wait: true})
	if err != nil {
		t.Fatal(err)
	}
	if res.Ready == nil || !*res.Ready || res.ReadyHint != "" {
		t.Fatalf("readiness = %+v, want ready without a hint", res.Readiness)
	}
	if n := proxy.Seen(res.AccessKeyID); n < 3 {
		t.Fatalf("the proxy saw %d requests with the new key, want at least 3 (2 rejected, then accepted)", n)
	}
	rotAssertSettled(t, e, user)
}

func TestRotateWaitReportsNotReadyWithAHint(t *testing.T) {
	e, proxy := rotReadyEnv(t, 1<<30, 100*time.Millisecond)
	user := awstest.Name("rot-notready")
	rotCreate(t, e, user)
	res, err := e.svc.Rotate(ctx(), provision.RotateInput{Principal: rotAlice, User: user, Wait: true})
	if err != nil {
		t.Fatal(err)
	}
	if res.Ready == nil || *res.Ready || res.ReadyHint == "" {
		t.Fatalf("readiness = %+v, want not ready with a hint", res.Readiness)
	}
	if proxy.Seen(res.AccessKeyID) == 0 {
		t.Fatal("the check never tried the new key")
	}
	// Not ready yet is not a failure: the rotation is done.
	if cred := rotAssertSettled(t, e, user); cred.AccessKeyID != res.AccessKeyID {
		t.Fatalf("secret holds %s, want %s", cred.AccessKeyID, res.AccessKeyID)
	}
}

func TestCreateWaitReportsReadyOnceAWSAcceptsTheNewKey(t *testing.T) {
	e, proxy := rotReadyEnv(t, 2, 5*time.Second)
	in := input(awstest.Name("rot-cready"), rw(awstest.Name("rot")+".example.com"))
	in.Request.Wait = true
	res, err := e.svc.Create(ctx(), in)
	if err != nil {
		t.Fatal(err)
	}
	if res.Ready == nil || !*res.Ready || res.ReadyHint != "" {
		t.Fatalf("readiness = %+v, want ready without a hint", res.Readiness)
	}
	if n := proxy.Seen(res.AccessKeyID); n < 3 {
		t.Fatalf("the proxy saw %d requests with the new key, want at least 3 (2 rejected, then accepted)", n)
	}
}

func TestCreateWaitReportsNotReadyWithAHint(t *testing.T) {
	e, proxy := rotReadyEnv(t, 1<<30, 100*time.Millisecond)
	user := awstest.Name("rot-cnotready")
	in := input(user, rw(awstest.Name("rot")+".example.com"))
	in.Request.Wait = true
	res, err := e.svc.Create(ctx(), in)
	if err != nil {
		t.Fatal(err)
	}
	if res.Ready == nil || *res.Ready || res.ReadyHint == "" {
		t.Fatalf("readiness = %+v, want not ready with a hint", res.Readiness)
	}
	if proxy.Seen(res.AccessKeyID) == 0 {
		t.Fatal("the check never tried the new key")
	}
	if cred := rotAssertSettled(t, e, user); cred.AccessKeyID != res.AccessKeyID {
		t.Fatalf("secret holds %s, want %s", cred.AccessKeyID, res.AccessKeyID)
	}
}

// Without a checker, wait answers not ready and says why; without wait,
// readiness is absent from the answer.
func TestWaitWithoutAChecker(t *testing.T) {
	e := newEnv(t)
	user := awstest.Name("rot-nocheck")
	in := input(user, rw(awstest.Name("rot")+".example.com"))
	in.Request.Wait = true
	created, err := e.svc.Create(ctx(), in)
	if err != nil {
		t.Fatal(err)
	}
	rotated, err := e.svc.Rotate(ctx(), provision.RotateInput{Principal: rotAlice, User: user, Wait: true})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range []provision.Readiness{created.Readiness, rotated.Readiness} {
		if r.Ready == nil || *r.Ready || !strings.Contains(r.ReadyHint, "no readiness check") {
			t.Errorf("readiness = %+v, want not ready, saying there is no check", r)
		}
	}
	plain, err := rotRotate(e, user)
	if err != nil {
		t.Fatal(err)
	}
	out, _ := json.Marshal(plain)
	if plain.Ready != nil || strings.Contains(string(out), `"ready`) {
		t.Errorf("readiness reported without wait: %s", out)
	}
}

// With wait, create and rotate check the new key on S3 too: each check
// lists one granted bucket (the first by name) under its grant's prefix,
// with the new key, and
// the key is ready only after keycheck.DefaultSuccesses checks in a row.
func TestWaitChecksTheFirstGrantsBucket(t *testing.T) {
	srv := awstest.Shared(t)
	var rec awstest.Recorder
	cfg := awstest.Config(t, srv.URL)
	rec.Attach(&cfg)
	checker := &keycheck.Checker{Base: cfg, First: time.Millisecond, Max: 5 * time.Millisecond, Timeout: 5 * time.Second}
	e := newEnv(t, func(s *provision.Settings) { s.KeyCheck = checker })
	// first sorts before second, which the request names first.
	tag := awstest.Name("rot")
	first, second := tag+"-a.example.com", tag+"-b.example.com"
	user := awstest.Name("rot-s3ready")
	in := input(user, rw(second), policy.Grant{Bucket: first, Access: policy.ReadWrite, Prefix: "team/"})
	in.Request.Wait = true
	created, err := e.svc.Create(ctx(), in)
	if err != nil {
		t.Fatal(err)
	}
	rotated, err := e.svc.Rotate(ctx(), provision.RotateInput{Principal: rotAlice, User: user, Wait: true})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range []provision.Readiness{created.Readiness, rotated.Readiness} {
		if r.Ready == nil || !*r.Ready {
			t.Fatalf("readiness = %+v, want ready", r)
		}
	}
	var lists int
	for _, call := range rec.Calls() {
		if call.Operation != "GetBucketLocation" {
			continue
		}
		lists++
		if in := call.Input.(*s3.GetBucketLocationInput); aws.ToString(in.Bucket) != first {
			t.Errorf("the check called S3 on %q, want %q (first by name)", aws.ToString(in.Bucket), first)
		}
	}
	if want := 2 * keycheck.DefaultSuccesses; lists != want {
		t.Fatalf("%d S3 checks for a create and a rotate, want %d (%d each)", lists, want, keycheck.DefaultSuccesses)
	}
}
