package awstest

import (
	"context"
	"fmt"
	"slices"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsmiddleware "github.com/aws/aws-sdk-go-v2/aws/middleware"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	"github.com/aws/smithy-go"
	"github.com/aws/smithy-go/middleware"
)

// BoundaryRefusedCode is the error code of a CreateUser that RequireBoundary
// refused to send.
const BoundaryRefusedCode = "KeyvendTestBoundaryRequired"

// RequireBoundary makes every IAM CreateUser made through cfg carry exactly
// the permissions boundary boundaryARN. moto accepts CreateUser's
// PermissionsBoundary and drops it, so nothing moto answers shows a user
// created without it; this check looks at the request itself. A CreateUser
// whose PermissionsBoundary is missing or another ARN fails the test
// (tb.Errorf, naming the user and what it carried) and is not sent: the
// call returns an API error with code BoundaryRefusedCode, so no user
// without the boundary ever exists, even for a moment.
//
// It is added at the front of the Initialize step, so it runs before the
// middleware attached to cfg earlier (a Recorder, Faults): a CreateUser is
// checked even when an injected fault would stop it. It does not look at calls made through
// other configurations (tests that create users by hand use their own).
func RequireBoundary(tb testing.TB, cfg *aws.Config, boundaryARN string) {
	tb.Helper()
	if boundaryARN == "" {
		tb.Fatal("awstest.RequireBoundary: empty boundary ARN")
	}
	// Clone: cfg may be a Copy sharing its backing array with another
	// configuration, which an append in place would write into.
	cfg.APIOptions = append(slices.Clone(cfg.APIOptions), func(stack *middleware.Stack) error {
		return stack.Initialize.Add(middleware.InitializeMiddlewareFunc("awstest.RequireBoundary",
			func(ctx context.Context, in middleware.InitializeInput, next middleware.InitializeHandler) (middleware.InitializeOutput, middleware.Metadata, error) {
				if awsmiddleware.GetServiceID(ctx) != iam.ServiceID || awsmiddleware.GetOperationName(ctx) != "CreateUser" {
					return next.HandleInitialize(ctx, in)
				}
				p, ok := in.Parameters.(*iam.CreateUserInput)
				var user, got string
				if ok {
					user = aws.ToString(p.UserName)
					if p.PermissionsBoundary == nil {
						got = "no boundary"
					} else if b := aws.ToString(p.PermissionsBoundary); b != boundaryARN {
						got = fmt.Sprintf("boundary %q", b)
					}
				} else {
					got = fmt.Sprintf("an input of type %T", in.Parameters)
				}
				if got == "" {
					return next.HandleInitialize(ctx, in)
				}
				msg := fmt.Sprintf("CreateUser %q with %s, want permissions boundary %s", user, got, boundaryARN)
				tb.Errorf("awstest.RequireBoundary: %s (refused, not sent)", msg)
				return middleware.InitializeOutput{}, middleware.Metadata{},
					&smithy.GenericAPIError{Code: BoundaryRefusedCode, Message: msg, Fault: smithy.FaultClient}
			}), middleware.Before)
	})
}
