package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/aws/aws-cdk-go/awscdk/v2"
	"github.com/aws/aws-cdk-go/awscdk/v2/awsapigateway"
	"github.com/aws/aws-cdk-go/awscdk/v2/awsapigatewayv2"
	"github.com/aws/aws-cdk-go/awscdk/v2/awsapigatewayv2authorizers"
	"github.com/aws/aws-cdk-go/awscdk/v2/awsapigatewayv2integrations"
	"github.com/aws/aws-cdk-go/awscdk/v2/awscloudwatch"
	"github.com/aws/aws-cdk-go/awscdk/v2/awscloudwatchactions"
	"github.com/aws/aws-cdk-go/awscdk/v2/awsdynamodb"
	"github.com/aws/aws-cdk-go/awscdk/v2/awsevents"
	"github.com/aws/aws-cdk-go/awscdk/v2/awseventstargets"
	"github.com/aws/aws-cdk-go/awscdk/v2/awsiam"
	"github.com/aws/aws-cdk-go/awscdk/v2/awskms"
	"github.com/aws/aws-cdk-go/awscdk/v2/awslambda"
	"github.com/aws/aws-cdk-go/awscdk/v2/awslambdaeventsources"
	"github.com/aws/aws-cdk-go/awscdk/v2/awslogs"
	"github.com/aws/aws-cdk-go/awscdk/v2/awssns"
	"github.com/aws/aws-cdk-go/awscdk/v2/awssnssubscriptions"
	"github.com/aws/aws-cdk-go/awscdk/v2/awssqs"
	"github.com/aws/constructs-go/constructs/v10"
	"github.com/aws/jsii-runtime-go"

	"github.com/keyvend/keyvend/pkg/authz"
	"github.com/keyvend/keyvend/pkg/chatops"
	"github.com/keyvend/keyvend/pkg/httpapi"
	"github.com/keyvend/keyvend/pkg/provision"
	"github.com/keyvend/keyvend/pkg/state"
)

// Lambda settings per function.
const (
	memoryMB = 256
	// RulesPathInLambda is where the api function finds the bundled rules.
	RulesPathInLambda = "/var/task/rules.json"
)

var timeouts = map[string]float64{
	FnAPI:    28,  // under API Gateway's 30 s integration limit
	FnReaper: 300, // a full sweep of every keyvend user
	FnRotate: 60,  // four rotation steps, each a few calls and a key check
	FnSlack:  10,  // Slack wants its answer within 3 s; the handler budgets 2.5 s
	FnWorker: 60,  // a batch of jobs, each at most a provision and a key check
}

// The Slack command's queue: SQS delivers a job at most chatopsMaxReceives
// times, chatopsVisibility seconds apart, then moves it to the dead-letter
// queue. The visibility timeout is six times the worker's timeout, as AWS
// advises for an SQS event source (a batch the poller is still retrying
// after a throttle is not handed out again meanwhile). A failed try is
// retried when its message becomes visible again, 360 s after it was
// received: the third try starts about 12 minutes after the first and ends
// within 13, inside the 30 minutes a Slack response_url stays valid
// (TestChatopsQueues checks both).
const (
	chatopsMaxReceives = 3
	chatopsVisibility  = 6 * 60 // 6 × timeouts[FnWorker]
	chatopsBatchSize   = 5
)

// Keyvend is the stack and the parts tests look at.
type Keyvend struct {
	Stack    awscdk.Stack
	Boundary awsiam.ManagedPolicy
	// BoundaryStatements is the boundary's document, as derived from the rules.
	BoundaryStatements []Stmt
	Functions          map[string]awslambda.Function
	Roles              map[string]awsiam.Role
	API                awsapigatewayv2.HttpApi
	// The Slack command's queues (nil when it is not deployed).
	Queue, DeadLetterQueue awssqs.Queue
	// keyvend's state table and the key that encrypts it (table.go).
	StateTable awsdynamodb.Table
	StateKey   awskms.Key
	// StatePolicies are the keyvend-<fn>-state policies: each role's
	// statements that name the state table or its key.
	StatePolicies map[string]awsiam.Policy
}

// NewKeyvend validates the configuration and the rules file (with the very
// code the server runs at start-up, so a bad file fails `cdk synth` with
// the message the server would give) and builds the stack.
func NewKeyvend(scope constructs.Construct, cfg Config) (*Keyvend, error) {
	rules, err := authz.Load(cfg.RulesFile)
	if err != nil {
		return nil, err
	}
	// provision.New checks the settings the functions will start with; the
	// boundary ARN and the table's name are only known at deploy time, so
	// well-formed stand-ins.
	standIn, err := state.New(nil, "keyvend-state")
	if err != nil {
		return nil, err
	}
	if _, err := provision.New(nil, nil, rules, provision.Settings{
		Store:              standIn,
		UserPath:           cfg.UserPath,
		BoundaryARN:        "arn:aws:iam::000000000000:policy/keyvend/boundary",
		SecretPrefix:       cfg.SecretPrefix,
		SecretRecoveryDays: int32(cfg.SecretRecoveryDays),
	}, nil); err != nil {
		return nil, err
	}
	boundaryStmts, err := BoundaryStatements(rules, *awscdk.Aws_PARTITION())
	if err != nil {
		return nil, err
	}
	assets := map[string]string{}
	for _, fn := range cfg.DeployedFunctions() {
		dir := filepath.Join(cfg.DistDir, fn)
		if _, err := os.Stat(filepath.Join(dir, "bootstrap")); err != nil {
			return nil, fmt.Errorf("lambda asset %s: %w: run `make build` first", filepath.Join(dir, "bootstrap"), err)
		}
		assets[fn] = dir
	}
	// The functions that decide with the rules get their bootstrap plus
	// the rules file, staged together.
	for _, fn := range cfg.DeployedFunctions() {
		if !usesRules[fn] {
			continue
		}
		if assets[fn], err = stageBundle(cfg, fn); err != nil {
			return nil, err
		}
	}

	stack := awscdk.NewStack(scope, jsii.String(cfg.StackName), &awscdk.StackProps{
		Description: jsii.String("keyvend: vends bucket-scoped IAM users through an HTTP API (github.com/keyvend/keyvend)"),
	})
	k := &Keyvend{Stack: stack, BoundaryStatements: boundaryStmts, Functions: map[string]awslambda.Function{}, Roles: map[string]awsiam.Role{},
		StatePolicies: map[string]awsiam.Policy{}}
	partition, account, region := *awscdk.Aws_PARTITION(), *awscdk.Aws_ACCOUNT_ID(), *awscdk.Aws_REGION()
	iamARN := func(resource string) string { return "arn:" + partition + ":iam::" + account + ":" + resource }

	// The permissions boundary of every vended user.
	k.Boundary = awsiam.NewManagedPolicy(stack, jsii.String("UserBoundary"), &awsiam.ManagedPolicyProps{
		Path:        jsii.String(cfg.UserPath),
		Description: jsii.String("keyvend: permissions boundary of vended users: S3 only, only on the rules file's bucket patterns, never bucket administration"),
		Document:    awsiam.NewPolicyDocument(&awsiam.PolicyDocumentProps{Statements: toStatements(boundaryStmts)}),
	})

	// The secrets key's policy delegates administration to the account
	// (IAM), never use: a principal of the account decrypts a user's
	// secret only if this key policy names it (keyvend's roles below, the
	// secretReaders), whatever its IAM policies allow.
	secretsKey := awskms.NewKey(stack, jsii.String("SecretsKey"), &awskms.KeyProps{
		Description:       jsii.String("keyvend: encrypts the access keys of vended users in Secrets Manager"),
		EnableKeyRotation: jsii.Bool(true),
		Alias:             jsii.String("alias/" + cfg.StackName + "-secrets"),
		// Secrets outlive the stack until their users are deleted.
		RemovalPolicy: awscdk.RemovalPolicy_RETAIN,
		Policy: awsiam.NewPolicyDocument(&awsiam.PolicyDocumentProps{Statements: &[]awsiam.PolicyStatement{
			awsiam.NewPolicyStatement(&awsiam.PolicyStatementProps{
				Sid:        jsii.String("AccountAdministersTheKeyButCannotUseIt"),
				Principals: &[]awsiam.IPrincipal{awsiam.NewAccountRootPrincipal()},
				Actions:    jsii.Strings(keyAdminActions...),
				Resources:  jsii.Strings("*"),
			}),
		}}),
	})
	secretsViaSM := "secretsmanager." + region + ".amazonaws.com"
	if len(cfg.SecretReaders) > 0 {
		readers := make([]awsiam.IPrincipal, len(cfg.SecretReaders))
		for i, r := range cfg.SecretReaders {
			readers[i] = awsiam.NewArnPrincipal(jsii.String(r))
		}
		secretsKey.AddToResourcePolicy(awsiam.NewPolicyStatement(&awsiam.PolicyStatementProps{
			Sid:        jsii.String("SecretReadersDecryptUserSecretsThroughSecretsManager"),
			Principals: &readers,
			Actions:    jsii.Strings("kms:Decrypt"),
			Resources:  jsii.Strings("*"),
			Conditions: &map[string]any{
				"StringEquals": map[string]any{"kms:ViaService": secretsViaSM},
				"StringLike": map[string]any{"kms:EncryptionContext:SecretARN": "arn:" + partition + ":secretsmanager:" + region + ":" +
					account + ":secret:" + cfg.SecretPrefix + "*"},
			},
		}), nil)
	}

	k.StateKey, k.StateTable = newStateTable(stack)

	fence := Fence{
		Users:    iamARN("user" + cfg.UserPath + "*"),
		Groups:   iamARN("group" + cfg.UserPath + "*"),
		Locks:    iamARN("group" + cfg.UserPath + "locks/*"),
		Secrets:  "arn:" + partition + ":secretsmanager:" + region + ":" + account + ":secret:" + cfg.SecretPrefix + "*",
		Boundary: *k.Boundary.ManagedPolicyArn(),
		Key:      *secretsKey.KeyArn(),
		Table:    *k.StateTable.TableArn(),
		StateKey: *k.StateKey.KeyArn(),
		Region:   region,
	}
	common := map[string]*string{
		"KEYVEND_BOUNDARY_ARN":         k.Boundary.ManagedPolicyArn(),
		"KEYVEND_SECRET_PREFIX":        jsii.String(cfg.SecretPrefix),
		"KEYVEND_USER_PATH":            jsii.String(cfg.UserPath),
		"KEYVEND_KMS_KEY_ID":           secretsKey.KeyArn(),
		"KEYVEND_REPAIR_AFTER":         jsii.String(cfg.RepairAfter),
		"KEYVEND_READY_TIMEOUT":        jsii.String(cfg.ReadyTimeout),
		"KEYVEND_SECRET_RECOVERY_DAYS": jsii.String(strconv.Itoa(cfg.SecretRecoveryDays)),
	}
	// The functions that write or read grants know how they are written.
	grants := map[string]*string{"KEYVEND_GRANT_MODE": jsii.String(cfg.GrantMode)}
	// The functions that keep keyvend's state know its table (the Slack
	// function only prechecks and queues).
	stateTable := map[string]*string{"KEYVEND_TABLE": k.StateTable.TableName()}
	env := map[string]map[string]*string{
		FnAPI:    withEnv(common, grants, stateTable, map[string]*string{"KEYVEND_RULES": jsii.String(RulesPathInLambda)}),
		FnReaper: withEnv(common, grants, stateTable),
		// The rotation function verifies a secret is one of keyvend's
		// (name, key, user path, boundary) before it rotates it.
		FnRotate: {
			"KEYVEND_READY_TIMEOUT": jsii.String(cfg.ReadyTimeout),
			"KEYVEND_SECRET_PREFIX": jsii.String(cfg.SecretPrefix),
			"KEYVEND_KMS_KEY_ID":    secretsKey.KeyArn(),
			"KEYVEND_USER_PATH":     jsii.String(cfg.UserPath),
			"KEYVEND_BOUNDARY_ARN":  k.Boundary.ManagedPolicyArn(),
			"KEYVEND_TABLE":         k.StateTable.TableName(),
		},
	}
	if cfg.Slack() {
		k.DeadLetterQueue = awssqs.NewQueue(stack, jsii.String("ChatopsDeadLetterQueue"), &awssqs.QueueProps{
			Encryption:      awssqs.QueueEncryption_SQS_MANAGED,
			EnforceSSL:      jsii.Bool(true),
			RetentionPeriod: awscdk.Duration_Days(jsii.Number(14)),
		})
		k.Queue = awssqs.NewQueue(stack, jsii.String("ChatopsQueue"), &awssqs.QueueProps{
			Encryption:        awssqs.QueueEncryption_SQS_MANAGED,
			EnforceSSL:        jsii.Bool(true),
			VisibilityTimeout: awscdk.Duration_Seconds(jsii.Number(chatopsVisibility)),
			DeadLetterQueue:   &awssqs.DeadLetterQueue{Queue: k.DeadLetterQueue, MaxReceiveCount: jsii.Number(chatopsMaxReceives)},
		})
		fence.SigningSecret = cfg.SlackSigningSecretARN
		fence.Queue = *k.Queue.QueueArn()
		env[FnSlack] = withEnv(common, grants, map[string]*string{
			"KEYVEND_RULES":                    jsii.String(RulesPathInLambda),
			"KEYVEND_SLACK_SIGNING_SECRET_ARN": jsii.String(cfg.SlackSigningSecretARN),
			"KEYVEND_CHATOPS_QUEUE_URL":        k.Queue.QueueUrl(),
		})
		env[FnWorker] = withEnv(common, grants, stateTable, map[string]*string{
			"KEYVEND_RULES":                jsii.String(RulesPathInLambda),
			"KEYVEND_CHATOPS_MAX_RECEIVES": jsii.String(strconv.Itoa(chatopsMaxReceives)),
		})
	}
	if len(cfg.CORSOrigins) > 0 {
		env[FnAPI]["KEYVEND_CORS_ORIGINS"] = jsii.String(strings.Join(cfg.CORSOrigins, ","))
	}
	if cfg.JWTPrincipalClaim != "" {
		env[FnAPI]["KEYVEND_JWT_PRINCIPAL_CLAIM"] = jsii.String(cfg.JWTPrincipalClaim)
	}
	if cfg.JWTGroupsClaim != "" {
		env[FnAPI]["KEYVEND_JWT_GROUPS_CLAIM"] = jsii.String(cfg.JWTGroupsClaim)
	}
	descriptions := map[string]string{
		FnAPI:    "keyvend: HTTP API handler (vends, describes, rotates and deletes bucket-scoped IAM users)",
		FnReaper: "keyvend: hourly reaper (deletes expired users, repairs or removes half-made ones)",
		FnRotate: "keyvend: Secrets Manager rotation of vended users' access keys",
		FnSlack:  "keyvend: Slack slash command (verifies Slack's signature, prechecks the rules, queues the job)",
		FnWorker: "keyvend: runs queued Slack commands and posts the results to Slack",
	}
	names := map[string]string{FnAPI: "Api", FnReaper: "Reaper", FnRotate: "Rotate", FnSlack: "Slack", FnWorker: "Worker"}
	retention := retentions[cfg.LogRetentionDays]

	logGroups := map[string]awslogs.LogGroup{}
	for _, fn := range cfg.DeployedFunctions() {
		name := names[fn]
		logs := awslogs.NewLogGroup(stack, jsii.String(name+"Logs"), &awslogs.LogGroupProps{
			Retention:     retention,
			RemovalPolicy: awscdk.RemovalPolicy_RETAIN, // audit trail of a privilege-vending service
		})
		logGroups[fn] = logs
		f := fence
		f.LogGroup = *logs.LogGroupArn()
		stmts, description := ProvisionerStatements(fn, cfg.GrantMode, f), "fenced to "+cfg.UserPath+" users and groups, the boundary, and its secrets"
		if fn == FnSlack {
			stmts, description = SlackStatements(cfg.GrantMode, f), "reads the signing secret and "+cfg.UserPath+" users, queues jobs; changes nothing"
		}
		// The statements that name the secrets key go into a policy of
		// their own: the key policy names the role, so the role itself
		// must not depend on the key (a dependency cycle otherwise).
		inline, keyStmts := splitByResource(stmts, fence.Key)
		// So do the statements that name the state table or its key
		// (keyvend-<fn>-state): the functions wait for them, so their
		// Denies hold from the first invocation.
		inline, stateStmts := splitByResource(inline, fence.Table, stateIndexes(fence), stateTableParts(fence), fence.StateKey)
		role := awsiam.NewRole(stack, jsii.String(name+"Role"), &awsiam.RoleProps{
			AssumedBy:   awsiam.NewServicePrincipal(jsii.String("lambda.amazonaws.com"), nil),
			Description: jsii.String("keyvend " + fn + " function: " + description),
			InlinePolicies: &map[string]awsiam.PolicyDocument{
				"keyvend-" + fn: awsiam.NewPolicyDocument(&awsiam.PolicyDocumentProps{Statements: toStatements(inline)}),
			},
		})
		k.Roles[fn] = role
		var keyPolicy awsiam.Policy
		if len(keyStmts) > 0 {
			keyPolicy = awsiam.NewPolicy(stack, jsii.String(name+"SecretsKeyPolicy"), &awsiam.PolicyProps{
				PolicyName: jsii.String("keyvend-" + fn + "-secrets-key"),
				Roles:      &[]awsiam.IRole{role},
				Document:   awsiam.NewPolicyDocument(&awsiam.PolicyDocumentProps{Statements: toStatements(keyStmts)}),
			})
			// The key's side: this role may use it, only through
			// Secrets Manager.
			secretsKey.AddToResourcePolicy(awsiam.NewPolicyStatement(&awsiam.PolicyStatementProps{
				Sid:        jsii.String("Keyvend" + name + "UsesTheKeyThroughSecretsManager"),
				Principals: &[]awsiam.IPrincipal{awsiam.NewArnPrincipal(role.RoleArn())},
				Actions:    jsii.Strings("kms:Decrypt", "kms:GenerateDataKey"),
				Resources:  jsii.Strings("*"),
				Conditions: &map[string]any{"StringEquals": map[string]any{"kms:ViaService": secretsViaSM}},
			}), nil)
		}
		var statePolicy awsiam.Policy
		if len(stateStmts) > 0 {
			statePolicy = awsiam.NewPolicy(stack, jsii.String(name+"StatePolicy"), &awsiam.PolicyProps{
				PolicyName: jsii.String("keyvend-" + fn + "-state"),
				Roles:      &[]awsiam.IRole{role},
				Document:   awsiam.NewPolicyDocument(&awsiam.PolicyDocumentProps{Statements: toStatements(stateStmts)}),
			})
			k.StatePolicies[fn] = statePolicy
		}
		fnEnv := env[fn]
		var reserved *float64
		if fn == FnReaper {
			// One sweep at a time: EventBridge's retries or a late run
			// never sweep alongside another (both would repair, re-key
			// and delete the same users).
			reserved = jsii.Number(1)
		}
		k.Functions[fn] = awslambda.NewFunction(stack, jsii.String(name+"Function"), &awslambda.FunctionProps{
			Description:   jsii.String(descriptions[fn]),
			Runtime:       awslambda.Runtime_PROVIDED_AL2023(),
			Architecture:  awslambda.Architecture_ARM_64(),
			Handler:       jsii.String("bootstrap"),
			Code:          awslambda.Code_FromAsset(jsii.String(assets[fn]), nil),
			MemorySize:    jsii.Number(memoryMB),
			Timeout:       awscdk.Duration_Seconds(jsii.Number(timeouts[fn])),
			Environment:   &fnEnv,
			Role:          role,
			LogGroup:      logs,
			LoggingFormat: awslambda.LoggingFormat_JSON,
			// Active X-Ray tracing: CDK adds xray:PutTraceSegments and
			// xray:PutTelemetryRecords on '*' (they have no resource type)
			// to the role's default policy, and nothing else of X-Ray.
			Tracing:                      awslambda.Tracing_ACTIVE,
			ReservedConcurrentExecutions: reserved,
		})

		if keyPolicy != nil {
			// Not before it may use the key.
			k.Functions[fn].Node().AddDependency(keyPolicy)
		}
		if statePolicy != nil {
			// Nor before it may use the table (and its Denies hold).
			k.Functions[fn].Node().AddDependency(statePolicy)
		}
	}

	// The functions that create secrets and change grants schedule the
	// secrets' rotation with the rotation function (rules' rotate_every):
	// its ARN, and lambda:InvokeFunction on it, which RotateSecret needs
	// of its caller. Set after the functions exist; the rotation function
	// depends on none of them, so no cycle.
	for _, fn := range []string{FnAPI, FnWorker} {
		f, ok := k.Functions[fn]
		if !ok {
			continue
		}
		f.AddEnvironment(jsii.String("KEYVEND_ROTATION_FUNCTION_ARN"), k.Functions[FnRotate].FunctionArn(), nil)
		f.Role().AddToPrincipalPolicy(awsiam.NewPolicyStatement(&awsiam.PolicyStatementProps{
			Sid:       jsii.String("InvokeTheRotationFunctionToScheduleRotation"),
			Effect:    awsiam.Effect_ALLOW,
			Actions:   jsii.Strings("lambda:InvokeFunction"),
			Resources: &[]*string{k.Functions[FnRotate].FunctionArn()},
		}))
	}

	// Secrets Manager invokes the rotation function, for keyvend's secrets
	// in this account only.
	k.Functions[FnRotate].AddPermission(jsii.String("SecretsManagerRotation"), &awslambda.Permission{
		Principal:     awsiam.NewServicePrincipal(jsii.String("secretsmanager.amazonaws.com"), nil),
		Action:        jsii.String("lambda:InvokeFunction"),
		SourceAccount: jsii.String(account),
		SourceArn:     jsii.String(fence.Secrets),
	})

	// The reaper, hourly.
	awsevents.NewRule(stack, jsii.String("ReaperSchedule"), &awsevents.RuleProps{
		Description: jsii.String("keyvend: run the reaper every hour"),
		Schedule:    awsevents.Schedule_Rate(awscdk.Duration_Hours(jsii.Number(1))),
		Targets: &[]awsevents.IRuleTarget{awseventstargets.NewLambdaFunction(k.Functions[FnReaper], &awseventstargets.LambdaFunctionProps{
			RetryAttempts: jsii.Number(2),
		})},
	})

	k.API = newAPI(stack, cfg, k.Functions[FnAPI], k.Functions[FnSlack])

	if cfg.Slack() {
		// Only the Slack function may queue jobs: the worker acts as the
		// Slack user a job names, so a job from anyone else would be an
		// impersonation.
		k.Queue.AddToResourcePolicy(awsiam.NewPolicyStatement(&awsiam.PolicyStatementProps{
			Sid:        jsii.String("OnlyTheSlackFunctionQueuesJobs"),
			Effect:     awsiam.Effect_DENY,
			Principals: &[]awsiam.IPrincipal{awsiam.NewAnyPrincipal()},
			Actions:    jsii.Strings("sqs:SendMessage"),
			Resources:  &[]*string{k.Queue.QueueArn()},
			Conditions: &map[string]any{"ArnNotEquals": map[string]any{"aws:PrincipalArn": k.Roles[FnSlack].RoleArn()}},
		}))
		k.Functions[FnWorker].AddEventSource(awslambdaeventsources.NewSqsEventSource(k.Queue, &awslambdaeventsources.SqsEventSourceProps{
			BatchSize:               jsii.Number(chatopsBatchSize),
			ReportBatchItemFailures: jsii.Bool(true),
			MaxConcurrency:          jsii.Number(2),
		}))
	}

	// Alarms to an encrypted topic.
	alarmsKey := awskms.NewKey(stack, jsii.String("AlarmsKey"), &awskms.KeyProps{
		Description:       jsii.String("keyvend: encrypts the alarm topic"),
		EnableKeyRotation: jsii.Bool(true),
		RemovalPolicy:     awscdk.RemovalPolicy_DESTROY,
	})
	cloudwatch := awsiam.NewServicePrincipal(jsii.String("cloudwatch.amazonaws.com"), nil)
	// Only this account's alarms: without the conditions CloudWatch would
	// use the key for any alarm of any account that targets the topic
	// (the confused-deputy case).
	thisAccountsAlarms := map[string]any{
		"StringEquals": map[string]any{"aws:SourceAccount": account},
		"ArnLike":      map[string]any{"aws:SourceArn": "arn:" + partition + ":cloudwatch:" + region + ":" + account + ":alarm:*"},
	}
	alarmsKey.AddToResourcePolicy(awsiam.NewPolicyStatement(&awsiam.PolicyStatementProps{
		Sid:        jsii.String("CloudWatchAlarmsPublishToTheEncryptedTopic"),
		Principals: &[]awsiam.IPrincipal{cloudwatch},
		Actions:    jsii.Strings("kms:Decrypt", "kms:GenerateDataKey*"),
		Resources:  jsii.Strings("*"),
		Conditions: &thisAccountsAlarms,
	}), nil)
	topic := awssns.NewTopic(stack, jsii.String("AlarmTopic"), &awssns.TopicProps{
		DisplayName: jsii.String("keyvend alarms"),
		MasterKey:   alarmsKey,
		EnforceSSL:  jsii.Bool(true),
	})
	topic.AddToResourcePolicy(awsiam.NewPolicyStatement(&awsiam.PolicyStatementProps{
		Sid:        jsii.String("CloudWatchAlarmsOfThisAccount"),
		Principals: &[]awsiam.IPrincipal{cloudwatch},
		Actions:    jsii.Strings("sns:Publish"),
		Resources:  &[]*string{topic.TopicArn()},
		Conditions: &thisAccountsAlarms,
	}))
	if cfg.AlarmEmail != "" {
		topic.AddSubscription(awssnssubscriptions.NewEmailSubscription(jsii.String(cfg.AlarmEmail), nil))
	} else {
		// Synth and deploy print it; make deploy says it first, too.
		awscdk.Annotations_Of(stack).AddWarningV2(jsii.String("keyvend:noAlarmSubscriber"), jsii.String(
			"no alarmEmail: the alarm topic has no subscriber, so this deployment's alarms (function errors, the reaper "+
				"not running, throttled state-table requests, unauthenticated Slack requests) notify nobody; set "+
				"-c alarmEmail=you@example.com or subscribe "+
				"to the AlarmTopicArn output"), nil)
	}
	action := awscloudwatchactions.NewSnsAction(topic)
	alarm := func(id, description string, metric awscloudwatch.IMetric) {
		a := awscloudwatch.NewAlarm(stack, jsii.String(id), &awscloudwatch.AlarmProps{
			AlarmDescription:   jsii.String(description),
			Metric:             metric,
			Threshold:          jsii.Number(1),
			EvaluationPeriods:  jsii.Number(1),
			ComparisonOperator: awscloudwatch.ComparisonOperator_GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
			TreatMissingData:   awscloudwatch.TreatMissingData_NOT_BREACHING,
		})
		a.AddAlarmAction(action)
	}
	five := &awscloudwatch.MetricOptions{Period: awscdk.Duration_Minutes(jsii.Number(5)), Statistic: jsii.String("Sum")}
	for _, fn := range cfg.DeployedFunctions() {
		alarm(names[fn]+"ErrorsAlarm", "keyvend "+fn+" function: errors in the last 5 minutes", k.Functions[fn].MetricErrors(five))
		alarm(names[fn]+"ThrottlesAlarm", "keyvend "+fn+" function: throttled invocations in the last 5 minutes", k.Functions[fn].MetricThrottles(five))
	}
	alarm("Api5xxAlarm", "keyvend HTTP API: 5xx responses in the last 5 minutes", k.API.MetricServerError(five))
	// Throttled state-table requests fail or slow keyvend's calls (the
	// SDK retries them); on-demand tables throttle on sudden bursts and
	// hot keys.
	alarm("StateTableThrottlesAlarm", "keyvend state table: throttled requests in the last 5 minutes ("+
		strings.Join(stateOperations, ", ")+")", stateThrottles(k.StateTable))
	// The reaper runs hourly (its errors and throttles alarm above); two
	// hourly periods in a row without an invocation mean it stopped
	// running at all (schedule disabled or deleted, function gone).
	// Missing data counts: a function that is never invoked reports
	// nothing.
	awscloudwatch.NewAlarm(stack, jsii.String("ReaperNotRunAlarm"), &awscloudwatch.AlarmProps{
		AlarmDescription: jsii.String("keyvend reaper: not invoked for 2 hours (it runs hourly): expired users are not being removed"),
		Metric: k.Functions[FnReaper].MetricInvocations(&awscloudwatch.MetricOptions{
			Period: awscdk.Duration_Hours(jsii.Number(1)), Statistic: jsii.String("Sum")}),
		Threshold:          jsii.Number(1),
		EvaluationPeriods:  jsii.Number(2),
		DatapointsToAlarm:  jsii.Number(2),
		ComparisonOperator: awscloudwatch.ComparisonOperator_LESS_THAN_THRESHOLD,
		TreatMissingData:   awscloudwatch.TreatMissingData_BREACHING,
	}).AddAlarmAction(action)
	if cfg.Slack() {
		// Unsigned or badly signed requests to the route without an
		// authorizer: the slack function's audit line of each has
		// "result":"unauthenticated" (pkg/chatops; JSON, one object per
		// line). Slack itself never sends them, so 20 in 5 minutes is
		// someone probing.
		unauthenticated := awslogs.NewMetricFilter(stack, jsii.String("SlackUnauthenticatedFilter"), &awslogs.MetricFilterProps{
			LogGroup:        logGroups[FnSlack],
			FilterPattern:   awslogs.FilterPattern_Literal(jsii.String(SlackUnauthenticatedPattern)),
			MetricNamespace: jsii.String("keyvend/" + cfg.StackName),
			MetricName:      jsii.String("SlackUnauthenticated"),
			MetricValue:     jsii.String("1"),
		})
		awscloudwatch.NewAlarm(stack, jsii.String("SlackUnauthenticatedAlarm"), &awscloudwatch.AlarmProps{
			AlarmDescription: jsii.String("keyvend Slack command: 20 or more requests without a valid Slack signature in 5 minutes (" +
				chatops.Path + " and " + chatops.InteractivePath + " have no authorizer; Slack's own requests are signed)"),
			Metric:             unauthenticated.Metric(five),
			Threshold:          jsii.Number(20),
			EvaluationPeriods:  jsii.Number(1),
			ComparisonOperator: awscloudwatch.ComparisonOperator_GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
			TreatMissingData:   awscloudwatch.TreatMissingData_NOT_BREACHING,
		}).AddAlarmAction(action)
		alarm("ChatopsDeadLetterAlarm", "keyvend Slack command: a job failed "+strconv.Itoa(chatopsMaxReceives)+" times and is in the dead-letter queue (the user was told)",
			k.DeadLetterQueue.MetricApproximateNumberOfMessagesVisible(&awscloudwatch.MetricOptions{Period: awscdk.Duration_Minutes(jsii.Number(5)), Statistic: jsii.String("Maximum")}))
	}

	awscdk.NewCfnOutput(stack, jsii.String("ApiUrl"), &awscdk.CfnOutputProps{Value: k.API.ApiEndpoint(), Description: jsii.String("Base URL; routes are under /v1/")})
	awscdk.NewCfnOutput(stack, jsii.String("BoundaryArn"), &awscdk.CfnOutputProps{Value: k.Boundary.ManagedPolicyArn()})
	awscdk.NewCfnOutput(stack, jsii.String("SecretsKeyArn"), &awscdk.CfnOutputProps{Value: secretsKey.KeyArn(),
		Description: jsii.String("Encrypts the user secrets; its key policy lets only keyvend's functions and the secretReaders context decrypt")})
	awscdk.NewCfnOutput(stack, jsii.String("StateTableName"), &awscdk.CfnOutputProps{Value: k.StateTable.TableName(),
		Description: jsii.String("keyvend's state table (KEYVEND_TABLE); retained with its key when the stack is deleted")})
	awscdk.NewCfnOutput(stack, jsii.String("StateKeyArn"), &awscdk.CfnOutputProps{Value: k.StateKey.KeyArn(),
		Description: jsii.String("Encrypts the state table; needed to restore it (docs/deploy.md)")})
	awscdk.NewCfnOutput(stack, jsii.String("RotateFunctionArn"), &awscdk.CfnOutputProps{Value: k.Functions[FnRotate].FunctionArn(), Description: jsii.String("For aws secretsmanager rotate-secret --rotation-lambda-arn")})
	awscdk.NewCfnOutput(stack, jsii.String("AlarmTopicArn"), &awscdk.CfnOutputProps{Value: topic.TopicArn()})
	if cfg.Slack() {
		awscdk.NewCfnOutput(stack, jsii.String("SlackCommandUrl"), &awscdk.CfnOutputProps{
			Value:       awscdk.Fn_Join(jsii.String(""), &[]*string{k.API.ApiEndpoint(), jsii.String(chatops.Path)}),
			Description: jsii.String("The Request URL of the Slack app's slash command"),
		})
		awscdk.NewCfnOutput(stack, jsii.String("SlackInteractivityUrl"), &awscdk.CfnOutputProps{
			Value:       awscdk.Fn_Join(jsii.String(""), &[]*string{k.API.ApiEndpoint(), jsii.String(chatops.InteractivePath)}),
			Description: jsii.String("The Request URL of the Slack app's interactivity (the Approve / Deny buttons)"),
		})
		awscdk.NewCfnOutput(stack, jsii.String("ChatopsDeadLetterQueueUrl"), &awscdk.CfnOutputProps{Value: k.DeadLetterQueue.QueueUrl(),
			Description: jsii.String("Slack jobs that failed every attempt, for inspection")})
	}

	suppressNagFindings(k, cfg)
	return k, nil
}

// SlackPaths are the Slack function's routes (POST, no authorizer): the
// slash command and the interactivity endpoint.
var SlackPaths = []string{chatops.Path, chatops.InteractivePath}

// SlackUnauthenticatedPattern selects the slack function's audit lines of
// requests without a valid Slack signature, on either route.
const SlackUnauthenticatedPattern = `{ (($.action = "chatops.slack") || ($.action = "chatops.slack.interactive")) && ($.result = "unauthenticated") }`

// newAPI is the HTTP API: every route of the handler, each behind the IAM
// authorizer (or JWT, when configured), an explicit $default stage with
// throttling and access logs. With slack (the Slack function), also the
// Slack command's route, without an authorizer: Slack cannot sign SigV4 or
// carry a JWT, and an authorizer never sees the body, so the function
// verifies Slack's signature over the body itself.
func newAPI(stack awscdk.Stack, cfg Config, fn, slack awslambda.Function) awsapigatewayv2.HttpApi {
	props := &awsapigatewayv2.HttpApiProps{
		ApiName:            jsii.String(cfg.StackName),
		Description:        jsii.String("keyvend: vends bucket-scoped IAM users"),
		CreateDefaultStage: jsii.Bool(false),
	}
	if len(cfg.CORSOrigins) > 0 {
		// Preflights carry no credentials, so no authorizer would pass
		// them: API Gateway answers them, with the handler's CORS settings.
		props.CorsPreflight = &awsapigatewayv2.CorsPreflightOptions{
			AllowOrigins:  jsii.Strings(cfg.CORSOrigins...),
			AllowMethods:  &[]awsapigatewayv2.CorsHttpMethod{awsapigatewayv2.CorsHttpMethod_GET, awsapigatewayv2.CorsHttpMethod_POST, awsapigatewayv2.CorsHttpMethod_PUT, awsapigatewayv2.CorsHttpMethod_DELETE},
			AllowHeaders:  jsii.Strings("Authorization", "Content-Type", "If-Match", "Idempotency-Key", "X-Amz-Date", "X-Amz-Security-Token", "X-Amz-Content-Sha256"),
			ExposeHeaders: jsii.Strings("X-Request-Id", "Retry-After", "Location", "ETag", "Idempotency-Replayed", "Allow"),
			MaxAge:        awscdk.Duration_Seconds(jsii.Number(600)),
		}
	}
	api := awsapigatewayv2.NewHttpApi(stack, jsii.String("HttpApi"), props)
	var auth awsapigatewayv2.IHttpRouteAuthorizer = awsapigatewayv2authorizers.NewHttpIamAuthorizer()
	if cfg.JWT() {
		auth = awsapigatewayv2authorizers.NewHttpJwtAuthorizer(jsii.String("JwtAuthorizer"), jsii.String(cfg.JWTIssuer), &awsapigatewayv2authorizers.HttpJwtAuthorizerProps{
			JwtAudience: jsii.Strings(cfg.JWTAudience...),
		})
	}
	integration := awsapigatewayv2integrations.NewHttpLambdaIntegration(jsii.String("ApiIntegration"), fn, &awsapigatewayv2integrations.HttpLambdaIntegrationProps{
		PayloadFormatVersion: awsapigatewayv2.PayloadFormatVersion_VERSION_2_0(),
	})
	for _, route := range httpapi.Routes() {
		api.AddRoutes(&awsapigatewayv2.AddRoutesOptions{
			Path:        jsii.String(route.Path),
			Methods:     &[]awsapigatewayv2.HttpMethod{awsapigatewayv2.HttpMethod(route.Method)},
			Integration: integration,
			Authorizer:  auth,
		})
	}
	var slackRoutes []awsapigatewayv2.HttpRoute
	if slack != nil {
		// The slash command and the interactivity endpoint (the Approve /
		// Deny buttons): one integration, the same function, the same
		// verification of Slack's signature.
		integration := awsapigatewayv2integrations.NewHttpLambdaIntegration(jsii.String("SlackIntegration"), slack, &awsapigatewayv2integrations.HttpLambdaIntegrationProps{
			PayloadFormatVersion: awsapigatewayv2.PayloadFormatVersion_VERSION_2_0(),
		})
		for _, path := range SlackPaths {
			slackRoutes = append(slackRoutes, *api.AddRoutes(&awsapigatewayv2.AddRoutesOptions{
				Path:        jsii.String(path),
				Methods:     &[]awsapigatewayv2.HttpMethod{awsapigatewayv2.HttpMethod_POST},
				Integration: integration,
				Authorizer:  awsapigatewayv2.NewHttpNoneAuthorizer(),
			})...)
		}
	}

	accessLogs := awslogs.NewLogGroup(stack, jsii.String("ApiAccessLogs"), &awslogs.LogGroupProps{
		Retention:     retentions[cfg.LogRetentionDays],
		RemovalPolicy: awscdk.RemovalPolicy_RETAIN,
	})
	principal := "$context.identity.userArn"
	if cfg.JWT() {
		claim := cfg.JWTPrincipalClaim
		if claim == "" {
			claim = "sub"
		}
		principal = "$context.authorizer.claims." + claim
	}
	format := `{"requestId":"$context.requestId","ip":"$context.identity.sourceIp","requestTime":"$context.requestTime",` +
		`"routeKey":"$context.routeKey","status":"$context.status","protocol":"$context.protocol",` +
		`"responseLength":"$context.responseLength","latencyMs":"$context.responseLatency",` +
		`"principal":"` + principal + `","authorizerError":"$context.authorizer.error",` +
		`"integrationError":"$context.integrationErrorMessage","userAgent":"$context.identity.userAgent"}`
	stage := awsapigatewayv2.NewHttpStage(stack, jsii.String("DefaultStage"), &awsapigatewayv2.HttpStageProps{
		HttpApi:    api,
		StageName:  jsii.String("$default"),
		AutoDeploy: jsii.Bool(true),
		Throttle: &awsapigatewayv2.ThrottleSettings{
			RateLimit:  jsii.Number(cfg.ThrottleRate),
			BurstLimit: jsii.Number(cfg.ThrottleBurst),
		},
		AccessLogSettings: &accessLogSettings{
			destination: awsapigatewayv2.NewLogGroupLogDestination(accessLogs),
			format:      awsapigateway.AccessLogFormat_Custom(jsii.String(format)),
		},
	})
	if len(slackRoutes) > 0 {
		// The Slack route has no authorizer: its own, lower throttle keeps
		// a flood of unsigned requests (each costs a Lambda invocation
		// before it is refused) from spending the stage's budget. A route
		// setting names an existing route: the stage waits for it.
		settings := map[string]any{}
		for _, path := range SlackPaths {
			settings["POST "+path] = map[string]any{
				"ThrottlingRateLimit":  cfg.SlackThrottleRate,
				"ThrottlingBurstLimit": cfg.SlackThrottleBurst,
			}
		}
		stage.Node().DefaultChild().(awsapigatewayv2.CfnStage).AddPropertyOverride(jsii.String("RouteSettings"), settings)
		for _, r := range slackRoutes {
			stage.Node().AddDependency(r)
		}
	}
	return api
}

// accessLogSettings implements awsapigatewayv2.IAccessLogSettings.
type accessLogSettings struct {
	destination awsapigatewayv2.IAccessLogDestination
	format      awsapigateway.AccessLogFormat
}

func (a *accessLogSettings) Destination() awsapigatewayv2.IAccessLogDestination { return a.destination }
func (a *accessLogSettings) Format() awsapigateway.AccessLogFormat              { return a.format }

// usesRules are the functions that decide with the rules file.
var usesRules = map[string]bool{FnAPI: true, FnSlack: true, FnWorker: true}

// stageBundle copies fn's bootstrap and the rules file into
// <dist>/.bundle/<fn>, the function's asset: the function reads the rules
// at RulesPathInLambda.
func stageBundle(cfg Config, fn string) (string, error) {
	dir := filepath.Join(cfg.DistDir, ".bundle", fn)
	if err := os.RemoveAll(dir); err != nil {
		return "", err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	if err := copyFile(filepath.Join(cfg.DistDir, fn, "bootstrap"), filepath.Join(dir, "bootstrap"), 0o755); err != nil {
		return "", err
	}
	if err := copyFile(cfg.RulesFile, filepath.Join(dir, filepath.Base(RulesPathInLambda)), 0o644); err != nil {
		return "", err
	}
	return dir, nil
}

func copyFile(from, to string, mode os.FileMode) (err error) {
	in, err := os.Open(from)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(to, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, mode)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, out.Close()) }()
	_, err = io.Copy(out, in)
	return err
}

// withEnv merges environments; later ones win.
func withEnv(envs ...map[string]*string) map[string]*string {
	out := map[string]*string{}
	for _, e := range envs {
		for k, v := range e {
			out[k] = v
		}
	}
	return out
}

// keyAdminActions are what the account (its IAM administrators, and
// CloudFormation deploying this stack) may do with the secrets key:
// administer it, never use it (no Decrypt, Encrypt, GenerateDataKey*,
// ReEncrypt* or CreateGrant). An administrator who rewrites the key
// policy to read secrets does so in CloudTrail. The state key's policy
// has them too, and lets the account use that key through DynamoDB
// (newStateTable).
var keyAdminActions = []string{
	"kms:DescribeKey", "kms:GetKeyPolicy", "kms:PutKeyPolicy", "kms:ListKeyPolicies",
	"kms:GetKeyRotationStatus", "kms:EnableKeyRotation", "kms:DisableKeyRotation", "kms:RotateKeyOnDemand", "kms:ListKeyRotations",
	"kms:EnableKey", "kms:DisableKey", "kms:ScheduleKeyDeletion", "kms:CancelKeyDeletion",
	"kms:UpdateKeyDescription", "kms:TagResource", "kms:UntagResource", "kms:ListResourceTags",
	"kms:CreateAlias", "kms:UpdateAlias", "kms:DeleteAlias",
	"kms:ListGrants", "kms:RevokeGrant",
}

// splitByResource separates the statements that name any of resources
// from the others.
func splitByResource(stmts []Stmt, resources ...string) (others, naming []Stmt) {
	names := func(s Stmt) bool {
		for _, r := range resources {
			if slices.Contains(s.Resources, r) || slices.Contains(s.NotResources, r) {
				return true
			}
		}
		return false
	}
	for _, s := range stmts {
		if names(s) {
			naming = append(naming, s)
		} else {
			others = append(others, s)
		}
	}
	return others, naming
}

func toStatements(stmts []Stmt) *[]awsiam.PolicyStatement {
	out := make([]awsiam.PolicyStatement, 0, len(stmts))
	for _, s := range stmts {
		effect := awsiam.Effect_ALLOW
		if s.Effect == "Deny" {
			effect = awsiam.Effect_DENY
		}
		props := &awsiam.PolicyStatementProps{
			Sid:     jsii.String(s.Sid),
			Effect:  effect,
			Actions: jsii.Strings(s.Actions...),
		}
		if len(s.NotResources) > 0 {
			props.NotResources = jsii.Strings(s.NotResources...)
		} else {
			props.Resources = jsii.Strings(s.Resources...)
		}
		if len(s.Conditions) > 0 {
			c := map[string]any{}
			for op, kv := range s.Conditions {
				c[op] = kv
			}
			props.Conditions = &c
		}
		out = append(out, awsiam.NewPolicyStatement(props))
	}
	return &out
}
