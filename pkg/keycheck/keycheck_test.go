package keycheck_test

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/iam"

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
	if !out.Ready || out.Attempts != 4 {
		t.Fatalf("outcome = %+v, want ready after 4 attempts (3 rejected)", out)
	}
	if got := proxy.Seen(id); got != 4 {
		t.Fatalf("proxy saw %d requests with the new key, want 4", got)
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

func init() { os.Setenv("AWS_EC2_METADATA_DISABLED", "true") }
