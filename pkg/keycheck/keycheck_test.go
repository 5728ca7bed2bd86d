package keycheck_test

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/keyvend/keyvend/pkg/awstest"
	"github.com/keyvend/keyvend/pkg/keycheck"
)

func TestMain(m *testing.M) { awstest.Main(m) }

// newKey creates a user and key on moto (directly, not through the proxy).
func newKey(t *testing.T, endpoint string) (id, secret, arn string) {
	t.Helper()
	c := iam.NewFromConfig(awstest.Config(t, endpoint))
	name := awstest.Name("kc")
	u, err := c.CreateUser(context.Background(), &iam.CreateUserInput{UserName: &name})
	if err != nil {
		t.Fatal(err)
	}
	k, err := c.CreateAccessKey(context.Background(), &iam.CreateAccessKeyInput{UserName: &name})
	if err != nil {
		t.Fatal(err)
	}
	return aws.ToString(k.AccessKey.AccessKeyId), aws.ToString(k.AccessKey.SecretAccessKey), aws.ToString(u.User.Arn)
}

func TestWaitSucceedsOnceTheProxyStopsRejectingTheNewKey(t *testing.T) {
	srv := awstest.Shared(t)
	proxy := awstest.NewProxy(t, srv.URL)
	proxy.RejectNewKeys(3)
	id, secret, arn := newKey(t, srv.URL)
	c := &keycheck.Checker{Base: awstest.Config(t, proxy.URL), First: time.Millisecond, Max: 5 * time.Millisecond, Timeout: 5 * time.Second}
	out, err := c.Wait(context.Background(), id, secret, arn)
	if err != nil {
		t.Fatal(err)
	}
	if !out.Ready || out.Attempts != 6 || out.Successes != keycheck.DefaultSuccesses {
		t.Fatalf("outcome = %+v, want ready after 6 checks (3 rejected, then 3 in a row)", out)
	}
	if got := proxy.Seen(id); got != 6 {
		t.Fatalf("proxy saw %d requests with the new key, want 6", got)
	}
}

func TestWaitGivesUpWithinItsBoundAndSaysWhatToDo(t *testing.T) {
	srv := awstest.Shared(t)
	proxy := awstest.NewProxy(t, srv.URL)
	proxy.RejectNewKeys(1 << 30)
	id, secret, arn := newKey(t, srv.URL)
	c := &keycheck.Checker{Base: awstest.Config(t, proxy.URL), First: time.Millisecond, Max: 10 * time.Millisecond, Timeout: 150 * time.Millisecond}
	out, err := c.Wait(context.Background(), id, secret, arn)
	if err != nil {
		t.Fatal(err)
	}
	if out.Ready || out.Attempts < 2 || out.Hint == "" {
		t.Fatalf("outcome = %+v, want not ready after several attempts, with a hint", out)
	}
}

func TestWaitRejectsAKeyOfAnotherPrincipal(t *testing.T) {
	srv := awstest.Shared(t)
	id, secret, _ := newKey(t, srv.URL)
	c := &keycheck.Checker{Base: awstest.Config(t, srv.URL), Timeout: time.Second}
	if _, err := c.Wait(context.Background(), id, secret, "arn:aws:iam::123456789012:user/keyvend/someone-else"); err == nil {
		t.Fatal("a key that authenticates as another principal was accepted")
	}
}

// checker is a fast Checker on moto whose calls pass rec and faults.
func checker(t *testing.T, endpoint string, rec *awstest.Recorder, faults *awstest.Faults) *keycheck.Checker {
	t.Helper()
	cfg := awstest.Config(t, endpoint)
	faults.Attach(&cfg)
	rec.Attach(&cfg)
	return &keycheck.Checker{Base: cfg, First: time.Millisecond, Max: 5 * time.Millisecond, Timeout: 5 * time.Second}
}

// A failed check starts the run of successes again: with 3 needed and the
// 2nd check failing, the key is ready at the 5th check, not the 4th.
func TestAFailedCheckRestartsTheCount(t *testing.T) {
	srv := awstest.Shared(t)
	for _, tc := range []struct{ name, op, code string }{
		{"sts", "GetCallerIdentity", "InvalidClientTokenId"},
		{"s3", "GetBucketLocation", "AccessDenied"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var rec awstest.Recorder
			var faults awstest.Faults
			faults.FailNthWith(tc.op, 2, tc.code)
			c := checker(t, srv.URL, &rec, &faults)
			bucket := makeBucket(t, srv.URL)
			id, secret, arn := newKey(t, srv.URL)
			out, err := c.Check(context.Background(), keycheck.Key{AccessKeyID: id, SecretAccessKey: secret, WantARN: arn, Bucket: bucket})
			if err != nil {
				t.Fatal(err)
			}
			if faults.Fired() != 1 {
				t.Fatalf("%d faults fired, want 1", faults.Fired())
			}
			if !out.Ready || out.Attempts != 5 || out.Successes != 3 {
				t.Fatalf("outcome = %+v, want ready at the 5th check (1 ok, 1 failed, 3 in a row)", out)
			}
		})
	}
}

// Successes is configurable, and a key never ready within the bound says
// how far it got.
func TestSuccessesIsConfigurable(t *testing.T) {
	srv := awstest.Shared(t)
	var rec awstest.Recorder
	var faults awstest.Faults
	faults.FailNthWith("GetCallerIdentity", 5, "InvalidClientTokenId")
	c := checker(t, srv.URL, &rec, &faults)
	c.Successes = 5
	id, secret, arn := newKey(t, srv.URL)
	out, err := c.Wait(context.Background(), id, secret, arn)
	if err != nil {
		t.Fatal(err)
	}
	if !out.Ready || out.Attempts != 10 {
		t.Fatalf("outcome = %+v, want ready at the 10th check (4 ok, 1 failed, 5 in a row)", out)
	}
	if n := rec.Count("ListObjectsV2") + rec.Count("GetBucketLocation"); n != 0 {
		t.Fatalf("%d S3 calls without a bucket, want none", n)
	}

	faults.Clear()
	faults.FailNthWith("GetCallerIdentity", 0, "InvalidClientTokenId")
	c.Timeout = 100 * time.Millisecond
	out, err = c.Wait(context.Background(), id, secret, arn)
	if err != nil {
		t.Fatal(err)
	}
	if out.Ready || out.Successes != 0 || !strings.Contains(out.Hint, "sts:GetCallerIdentity InvalidClientTokenId") {
		t.Fatalf("outcome = %+v, want not ready, the hint naming the failed call and its code", out)
	}
}

// Each check calls GetBucketLocation on the granted bucket, with the key
// under test.
func TestTheS3CallIsOnTheGrantedBucket(t *testing.T) {
	srv := awstest.Shared(t)
	bucket := makeBucket(t, srv.URL)
	id, secret, arn := newKey(t, srv.URL)
	var rec awstest.Recorder
	c := checker(t, srv.URL, &rec, &awstest.Faults{})
	out, err := c.Check(context.Background(), keycheck.Key{AccessKeyID: id, SecretAccessKey: secret, WantARN: arn, Bucket: bucket})
	if err != nil || !out.Ready {
		t.Fatalf("outcome = %+v, %v; want ready", out, err)
	}
	calls := rec.Succeeded("GetBucketLocation")
	if len(calls) != out.Attempts {
		t.Fatalf("%d GetBucketLocation calls in %d checks, want one per check", len(calls), out.Attempts)
	}
	for _, call := range calls {
		if in := call.Input.(*s3.GetBucketLocationInput); aws.ToString(in.Bucket) != bucket {
			t.Fatalf("GetBucketLocation(%q), want %q", aws.ToString(in.Bucket), bucket)
		}
	}
}

// A bucket that does not exist (a grant may name one made later) leaves
// the STS call as the check: NoSuchBucket is not "not yet".
func TestNoSuchBucketLeavesSTSAsTheCheck(t *testing.T) {
	srv := awstest.Shared(t)
	id, secret, arn := newKey(t, srv.URL)
	var rec awstest.Recorder
	c := checker(t, srv.URL, &rec, &awstest.Faults{})
	missing := awstest.Name("kc-missing")
	out, err := c.Check(context.Background(), keycheck.Key{AccessKeyID: id, SecretAccessKey: secret, WantARN: arn, Bucket: missing})
	if err != nil || !out.Ready || out.Attempts != keycheck.DefaultSuccesses {
		t.Fatalf("outcome = %+v, %v; want ready after %d checks", out, err, keycheck.DefaultSuccesses)
	}
	lists := rec.Calls()
	var codes []string
	for _, call := range lists {
		if call.Operation == "GetBucketLocation" {
			codes = append(codes, call.Code())
		}
	}
	if len(codes) != out.Attempts || codes[0] != "NoSuchBucket" {
		t.Fatalf("S3 answered %v, want NoSuchBucket for each of %d checks", codes, out.Attempts)
	}
}

func makeBucket(t *testing.T, endpoint string) string {
	t.Helper()
	name := awstest.Name("kc-bucket")
	c := s3.NewFromConfig(awstest.Config(t, endpoint), func(o *s3.Options) { o.UsePathStyle = true })
	if _, err := c.CreateBucket(context.Background(), &s3.CreateBucketInput{Bucket: &name}); err != nil {
		t.Fatal(err)
	}
	return name
}

func init() { os.Setenv("AWS_EC2_METADATA_DISABLED", "true") }
