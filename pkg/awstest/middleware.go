package awstest

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsmiddleware "github.com/aws/aws-sdk-go-v2/aws/middleware"
	"github.com/aws/smithy-go"
	"github.com/aws/smithy-go/middleware"
)

// Call is one AWS API call: service id and operation, e.g. "IAM",
// "CreateUser", and how it ended.
type Call struct {
	Service   string
	Operation string
	// Input is the operation's input as the caller passed it (e.g.
	// *iam.CreateUserInput).
	Input any
	// Err is the error the call returned to its caller (nil on success):
	// an AWS API error, an injected fault, or a context/transport error.
	// It is set when the call returns; see Recorder.Calls.
	Err error
}

// Code is the AWS error code of the call's error, "" when it succeeded,
// and "!" plus the error text for an error that is not an AWS API error
// (e.g. a cancelled context).
func (c Call) Code() string {
	if c.Err == nil {
		return ""
	}
	var ae smithy.APIError
	if errors.As(c.Err, &ae) {
		return ae.ErrorCode()
	}
	return "!" + c.Err.Error()
}

func (c Call) String() string {
	if c.Err != nil {
		return c.Service + ":" + c.Operation + "(" + c.Code() + ")"
	}
	return c.Service + ":" + c.Operation
}

// Write reports whether the call may change state in IAM, Secrets
// Manager, S3 or STS (it is not a Get/List/Describe read). Calls to the
// state table (DynamoDB) are not counted: a refused request takes and
// gives back a user's lease, which changes nothing a caller can see; tests
// check the record itself where it matters.
func (c Call) Write() bool {
	if c.Service == "DynamoDB" {
		return false
	}
	for _, p := range []string{"Get", "List", "Describe"} {
		if strings.HasPrefix(c.Operation, p) {
			return false
		}
	}
	return true
}

// Recorder records every call made through configurations it is attached to.
// Calls are listed in the order they started; a call's Err is filled in
// when it returns.
type Recorder struct {
	mu    sync.Mutex
	calls []Call
	gen   int // bumped by Reset
}

// Attach adds the recorder to cfg's middleware stack.
func (r *Recorder) Attach(cfg *aws.Config) {
	cfg.APIOptions = append(cfg.APIOptions, func(stack *middleware.Stack) error {
		return stack.Initialize.Add(middleware.InitializeMiddlewareFunc("awstest.Recorder",
			func(ctx context.Context, in middleware.InitializeInput, next middleware.InitializeHandler) (middleware.InitializeOutput, middleware.Metadata, error) {
				r.mu.Lock()
				i := len(r.calls)
				r.calls = append(r.calls, Call{Service: awsmiddleware.GetServiceID(ctx), Operation: awsmiddleware.GetOperationName(ctx), Input: in.Parameters})
				gen := r.gen
				r.mu.Unlock()
				out, md, err := next.HandleInitialize(ctx, in)
				r.mu.Lock()
				if gen == r.gen { // not Reset while the call ran
					r.calls[i].Err = err
				}
				r.mu.Unlock()
				return out, md, err
			}), middleware.Before)
	})
}

// Calls returns the calls recorded so far.
func (r *Recorder) Calls() []Call {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Call(nil), r.calls...)
}

// Writes returns the recorded calls that may change state.
func (r *Recorder) Writes() []Call {
	var out []Call
	for _, c := range r.Calls() {
		if c.Write() {
			out = append(out, c)
		}
	}
	return out
}

// Reset forgets the recorded calls.
func (r *Recorder) Reset() {
	r.mu.Lock()
	r.calls = nil
	r.gen++
	r.mu.Unlock()
}

// Operations returns the operation names of the recorded calls, in order.
func (r *Recorder) Operations() []string {
	var out []string
	for _, c := range r.Calls() {
		out = append(out, c.Operation)
	}
	return out
}

// Succeeded returns the recorded calls of op that returned no error.
func (r *Recorder) Succeeded(op string) []Call {
	var out []Call
	for _, c := range r.Calls() {
		if c.Operation == op && c.Err == nil {
			out = append(out, c)
		}
	}
	return out
}

// SucceededWrites returns the recorded calls that may change state and
// returned no error.
func (r *Recorder) SucceededWrites() []Call {
	var out []Call
	for _, c := range r.Writes() {
		if c.Err == nil {
			out = append(out, c)
		}
	}
	return out
}

// Count returns how many times operation op was called.
func (r *Recorder) Count(op string) int {
	n := 0
	for _, c := range r.Calls() {
		if c.Operation == op {
			n++
		}
	}
	return n
}

// InjectedCode is the AWS error code of injected faults.
const InjectedCode = "InjectedFault"

// Faults fails chosen calls before they are sent, with an AWS API error.
type Faults struct {
	mu    sync.Mutex
	rules []*faultRule
}

type faultRule struct {
	code  string // AWS error code to answer with (InjectedCode)
	op    string
	nth   int // fail the nth call of op (1-based); 0 = every call
	seen  int
	fired int
}

// FailNth makes the nth call (1-based) of operation op fail; nth 0 fails
// every call of op.
func (f *Faults) FailNth(op string, nth int) {
	f.FailNthWith(op, nth, InjectedCode)
}

// FailNthWith is FailNth answering with the AWS error code code, e.g.
// "Throttling" or "AccessDenied".
func (f *Faults) FailNthWith(op string, nth int, code string) {
	f.mu.Lock()
	f.rules = append(f.rules, &faultRule{op: op, nth: nth, code: code})
	f.mu.Unlock()
}

// Clear removes every fault.
func (f *Faults) Clear() {
	f.mu.Lock()
	f.rules = nil
	f.mu.Unlock()
}

// Fired returns how many faults were injected.
func (f *Faults) Fired() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, r := range f.rules {
		n += r.fired
	}
	return n
}

func (f *Faults) check(op string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, r := range f.rules {
		if r.op != op {
			continue
		}
		r.seen++
		if r.nth == 0 || r.seen == r.nth {
			r.fired++
			return &smithy.GenericAPIError{Code: r.code, Message: fmt.Sprintf("injected fault in %s (call %d)", op, r.seen), Fault: smithy.FaultServer}
		}
	}
	return nil
}

// Attach adds the fault injector to cfg's middleware stack.
func (f *Faults) Attach(cfg *aws.Config) {
	cfg.APIOptions = append(cfg.APIOptions, func(stack *middleware.Stack) error {
		return stack.Initialize.Add(middleware.InitializeMiddlewareFunc("awstest.Faults",
			func(ctx context.Context, in middleware.InitializeInput, next middleware.InitializeHandler) (middleware.InitializeOutput, middleware.Metadata, error) {
				if err := f.check(awsmiddleware.GetOperationName(ctx)); err != nil {
					return middleware.InitializeOutput{}, middleware.Metadata{}, err
				}
				return next.HandleInitialize(ctx, in)
			}), middleware.After)
	})
}

// AfterSuccess adds a middleware to cfg that calls fn once an operation op
// has returned successfully to the SDK, before the caller sees the result.
// Tests use it to change the world at an exact point of a saga, e.g. to
// cancel the request's context right after CreateAccessKey succeeded.
func AfterSuccess(cfg *aws.Config, op string, fn func(ctx context.Context)) {
	cfg.APIOptions = append(cfg.APIOptions, func(stack *middleware.Stack) error {
		return stack.Initialize.Add(middleware.InitializeMiddlewareFunc("awstest.AfterSuccess."+op,
			func(ctx context.Context, in middleware.InitializeInput, next middleware.InitializeHandler) (middleware.InitializeOutput, middleware.Metadata, error) {
				out, md, err := next.HandleInitialize(ctx, in)
				if err == nil && awsmiddleware.GetOperationName(ctx) == op {
					fn(ctx)
				}
				return out, md, err
			}), middleware.After)
	})
}

// BeforeSend adds a middleware to cfg that calls fn before an operation op
// is sent, on the caller's goroutine. Tests use it to hold a step of a
// saga back (fn blocks) until the world is where they want it.
func BeforeSend(cfg *aws.Config, op string, fn func(ctx context.Context)) {
	cfg.APIOptions = append(cfg.APIOptions, func(stack *middleware.Stack) error {
		return stack.Initialize.Add(middleware.InitializeMiddlewareFunc("awstest.BeforeSend."+op,
			func(ctx context.Context, in middleware.InitializeInput, next middleware.InitializeHandler) (middleware.InitializeOutput, middleware.Metadata, error) {
				if awsmiddleware.GetOperationName(ctx) == op {
					fn(ctx)
				}
				return next.HandleInitialize(ctx, in)
			}), middleware.After)
	})
}
