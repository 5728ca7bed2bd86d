package awstest_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	"github.com/aws/smithy-go"

	"github.com/keyvend/keyvend/pkg/awstest"
)

// failureLog is a testing.TB whose Errorf is recorded instead of failing
// the test: RequireBoundary's own test needs to see the failures it
// reports. Everything else is the real test's.
type failureLog struct {
	testing.TB
	mu   sync.Mutex
	errs []string
}

func (f *failureLog) Errorf(format string, args ...any) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.errs = append(f.errs, fmt.Sprintf(format, args...))
}

func (f *failureLog) Helper() {}

func (f *failureLog) take() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := f.errs
	f.errs = nil
	return out
}

// TestRequireBoundary: against moto, a CreateUser with exactly the
// boundary is sent and nothing is reported; one without a boundary, or
// with another, is reported as a test failure naming the user and is not
// sent (moto never sees the user); other calls pass untouched.
func TestRequireBoundary(t *testing.T) {
	ctx := context.Background()
	srv := awstest.Shared(t)
	plain := iam.NewFromConfig(awstest.Config(t, srv.URL))
	log := &failureLog{TB: t}
	cfg := awstest.Config(t, srv.URL)
	calls := &awstest.Recorder{}
	calls.Attach(&cfg)
	awstest.RequireBoundary(log, &cfg, boundaryA)
	checked := iam.NewFromConfig(cfg)

	exists := func(user string) bool {
		t.Helper()
		_, err := plain.GetUser(ctx, &iam.GetUserInput{UserName: &user})
		var ae smithy.APIError
		switch {
		case err == nil:
			return true
		case errors.As(err, &ae) && ae.ErrorCode() == "NoSuchEntity":
			return false
		}
		t.Fatalf("get user %s: %v", user, err)
		return false
	}

	good := awstest.Name("rb-good")
	if _, err := checked.CreateUser(ctx, &iam.CreateUserInput{UserName: &good, Path: aws.String("/keyvend/"), PermissionsBoundary: aws.String(boundaryA)}); err != nil {
		t.Fatalf("CreateUser with the boundary: %v", err)
	}
	if errs := log.take(); len(errs) != 0 {
		t.Errorf("a CreateUser with the boundary was reported: %v", errs)
	}
	if !exists(good) {
		t.Errorf("user %s with the boundary was not created", good)
	}
	// Other calls, even on a user, are not checked.
	if _, err := checked.GetUser(ctx, &iam.GetUserInput{UserName: &good}); err != nil {
		t.Errorf("GetUser through the checked configuration: %v", err)
	}
	if errs := log.take(); len(errs) != 0 {
		t.Errorf("other calls were reported: %v", errs)
	}

	for name, boundary := range map[string]*string{
		"no boundary":    nil,
		"another one":    aws.String(boundaryB),
		"empty":          aws.String(""),
		"a prefix of it": aws.String(strings.TrimSuffix(boundaryA, "-a")),
	} {
		t.Run(name, func(t *testing.T) {
			user := awstest.Name("rb-bad")
			_, err := checked.CreateUser(ctx, &iam.CreateUserInput{UserName: &user, Path: aws.String("/keyvend/"), PermissionsBoundary: boundary})
			var ae smithy.APIError
			if !errors.As(err, &ae) || ae.ErrorCode() != awstest.BoundaryRefusedCode {
				t.Errorf("CreateUser error = %v, want code %s", err, awstest.BoundaryRefusedCode)
			}
			errs := log.take()
			if len(errs) != 1 || !strings.Contains(errs[0], user) || !strings.Contains(errs[0], boundaryA) {
				t.Errorf("reported %q, want one failure naming %s and the expected boundary", errs, user)
			}
			if boundary != nil && len(errs) == 1 && !strings.Contains(errs[0], *boundary) {
				t.Errorf("report %q does not say which boundary it carried (%q)", errs[0], *boundary)
			}
			if exists(user) {
				t.Errorf("user %s was created: the refused call reached moto", user)
			}
		})
	}

	// Attached after the recorder, it runs before it: a refused call never
	// reaches the recorder, so no test counts it as sent.
	if n := calls.Count("CreateUser"); n != 1 {
		t.Errorf("the recorder saw %d CreateUser calls, want only the one sent", n)
	}
}
