package awstest

import (
	"context"
	"errors"
	"slices"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsmiddleware "github.com/aws/aws-sdk-go-v2/aws/middleware"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	"github.com/aws/smithy-go"
	"github.com/aws/smithy-go/middleware"
)

// RotationFunction models, for clients on cfg, a rotation function arn
// that exists: moto 5.2.1's RotateSecret looks the function up in its own
// Lambda backend and, not finding it, answers ResourceNotFoundException
// naming the ARN — after it has recorded the schedule (rotation enabled,
// the Lambda ARN, AutomaticallyAfterDays, NextRotationDate). A function
// moto does know it would invoke, which needs Docker. So a RotateSecret
// with RotationLambdaARN arn that gets exactly that error is answered as
// AWS answers it: success, with the secret's ARN and name. Any other
// error goes through.
func RotationFunction(cfg *aws.Config, arn string) {
	cfg.APIOptions = append(slices.Clone(cfg.APIOptions), func(stack *middleware.Stack) error {
		return stack.Initialize.Add(middleware.InitializeMiddlewareFunc("awstest.RotationFunction",
			func(ctx context.Context, in middleware.InitializeInput, next middleware.InitializeHandler) (middleware.InitializeOutput, middleware.Metadata, error) {
				p, ok := in.Parameters.(*secretsmanager.RotateSecretInput)
				out, md, err := next.HandleInitialize(ctx, in)
				if !ok || err == nil || awsmiddleware.GetServiceID(ctx) != secretsmanager.ServiceID || aws.ToString(p.RotationLambdaARN) != arn {
					return out, md, err
				}
				var ae smithy.APIError
				if errors.As(err, &ae) && ae.ErrorCode() == "ResourceNotFoundException" && strings.Contains(ae.ErrorMessage(), arn) {
					out.Result = &secretsmanager.RotateSecretOutput{ARN: p.SecretId, Name: p.SecretId}
					return out, md, nil
				}
				return out, md, err
			}), middleware.After)
	})
}
