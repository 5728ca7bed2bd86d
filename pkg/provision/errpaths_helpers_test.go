package provision_test

// Helpers of the error-path tests (errpaths_test.go, repair_errors_test.go,
// reap_errors_test.go): services whose DeleteUser is refused as AWS
// refuses it, faults aimed at one user's calls, and a ListUsers pager.

import (
	"context"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsmiddleware "github.com/aws/aws-sdk-go-v2/aws/middleware"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	iamtypes "github.com/aws/aws-sdk-go-v2/service/iam/types"
	"github.com/aws/smithy-go"
	"github.com/aws/smithy-go/middleware"

	"github.com/keyvend/keyvend/pkg/awstest"
	"github.com/keyvend/keyvend/pkg/provision"
)

// newStrictEnv is newEnvOn with testRules on the moto at url ("" for the
// shared one) whose services (e.svc, and every e.service) see DeleteUser
// refused with DeleteConflict while the user still has a key, a group or a
// policy, as in AWS (awstest.DeleteConflicts). moto would delete such a
// user with what it has, and a test could not tell that a key was left.
func newStrictEnv(t *testing.T, url string, mutate ...func(*provision.Settings)) *env {
	t.Helper()
	if url == "" {
		url = awstest.Shared(t).URL
	}
	check := iam.NewFromConfig(awstest.Config(t, url))
	return build(t, url, testRules, func(cfg *aws.Config) { awstest.DeleteConflicts(cfg, check) }, mutate...)
}

// targeted records the calls made through a configuration that concern
// one user — its name as UserName, its secret (keyvend/users/<user>) as
// SecretId, or its repair lock as GroupName — and fails the nth of them of
// one operation, before it is sent, with awstest.InjectedCode. Faults by
// operation alone (awstest.Faults) cannot aim at one user when the reaper
// works on several at once.
type targeted struct {
	user string

	mu    sync.Mutex
	ops   []string // operations of the user's calls, in order of start
	op    string   // operation to fail ("" none)
	nth   int      // which of the user's calls of op (1-based)
	seen  int
	fired int
}

func newTargeted(user string) *targeted { return &targeted{user: user} }

// failNth makes the nth call of op about the user fail.
func (tg *targeted) failNth(op string, nth int) {
	tg.mu.Lock()
	tg.op, tg.nth, tg.seen, tg.fired = op, nth, 0, 0
	tg.mu.Unlock()
}

func (tg *targeted) calls() []string {
	tg.mu.Lock()
	defer tg.mu.Unlock()
	return slices.Clone(tg.ops)
}

func (tg *targeted) firedCount() int {
	tg.mu.Lock()
	defer tg.mu.Unlock()
	return tg.fired
}

// about reports whether an input names the user, its secret or its lock.
func (tg *targeted) about(params any) bool {
	v := reflect.ValueOf(params)
	if v.Kind() != reflect.Pointer || v.IsNil() || v.Elem().Kind() != reflect.Struct {
		return false
	}
	field := func(name string) string {
		f := v.Elem().FieldByName(name)
		if !f.IsValid() || f.Type() != reflect.TypeOf((*string)(nil)) || f.IsNil() {
			return ""
		}
		return f.Elem().String()
	}
	return field("UserName") == tg.user || field("SecretId") == secretName(tg.user)
}

func (tg *targeted) attach(cfg *aws.Config) {
	cfg.APIOptions = append(slices.Clone(cfg.APIOptions), func(stack *middleware.Stack) error {
		return stack.Initialize.Add(middleware.InitializeMiddlewareFunc("errpaths.targeted",
			func(ctx context.Context, in middleware.InitializeInput, next middleware.InitializeHandler) (middleware.InitializeOutput, middleware.Metadata, error) {
				if !tg.about(in.Parameters) {
					return next.HandleInitialize(ctx, in)
				}
				op := awsmiddleware.GetOperationName(ctx)
				tg.mu.Lock()
				tg.ops = append(tg.ops, op)
				fail := false
				if op == tg.op {
					tg.seen++
					if tg.seen == tg.nth {
						fail = true
						tg.fired++
					}
				}
				tg.mu.Unlock()
				if fail {
					return middleware.InitializeOutput{}, middleware.Metadata{}, &smithy.GenericAPIError{
						Code: awstest.InjectedCode, Message: fmt.Sprintf("injected fault in %s of %s", op, tg.user), Fault: smithy.FaultServer}
				}
				return next.HandleInitialize(ctx, in)
			}), middleware.After)
	})
}

// nthCall is the nth call (1-based) of an operation.
type nthCall struct {
	op  string
	nth int
}

func (c nthCall) String() string { return fmt.Sprintf("%s#%d", c.op, c.nth) }

// numbered numbers each operation of ops by its occurrence: A, B, A → A#1,
// B#1, A#2.
func numbered(ops []string) []nthCall {
	seen := map[string]int{}
	out := make([]nthCall, 0, len(ops))
	for _, op := range ops {
		seen[op]++
		out = append(out, nthCall{op, seen[op]})
	}
	return out
}

// pageUsers makes ListUsers through cfg answer at most size users a page
// (moto answers all at once and ignores MaxItems), or at most the call's
// MaxItems when size is 0, with a marker of its own, and records the
// names of each page it answers.
type pageUsers struct {
	size  int
	mu    sync.Mutex
	pages [][]string
}

func (p *pageUsers) attach(cfg *aws.Config) {
	cfg.APIOptions = append(slices.Clone(cfg.APIOptions), func(stack *middleware.Stack) error {
		return stack.Initialize.Add(middleware.InitializeMiddlewareFunc("errpaths.pageUsers",
			func(ctx context.Context, in middleware.InitializeInput, next middleware.InitializeHandler) (middleware.InitializeOutput, middleware.Metadata, error) {
				lin, ok := in.Parameters.(*iam.ListUsersInput)
				if !ok {
					return next.HandleInitialize(ctx, in)
				}
				marker := aws.ToString(lin.Marker)
				asked := *lin
				asked.Marker = nil
				in.Parameters = &asked
				out, md, err := next.HandleInitialize(ctx, in)
				if err != nil {
					return out, md, err
				}
				lout := out.Result.(*iam.ListUsersOutput)
				all := lout.Users
				slices.SortFunc(all, func(a, b iamtypes.User) int {
					return strings.Compare(aws.ToString(a.UserName), aws.ToString(b.UserName))
				})
				start := 0
				if marker != "" {
					// The page starts at the marker's user or, gone since,
					// the next one by name (as IAM's opaque markers do).
					from, ok := strings.CutPrefix(marker, "page:")
					if !ok {
						return out, md, &smithy.GenericAPIError{Code: "InvalidInput", Message: "bad marker " + marker}
					}
					if start = slices.IndexFunc(all, func(u iamtypes.User) bool { return aws.ToString(u.UserName) >= from }); start < 0 {
						start = len(all)
					}
				}
				size := p.size
				if size == 0 {
					size = int(aws.ToInt32(lin.MaxItems))
				}
				if size <= 0 {
					size = len(all)
				}
				end := min(start+size, len(all))
				lout.Users, lout.IsTruncated, lout.Marker = all[start:end], end < len(all), nil
				if end < len(all) {
					lout.Marker = aws.String("page:" + aws.ToString(all[end].UserName))
				}
				var names []string
				for _, u := range lout.Users {
					names = append(names, aws.ToString(u.UserName))
				}
				p.mu.Lock()
				p.pages = append(p.pages, names)
				p.mu.Unlock()
				return out, md, nil
			}), middleware.After)
	})
}

func (p *pageUsers) answered() [][]string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.pages)
}

// keyvendUsers lists the users under /keyvend/ on e's moto.
func keyvendUsers(t *testing.T, e *env) []string {
	t.Helper()
	var names []string
	p := iam.NewListUsersPaginator(e.iam, &iam.ListUsersInput{})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx())
		if err != nil {
			t.Fatal(err)
		}
		for _, u := range page.Users {
			if aws.ToString(u.Path) == "/keyvend/" {
				names = append(names, aws.ToString(u.UserName))
			}
		}
	}
	return names
}

// deleteKey deletes one access key by hand.
func deleteKey(t *testing.T, e *env, user, id string) {
	t.Helper()
	if _, err := e.iam.DeleteAccessKey(ctx(), &iam.DeleteAccessKeyInput{UserName: &user, AccessKeyId: &id}); err != nil {
		t.Fatal(err)
	}
}
