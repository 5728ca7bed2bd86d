package client

import (
	"context"
	"fmt"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/cloudformation"
)

// StackOutput is the output of keyvend's CDK stack that holds the API's URL.
const StackOutput = "ApiUrl"

// APIFromStack reads the API's URL from the ApiUrl output of the
// CloudFormation stack (name or id) keyvend was deployed as.
func APIFromStack(ctx context.Context, cfg aws.Config, stack string) (string, error) {
	out, err := cloudformation.NewFromConfig(cfg).DescribeStacks(ctx, &cloudformation.DescribeStacksInput{StackName: &stack})
	if err != nil {
		return "", fmt.Errorf("read the API URL from stack %s: %w", stack, err)
	}
	for _, s := range out.Stacks {
		for _, o := range s.Outputs {
			if aws.ToString(o.OutputKey) == StackOutput && aws.ToString(o.OutputValue) != "" {
				return aws.ToString(o.OutputValue), nil
			}
		}
	}
	return "", fmt.Errorf("stack %s has no %s output: is it keyvend's stack?", stack, StackOutput)
}
