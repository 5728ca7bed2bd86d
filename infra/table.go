package main

import (
	"strings"

	"github.com/aws/aws-cdk-go/awscdk/v2"
	"github.com/aws/aws-cdk-go/awscdk/v2/awscloudwatch"
	"github.com/aws/aws-cdk-go/awscdk/v2/awsdynamodb"
	"github.com/aws/aws-cdk-go/awscdk/v2/awsiam"
	"github.com/aws/aws-cdk-go/awscdk/v2/awskms"
	"github.com/aws/jsii-runtime-go"

	"github.com/keyvend/keyvend/pkg/state"
)

// newStateTable is keyvend's state table (pkg/state: records and their
// leases, per-bucket summaries, the expiry index, history) and the
// customer-managed key that encrypts it. The table is state.Schema, as
// state.CreateTable makes it for the local environment and the tests.
//
// Both outlive the stack: the table holds the history of what keyvend
// vended, and a retained table is unreadable without its key. CloudFormation
// names the table, so a stack deployed again after a deletion does not
// collide with the retained one.
//
// The key policy follows the AWS-managed aws/dynamodb key: the account
// administers the key, and any principal of the account may use it, but
// only through DynamoDB in this region (kms:ViaService) and only as a
// caller of this account (kms:CallerAccount): kms:Encrypt, Decrypt,
// ReEncrypt*, GenerateDataKey*, DescribeKey, and CreateGrant only for an
// AWS resource (DynamoDB's grants for the table). That is what the
// principal that creates or restores a table with a customer-managed key
// needs (AWS KMS developer guide, "How Amazon DynamoDB uses AWS KMS";
// CloudFormation creates the table as the deploying principal), and what
// an operator running `keyvend reindex` needs to read and write items.
// IAM decides who reaches the table, and so the key: keyvend's roles are
// allowed kms:Decrypt through DynamoDB in their keyvend-<fn>-state
// policies, and no role is named here. DynamoDB itself may describe the
// key.
func newStateTable(stack awscdk.Stack) (awskms.Key, awsdynamodb.Table) {
	viaDynamoDB := map[string]any{
		"kms:CallerAccount": *awscdk.Aws_ACCOUNT_ID(),
		"kms:ViaService":    "dynamodb." + *awscdk.Aws_REGION() + ".amazonaws.com",
	}
	key := awskms.NewKey(stack, jsii.String("StateKey"), &awskms.KeyProps{
		Description:       jsii.String("keyvend: encrypts the state table (records, leases, history)"),
		EnableKeyRotation: jsii.Bool(true),
		RemovalPolicy:     awscdk.RemovalPolicy_RETAIN,
		Policy: awsiam.NewPolicyDocument(&awsiam.PolicyDocumentProps{Statements: &[]awsiam.PolicyStatement{
			awsiam.NewPolicyStatement(&awsiam.PolicyStatementProps{
				Sid:        jsii.String("AccountAdministersTheKey"),
				Principals: &[]awsiam.IPrincipal{awsiam.NewAccountRootPrincipal()},
				Actions:    jsii.Strings(keyAdminActions...),
				Resources:  jsii.Strings("*"),
			}),
			awsiam.NewPolicyStatement(&awsiam.PolicyStatementProps{
				Sid:        jsii.String("AccountUsesTheKeyOnlyThroughDynamoDB"),
				Principals: &[]awsiam.IPrincipal{awsiam.NewAccountRootPrincipal()},
				Actions: jsii.Strings("kms:Encrypt", "kms:Decrypt", "kms:ReEncrypt*", "kms:GenerateDataKey*",
					"kms:DescribeKey"),
				Resources:  jsii.Strings("*"),
				Conditions: &map[string]any{"StringEquals": viaDynamoDB},
			}),
			awsiam.NewPolicyStatement(&awsiam.PolicyStatementProps{
				Sid:        jsii.String("AccountCreatesGrantsOnlyForDynamoDBTables"),
				Principals: &[]awsiam.IPrincipal{awsiam.NewAccountRootPrincipal()},
				Actions:    jsii.Strings("kms:CreateGrant"),
				Resources:  jsii.Strings("*"),
				Conditions: &map[string]any{
					"StringEquals": viaDynamoDB,
					"Bool":         map[string]any{"kms:GrantIsForAWSResource": "true"},
				},
			}),
			awsiam.NewPolicyStatement(&awsiam.PolicyStatementProps{
				Sid:        jsii.String("DynamoDBDescribesTheKey"),
				Principals: &[]awsiam.IPrincipal{awsiam.NewServicePrincipal(jsii.String("dynamodb.amazonaws.com"), nil)},
				Actions:    jsii.Strings("kms:DescribeKey"),
				Resources:  jsii.Strings("*"),
			}),
		}}),
	})

	attr := func(name string) *awsdynamodb.Attribute {
		return &awsdynamodb.Attribute{Name: jsii.String(name), Type: awsdynamodb.AttributeType_STRING}
	}
	table := awsdynamodb.NewTable(stack, jsii.String("StateTable"), &awsdynamodb.TableProps{
		PartitionKey:        attr(state.Schema.PartitionKey),
		SortKey:             attr(state.Schema.SortKey),
		BillingMode:         awsdynamodb.BillingMode_PAY_PER_REQUEST,
		TimeToLiveAttribute: jsii.String(state.TTLAttribute),
		PointInTimeRecoverySpecification: &awsdynamodb.PointInTimeRecoverySpecification{
			PointInTimeRecoveryEnabled: jsii.Bool(true),
		},
		DeletionProtection: jsii.Bool(true),
		RemovalPolicy:      awscdk.RemovalPolicy_RETAIN,
		Encryption:         awsdynamodb.TableEncryption_CUSTOMER_MANAGED,
		EncryptionKey:      key,
	})
	for _, ix := range state.Schema.Indexes {
		table.AddGlobalSecondaryIndex(&awsdynamodb.GlobalSecondaryIndexProps{
			IndexName:      jsii.String(ix.Name),
			PartitionKey:   attr(ix.PartitionKey),
			SortKey:        attr(ix.SortKey),
			ProjectionType: awsdynamodb.ProjectionType_ALL,
		})
	}
	return key, table
}

// stateOperations are the DynamoDB operations pkg/state calls
// (TestStateTableThrottleAlarm reads them from its source).
var stateOperations = []string{"GetItem", "PutItem", "UpdateItem", "DeleteItem", "Query", "TransactWriteItems"}

// stateThrottles is the sum over stateOperations of the table's
// ThrottledRequests in 5 minutes. DynamoDB publishes the metric only when
// a request is throttled, so each operation's series is FILLed with 0: a
// quiet table sums to 0 instead of having no data.
func stateThrottles(table awsdynamodb.Table) awscloudwatch.IMetric {
	five := awscdk.Duration_Minutes(jsii.Number(5))
	using := map[string]awscloudwatch.IMetric{}
	terms := make([]string, len(stateOperations))
	for i, op := range stateOperations {
		id := strings.ToLower(op)
		using[id] = table.Metric(jsii.String("ThrottledRequests"), &awscloudwatch.MetricOptions{
			DimensionsMap: &map[string]*string{"TableName": table.TableName(), "Operation": jsii.String(op)},
			Statistic:     jsii.String("Sum"),
			Period:        five,
		})
		terms[i] = "FILL(" + id + ",0)"
	}
	return awscloudwatch.NewMathExpression(&awscloudwatch.MathExpressionProps{
		Expression:   jsii.String(strings.Join(terms, "+")),
		UsingMetrics: &using,
		Label:        jsii.String("state table throttled requests"),
		Period:       five,
	})
}
