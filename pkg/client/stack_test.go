package client_test

import (
	"context"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/cloudformation"

	"github.com/keyvend/keyvend/pkg/awstest"
	"github.com/keyvend/keyvend/pkg/client"
)

func TestMain(m *testing.M) { awstest.Main(m) }

// TestAPIFromStack reads the ApiUrl output of a stack in moto (a stand-in
// template: moto cannot create keyvend's HTTP API).
func TestAPIFromStack(t *testing.T) {
	ctx := context.Background()
	cfg := awstest.Config(t, awstest.Shared(t).URL)
	const url = "https://abc123.execute-api.us-east-1.amazonaws.com/"
	for name, outputs := range map[string]string{
		"keyvend-with-api": `"ApiUrl":{"Value":"` + url + `"},"BoundaryArn":{"Value":"arn:aws:iam::123456789012:policy/b"}`,
		"some-other-stack": `"Other":{"Value":"x"}`,
	} {
		tmpl := `{"Resources":{"Q":{"Type":"AWS::SQS::Queue","Properties":{"QueueName":"` + name + `"}}},"Outputs":{` + outputs + `}}`
		if _, err := cloudformation.NewFromConfig(cfg).CreateStack(ctx, &cloudformation.CreateStackInput{StackName: aws.String(name), TemplateBody: aws.String(tmpl)}); err != nil {
			t.Fatal(err)
		}
	}
	if got, err := client.APIFromStack(ctx, cfg, "keyvend-with-api"); err != nil || got != url {
		t.Fatalf("APIFromStack = %q, %v; want %s", got, err, url)
	}
	if _, err := client.APIFromStack(ctx, cfg, "some-other-stack"); err == nil || !strings.Contains(err.Error(), "no ApiUrl output") {
		t.Fatalf("a stack without ApiUrl: %v", err)
	}
	if _, err := client.APIFromStack(ctx, cfg, "no-such-stack"); err == nil {
		t.Fatal("a missing stack: no error")
	}
}
