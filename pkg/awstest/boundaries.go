package awstest

import (
	"context"
	"strings"
	"sync"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsmiddleware "github.com/aws/aws-sdk-go-v2/aws/middleware"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	iamtypes "github.com/aws/aws-sdk-go-v2/service/iam/types"
	"github.com/aws/smithy-go/middleware"
)

// KeepBoundaries models AWS where moto is not faithful: moto's CreateUser
// accepts a PermissionsBoundary and drops it, so its GetUser never
// reports one, while AWS's GetUser reports the boundary the user was
// created with. Attached to a configuration, it records the boundary of
// every CreateUser that succeeds through it (by user name,
// case-insensitively, as IAM names are) and fills it into GetUser answers
// about those users that lack one, as
// PermissionsBoundary{PermissionsBoundaryArn, PermissionsBoundaryType: Policy}.
// A DeleteUser that succeeds through it forgets the user's boundary, so a
// user created again without one has none, as in AWS.
//
// It only sees calls made through configurations it is attached to:
// attach it both to the client that creates the users and to the one
// that reads them (or use one configuration for both). It does not model
// PutUserPermissionsBoundary or DeleteUserPermissionsBoundary (moto
// answers both with HTTP 500 NotImplemented), nor boundaries of roles
// (moto keeps those).
type KeepBoundaries struct {
	mu     sync.Mutex
	byUser map[string]string // lower-case user name → boundary ARN
}

// Attach adds the model to cfg's middleware stack.
func (k *KeepBoundaries) Attach(cfg *aws.Config) {
	cfg.APIOptions = append(cfg.APIOptions, func(stack *middleware.Stack) error {
		return stack.Initialize.Add(middleware.InitializeMiddlewareFunc("awstest.KeepBoundaries",
			func(ctx context.Context, in middleware.InitializeInput, next middleware.InitializeHandler) (middleware.InitializeOutput, middleware.Metadata, error) {
				out, md, err := next.HandleInitialize(ctx, in)
				if err != nil || awsmiddleware.GetServiceID(ctx) != iam.ServiceID {
					return out, md, err
				}
				switch awsmiddleware.GetOperationName(ctx) {
				case "CreateUser":
					if p, ok := in.Parameters.(*iam.CreateUserInput); ok && p.PermissionsBoundary != nil {
						k.set(aws.ToString(p.UserName), aws.ToString(p.PermissionsBoundary))
					}
				case "DeleteUser":
					if p, ok := in.Parameters.(*iam.DeleteUserInput); ok {
						k.set(aws.ToString(p.UserName), "")
					}
				case "GetUser":
					if r, ok := out.Result.(*iam.GetUserOutput); ok && r.User != nil && r.User.PermissionsBoundary == nil {
						if arn := k.Boundary(aws.ToString(r.User.UserName)); arn != "" {
							r.User.PermissionsBoundary = &iamtypes.AttachedPermissionsBoundary{
								PermissionsBoundaryArn:  aws.String(arn),
								PermissionsBoundaryType: iamtypes.PermissionsBoundaryAttachmentTypePolicy,
							}
						}
					}
				}
				return out, md, err
			}), middleware.Before)
	})
}

// Boundary returns the boundary recorded for user, or "".
func (k *KeepBoundaries) Boundary(user string) string {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.byUser[strings.ToLower(user)]
}

// set records user's boundary; "" forgets it.
func (k *KeepBoundaries) set(user, arn string) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if arn == "" {
		delete(k.byUser, strings.ToLower(user))
		return
	}
	if k.byUser == nil {
		k.byUser = map[string]string{}
	}
	k.byUser[strings.ToLower(user)] = arn
}
