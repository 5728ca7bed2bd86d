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
	Table    string // ARN of the state table
	StateKey string // ARN of the KMS key of the state table
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

// Grant modes (context grantMode, env KEYVEND_GRANT_MODE): how a vended
// user's grants are written.
const (
	// GrantModePolicy (the default): one inline policy on the user
	// (iam:PutUserPolicy, only on users that carry the boundary). No grant
	// groups are created or joined; those of users vended in group mode are
	// read, left and, once empty, deleted.
	GrantModePolicy = "policy"
	// GrantModeGroup: one IAM group per grant under the user path, with one
	// inline policy each, joined with AddUserToGroup. IAM checks only the
	// group for AddUserToGroup (no condition key names the user), so a role
	// that may add members could add any user of the account; no policy can
	// narrow that, only an SCP taking the action away (which is policy
	// mode). Opt-in for that reason (docs/deploy.md).
	GrantModeGroup = "group"
)

// GrantModes lists the valid grant modes.
var GrantModes = []string{GrantModePolicy, GrantModeGroup}

// userActions are the IAM user actions each function calls, all on
// user/keyvend/*. CreateUser, TagUser and the user-policy writes have
// their own conditioned statements.
var userActions = map[string][]string{
	FnAPI: {
		"iam:GetUser", "iam:DeleteUser", "iam:ListUserTags",
		"iam:CreateAccessKey", "iam:DeleteAccessKey", "iam:ListAccessKeys",
		"iam:ListGroupsForUser", "iam:ListUserPolicies", "iam:ListAttachedUserPolicies", "iam:GetUserPolicy",
	},
	FnReaper: {
		"iam:GetUser", "iam:DeleteUser", "iam:ListUserTags",
		"iam:CreateAccessKey", "iam:DeleteAccessKey", "iam:ListAccessKeys",
		"iam:ListGroupsForUser", "iam:ListUserPolicies", "iam:ListAttachedUserPolicies", "iam:GetUserPolicy",
	},
	FnRotate: {"iam:GetUser", "iam:CreateAccessKey", "iam:DeleteAccessKey", "iam:ListAccessKeys"},
}

// grantGroupActions are what each function does with grant groups
// (group/keyvend/*) in both modes: users vended in group mode may still be
// in them, so keyvend reads them, takes users out, and deletes a group
// its last member left. Group mode adds groupModeActions.
var grantGroupActions = map[string][]string{
	FnAPI:    {"iam:GetGroup", "iam:GetGroupPolicy", "iam:RemoveUserFromGroup", "iam:DeleteGroupPolicy", "iam:DeleteGroup"},
	FnReaper: {"iam:GetGroup", "iam:RemoveUserFromGroup", "iam:DeleteGroupPolicy", "iam:DeleteGroup"},
}

// groupModeActions make and fill grant groups (group mode only).
var groupModeActions = []string{"iam:CreateGroup", "iam:PutGroupPolicy", "iam:AddUserToGroup"}

// lockActions are the repair locks' actions (group/keyvend/locks/*): a
// lock is a group that is created, looked at and deleted, never given a
// policy or a member.
var lockActions = []string{"iam:CreateGroup", "iam:GetGroup", "iam:DeleteGroup"}

func init() {
	// The worker performs the api's operations, through the same code.
	userActions[FnWorker] = userActions[FnAPI]
	grantGroupActions[FnWorker] = grantGroupActions[FnAPI]
	secretActions[FnWorker] = secretActions[FnAPI]
}

// secretActions are the Secrets Manager actions each function calls, all on
// secret:<prefix>*. The reaper can re-create a secret when it restocks a
// user's key (provision.putKey falls back to storeKey). GetResourcePolicy:
// keyvend refuses to adopt a secret that carries a resource policy.
var secretActions = map[string][]string{
	FnAPI: {
		"secretsmanager:CreateSecret", "secretsmanager:DescribeSecret", "secretsmanager:GetSecretValue",
		"secretsmanager:PutSecretValue", "secretsmanager:DeleteSecret", "secretsmanager:RestoreSecret",
		"secretsmanager:TagResource", "secretsmanager:GetResourcePolicy",
		// The rotation schedule the rules' rotate_every asks for (pkg/provision/schedule.go).
		"secretsmanager:RotateSecret", "secretsmanager:CancelRotateSecret",
	},
	FnReaper: {
		"secretsmanager:CreateSecret", "secretsmanager:DescribeSecret", "secretsmanager:GetSecretValue",
		"secretsmanager:PutSecretValue", "secretsmanager:DeleteSecret", "secretsmanager:RestoreSecret",
		"secretsmanager:TagResource", "secretsmanager:GetResourcePolicy",
	},
	FnRotate: {
		"secretsmanager:DescribeSecret", "secretsmanager:GetSecretValue",
		"secretsmanager:PutSecretValue", "secretsmanager:UpdateSecretVersionStage",
	},
}

// SecretsKeyFunctions are the functions that read or write the vended
// users' secrets, so use the secrets key (through Secrets Manager).
var SecretsKeyFunctions = []string{FnAPI, FnReaper, FnRotate, FnWorker}

// StateFunctions are the functions that read and write keyvend's state
// table (pkg/state): records and their leases, summaries, history.
var StateFunctions = []string{FnAPI, FnReaper, FnRotate, FnWorker}

// stateItemActions are the item actions on the state table. A
// TransactWriteItems call (pkg/state commits a record and its summary
// together) is authorized as the item actions it contains; IAM has no
// dynamodb:TransactWriteItems action.
var stateItemActions = []string{
	"dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem", "dynamodb:ConditionCheckItem",
}

// stateQueries are the functions that query the state table (history) and
// its indexes (lists by name and requester, the reaper's expiry index).
// The rotation function reads and writes a record by its key only.
var stateQueries = map[string]bool{FnAPI: true, FnReaper: true, FnWorker: true}

// stateTableAdminActions change the state table's configuration, backups
// or resource policy, or copy it out: keyvend only reads and writes items,
// and none of its roles may do any of these, whatever else a change allows.
var stateTableAdminActions = []string{
	"dynamodb:DeleteTable", "dynamodb:UpdateTable", "dynamodb:UpdateTimeToLive",
	"dynamodb:UpdateContinuousBackups", "dynamodb:CreateBackup", "dynamodb:DeleteBackup",
	"dynamodb:RestoreTableFromBackup", "dynamodb:RestoreTableToPointInTime", "dynamodb:ExportTableToPointInTime",
	"dynamodb:PutResourcePolicy", "dynamodb:DeleteResourcePolicy",
}

// stateIndexes and stateTableParts are the ARN patterns of the state
// table's indexes, and of everything under the table (indexes, backups,
// exports, streams).
func stateIndexes(f Fence) string    { return f.Table + "/index/*" }
func stateTableParts(f Fence) string { return f.Table + "/*" }

// escalationActions are denied to every function whatever else a future
// change allows: each one is a known path from "can manage some IAM users"
// to "can act as someone more powerful" (a role, a policy version, an
// identity provider, a login). keyvend calls none of them.
// iam:PutUserPolicy is not here: policy mode writes grants with it, and
// DenyUsersWithoutTheBoundary limits it to bounded users.
// iam:PutUserPermissionsBoundary is: keyvend sets the boundary only at
// CreateUser, and putting the keyvend boundary on an outside user would
// let the user-policy actions (allowed on bounded users) reach that user.
var escalationActions = []string{
	"iam:PassRole", "iam:CreateRole", "iam:UpdateAssumeRolePolicy",
	"iam:PutRolePolicy", "iam:AttachRolePolicy", "iam:PutRolePermissionsBoundary",
	"iam:PutUserPermissionsBoundary",
	"iam:CreatePolicy", "iam:CreatePolicyVersion", "iam:SetDefaultPolicyVersion",
	"iam:AttachUserPolicy", "iam:AttachGroupPolicy",
	"iam:CreateLoginProfile", "iam:UpdateLoginProfile", "iam:UpdateUser", "iam:UpdateGroup",
	"iam:CreateOpenIDConnectProvider", "iam:UpdateOpenIDConnectProviderThumbprint", "iam:AddClientIDToOpenIDConnectProvider",
	"iam:CreateSAMLProvider", "iam:UpdateSAMLProvider",
	"sts:AssumeRole",
}

// credentialActions make or revive a credential of a user, or change its
// tags (which keyvend reads to know its users): only ever on keyvend's.
var credentialActions = []string{
	"iam:CreateAccessKey", "iam:UpdateAccessKey", "iam:CreateServiceSpecificCredential",
	"iam:UploadSSHPublicKey", "iam:UploadSigningCertificate", "iam:TagUser", "iam:UntagUser",
}

// boundedUserActions put or remove permissions of a user: only ever on a
// user that carries the boundary (AWS's delegated-administration
// pattern), whatever else a role is allowed.
var boundedUserActions = []string{
	"iam:CreateUser", "iam:PutUserPermissionsBoundary",
	"iam:PutUserPolicy", "iam:AttachUserPolicy", "iam:DeleteUserPolicy", "iam:DetachUserPolicy",
}

// ProvisionerStatements is the inline policy of function fn's role (api,
// worker, reaper, rotate) in grant mode mode, fenced per AWS's guidance
// for delegating user administration: users only under the keyvend path
// and, for anything that gives them permissions, only with the boundary;
// groups only under the keyvend path (groups have no boundary); the
// boundary itself untouchable; the state table's items, never its
// configuration or backups. NewKeyvend moves the statements that name the
// secrets key, the state table or the state key into policies of their own.
func ProvisionerStatements(fn, mode string, f Fence) []Stmt {
	var s []Stmt
	add := func(st Stmt) { s = append(s, st) }
	withBoundary := map[string]map[string]any{"StringEquals": {"iam:PermissionsBoundary": f.Boundary}}
	provisioner := fn == FnAPI || fn == FnWorker

	if provisioner {
		add(Stmt{Sid: "CreateUsersOnlyWithTheBoundary", Effect: "Allow",
			Actions: []string{"iam:CreateUser"}, Resources: []string{f.Users}, Conditions: withBoundary})
		add(Stmt{Sid: "TagUsersOnlyWithKeyvendTags", Effect: "Allow",
			Actions: []string{"iam:TagUser"}, Resources: []string{f.Users},
			Conditions: map[string]map[string]any{"ForAllValues:StringLike": {"aws:TagKeys": "keyvend:*"}}})
	}
	add(Stmt{Sid: "ManageKeyvendUsers", Effect: "Allow", Actions: userActions[fn], Resources: []string{f.Users}})
	if provisioner && mode == GrantModePolicy {
		add(Stmt{Sid: "GrantThroughTheUserPolicyOnlyOfBoundedUsers", Effect: "Allow",
			Actions: []string{"iam:PutUserPolicy"}, Resources: []string{f.Users}, Conditions: withBoundary})
	}
	if provisioner || fn == FnReaper {
		add(Stmt{Sid: "CleanPoliciesOnlyOfBoundedUsers", Effect: "Allow",
			Actions: []string{"iam:DeleteUserPolicy", "iam:DetachUserPolicy"}, Resources: []string{f.Users}, Conditions: withBoundary})
		add(Stmt{Sid: "ListUsersHasNoResourceType", Effect: "Allow", Actions: []string{"iam:ListUsers"}, Resources: []string{"*"}})
		add(Stmt{Sid: "ReadAndLeaveGrantGroups", Effect: "Allow", Actions: grantGroupActions[fn], Resources: []string{f.Groups}})
		if provisioner && mode == GrantModeGroup {
			add(Stmt{Sid: "MakeAndJoinGrantGroups", Effect: "Allow", Actions: groupModeActions, Resources: []string{f.Groups}})
		}
		add(Stmt{Sid: "RepairLocks", Effect: "Allow", Actions: lockActions, Resources: []string{f.Locks}})
	}
	add(Stmt{Sid: "UserSecrets", Effect: "Allow", Actions: secretActions[fn], Resources: []string{f.Secrets}})
	if fn == FnReaper {
		// The reaper walks Secrets Manager for keyvend's secrets whose
		// user is gone; it deletes them only on secret:<prefix>*
		// (UserSecrets). ListSecrets has no resource type: '*'.
		add(Stmt{Sid: "ListSecretsHasNoResourceType", Effect: "Allow", Actions: []string{"secretsmanager:ListSecrets"}, Resources: []string{"*"}})
	}
	add(Stmt{Sid: "SecretsKeyThroughSecretsManager", Effect: "Allow",
		Actions: []string{"kms:Decrypt", "kms:GenerateDataKey"}, Resources: []string{f.Key},
		Conditions: map[string]map[string]any{"StringEquals": {"kms:ViaService": "secretsmanager." + f.Region + ".amazonaws.com"}}})
	items := stateItemActions
	if stateQueries[fn] {
		items = append(append([]string{}, items...), "dynamodb:Query")
	}
	add(Stmt{Sid: "StateTableItems", Effect: "Allow", Actions: items, Resources: []string{f.Table}})
	if stateQueries[fn] {
		add(Stmt{Sid: "QueryStateTableIndexes", Effect: "Allow", Actions: []string{"dynamodb:Query"}, Resources: []string{stateIndexes(f)}})
	}
	// DynamoDB decrypts the table key as the caller (the AWS KMS developer
	// guide, "How Amazon DynamoDB uses AWS KMS": table keys, and the
	// Decrypt event of a table access); the table key and the keys below
	// it are DynamoDB's, so a caller needs no Encrypt or GenerateDataKey.
	add(Stmt{Sid: "StateKeyThroughDynamoDB", Effect: "Allow",
		Actions: []string{"kms:Decrypt"}, Resources: []string{f.StateKey},
		Conditions: map[string]map[string]any{"StringEquals": {"kms:ViaService": "dynamodb." + f.Region + ".amazonaws.com"}}})
	add(Stmt{Sid: "WriteOwnLogs", Effect: "Allow",
		Actions: []string{"logs:CreateLogStream", "logs:PutLogEvents"}, Resources: []string{f.LogGroup}})
	return append(s, denyStatements(mode, f)...)
}

// SlackStatements is the inline policy of the Slack function's role. It
// verifies and queues; the only AWS state it reads is the signing secret
// and, for the prechecks of rotate, status and delete, a vended user, its
// user policy and the policies of its grant groups (to know its grants).
// It cannot change anything in IAM or Secrets Manager, nor read any
// user's secret.
func SlackStatements(mode string, f Fence) []Stmt {
	s := []Stmt{
		{Sid: "ReadTheSlackSigningSecret", Effect: "Allow", Actions: []string{"secretsmanager:GetSecretValue"}, Resources: []string{f.SigningSecret}},
		{Sid: "QueueJobs", Effect: "Allow", Actions: []string{"sqs:SendMessage"}, Resources: []string{f.Queue}},
		{Sid: "PrecheckReadsKeyvendUsers", Effect: "Allow", Actions: []string{"iam:GetUser", "iam:ListGroupsForUser", "iam:GetUserPolicy"}, Resources: []string{f.Users}},
		{Sid: "PrecheckReadsGrantGroupPolicies", Effect: "Allow", Actions: []string{"iam:GetGroupPolicy"}, Resources: []string{f.Groups}},
		{Sid: "WriteOwnLogs", Effect: "Allow", Actions: []string{"logs:CreateLogStream", "logs:PutLogEvents"}, Resources: []string{f.LogGroup}},
	}
	return append(s, denyStatements(mode, f)...)
}

// denyStatements are in every role: they hold even if someone later
// attaches a broad policy to it (TestEscalation appends Allow * on * to
// every role and expects every escalation to stay explicitly denied).
func denyStatements(mode string, f Fence) []Stmt {
	var s []Stmt
	add := func(st Stmt) { s = append(s, st) }
	add(Stmt{Sid: "DenyRemovingBoundaries", Effect: "Deny",
		Actions: []string{"iam:DeleteUserPermissionsBoundary", "iam:DeleteRolePermissionsBoundary"}, Resources: []string{"*"}})
	add(Stmt{Sid: "DenyEditingTheBoundary", Effect: "Deny",
		Actions:   []string{"iam:CreatePolicyVersion", "iam:SetDefaultPolicyVersion", "iam:DeletePolicyVersion", "iam:DeletePolicy"},
		Resources: []string{f.Boundary}})
	add(Stmt{Sid: "DenyUsersWithoutTheBoundary", Effect: "Deny",
		Actions: boundedUserActions, Resources: []string{"*"},
		Conditions: map[string]map[string]any{"StringNotEquals": {"iam:PermissionsBoundary": f.Boundary}}})
	add(Stmt{Sid: "DenyUsersOutsideKeyvend", Effect: "Deny",
		Actions: []string{"iam:CreateUser"}, NotResources: []string{f.Users}})
	add(Stmt{Sid: "DenyEscalationPaths", Effect: "Deny", Actions: escalationActions, Resources: []string{"*"}})
	add(Stmt{Sid: "DenyCredentialsOutsideKeyvend", Effect: "Deny", Actions: credentialActions, NotResources: []string{f.Users}})
	add(Stmt{Sid: "DenyNonKeyvendTags", Effect: "Deny",
		Actions: []string{"iam:TagUser", "iam:UntagUser"}, Resources: []string{"*"},
		Conditions: map[string]map[string]any{"ForAnyValue:StringNotLike": {"aws:TagKeys": "keyvend:*"}}})
	// A resource policy on a user's secret, a grant or a new key policy
	// on a key would share the keys with another principal; keyvend never
	// writes either (and refuses to adopt a secret that has a policy).
	add(Stmt{Sid: "DenySharingSecretsAndKeys", Effect: "Deny",
		Actions: []string{"secretsmanager:PutResourcePolicy", "kms:CreateGrant", "kms:PutKeyPolicy"}, Resources: []string{"*"}})
	// The state table's items are keyvend's to read and write; its
	// configuration, backups and resource policy are not.
	add(Stmt{Sid: "DenyStateTableAdministration", Effect: "Deny",
		Actions: stateTableAdminActions, Resources: []string{f.Table, stateTableParts(f)}})
	// Groups have no boundary: their fence is the path. Nothing outside it
	// is made, given a policy or a member, moved or deleted.
	add(Stmt{Sid: "DenyGroupsOutsideKeyvend", Effect: "Deny",
		Actions:      []string{"iam:CreateGroup", "iam:PutGroupPolicy", "iam:AttachGroupPolicy", "iam:AddUserToGroup", "iam:UpdateGroup", "iam:DeleteGroup"},
		NotResources: []string{f.Groups}})
	switch mode {
	case GrantModePolicy:
		// Grants are user policies: no role gives a group a policy or a
		// member, and the only groups made are repair locks.
		add(Stmt{Sid: "DenyGroupGrants", Effect: "Deny",
			Actions: []string{"iam:PutGroupPolicy", "iam:AttachGroupPolicy", "iam:AddUserToGroup"}, Resources: []string{"*"}})
		add(Stmt{Sid: "DenyGroupsButLocks", Effect: "Deny",
			Actions: []string{"iam:CreateGroup"}, NotResources: []string{f.Locks}})
	case GrantModeGroup:
		// Grants are groups; locks stay empty; users get no policy of
		// their own (a user moved from policy mode has it deleted).
		add(Stmt{Sid: "DenyLockGroupGrants", Effect: "Deny",
			Actions: []string{"iam:PutGroupPolicy", "iam:AttachGroupPolicy", "iam:AddUserToGroup"}, Resources: []string{f.Locks}})
		add(Stmt{Sid: "DenyUserPolicyGrants", Effect: "Deny", Actions: []string{"iam:PutUserPolicy"}, Resources: []string{"*"}})
	}
	return s
}
