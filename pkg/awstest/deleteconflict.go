package awstest

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsmiddleware "github.com/aws/aws-sdk-go-v2/aws/middleware"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	"github.com/aws/smithy-go"
	"github.com/aws/smithy-go/middleware"
)

// DeleteConflicts models AWS where moto is not faithful: moto's DeleteUser
// succeeds while the user still has access keys or group memberships (and
// deletes them along; it refuses only for an inline policy), where AWS
// refuses with DeleteConflict. Attached to a configuration, it looks, before each
// DeleteUser made through it is sent, at what the user still has (through
// check, a client that reads the same endpoint without going through cfg),
// and answers DeleteConflict without sending the call if it has an access
// key, a group, an inline or an attached policy. A user that does not exist
// goes through (moto answers NoSuchEntity).
//
// With it, "the user is gone" means its keys, memberships and policies were
// removed first, as in AWS, and a DeleteUser that AWS would refuse leaves
// the user in place for whatever repairs it. It does not model login
// profiles, MFA devices, SSH keys or certificates (keyvend makes none), nor
// a key added between its check and the call.
func DeleteConflicts(cfg *aws.Config, check *iam.Client) {
	cfg.APIOptions = append(slices.Clone(cfg.APIOptions), func(stack *middleware.Stack) error {
		return stack.Initialize.Add(middleware.InitializeMiddlewareFunc("awstest.DeleteConflicts",
			func(ctx context.Context, in middleware.InitializeInput, next middleware.InitializeHandler) (middleware.InitializeOutput, middleware.Metadata, error) {
				p, ok := in.Parameters.(*iam.DeleteUserInput)
				if !ok || awsmiddleware.GetServiceID(ctx) != iam.ServiceID {
					return next.HandleInitialize(ctx, in)
				}
				what, err := attachedTo(ctx, check, aws.ToString(p.UserName))
				if err != nil {
					return middleware.InitializeOutput{}, middleware.Metadata{}, fmt.Errorf("awstest.DeleteConflicts: %w", err)
				}
				if what != "" {
					return middleware.InitializeOutput{}, middleware.Metadata{}, &smithy.GenericAPIError{
						Code: "DeleteConflict", Message: "Cannot delete entity, must " + what + " first.", Fault: smithy.FaultClient}
				}
				return next.HandleInitialize(ctx, in)
			}), middleware.After)
	})
}

// attachedTo names the first thing that blocks DeleteUser of user ("" for
// none, or when the user does not exist), as AWS's message would.
func attachedTo(ctx context.Context, c *iam.Client, user string) (string, error) {
	keys, err := c.ListAccessKeys(ctx, &iam.ListAccessKeysInput{UserName: &user})
	if err != nil {
		if isNoSuchEntity(err) {
			return "", nil
		}
		return "", err
	}
	if len(keys.AccessKeyMetadata) > 0 {
		return "delete access keys", nil
	}
	groups, err := c.ListGroupsForUser(ctx, &iam.ListGroupsForUserInput{UserName: &user})
	if err != nil {
		return "", err
	}
	if len(groups.Groups) > 0 {
		return "remove user from all groups", nil
	}
	inline, err := c.ListUserPolicies(ctx, &iam.ListUserPoliciesInput{UserName: &user})
	if err != nil {
		return "", err
	}
	if len(inline.PolicyNames) > 0 {
		return "delete policies", nil
	}
	attached, err := c.ListAttachedUserPolicies(ctx, &iam.ListAttachedUserPoliciesInput{UserName: &user})
	if err != nil {
		return "", err
	}
	if len(attached.AttachedPolicies) > 0 {
		return "detach all policies", nil
	}
	return "", nil
}

func isNoSuchEntity(err error) bool {
	var ae smithy.APIError
	return errors.As(err, &ae) && ae.ErrorCode() == "NoSuchEntity"
}
