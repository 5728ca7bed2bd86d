package main

import (
	"strings"

	"github.com/aws/aws-cdk-go/awscdk/v2"
	"github.com/aws/constructs-go/constructs/v10"
	"github.com/aws/jsii-runtime-go"
	"github.com/cdklabs/cdk-nag-go/cdknag/v2"

	"github.com/keyvend/keyvend/pkg/chatops"
)

// slackRouteID is the construct id CDK gives the Slack command's route,
// slackInteractiveRouteID the interactivity endpoint's.
const (
	slackRouteID            = "POST--v1--chatops--slack"
	slackInteractiveRouteID = "POST--v1--chatops--slack--interactive"
)

// NagSuppression is one accepted cdk-nag finding on one construct.
type NagSuppression struct {
	Construct string   // construct path in the stack, e.g. ApiRole or HttpApi/POST--v1--chatops--slack
	Rule      string   // e.g. AwsSolutions-IAM5
	AppliesTo []string // the exact findings ("Resource::…", "Action::…")
	Reason    string
}

// NagSuppressions lists, with a reason specific to keyvend, each
// AwsSolutions finding the design accepts. Everything else cdk-nag reports
// fails `cdk synth`. Only AwsSolutions-IAM5 (wildcards in IAM policies) is
// suppressed, only for the exact resources named, and, when the Slack
// command is deployed, AwsSolutions-APIG4 on its one route.
func NagSuppressions(k *Keyvend, cfg Config) []NagSuppression {
	cfnIAM := func(resource string) string {
		return "Resource::arn:<AWS::Partition>:iam::<AWS::AccountId>:" + resource
	}
	users := func(fn string) NagSuppression {
		reason := "keyvend creates users whose names callers choose, so no fixed ARN exists; per AWS's guidance for delegating " +
			"user administration the fence is the path (every vended user lives under " + cfg.UserPath + ")"
		switch fn {
		case FnAPI, FnWorker:
			reason += ", CreateUser (and, in grant mode policy, PutUserPolicy) is allowed only with iam:PermissionsBoundary " +
				"equal to the keyvend boundary, TagUser only with keyvend:* tag keys, and explicit Denies keep the boundary on " +
				"and unedited and credentials and permissions away from users outside the path or without the boundary"
			if fn == FnWorker {
				reason += "; the worker runs queued Slack commands through the api's code, so it has the api's fence"
			}
		case FnSlack:
			reason += "; the Slack function only reads a user (GetUser, ListGroupsForUser, GetUserPolicy) to precheck rotate, " +
				"status and delete against the rules before queueing, and can change nothing"
		case FnReaper:
			reason += "; the reaper cannot create users, only read, re-key and delete vended ones, and explicit Denies keep " +
				"the boundary on and unedited"
		case FnRotate:
			reason += "; the rotation function only reads users and creates and deletes their access keys, and explicit " +
				"Denies keep the boundary on and unedited"
		}
		return NagSuppression{Rule: "AwsSolutions-IAM5", AppliesTo: []string{cfnIAM("user" + cfg.UserPath + "*")}, Reason: reason}
	}
	groups := NagSuppression{Rule: "AwsSolutions-IAM5", AppliesTo: []string{cfnIAM("group" + cfg.UserPath + "*")},
		Reason: "keyvend's grant groups (keyvend_<access>_<bucket>[_hash], one per grant) are named by the grants, so no fixed " +
			"ARN exists: in grant mode group keyvend creates them on demand and adds vended users; in both modes it reads them, " +
			"takes users out and deletes a group its last member left (users vended in group mode). Groups have no " +
			"permissions boundary, so per AWS's guidance they are fenced by the " + cfg.UserPath + " path, with explicit Denies " +
			"of every group write outside it and, in grant mode policy, of every group grant"}
	locks := NagSuppression{Rule: "AwsSolutions-IAM5", AppliesTo: []string{cfnIAM("group" + cfg.UserPath + "locks/*")},
		Reason: "the repair lock of a user is a group named keyvend-lock_<user> under " + cfg.UserPath + "locks/, created, read and " +
			"deleted as a cross-process lock (pkg/provision/repair.go); an explicit Deny keeps any policy or member off it"}
	secrets := NagSuppression{Rule: "AwsSolutions-IAM5",
		AppliesTo: []string{"Resource::arn:<AWS::Partition>:secretsmanager:<AWS::Region>:<AWS::AccountId>:secret:" + cfg.SecretPrefix + "*"},
		Reason: "one secret per vended user, named " + cfg.SecretPrefix + "<user>; Secrets Manager appends a random suffix " +
			"to every secret ARN, so a name-prefix wildcard is the narrowest resource that names them"}
	xray := "xray:PutTraceSegments and xray:PutTelemetryRecords (added by CDK for active tracing) are allowed on '*': the " +
		"IAM Service Authorization Reference lists no resource type for them; they only send this function's traces to X-Ray"
	listUsers := NagSuppression{Rule: "AwsSolutions-IAM5", AppliesTo: []string{"Resource::*"},
		Reason: "only iam:ListUsers and X-Ray's trace upload are allowed on '*'. iam:ListUsers (statement " +
			"ListUsersHasNoResourceType) has no resource type in the IAM Service Authorization Reference, so it cannot be " +
			"scoped; it returns names and paths only, and keyvend always sends PathPrefix=" + cfg.UserPath + ". " + xray +
			". The Deny statements on '*' are denies, not grants"}
	listUsersAndSecrets := listUsers
	listUsersAndSecrets.Reason = "only iam:ListUsers, secretsmanager:ListSecrets and X-Ray's trace upload are allowed on '*'. " +
		"iam:ListUsers (statement ListUsersHasNoResourceType) has no resource type in the IAM Service Authorization " +
		"Reference, so it cannot be scoped; it returns names and paths only, and keyvend always sends PathPrefix=" +
		cfg.UserPath + ". secretsmanager:ListSecrets (statement ListSecretsHasNoResourceType) has no resource type either; " +
		"it returns secrets' metadata, never their values, and the reaper's DeleteSecret and every other secret action " +
		"stay on " + cfg.SecretPrefix + "*. " + xray + ". The Deny statements on '*' are denies, not grants"
	traceOnly := NagSuppression{Rule: "AwsSolutions-IAM5", AppliesTo: []string{"Resource::*"},
		Reason: "keyvend's only Allow on '*' for this function: " + xray + ". The Deny statements on '*' are denies, not grants"}

	readGroups := NagSuppression{Rule: "AwsSolutions-IAM5", AppliesTo: []string{cfnIAM("group" + cfg.UserPath + "*")},
		Reason: "the Slack function reads the inline policy of a user's grant groups (iam:GetGroupPolicy only) to learn the " +
			"grants of users vended in keyvend's grant mode group, which the rules decide on; the groups are named by the " +
			"grants under " + cfg.UserPath + ", so no fixed ARN exists"}

	tableID := *k.Stack.GetLogicalId(k.StateTable.Node().DefaultChild().(awscdk.CfnElement))
	indexes := NagSuppression{Rule: "AwsSolutions-IAM5", AppliesTo: []string{"Resource::<" + tableID + ".Arn>/index/*"},
		Reason: "dynamodb:Query (the only action allowed there) on the indexes of keyvend's own state table: by-name and " +
			"by-requester for listing a bucket's users, by-expiry for the reaper's sweep (pkg/state). An index ARN is the " +
			"table's ARN plus /index/<name>, and the table's name is CloudFormation's, so table/<name>/index/* is the " +
			"narrowest pattern that names exactly this table's indexes and nothing else"}

	var out []NagSuppression
	for _, fn := range cfg.DeployedFunctions() {
		if p, ok := k.StatePolicies[fn]; ok && stateQueries[fn] {
			s := indexes
			s.Construct = *p.Node().Id()
			out = append(out, s)
		}
		id := *k.Roles[fn].Node().Id()
		var sups []NagSuppression
		switch fn {
		case FnAPI, FnWorker:
			sups = []NagSuppression{users(fn), secrets, groups, locks, listUsers}
		case FnReaper:
			sups = []NagSuppression{users(fn), secrets, groups, locks, listUsersAndSecrets}
		case FnRotate:
			sups = []NagSuppression{users(fn), secrets, traceOnly}
		case FnSlack:
			sups = []NagSuppression{users(fn), readGroups, traceOnly}
		}
		for _, s := range sups {
			s.Construct = id
			out = append(out, s)
		}
	}
	if cfg.Slack() {
		out = append(out, NagSuppression{Construct: *k.API.Node().Id() + "/" + slackInteractiveRouteID, Rule: "AwsSolutions-APIG4",
			Reason: "POST " + chatops.InteractivePath + " is keyvend's Slack interactivity endpoint (the Approve / Deny buttons): " +
				"Slack signs it exactly as the slash command, so the slack function verifies it the same way (v0 HMAC-SHA256 of " +
				"the raw body, a 5-minute timestamp window, the replay cache; 401 otherwise) and decides as the clicking Slack " +
				"user, whom the rules must name as an approver"})
		out = append(out, NagSuppression{Construct: *k.API.Node().Id() + "/" + slackRouteID, Rule: "AwsSolutions-APIG4",
			Reason: "POST " + chatops.Path + " is keyvend's Slack slash command: Slack cannot sign requests with SigV4 or send a " +
				"JWT, and an API Gateway authorizer never sees the body that Slack signs, so the slack function authenticates " +
				"every request itself: Slack's v0 HMAC-SHA256 signature of the raw body with the signing secret from Secrets " +
				"Manager, a 5-minute timestamp window and a replay cache; unsigned requests get 401 before any other work. " +
				"Every other route keeps the IAM or JWT authorizer"})
	}
	var wild []string
	for _, s := range k.BoundaryStatements {
		if s.Effect != "Allow" {
			continue
		}
		for _, a := range s.Actions {
			if strings.Contains(a, "*") {
				wild = append(wild, "Action::"+a)
			}
		}
		for _, r := range s.Resources {
			if strings.Contains(r, "*") {
				// cdk-nag names the partition pseudo parameter so.
				wild = append(wild, "Resource::"+strings.ReplaceAll(r, *awscdk.Aws_PARTITION(), "<AWS::Partition>"))
			}
		}
	}
	if len(wild) > 0 {
		out = append(out, NagSuppression{Construct: *k.Boundary.Node().Id(), Rule: "AwsSolutions-IAM5", AppliesTo: dedupe(wild),
			Reason: "the permissions boundary is derived from the rules file: each bucket pattern a rule may grant becomes " +
				"arn:<partition>:s3:::<pattern> (the bucket actions of its access levels) and arn:<partition>:s3:::<pattern>/* " +
				"(the object actions); s3:* appears only on the objects of rules that grant 'full' access, the bucket's " +
				"configuration is only read (s3:GetBucket*, s3:Get*Configuration), and an explicit Deny of bucket " +
				"administration on '*' keeps every vended key from changing a bucket; the grant policies themselves name exact buckets"})
	}
	return out
}

// suppressNagFindings applies NagSuppressions.
func suppressNagFindings(k *Keyvend, cfg Config) {
	for _, s := range NagSuppressions(k, cfg) {
		var c constructs.IConstruct = k.Stack
		for _, id := range strings.Split(s.Construct, "/") {
			c = c.Node().FindChild(jsii.String(id))
		}
		sup := &cdknag.NagPackSuppression{Id: jsii.String(s.Rule), Reason: jsii.String(s.Reason)}
		if len(s.AppliesTo) > 0 { // granular findings; a rule without them (APIG4) is suppressed whole
			applies := make([]interface{}, len(s.AppliesTo))
			for i, a := range s.AppliesTo {
				applies[i] = a
			}
			sup.AppliesTo = &applies
		}
		cdknag.NagSuppressions_AddResourceSuppressions(c, &[]*cdknag.NagPackSuppression{sup}, jsii.Bool(true))
	}
}

func dedupe(in []string) []string {
	seen := map[string]bool{}
	var out []string
	for _, s := range in {
		if !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	return out
}
