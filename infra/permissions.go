package main

// Fence names the resources a function role may touch. The values are ARN
// strings (with CloudFormation tokens for partition, account, region and
// the stack's own resources).
type Fence struct {
	Users    string // arn:…:iam::<account>:user/keyvend/*
	Groups   string // arn:…:iam::<account>:group/keyvend/* (grant groups and locks)
	Locks    string // arn:…:iam::<account>:group/keyvend/locks/*
	Secrets  string // arn:…:secretsmanager:<region>:<account>:secret:keyvend/users/*
	Boundary string // ARN of the permissions boundary policy
	Key      string // ARN of the KMS key of the secrets
	Region   string // for kms:ViaService
	LogGroup string // ARN of the function's log group

	// The Slack command's parts (empty when it is not deployed).
	SigningSecret string // ARN of the Secrets Manager secret holding the Slack signing secret
	Queue         string // ARN of the job queue
}

// The functions and what each one calls (see pkg/provision, pkg/rotation,
// pkg/chatops).
const (
	FnAPI    = "api"
	FnReaper = "reaper"
	FnRotate = "rotate"
	FnSlack  = "slack"  // the Slack command's endpoint: verifies, prechecks (reads only), queues
	FnWorker = "worker" // runs queued Slack commands: provisions like the api
)

// Functions lists the Lambda functions every stack has, in a stable order.
var Functions = []string{FnAPI, FnReaper, FnRotate}

// ChatopsFunctions are the Slack command's functions, deployed when the
// slackSigningSecretArn context is set.
var ChatopsFunctions = []string{FnSlack, FnWorker}

// AllFunctions is every function keyvend can deploy.
var AllFunctions = append(append([]string{}, Functions...), ChatopsFunctions...)

// userActions are the IAM user actions each function calls, all on
// user/keyvend/*. CreateUser, TagUser and the user-policy cleanup have
// their own conditioned statements.
var userActions = map[string][]string{
	FnAPI: {
		"iam:GetUser", "iam:DeleteUser", "iam:ListUserTags",
		"iam:CreateAccessKey", "iam:DeleteAccessKey", "iam:ListAccessKeys",
		"iam:ListGroupsForUser", "iam:ListUserPolicies", "iam:ListAttachedUserPolicies",
	},
	FnReaper: {
		"iam:GetUser", "iam:DeleteUser", "iam:ListUserTags",
		"iam:CreateAccessKey", "iam:DeleteAccessKey", "iam:ListAccessKeys",
		"iam:ListGroupsForUser", "iam:ListUserPolicies", "iam:ListAttachedUserPolicies",
	},
	FnRotate: {"iam:GetUser", "iam:CreateAccessKey", "iam:DeleteAccessKey", "iam:ListAccessKeys"},
}

func init() {
	// The worker performs the api's operations, through the same code.
	userActions[FnWorker] = userActions[FnAPI]
	secretActions[FnWorker] = secretActions[FnAPI]
}

// secretActions are the Secrets Manager actions each function calls, all on
// secret:<prefix>*. The reaper can re-create a secret when it restocks a
// user's key (provision.putKey falls back to storeKey).
var secretActions = map[string][]string{
	FnAPI: {
		"secretsmanager:CreateSecret", "secretsmanager:DescribeSecret", "secretsmanager:GetSecretValue",
		"secretsmanager:PutSecretValue", "secretsmanager:DeleteSecret", "secretsmanager:RestoreSecret",
		"secretsmanager:TagResource",
	},
	FnReaper: {
		"secretsmanager:CreateSecret", "secretsmanager:DescribeSecret", "secretsmanager:GetSecretValue",
		"secretsmanager:PutSecretValue", "secretsmanager:DeleteSecret", "secretsmanager:RestoreSecret",
		"secretsmanager:TagResource",
	},
	FnRotate: {
		"secretsmanager:DescribeSecret", "secretsmanager:GetSecretValue",
		"secretsmanager:PutSecretValue", "secretsmanager:UpdateSecretVersionStage",
	},
}

// escalationActions are denied to every function whatever else a future
// change allows: each one is a known path from "can manage some IAM users"
// to "can act as someone more powerful". keyvend calls none of them.
var escalationActions = []string{
	"iam:PassRole", "iam:CreateRole", "iam:UpdateAssumeRolePolicy",
	"iam:PutRolePolicy", "iam:AttachRolePolicy", "iam:PutRolePermissionsBoundary",
	"iam:CreatePolicy", "iam:AttachUserPolicy", "iam:PutUserPolicy", "iam:AttachGroupPolicy",
	"iam:CreateLoginProfile", "iam:UpdateLoginProfile", "iam:UpdateUser", "iam:UpdateGroup",
	"sts:AssumeRole",
}

// ProvisionerStatements is the inline policy of function fn's role, fenced
// per AWS's guidance for delegating user administration: users only under
// the keyvend path and only with the boundary, groups only under the
// keyvend path (groups have no boundary), the boundary itself untouchable.
func ProvisionerStatements(fn string, f Fence) []Stmt {
	var s []Stmt
	add := func(st Stmt) { s = append(s, st) }
	withBoundary := map[string]map[string]any{"StringEquals": {"iam:PermissionsBoundary": f.Boundary}}

	switch fn {
	case FnAPI, FnWorker:
		add(Stmt{Sid: "CreateUsersOnlyWithTheBoundary", Effect: "Allow",
			Actions: []string{"iam:CreateUser"}, Resources: []string{f.Users}, Conditions: withBoundary})
		add(Stmt{Sid: "TagUsersOnlyWithKeyvendTags", Effect: "Allow",
			Actions: []string{"iam:TagUser"}, Resources: []string{f.Users},
			Conditions: map[string]map[string]any{"ForAllValues:StringLike": {"aws:TagKeys": "keyvend:*"}}})
	}
	add(Stmt{Sid: "ManageKeyvendUsers", Effect: "Allow", Actions: userActions[fn], Resources: []string{f.Users}})
	if fn == FnAPI || fn == FnWorker || fn == FnReaper {
		add(Stmt{Sid: "CleanPoliciesOnlyOfBoundedUsers", Effect: "Allow",
			Actions: []string{"iam:DeleteUserPolicy", "iam:DetachUserPolicy"}, Resources: []string{f.Users}, Conditions: withBoundary})
		add(Stmt{Sid: "ListUsersHasNoResourceType", Effect: "Allow", Actions: []string{"iam:ListUsers"}, Resources: []string{"*"}})
	}
	switch fn {
	case FnAPI, FnWorker:
		add(Stmt{Sid: "ManageKeyvendGroups", Effect: "Allow",
			Actions: []string{"iam:CreateGroup", "iam:GetGroup", "iam:PutGroupPolicy", "iam:GetGroupPolicy",
				"iam:AddUserToGroup", "iam:RemoveUserFromGroup"},
			Resources: []string{f.Groups}})
		add(Stmt{Sid: "ReleaseRepairLocks", Effect: "Allow", Actions: []string{"iam:DeleteGroup"}, Resources: []string{f.Locks}})
	case FnReaper:
		add(Stmt{Sid: "LeaveKeyvendGroups", Effect: "Allow", Actions: []string{"iam:RemoveUserFromGroup"}, Resources: []string{f.Groups}})
		add(Stmt{Sid: "RepairLocks", Effect: "Allow",
			Actions: []string{"iam:CreateGroup", "iam:GetGroup", "iam:DeleteGroup"}, Resources: []string{f.Locks}})
	}
	add(Stmt{Sid: "UserSecrets", Effect: "Allow", Actions: secretActions[fn], Resources: []string{f.Secrets}})
	add(Stmt{Sid: "SecretsKeyThroughSecretsManager", Effect: "Allow",
		Actions: []string{"kms:Decrypt", "kms:GenerateDataKey"}, Resources: []string{f.Key},
		Conditions: map[string]map[string]any{"StringEquals": {"kms:ViaService": "secretsmanager." + f.Region + ".amazonaws.com"}}})
	add(Stmt{Sid: "WriteOwnLogs", Effect: "Allow",
		Actions: []string{"logs:CreateLogStream", "logs:PutLogEvents"}, Resources: []string{f.LogGroup}})
	return append(s, denyStatements(f)...)
}

// SlackStatements is the inline policy of the Slack function's role. It
// verifies and queues; the only AWS state it reads is the signing secret
// and, for the prechecks of rotate, status and delete, a vended user and
// the policies of its grant groups (to know its grants). It cannot change
// anything in IAM or Secrets Manager, nor read any user's secret.
func SlackStatements(f Fence) []Stmt {
	s := []Stmt{
		{Sid: "ReadTheSlackSigningSecret", Effect: "Allow", Actions: []string{"secretsmanager:GetSecretValue"}, Resources: []string{f.SigningSecret}},
		{Sid: "QueueJobs", Effect: "Allow", Actions: []string{"sqs:SendMessage"}, Resources: []string{f.Queue}},
		{Sid: "PrecheckReadsKeyvendUsers", Effect: "Allow", Actions: []string{"iam:GetUser", "iam:ListGroupsForUser"}, Resources: []string{f.Users}},
		{Sid: "PrecheckReadsGrantGroupPolicies", Effect: "Allow", Actions: []string{"iam:GetGroupPolicy"}, Resources: []string{f.Groups}},
		{Sid: "WriteOwnLogs", Effect: "Allow", Actions: []string{"logs:CreateLogStream", "logs:PutLogEvents"}, Resources: []string{f.LogGroup}},
	}
	return append(s, denyStatements(f)...)
}

// denyStatements are in every role: they hold even if someone later
// attaches a broad policy to it.
func denyStatements(f Fence) []Stmt {
	var s []Stmt
	add := func(st Stmt) { s = append(s, st) }
	add(Stmt{Sid: "DenyRemovingBoundaries", Effect: "Deny",
		Actions: []string{"iam:DeleteUserPermissionsBoundary", "iam:DeleteRolePermissionsBoundary"}, Resources: []string{"*"}})
	add(Stmt{Sid: "DenyEditingTheBoundary", Effect: "Deny",
		Actions:   []string{"iam:CreatePolicyVersion", "iam:SetDefaultPolicyVersion", "iam:DeletePolicyVersion", "iam:DeletePolicy"},
		Resources: []string{f.Boundary}})
	add(Stmt{Sid: "DenyUsersWithoutTheBoundary", Effect: "Deny",
		Actions: []string{"iam:CreateUser", "iam:PutUserPermissionsBoundary"}, Resources: []string{"*"},
		Conditions: map[string]map[string]any{"StringNotEquals": {"iam:PermissionsBoundary": f.Boundary}}})
	add(Stmt{Sid: "DenyEscalationPaths", Effect: "Deny", Actions: escalationActions, Resources: []string{"*"}})
	return s
}
