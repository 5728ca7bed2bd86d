package main

import (
	"fmt"
	"reflect"
	"sort"
	"strings"
	"testing"

	"github.com/keyvend/keyvend/pkg/authz"
	"github.com/keyvend/keyvend/pkg/policy"
)

// The account and region the synthesized (environment-agnostic) template
// is resolved in for evaluation.
const (
	testAccount = "111122223333"
	testRegion  = "eu-west-1"
)

// resolver turns the template's intrinsic functions into strings, as
// CloudFormation would in testAccount/testRegion. Anything it does not know
// is an error, so the evaluator never sees a half-resolved policy.
type resolver struct {
	resources map[string]any
}

func (r resolver) resolve(v any) (any, error) {
	switch x := v.(type) {
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			var err error
			if out[i], err = r.resolve(e); err != nil {
				return nil, err
			}
		}
		return out, nil
	case map[string]any:
		if len(x) == 1 {
			for k, arg := range x {
				switch k {
				case "Ref":
					return r.ref(arg.(string))
				case "Fn::GetAtt":
					l := arg.([]any)
					return r.getAtt(l[0].(string), l[1].(string))
				case "Fn::Join":
					l := arg.([]any)
					parts, err := r.resolve(l[1])
					if err != nil {
						return nil, err
					}
					var ss []string
					for _, p := range parts.([]any) {
						s, ok := p.(string)
						if !ok {
							return nil, fmt.Errorf("Fn::Join part %v", p)
						}
						ss = append(ss, s)
					}
					return strings.Join(ss, l[0].(string)), nil
				}
				if strings.HasPrefix(k, "Fn::") {
					return nil, fmt.Errorf("intrinsic %s is not modelled", k)
				}
			}
		}
		out := map[string]any{}
		for k, e := range x {
			var err error
			if out[k], err = r.resolve(e); err != nil {
				return nil, err
			}
		}
		return out, nil
	default:
		return v, nil
	}
}

func (r resolver) typeOf(id string) (string, map[string]any, error) {
	res, ok := r.resources[id].(map[string]any)
	if !ok {
		return "", nil, fmt.Errorf("no resource %s", id)
	}
	props, _ := res["Properties"].(map[string]any)
	return res["Type"].(string), props, nil
}

func (r resolver) ref(id string) (any, error) {
	switch id {
	case "AWS::Partition":
		return "aws", nil
	case "AWS::AccountId":
		return testAccount, nil
	case "AWS::Region":
		return testRegion, nil
	}
	typ, props, err := r.typeOf(id)
	if err != nil {
		return nil, err
	}
	switch typ {
	case "AWS::IAM::ManagedPolicy": // Ref is the ARN
		path, _ := props["Path"].(string)
		if path == "" {
			path = "/"
		}
		return "arn:aws:iam::" + testAccount + ":policy" + path + id, nil
	}
	return nil, fmt.Errorf("Ref to %s (%s) is not modelled", id, typ)
}

func (r resolver) getAtt(id, attr string) (any, error) {
	typ, _, err := r.typeOf(id)
	if err != nil {
		return nil, err
	}
	switch {
	case typ == "AWS::KMS::Key" && attr == "Arn":
		return "arn:aws:kms:" + testRegion + ":" + testAccount + ":key/" + id, nil
	case typ == "AWS::Logs::LogGroup" && attr == "Arn":
		return "arn:aws:logs:" + testRegion + ":" + testAccount + ":log-group:" + id + ":*", nil
	case typ == "AWS::SQS::Queue" && attr == "Arn":
		return "arn:aws:sqs:" + testRegion + ":" + testAccount + ":" + id, nil
	case typ == "AWS::IAM::Role" && attr == "Arn":
		return "arn:aws:iam::" + testAccount + ":role/" + id, nil
	case typ == "AWS::DynamoDB::Table" && attr == "Arn":
		return "arn:aws:dynamodb:" + testRegion + ":" + testAccount + ":table/" + id, nil
	case typ == "AWS::Lambda::Function" && attr == "Arn":
		return "arn:aws:lambda:" + testRegion + ":" + testAccount + ":function:" + id, nil
	}
	return nil, fmt.Errorf("Fn::GetAtt %s.%s (%s) is not modelled", id, attr, typ)
}

// roleStatements are all the identity-policy statements of function fn's
// role in the template: its inline policies and every AWS::IAM::Policy
// attached to it. A managed policy attached to the role fails the test:
// the evaluator would not see it.
func roleStatements(t *testing.T, s *synthesized, fn string) []Statement {
	t.Helper()
	r := resolver{resources: s.JSON["Resources"].(map[string]any)}
	fnProps := s.props(s.id(s.K.Functions[fn]))
	roleID := fnProps["Role"].(map[string]any)["Fn::GetAtt"].([]any)[0].(string)
	role := s.props(roleID)
	if m, ok := role["ManagedPolicyArns"]; ok {
		t.Fatalf("%s role has managed policies %v; the escalation test only sees inline policies", fn, m)
	}
	var docs []any
	if ps, ok := role["Policies"].([]any); ok {
		for _, p := range ps {
			docs = append(docs, p.(map[string]any)["PolicyDocument"])
		}
	}
	for id, p := range s.resources("AWS::IAM::Policy") {
		props := p["Properties"].(map[string]any)
		for _, ref := range props["Roles"].([]any) {
			if m, ok := ref.(map[string]any); ok && m["Ref"] == roleID {
				t.Logf("%s role: also policy %s", fn, id)
				docs = append(docs, props["PolicyDocument"])
			}
		}
	}
	var out []Statement
	for _, d := range docs {
		resolved, err := r.resolve(d)
		if err != nil {
			t.Fatalf("%s role policy: %v", fn, err)
		}
		stmts, err := ParseStatements(resolved.(map[string]any))
		if err != nil {
			t.Fatalf("%s role policy: %v", fn, err)
		}
		out = append(out, stmts...)
	}
	if len(out) == 0 {
		t.Fatalf("%s role has no policy statements", fn)
	}
	return out
}

// boundaryTemplate returns the boundary's ARN and statements as synthesized.
func boundaryTemplate(t *testing.T, s *synthesized) (string, []Statement) {
	t.Helper()
	r := resolver{resources: s.JSON["Resources"].(map[string]any)}
	id := s.id(s.K.Boundary)
	arn, err := r.ref(id)
	if err != nil {
		t.Fatal(err)
	}
	doc, err := r.resolve(s.props(id)["PolicyDocument"])
	if err != nil {
		t.Fatal(err)
	}
	stmts, err := ParseStatements(doc.(map[string]any))
	if err != nil {
		t.Fatal(err)
	}
	return arn.(string), stmts
}

type escalationCase struct {
	what string
	req  Request
	// allowed are the functions that must be allowed, in both grant
	// modes; every other one must be denied. byMode, when set, gives them
	// per mode instead.
	allowed []string
	byMode  map[string][]string
	// uncovered, when set, says why no Deny is meant to cover the row (a
	// read, or a write to keyvend's own plumbing): the allow-* pass lists
	// it apart instead of requiring an explicit Deny.
	uncovered string
	note      string
}

func (c escalationCase) allowedIn(mode string) []string {
	if c.byMode != nil {
		return c.byMode[mode]
	}
	return c.allowed
}

// allowEverything is what an operator might one day attach to a role.
var allowEverything = Statement{Sid: "AllowEverything (appended)", Effect: "Allow", Actions: []string{"*"}, Resources: []string{"*"}}

// escalationCases are the rows of TestEscalation for stack s: the ways a
// user-vending role is abused, and everything keyvend needs on its own
// resources.
func escalationCases(s *synthesized, boundary string) []escalationCase {
	keyARN := "arn:aws:kms:" + testRegion + ":" + testAccount + ":key/" + s.id(s.K.Stack.Node().FindChild(strPtr("SecretsKey")))
	iamARN := func(r string) string { return "arn:aws:iam::" + testAccount + ":" + r }
	secret := func(name string) string {
		return "arn:aws:secretsmanager:" + testRegion + ":" + testAccount + ":secret:" + name
	}
	pb := func(arn string) map[string][]string { return map[string][]string{"iam:PermissionsBoundary": {arn}} }
	tags := func(keys ...string) map[string][]string { return map[string][]string{"aws:TagKeys": keys} }
	viaSM := map[string][]string{"kms:ViaService": {"secretsmanager." + testRegion + ".amazonaws.com"}}
	other := iamARN("policy/AdminBoundary")
	// Who should be allowed what: the functions that handle keys, those
	// that provision (the api, and the worker through the api's code), those
	// that also sweep (the reaper); the Slack function only reads.
	keyFns := []string{FnAPI, FnReaper, FnRotate, FnWorker}
	provisioners := []string{FnAPI, FnWorker}
	sweepers := []string{FnAPI, FnReaper, FnWorker}
	with := func(fns []string, more ...string) []string { return append(append([]string{}, fns...), more...) }
	none := []string(nil)
	policyOnly := func(fns []string) map[string][]string {
		return map[string][]string{GrantModePolicy: fns, GrantModeGroup: none}
	}
	groupOnly := func(fns []string) map[string][]string {
		return map[string][]string{GrantModePolicy: none, GrantModeGroup: fns}
	}
	req := func(action, resource string, ctx map[string][]string) Request {
		return Request{Action: action, Resource: resource, Context: ctx}
	}
	user, outside, rootUser, admin := iamARN("user/keyvend/x"), iamARN("user/ops/alice"), iamARN("user/alice"), iamARN("user/admin")
	group, lock, admins := iamARN("group/keyvend/g"), iamARN("group/keyvend/locks/l"), iamARN("group/Admins")
	ownRole := iamARN("role/keyvend-ApiRole")
	mySecret := secret("keyvend/users/x-AbCdEf")
	// The state table, its indexes and backups, and its key.
	table := "arn:aws:dynamodb:" + testRegion + ":" + testAccount + ":table/" + s.id(s.K.StateTable)
	index, backup := table+"/index/by-expiry", table+"/backup/01700000000000-abcdefgh"
	otherTable := "arn:aws:dynamodb:" + testRegion + ":" + testAccount + ":table/other"
	stateKey := "arn:aws:kms:" + testRegion + ":" + testAccount + ":key/" + s.id(s.K.StateKey)
	viaDynamoDB := map[string][]string{"kms:ViaService": {"dynamodb." + testRegion + ".amazonaws.com"}}
	stateFns := []string{FnAPI, FnReaper, FnRotate, FnWorker}
	queue := "arn:aws:sqs:" + testRegion + ":" + testAccount + ":" + s.id(s.K.Queue)
	dlq := "arn:aws:sqs:" + testRegion + ":" + testAccount + ":" + s.id(s.K.DeadLetterQueue)
	read := "a read: no Deny covers reads"
	plumbing := "a write to keyvend's own queues or Slack secret, not a grant: no Deny covers it"
	stateItems := "an item write keyvend does not make, not a grant: no Deny covers item writes"
	keyUse := "a use of the state key keyvend does not need (DynamoDB keeps the table key); the key policy (not modelled here) lets the account's principals use the key through DynamoDB only, so IAM, these policies, decides"

	return []escalationCase{
		// Escalations: denied to every function.
		{what: "CreateUser without a boundary", req: req("iam:CreateUser", iamARN("user/keyvend/eve"), nil), allowed: none},
		{what: "CreateUser with another boundary", req: req("iam:CreateUser", iamARN("user/keyvend/eve"), pb(other)), allowed: none},
		{what: "CreateUser outside /keyvend/ (with the boundary)", req: req("iam:CreateUser", iamARN("user/admin/eve"), pb(boundary)), allowed: none},
		{what: "CreateUser at path / (with the boundary)", req: req("iam:CreateUser", iamARN("user/eve"), pb(boundary)), allowed: none},
		{what: "AttachUserPolicy on a user outside /keyvend/", req: req("iam:AttachUserPolicy", outside, map[string][]string{"iam:PolicyARN": {"arn:aws:iam::aws:policy/AdministratorAccess"}}), allowed: none},
		{what: "AttachUserPolicy on a bounded keyvend user (keyvend never attaches)", req: req("iam:AttachUserPolicy", user, pb(boundary)), allowed: none},
		{what: "PutUserPolicy on a keyvend user without the boundary", req: req("iam:PutUserPolicy", user, nil), allowed: none},
		{what: "PutUserPolicy on a keyvend user with another boundary", req: req("iam:PutUserPolicy", user, pb(other)), allowed: none},
		{what: "PutUserPolicy on a user outside /keyvend/", req: req("iam:PutUserPolicy", outside, nil), allowed: none},
		{what: "PutUserPolicy on a user outside /keyvend/ with another boundary", req: req("iam:PutUserPolicy", outside, pb(other)), allowed: none},
		{what: "DeleteUserPolicy on a keyvend user without the boundary", req: req("iam:DeleteUserPolicy", user, nil), allowed: none},
		{what: "DeleteUserPolicy on a user outside /keyvend/", req: req("iam:DeleteUserPolicy", outside, nil), allowed: none},
		{what: "DetachUserPolicy on a user outside /keyvend/", req: req("iam:DetachUserPolicy", outside, nil), allowed: none},
		{what: "CreateAccessKey on a user outside /keyvend/", req: req("iam:CreateAccessKey", outside, nil), allowed: none},
		{what: "CreateAccessKey on a user at path /", req: req("iam:CreateAccessKey", rootUser, nil), allowed: none},
		{what: "CreateAccessKey for user/admin", req: req("iam:CreateAccessKey", admin, nil), allowed: none},
		{what: "UpdateAccessKey (reactivate) on a user outside /keyvend/", req: req("iam:UpdateAccessKey", outside, nil), allowed: none},
		{what: "CreateServiceSpecificCredential on a user outside /keyvend/", req: req("iam:CreateServiceSpecificCredential", outside, nil), allowed: none},
		{what: "UploadSSHPublicKey on a user outside /keyvend/", req: req("iam:UploadSSHPublicKey", outside, nil), allowed: none},
		{what: "UploadSigningCertificate on a user outside /keyvend/", req: req("iam:UploadSigningCertificate", outside, nil), allowed: none},
		{what: "CreateLoginProfile on a keyvend user", req: req("iam:CreateLoginProfile", user, nil), allowed: none},
		{what: "UpdateLoginProfile on a user outside /keyvend/", req: req("iam:UpdateLoginProfile", outside, nil), allowed: none},
		{what: "UpdateUser (move a user into or out of /keyvend/)", req: req("iam:UpdateUser", user, nil), allowed: none},
		{what: "TagUser with a non-keyvend tag key", req: req("iam:TagUser", user, tags("keyvend:user", "team")), allowed: none},
		{what: "TagUser a user outside /keyvend/ (keyvend keys)", req: req("iam:TagUser", outside, tags("keyvend:managed-by")), allowed: none},
		{what: "UntagUser a non-keyvend tag key", req: req("iam:UntagUser", user, tags("team")), allowed: none},
		{what: "UntagUser a user outside /keyvend/ (keyvend keys)", req: req("iam:UntagUser", outside, tags("keyvend:managed-by")), allowed: none},
		{what: "CreatePolicyVersion on the boundary", req: req("iam:CreatePolicyVersion", boundary, nil), allowed: none},
		{what: "SetDefaultPolicyVersion on the boundary", req: req("iam:SetDefaultPolicyVersion", boundary, nil), allowed: none},
		{what: "DeletePolicyVersion on the boundary", req: req("iam:DeletePolicyVersion", boundary, nil), allowed: none},
		{what: "DeletePolicy on the boundary", req: req("iam:DeletePolicy", boundary, nil), allowed: none},
		{what: "CreatePolicyVersion on some other customer policy", req: req("iam:CreatePolicyVersion", iamARN("policy/DeployersPolicy"), nil), allowed: none},
		{what: "SetDefaultPolicyVersion on some other customer policy", req: req("iam:SetDefaultPolicyVersion", iamARN("policy/DeployersPolicy"), nil), allowed: none},
		{what: "DeleteUserPermissionsBoundary on a keyvend user", req: req("iam:DeleteUserPermissionsBoundary", user, pb(boundary)), allowed: none},
		{what: "DeleteRolePermissionsBoundary on a role", req: req("iam:DeleteRolePermissionsBoundary", iamARN("role/Bounded"), nil), allowed: none},
		{what: "PutUserPermissionsBoundary with another boundary", req: req("iam:PutUserPermissionsBoundary", user, pb(other)), allowed: none},
		{what: "PutUserPermissionsBoundary with the boundary on a user outside /keyvend/", req: req("iam:PutUserPermissionsBoundary", outside, pb(boundary)), allowed: none,
			note: "denied outright: the keyvend boundary on an outside user would let the user-policy actions allowed on bounded users reach it"},
		{what: "PutRolePermissionsBoundary", req: req("iam:PutRolePermissionsBoundary", iamARN("role/Bounded"), pb(boundary)), allowed: none},
		{what: "CreatePolicy", req: req("iam:CreatePolicy", iamARN("policy/keyvend/p"), nil), allowed: none},
		{what: "PassRole", req: req("iam:PassRole", iamARN("role/Admin"), map[string][]string{"iam:PassedToService": {"lambda.amazonaws.com"}}), allowed: none},
		{what: "CreateRole", req: req("iam:CreateRole", iamARN("role/keyvend/r"), pb(boundary)), allowed: none},
		{what: "AttachRolePolicy", req: req("iam:AttachRolePolicy", iamARN("role/keyvend/r"), nil), allowed: none},
		{what: "PutRolePolicy on keyvend's own role", req: req("iam:PutRolePolicy", ownRole, nil), allowed: none},
		{what: "UpdateAssumeRolePolicy (trust) of keyvend's own role", req: req("iam:UpdateAssumeRolePolicy", ownRole, nil), allowed: none},
		{what: "sts:AssumeRole", req: req("sts:AssumeRole", iamARN("role/Admin"), nil), allowed: none},
		{what: "CreateOpenIDConnectProvider", req: req("iam:CreateOpenIDConnectProvider", iamARN("oidc-provider/token.example.com"), nil), allowed: none},
		{what: "UpdateOpenIDConnectProviderThumbprint", req: req("iam:UpdateOpenIDConnectProviderThumbprint", iamARN("oidc-provider/token.example.com"), nil), allowed: none},
		{what: "AddClientIDToOpenIDConnectProvider", req: req("iam:AddClientIDToOpenIDConnectProvider", iamARN("oidc-provider/token.example.com"), nil), allowed: none},
		{what: "CreateSAMLProvider", req: req("iam:CreateSAMLProvider", iamARN("saml-provider/Corp"), nil), allowed: none},
		{what: "UpdateSAMLProvider", req: req("iam:UpdateSAMLProvider", iamARN("saml-provider/Corp"), nil), allowed: none},
		{what: "CreateGroup outside /keyvend/", req: req("iam:CreateGroup", admins, nil), allowed: none},
		{what: "AddUserToGroup on a group outside /keyvend/", req: req("iam:AddUserToGroup", admins, nil), allowed: none},
		{what: "PutGroupPolicy on a group outside /keyvend/", req: req("iam:PutGroupPolicy", admins, nil), allowed: none},
		{what: "DeleteGroup of a group outside /keyvend/", req: req("iam:DeleteGroup", admins, nil), allowed: none},
		{what: "AttachGroupPolicy on a keyvend group", req: req("iam:AttachGroupPolicy", group, nil), allowed: none},
		{what: "UpdateGroup (move a group into /keyvend/)", req: req("iam:UpdateGroup", admins, nil), allowed: none},
		{what: "PutGroupPolicy on a repair lock", req: req("iam:PutGroupPolicy", lock, nil), allowed: none},
		{what: "AddUserToGroup on a repair lock", req: req("iam:AddUserToGroup", lock, nil), allowed: none},
		{what: "AttachGroupPolicy on a repair lock", req: req("iam:AttachGroupPolicy", lock, nil), allowed: none},
		{what: "PutResourcePolicy on a keyvend secret (share it)", req: req("secretsmanager:PutResourcePolicy", mySecret, nil), allowed: none},
		{what: "kms:CreateGrant on the key", req: req("kms:CreateGrant", keyARN, viaSM), allowed: none},
		{what: "kms:PutKeyPolicy on the key", req: req("kms:PutKeyPolicy", keyARN, nil), allowed: none},
		// The state table's configuration and backups: keyvend only
		// reads and writes items.
		{what: "dynamodb:DeleteTable on the state table", req: req("dynamodb:DeleteTable", table, nil), allowed: none},
		{what: "dynamodb:UpdateTable on the state table", req: req("dynamodb:UpdateTable", table, nil), allowed: none},
		{what: "dynamodb:UpdateTimeToLive on the state table", req: req("dynamodb:UpdateTimeToLive", table, nil), allowed: none},
		{what: "dynamodb:UpdateContinuousBackups (turn PITR off)", req: req("dynamodb:UpdateContinuousBackups", table, nil), allowed: none},
		{what: "dynamodb:CreateBackup of the state table", req: req("dynamodb:CreateBackup", table, nil), allowed: none},
		{what: "dynamodb:DeleteBackup of a state table backup", req: req("dynamodb:DeleteBackup", backup, nil), allowed: none},
		{what: "dynamodb:RestoreTableFromBackup from a state table backup", req: req("dynamodb:RestoreTableFromBackup", backup, nil), allowed: none},
		{what: "dynamodb:RestoreTableToPointInTime from the state table", req: req("dynamodb:RestoreTableToPointInTime", table, nil), allowed: none},
		{what: "dynamodb:ExportTableToPointInTime of the state table", req: req("dynamodb:ExportTableToPointInTime", table, nil), allowed: none},
		{what: "dynamodb:PutResourcePolicy on the state table (share it)", req: req("dynamodb:PutResourcePolicy", table, nil), allowed: none},
		{what: "dynamodb:DeleteResourcePolicy on the state table", req: req("dynamodb:DeleteResourcePolicy", table, nil), allowed: none},
		{what: "kms:CreateGrant on the state key through DynamoDB", req: req("kms:CreateGrant", stateKey, viaDynamoDB), allowed: none},
		{what: "kms:PutKeyPolicy on the state key", req: req("kms:PutKeyPolicy", stateKey, nil), allowed: none},

		// The grant mode decides.
		{what: "PutUserPolicy on a bounded keyvend user", req: req("iam:PutUserPolicy", user, pb(boundary)), byMode: policyOnly(provisioners),
			note: "policy mode writes a user's grants as one inline user policy; group mode never does"},
		{what: "AddUserToGroup: add a user outside /keyvend/ to a keyvend group", req: req("iam:AddUserToGroup", group, nil), byMode: groupOnly(provisioners),
			note: "KNOWN HOLE in group mode: IAM checks only the group for AddUserToGroup (no condition key names the user), so the " +
				"request to add user/ops/alice is the same as for a keyvend user and the api and worker roles could add any user of the " +
				"account to a keyvend grant group, whose policy they write (groups have no boundary): any permission to any user without " +
				"a boundary. No policy can limit which user is added; an SCP closes the hole by denying " +
				"iam:AddUserToGroup (and group policy writes) to the keyvend roles, i.e. policy mode made permanent at the organization " +
				"level (docs/deploy.md). Policy mode denies AddUserToGroup to every role"},
		{what: "CreateGroup (grant group)", req: req("iam:CreateGroup", group, nil), byMode: groupOnly(provisioners)},
		{what: "PutGroupPolicy (grant group)", req: req("iam:PutGroupPolicy", group, nil), byMode: groupOnly(provisioners)},

		// What keyvend needs on its own resources, in both modes.
		{what: "CreateUser with the boundary under /keyvend/", req: req("iam:CreateUser", user, pb(boundary)), allowed: provisioners},
		{what: "TagUser with keyvend tag keys (CreateUser with tags)", req: req("iam:TagUser", user, tags("keyvend:managed-by", "keyvend:requester", "keyvend:expires-at")), allowed: provisioners},
		{what: "CreateAccessKey", req: req("iam:CreateAccessKey", user, nil), allowed: keyFns},
		{what: "DeleteAccessKey", req: req("iam:DeleteAccessKey", user, nil), allowed: keyFns},
		{what: "ListAccessKeys", req: req("iam:ListAccessKeys", user, nil), allowed: keyFns},
		{what: "GetUser", req: req("iam:GetUser", user, nil), allowed: with(keyFns, FnSlack),
			note: "the slack function reads a user, its user policy, its groups and their policies to precheck rotate, status and delete"},
		{what: "DeleteUser", req: req("iam:DeleteUser", user, nil), allowed: sweepers},
		{what: "ListUserTags", req: req("iam:ListUserTags", user, nil), allowed: sweepers},
		{what: "ListGroupsForUser", req: req("iam:ListGroupsForUser", user, nil), allowed: with(sweepers, FnSlack)},
		{what: "ListUserPolicies", req: req("iam:ListUserPolicies", user, nil), allowed: sweepers},
		{what: "ListAttachedUserPolicies", req: req("iam:ListAttachedUserPolicies", user, nil), allowed: sweepers},
		{what: "GetUserPolicy", req: req("iam:GetUserPolicy", user, nil), allowed: with(sweepers, FnSlack)},
		{what: "DeleteUserPolicy on a bounded keyvend user", req: req("iam:DeleteUserPolicy", user, pb(boundary)), allowed: sweepers},
		{what: "DetachUserPolicy on a bounded keyvend user", req: req("iam:DetachUserPolicy", user, pb(boundary)), allowed: sweepers},
		{what: "ListUsers (no resource type: '*')", req: req("iam:ListUsers", "*", nil), allowed: sweepers},
		{what: "RemoveUserFromGroup (grant group; IAM checks the group ARN)", req: req("iam:RemoveUserFromGroup", group, nil), allowed: sweepers,
			note: "AddUserToGroup and RemoveUserFromGroup have only the group resource type"},
		{what: "GetGroup (grant group)", req: req("iam:GetGroup", group, nil), allowed: sweepers},
		{what: "GetGroupPolicy (grant group)", req: req("iam:GetGroupPolicy", group, nil), allowed: with(provisioners, FnSlack)},
		{what: "DeleteGroupPolicy (grant group its last member left)", req: req("iam:DeleteGroupPolicy", group, nil), allowed: sweepers},
		{what: "DeleteGroup (grant group its last member left)", req: req("iam:DeleteGroup", group, nil), allowed: sweepers},
		{what: "CreateGroup (repair lock)", req: req("iam:CreateGroup", lock, nil), allowed: sweepers},
		{what: "GetGroup (repair lock)", req: req("iam:GetGroup", lock, nil), allowed: sweepers},
		{what: "DeleteGroup (repair lock)", req: req("iam:DeleteGroup", lock, nil), allowed: sweepers},
		{what: "secretsmanager:CreateSecret", req: req("secretsmanager:CreateSecret", mySecret, nil), allowed: sweepers},
		{what: "secretsmanager:GetSecretValue", req: req("secretsmanager:GetSecretValue", mySecret, nil), allowed: keyFns},
		{what: "secretsmanager:PutSecretValue", req: req("secretsmanager:PutSecretValue", mySecret, nil), allowed: keyFns},
		{what: "secretsmanager:DescribeSecret", req: req("secretsmanager:DescribeSecret", mySecret, nil), allowed: keyFns},
		{what: "secretsmanager:DeleteSecret", req: req("secretsmanager:DeleteSecret", mySecret, nil), allowed: sweepers},
		{what: "secretsmanager:RestoreSecret", req: req("secretsmanager:RestoreSecret", mySecret, nil), allowed: sweepers},
		{what: "secretsmanager:TagResource", req: req("secretsmanager:TagResource", mySecret, nil), allowed: sweepers},
		{what: "secretsmanager:GetResourcePolicy on a user secret", req: req("secretsmanager:GetResourcePolicy", mySecret, nil), allowed: sweepers,
			note: "keyvend refuses to adopt a secret that carries a resource policy"},
		{what: "secretsmanager:ListSecrets (no resource type: '*')", req: req("secretsmanager:ListSecrets", "*", nil), allowed: []string{FnReaper},
			note: "the reaper walks keyvend's secrets for ones without a user; ListSecrets cannot be scoped to a prefix"},
		{what: "secretsmanager:UpdateSecretVersionStage", req: req("secretsmanager:UpdateSecretVersionStage", mySecret, nil), allowed: []string{FnRotate}},
		{what: "kms:GenerateDataKey through Secrets Manager", req: req("kms:GenerateDataKey", keyARN, viaSM), allowed: keyFns},
		{what: "kms:Decrypt through Secrets Manager", req: req("kms:Decrypt", keyARN, viaSM), allowed: keyFns},

		// The state table: items, through the SDK's item calls and
		// TransactWriteItems (authorized as its item actions).
		{what: "dynamodb:GetItem on the state table", req: req("dynamodb:GetItem", table, nil), allowed: stateFns},
		{what: "dynamodb:PutItem on the state table", req: req("dynamodb:PutItem", table, nil), allowed: stateFns},
		{what: "dynamodb:UpdateItem on the state table", req: req("dynamodb:UpdateItem", table, nil), allowed: stateFns},
		{what: "dynamodb:DeleteItem on the state table", req: req("dynamodb:DeleteItem", table, nil), allowed: stateFns},
		{what: "dynamodb:ConditionCheckItem on the state table (in a transaction)", req: req("dynamodb:ConditionCheckItem", table, nil), allowed: stateFns},
		{what: "dynamodb:Query on the state table (history)", req: req("dynamodb:Query", table, nil), allowed: sweepers},
		{what: "dynamodb:Query on a state table index", req: req("dynamodb:Query", index, nil), allowed: sweepers,
			note: "the rotation function reads and writes a record by its key; it never lists"},
		{what: "kms:Decrypt with the state key through DynamoDB", req: req("kms:Decrypt", stateKey, viaDynamoDB), allowed: stateFns,
			note: "DynamoDB decrypts the table key as the caller (AWS KMS developer guide, services-dynamodb: table keys, Decrypt); " +
				"the table key and the data keys below it are DynamoDB's own, so a caller needs no Encrypt or GenerateDataKey"},

		// The Slack command: the slack function queues, the worker consumes.
		{what: "GetSecretValue on the Slack signing secret", req: req("secretsmanager:GetSecretValue", testSigningSecretARN, nil), allowed: []string{FnSlack}},
		{what: "sqs:SendMessage to the job queue", req: req("sqs:SendMessage", queue, nil), allowed: []string{FnSlack},
			note: "the queue policy also denies SendMessage to every principal but the slack function's role (TestChatopsQueues)"},
		{what: "sqs:ReceiveMessage from the job queue", req: req("sqs:ReceiveMessage", queue, nil), allowed: []string{FnWorker}},
		{what: "sqs:DeleteMessage on the job queue", req: req("sqs:DeleteMessage", queue, nil), allowed: []string{FnWorker}},
		{what: "xray:PutTraceSegments (active tracing; no resource type)", req: req("xray:PutTraceSegments", "*", nil), allowed: AllFunctions},
		{what: "xray:PutTelemetryRecords (active tracing; no resource type)", req: req("xray:PutTelemetryRecords", "*", nil), allowed: AllFunctions},

		// Not allowed to any role, and no Deny is meant to cover them.
		{what: "GetSecretValue outside the prefix", req: req("secretsmanager:GetSecretValue", secret("prod/db-AbCdEf"), nil), allowed: none, uncovered: read},
		{what: "GetSecretValue on keyvend/ but not keyvend/users/", req: req("secretsmanager:GetSecretValue", secret("keyvend/other-AbCdEf"), nil), allowed: none, uncovered: read},
		{what: "kms:Decrypt on the key, not through Secrets Manager", req: req("kms:Decrypt", keyARN, nil), allowed: none,
			uncovered: read + "; the key policy (not modelled here) allows keyvend's roles kms:Decrypt only through Secrets Manager"},
		{what: "kms:Decrypt on another key", req: req("kms:Decrypt", "arn:aws:kms:"+testRegion+":"+testAccount+":key/other", viaSM), allowed: none, uncovered: read},
		{what: "s3:GetObject anywhere (the role is not a vended user)", req: req("s3:GetObject", "arn:aws:s3:::assets.example.com/k", nil), allowed: none, uncovered: read},
		{what: "PutSecretValue on the Slack signing secret", req: req("secretsmanager:PutSecretValue", testSigningSecretARN, nil), allowed: none, uncovered: plumbing},
		{what: "sqs:PurgeQueue on the job queue", req: req("sqs:PurgeQueue", queue, nil), allowed: none, uncovered: plumbing},
		{what: "sqs:SetQueueAttributes on the job queue", req: req("sqs:SetQueueAttributes", queue, nil), allowed: none, uncovered: plumbing},
		{what: "sqs:SendMessage to the dead-letter queue", req: req("sqs:SendMessage", dlq, nil), allowed: none, uncovered: plumbing},
		{what: "sqs:ReceiveMessage from the dead-letter queue", req: req("sqs:ReceiveMessage", dlq, nil), allowed: none, uncovered: read},
		{what: "xray:GetTraceSummaries (read traces)", req: req("xray:GetTraceSummaries", "*", nil), allowed: none, uncovered: read},
		{what: "sqs:SendMessage to another queue", req: req("sqs:SendMessage", "arn:aws:sqs:"+testRegion+":"+testAccount+":other", nil), allowed: none, uncovered: plumbing},
		{what: "dynamodb:Scan on the state table", req: req("dynamodb:Scan", table, nil), allowed: none, uncovered: read},
		{what: "dynamodb:BatchWriteItem on the state table", req: req("dynamodb:BatchWriteItem", table, nil), allowed: none, uncovered: stateItems},
		{what: "dynamodb:PutItem on another table", req: req("dynamodb:PutItem", otherTable, nil), allowed: none, uncovered: stateItems},
		{what: "dynamodb:GetItem on another table", req: req("dynamodb:GetItem", otherTable, nil), allowed: none, uncovered: read},
		{what: "kms:Decrypt with the state key, not through DynamoDB", req: req("kms:Decrypt", stateKey, nil), allowed: none,
			uncovered: read + "; the state key's policy (not modelled here) allows the account's principals kms:Decrypt only through DynamoDB"},
		{what: "kms:Decrypt with the state key through Secrets Manager", req: req("kms:Decrypt", stateKey, viaSM), allowed: none, uncovered: read},
		{what: "kms:GenerateDataKey with the state key through DynamoDB", req: req("kms:GenerateDataKey", stateKey, viaDynamoDB), allowed: none, uncovered: keyUse},
		{what: "kms:Encrypt with the state key through DynamoDB", req: req("kms:Encrypt", stateKey, viaDynamoDB), allowed: none, uncovered: keyUse},
	}
}

// TestEscalation evaluates the synthesized role policy of every function,
// in each grant mode, against the ways a user-vending role is abused and
// against everything keyvend needs on its own resources. Each row must
// come out exactly as expected for each function: the needed calls
// allowed for the functions that make them and denied for the others
// (least privilege per function), the escalations denied for all. Rows are
// judged by the evaluator from the statements' contents, never by Sid.
//
// Then every row again with Allow * on * appended to each role, as if an
// operator had attached a broad policy: every escalation must still be
// denied, explicitly, for every role, and keyvend's own calls must still
// be allowed for the functions that make them.
//
// It runs on the stacks with the Slack command, so every role is in it.
func TestEscalation(t *testing.T) {
	stacks := modeStacks(t)
	for _, mode := range GrantModes {
		t.Run(mode, func(t *testing.T) { escalationTable(t, mode, stacks[mode]) })
	}
}

func escalationTable(t *testing.T, mode string, s *synthesized) {
	boundary, _ := boundaryTemplate(t, s)
	cases := escalationCases(s, boundary)
	fns := AllFunctions
	policies, broad := map[string][]Statement{}, map[string][]Statement{}
	for _, fn := range fns {
		policies[fn] = roleStatements(t, s, fn)
		broad[fn] = append(append([]Statement{}, policies[fn]...), allowEverything)
	}
	header := func(b *strings.Builder) {
		fmt.Fprintf(b, "\n%-3s %-40s %-64s", "#", "action", "resource")
		for _, fn := range fns {
			fmt.Fprintf(b, " | %-48s", fn)
		}
		fmt.Fprintf(b, " | %s\n", "case")
	}
	line := func(b *strings.Builder, i int, c escalationCase, cells []string) {
		res := strings.ReplaceAll(c.req.Resource, "arn:aws:", "")
		fmt.Fprintf(b, "%-3d %-40s %-64s", i+1, c.req.Action, res+ctxString(c.req.Context))
		for _, cell := range cells {
			fmt.Fprintf(b, " | %-48s", cell)
		}
		fmt.Fprintf(b, " | %s\n", c.what)
	}

	var table, broadTable, uncoveredTable strings.Builder
	header(&table)
	header(&broadTable)
	header(&uncoveredTable)
	var notes, uncoveredNotes []string
	escalations := map[string]bool{} // actions of the escalation rows
	for i, c := range cases {
		want := map[string]bool{}
		for _, fn := range c.allowedIn(mode) {
			want[fn] = true
		}
		escalation := len(want) == 0 && c.uncovered == ""
		if escalation {
			escalations[strings.ToLower(c.req.Action)] = true
		}
		cells, broadCells := make([]string, len(fns)), make([]string, len(fns))
		for j, fn := range fns {
			d := Evaluate(policies[fn], c.req)
			mark := ""
			if d.Allowed != want[fn] {
				mark = " <-- WRONG"
				t.Errorf("%s mode: %s for %s: got %s, want allowed=%v", mode, c.what, fn, d, want[fn])
			}
			cells[j] = d.String() + mark

			bd := Evaluate(broad[fn], c.req)
			mark = ""
			switch {
			case escalation && !bd.Explicit:
				mark = " <-- WRONG"
				t.Errorf("%s mode, Allow * appended: %s for %s: got %s, want an explicit Deny", mode, c.what, fn, bd)
			case want[fn] && !bd.Allowed:
				mark = " <-- WRONG"
				t.Errorf("%s mode, Allow * appended: %s for %s: got %s, want it still allowed", mode, c.what, fn, bd)
			}
			broadCells[j] = bd.String() + mark
		}
		line(&table, i, c, cells)
		if c.uncovered != "" {
			line(&uncoveredTable, i, c, broadCells)
			uncoveredNotes = append(uncoveredNotes, fmt.Sprintf("row %d: %s", i+1, c.uncovered))
		} else {
			line(&broadTable, i, c, broadCells)
		}
		if c.note != "" {
			notes = append(notes, fmt.Sprintf("row %d: %s", i+1, c.note))
		}
	}
	// Every action a role denies has an escalation row, so a Deny that
	// loses an action fails a row above (the planted bug a Sid check
	// passed: a Deny keeping its name but losing an action).
	for _, fn := range fns {
		for _, st := range policies[fn] {
			if st.Effect != "Deny" {
				continue
			}
			for _, a := range st.Actions {
				if !escalations[strings.ToLower(a)] {
					t.Errorf("%s mode: %s role denies %s, but no escalation row tries it", mode, fn, a)
				}
			}
		}
	}
	t.Logf("%s mode: escalation table (account %s, region %s, boundary %s):%s%s",
		mode, testAccount, testRegion, boundary, table.String(), strings.Join(notes, "\n"))
	t.Logf("%s mode: the same rows with Allow * on * appended to every role (an operator's broad policy): every escalation "+
		"row stays DENIED (explicit) for every role; keyvend's own calls stay allowed where they are needed:%s",
		mode, broadTable.String())
	t.Logf("%s mode: rows no Deny is meant to cover, with Allow * on * appended (an operator who attaches * to a role owns "+
		"that role: these are reads, and writes to keyvend's own queues and Slack secret):%s%s",
		mode, uncoveredTable.String(), strings.Join(uncoveredNotes, "\n"))
}

// TestEveryFunctionIsFenced checks the statements themselves, in each
// grant mode: every Allow names only keyvend's resources (or '*' for
// iam:ListUsers alone, and the reaper's secretsmanager:ListSecrets
// alone), user-permission Allows carry the boundary
// condition, and NotResource appears only in Denies. That the Denies deny
// what they must is TestEscalation's (by evaluation, not by name).
func TestEveryFunctionIsFenced(t *testing.T) {
	for mode, s := range modeStacks(t) {
		boundary, _ := boundaryTemplate(t, s)
		for _, fn := range AllFunctions {
			for _, st := range roleStatements(t, s, fn) {
				if len(st.NotActions) > 0 || len(st.NotResources) > 0 && st.Effect != "Deny" {
					t.Errorf("%s mode: %s %s: NotAction, or NotResource in an Allow", mode, fn, st.Sid)
				}
				if st.Effect != "Allow" {
					continue
				}
				for _, a := range st.Actions {
					if strings.Contains(a, "*") {
						t.Errorf("%s mode: %s %s: wildcard action %s", mode, fn, st.Sid, a)
					}
					if strings.HasPrefix(strings.ToLower(a), "xray:") && !onlyXRayWrites([]string{a}) {
						t.Errorf("%s mode: %s %s: X-Ray action %s beyond sending traces", mode, fn, st.Sid, a)
					}
				}
				for _, r := range st.Resources {
					ok := r == "*" && len(st.Actions) == 1 && st.Actions[0] == "iam:ListUsers" ||
						r == "*" && len(st.Actions) == 1 && st.Actions[0] == "secretsmanager:ListSecrets" && fn == FnReaper ||
						r == "*" && onlyXRayWrites(st.Actions) ||
						strings.HasPrefix(r, "arn:aws:iam::"+testAccount+":user/keyvend/") ||
						strings.HasPrefix(r, "arn:aws:iam::"+testAccount+":group/keyvend/") ||
						strings.HasPrefix(r, "arn:aws:secretsmanager:"+testRegion+":"+testAccount+":secret:keyvend/users/") ||
						strings.HasPrefix(r, "arn:aws:kms:"+testRegion+":"+testAccount+":key/SecretsKey") ||
						r == "arn:aws:kms:"+testRegion+":"+testAccount+":key/"+s.id(s.K.StateKey) ||
						r == "arn:aws:dynamodb:"+testRegion+":"+testAccount+":table/"+s.id(s.K.StateTable) ||
						r == "arn:aws:dynamodb:"+testRegion+":"+testAccount+":table/"+s.id(s.K.StateTable)+"/index/*" ||
						strings.HasPrefix(r, "arn:aws:logs:"+testRegion+":"+testAccount+":log-group:") ||
						r == testSigningSecretARN && fn == FnSlack ||
						r == "arn:aws:sqs:"+testRegion+":"+testAccount+":"+s.id(s.K.Queue) && (fn == FnSlack || fn == FnWorker) ||
						// RotateSecret (rules' rotate_every) needs InvokeFunction on the rotation function.
						r == "arn:aws:lambda:"+testRegion+":"+testAccount+":function:"+s.id(s.K.Functions[FnRotate]) && (fn == FnAPI || fn == FnWorker) &&
							len(st.Actions) == 1 && st.Actions[0] == "lambda:InvokeFunction"
					if !ok {
						t.Errorf("%s mode: %s %s: Allow on %s", mode, fn, st.Sid, r)
					}
				}
				for _, a := range []string{"iam:CreateUser", "iam:PutUserPolicy", "iam:DeleteUserPolicy", "iam:DetachUserPolicy"} {
					if hasAction(st, a) && !condIs(st, "StringEquals", "iam:PermissionsBoundary", boundary) {
						t.Errorf("%s mode: %s %s: %s without the boundary condition", mode, fn, st.Sid, a)
					}
				}
			}
		}
	}
}

// onlyXRayWrites: actions are only what active tracing needs, sending
// segments and telemetry (X-Ray has no resource type for them: '*').
func onlyXRayWrites(actions []string) bool {
	for _, a := range actions {
		if a != "xray:PutTraceSegments" && a != "xray:PutTelemetryRecords" {
			return false
		}
	}
	return len(actions) > 0
}

// TestAllowsAreExactlyTheDesign: the Allow statements of each role, as
// action-on-resource pairs, are exactly what the function calls in each
// grant mode (the lead's design), nothing more and nothing less.
func TestAllowsAreExactlyTheDesign(t *testing.T) {
	users := func(as ...string) []string { return on("U", as...) }
	api := append(append(append(append(append(
		on("U", "iam:CreateUser", "iam:TagUser",
			"iam:GetUser", "iam:DeleteUser", "iam:ListUserTags", "iam:CreateAccessKey", "iam:DeleteAccessKey", "iam:ListAccessKeys",
			"iam:ListGroupsForUser", "iam:ListUserPolicies", "iam:ListAttachedUserPolicies", "iam:GetUserPolicy",
			"iam:DeleteUserPolicy", "iam:DetachUserPolicy"),
		on("*", "iam:ListUsers")...),
		on("G", "iam:GetGroupPolicy", "iam:RemoveUserFromGroup", "iam:GetGroup", "iam:DeleteGroupPolicy", "iam:DeleteGroup")...),
		on("L", "iam:CreateGroup", "iam:GetGroup", "iam:DeleteGroup")...),
		on("S", "secretsmanager:CreateSecret", "secretsmanager:DescribeSecret", "secretsmanager:GetSecretValue", "secretsmanager:PutSecretValue",
			"secretsmanager:DeleteSecret", "secretsmanager:RestoreSecret", "secretsmanager:TagResource", "secretsmanager:GetResourcePolicy",
			"secretsmanager:RotateSecret", "secretsmanager:CancelRotateSecret")...),
		on("K", "kms:Decrypt", "kms:GenerateDataKey")...)
	// The rules' rotate_every: RotateSecret with the rotation function,
	// which needs lambda:InvokeFunction on it.
	api = join(api, on("RF", "lambda:InvokeFunction"))
	// The state table: items (transactions are authorized as their item
	// actions), Query on the table (history) and its indexes (lists, the
	// expiry sweep), the key only through DynamoDB.
	stateItems := on("T", "dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem", "dynamodb:ConditionCheckItem")
	stateKey := on("SK", "kms:Decrypt")
	stateQuery := join(on("T", "dynamodb:Query"), on("TI", "dynamodb:Query"))
	api = join(api, stateItems, stateQuery, stateKey)
	// Every function's own log group, and X-Ray (active tracing).
	logs := join(on("LOG", "logs:CreateLogStream", "logs:PutLogEvents"), on("*", "xray:PutTraceSegments", "xray:PutTelemetryRecords"))
	reaper := append(append(append(append(append(
		users("iam:GetUser", "iam:DeleteUser", "iam:ListUserTags", "iam:CreateAccessKey", "iam:DeleteAccessKey", "iam:ListAccessKeys",
			"iam:ListGroupsForUser", "iam:ListUserPolicies", "iam:ListAttachedUserPolicies", "iam:GetUserPolicy",
			"iam:DeleteUserPolicy", "iam:DetachUserPolicy"),
		on("*", "iam:ListUsers")...),
		on("G", "iam:RemoveUserFromGroup", "iam:GetGroup", "iam:DeleteGroupPolicy", "iam:DeleteGroup")...),
		on("L", "iam:CreateGroup", "iam:GetGroup", "iam:DeleteGroup")...),
		on("S", "secretsmanager:CreateSecret", "secretsmanager:DescribeSecret", "secretsmanager:GetSecretValue", "secretsmanager:PutSecretValue",
			"secretsmanager:DeleteSecret", "secretsmanager:RestoreSecret", "secretsmanager:TagResource", "secretsmanager:GetResourcePolicy")...),
		on("K", "kms:Decrypt", "kms:GenerateDataKey")...)
	// The reaper walks keyvend's secrets too (ListSecrets has no
	// resource type).
	reaper = join(reaper, on("*", "secretsmanager:ListSecrets"), stateItems, stateQuery, stateKey)
	rotate := append(append(
		users("iam:GetUser", "iam:CreateAccessKey", "iam:DeleteAccessKey", "iam:ListAccessKeys"),
		on("S", "secretsmanager:DescribeSecret", "secretsmanager:GetSecretValue", "secretsmanager:PutSecretValue", "secretsmanager:UpdateSecretVersionStage")...),
		on("K", "kms:Decrypt", "kms:GenerateDataKey")...)
	rotate = join(rotate, stateItems, stateKey)
	slack := append(append(append(
		users("iam:GetUser", "iam:ListGroupsForUser", "iam:GetUserPolicy"),
		on("G", "iam:GetGroupPolicy")...),
		on("SLACK", "secretsmanager:GetSecretValue")...),
		on("Q", "sqs:SendMessage")...)
	// The SQS event source's own grant (CDK).
	consume := on("Q", "sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:ChangeMessageVisibility", "sqs:GetQueueAttributes", "sqs:GetQueueUrl")
	byMode := map[string]map[string][]string{
		GrantModePolicy: {
			FnAPI:    join(api, users("iam:PutUserPolicy"), logs),
			FnWorker: join(api, users("iam:PutUserPolicy"), logs, consume),
		},
		GrantModeGroup: {
			FnAPI:    join(api, on("G", "iam:CreateGroup", "iam:PutGroupPolicy", "iam:AddUserToGroup"), logs),
			FnWorker: join(api, on("G", "iam:CreateGroup", "iam:PutGroupPolicy", "iam:AddUserToGroup"), logs, consume),
		},
	}
	for mode, s := range modeStacks(t) {
		want := byMode[mode]
		want[FnReaper] = join(reaper, logs)
		want[FnRotate] = join(rotate, logs)
		want[FnSlack] = join(slack, logs)
		short := strings.NewReplacer(
			"arn:aws:iam::"+testAccount+":user/keyvend/*", "U",
			"arn:aws:iam::"+testAccount+":group/keyvend/locks/*", "L",
			"arn:aws:iam::"+testAccount+":group/keyvend/*", "G",
			"arn:aws:secretsmanager:"+testRegion+":"+testAccount+":secret:keyvend/users/*", "S",
			"arn:aws:kms:"+testRegion+":"+testAccount+":key/"+s.id(s.K.Stack.Node().FindChild(strPtr("SecretsKey"))), "K",
			testSigningSecretARN, "SLACK",
			"arn:aws:sqs:"+testRegion+":"+testAccount+":"+s.id(s.K.Queue), "Q",
			"arn:aws:dynamodb:"+testRegion+":"+testAccount+":table/"+s.id(s.K.StateTable)+"/index/*", "TI",
			"arn:aws:dynamodb:"+testRegion+":"+testAccount+":table/"+s.id(s.K.StateTable), "T",
			"arn:aws:kms:"+testRegion+":"+testAccount+":key/"+s.id(s.K.StateKey), "SK",
			"arn:aws:lambda:"+testRegion+":"+testAccount+":function:"+s.id(s.K.Functions[FnRotate]), "RF",
		)
		for _, fn := range AllFunctions {
			logGroup := s.props(s.id(s.K.Functions[fn]))["LoggingConfig"].(map[string]any)["LogGroup"].(map[string]any)["Ref"].(string)
			own := "arn:aws:logs:" + testRegion + ":" + testAccount + ":log-group:" + logGroup + ":*"
			got := map[string]bool{}
			for _, st := range roleStatements(t, s, fn) {
				if st.Effect != "Allow" {
					continue
				}
				for _, a := range st.Actions {
					for _, r := range st.Resources {
						if r == own {
							r = "LOG"
						}
						got[a+" "+short.Replace(r)] = true
					}
				}
			}
			exp := map[string]bool{}
			for _, p := range want[fn] {
				exp[p] = true
			}
			for p := range got {
				if !exp[p] {
					t.Errorf("%s mode: %s role allows %s, which is not in the design", mode, fn, p)
				}
			}
			for p := range exp {
				if !got[p] {
					t.Errorf("%s mode: %s role does not allow %s", mode, fn, p)
				}
			}
		}
	}
}

// on pairs each action with resource r ("action r").
func on(r string, actions ...string) []string {
	out := make([]string, len(actions))
	for i, a := range actions {
		out[i] = a + " " + r
	}
	return out
}

func join(lists ...[]string) []string {
	var out []string
	for _, l := range lists {
		out = append(out, l...)
	}
	return out
}

// ctxString shows the request context compactly: " [iam:PermissionsBoundary=…]".
func ctxString(ctx map[string][]string) string {
	if len(ctx) == 0 {
		return ""
	}
	var parts []string
	for k, v := range ctx {
		v2 := make([]string, len(v))
		for i, x := range v {
			v2[i] = strings.ReplaceAll(x, "arn:aws:iam::"+testAccount+":policy/", "policy/")
		}
		parts = append(parts, k+"="+strings.Join(v2, ","))
	}
	sort.Strings(parts)
	return " [" + strings.Join(parts, " ") + "]"
}

func hasAction(st Statement, a string) bool {
	for _, x := range st.Actions {
		if strings.EqualFold(x, a) {
			return true
		}
	}
	return false
}

func condIs(st Statement, op, key, value string) bool {
	v := st.Conditions[op][key]
	return len(v) == 1 && v[0] == value
}

// TestBoundaryIsS3OnRulesBucketsOnly checks the synthesized boundary
// against the rules file: Allows of S3 actions only, only on the rules'
// bucket ARNs in the deployment's partition, one explicit Deny of bucket
// administration, and evaluates requests against it.
func TestBoundaryIsS3OnRulesBucketsOnly(t *testing.T) {
	s := defaultStack(t)
	_, stmts := boundaryTemplate(t, s)
	root, err := RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	rules, err := authz.Load(root + "/rules/demo.json")
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]bool{}
	for _, r := range rules.Rules {
		for _, b := range r.Buckets {
			want["arn:aws:s3:::"+b] = true
			want["arn:aws:s3:::"+b+"/*"] = true
		}
	}
	got := map[string]bool{}
	denies := 0
	for _, st := range stmts {
		if len(st.NotActions) > 0 || len(st.NotResources) > 0 || len(st.Conditions) > 0 {
			t.Errorf("boundary statement %s: want a plain statement, got %+v", st.Sid, st)
		}
		if st.Effect == "Deny" {
			denies++
			if !reflect.DeepEqual(sortedCopy(st.Actions), sortedCopy(policy.BucketAdminActions)) || !reflect.DeepEqual(st.Resources, []string{"*"}) {
				t.Errorf("boundary Deny %s: want policy.BucketAdminActions on *, got %v on %v", st.Sid, st.Actions, st.Resources)
			}
			continue
		}
		for _, a := range st.Actions {
			if !strings.HasPrefix(a, "s3:") {
				t.Errorf("boundary statement %s allows a non-S3 action %s", st.Sid, a)
			}
		}
		for _, r := range st.Resources {
			got[r] = true
			if !want[r] {
				t.Errorf("boundary statement %s names %s, which is not a rules bucket ARN", st.Sid, r)
			}
			// s3:* only ever on objects: a bucket ARN gets reads only.
			if !strings.HasSuffix(r, "/*") && hasAction(st, "s3:*") {
				t.Errorf("boundary statement %s allows s3:* on the bucket %s", st.Sid, r)
			}
		}
	}
	if denies != 1 {
		t.Errorf("%d Deny statements in the boundary, want 1 (bucket administration)", denies)
	}
	for r := range want {
		if !got[r] {
			t.Errorf("boundary misses %s", r)
		}
	}
	// The partition is the deployment's: no literal arn:aws: in the template.
	raw := mustJSON(s.props(s.id(s.K.Boundary))["PolicyDocument"])
	if strings.Contains(raw, "arn:aws:") || !strings.Contains(raw, `{"Ref":"AWS::Partition"}`) {
		t.Errorf("boundary ARNs are not in the deployment's partition: %s", raw)
	}

	// Every access level's actions on a matching bucket are inside the
	// boundary; nothing else is.
	type row struct {
		action, resource string
		allowed          bool
		note             string
	}
	cases := []row{
		{"s3:GetObject", "arn:aws:s3:::data.example.com/k", true, "read-only rule"},
		{"s3:PutObject", "arn:aws:s3:::data.example.com/k", true, "read-write rule"},
		{"s3:ListBucket", "arn:aws:s3:::data.example.com", true, ""},
		{"s3:DeleteObject", "arn:aws:s3:::assets.example.com/k", true, "full: every action on the objects"},
		{"s3:PutObjectAcl", "arn:aws:s3:::assets.example.com/k", true, "full: every action on the objects"},
		{"s3:GetBucketPolicy", "arn:aws:s3:::assets.example.com", true, "full reads the bucket's configuration"},
		{"s3:GetLifecycleConfiguration", "arn:aws:s3:::assets.example.com", true, "full reads the bucket's configuration"},
		{"s3:ListBucketVersions", "arn:aws:s3:::assets.example.com", true, "full lists versions"},
		{"s3:GetBucketPolicy", "arn:aws:s3:::data.example.com", false, "no rule grants full on *.example.com"},
		{"s3:GetObject", "arn:aws:s3:::other-bucket/k", false, "not a rules bucket"},
		{"s3:GetObject", "arn:aws:s3:::example.com/k", false, "*.example.com needs a dot before example.com"},
		{"iam:CreateUser", "*", false, "not S3"},
		{"sts:AssumeRole", "arn:aws:iam::" + testAccount + ":role/Admin", false, "not S3"},
		{"secretsmanager:GetSecretValue", "*", false, "not S3"},
		{"s3:GetObject", "arn:aws:s3:::evil-bucket/x.example.com/k", true,
			"KNOWN LIMIT: IAM '*' spans '/', so *.example.com/* also matches keys of other buckets (docs/deploy.md)"},
	}
	// Bucket administration: denied explicitly, on the full rule's bucket
	// and on any other, one row per action family of
	// policy.BucketAdminActions (checked below to cover every entry).
	admin := []string{
		"s3:PutBucketPolicy", "s3:DeleteBucketPolicy", "s3:PutBucketAcl", "s3:PutBucketPublicAccessBlock",
		"s3:PutBucketOwnershipControls", "s3:PutBucketVersioning", "s3:PutLifecycleConfiguration",
		"s3:PutReplicationConfiguration", "s3:PutBucketObjectLockConfiguration", "s3:PutEncryptionConfiguration",
		"s3:DeleteBucket", "s3:CreateBucket", "s3:PutAccountPublicAccessBlock",
		"s3:CreateAccessPoint", "s3:DeleteAccessPoint", "s3:PutAccessPointPolicy",
		"s3:CreateMultiRegionAccessPoint", "s3:DeleteMultiRegionAccessPoint", "s3:PutMultiRegionAccessPointPolicy",
	}
	for _, pattern := range policy.BucketAdminActions {
		covered := false
		for _, a := range admin {
			covered = covered || glob(strings.ToLower(pattern), strings.ToLower(a))
		}
		if !covered {
			t.Errorf("no boundary row exercises %s of policy.BucketAdminActions", pattern)
		}
	}
	for _, a := range admin {
		cases = append(cases, row{a, "arn:aws:s3:::assets.example.com", false, "bucket administration: explicit Deny"})
	}
	cases = append(cases, row{"s3:PutBucketPolicy", "arn:aws:s3:::data.example.com", false, "bucket administration: explicit Deny"})
	var table strings.Builder
	for _, c := range cases {
		d := Evaluate(stmts, Request{Action: c.action, Resource: c.resource})
		if d.Allowed != c.allowed {
			t.Errorf("boundary: %s on %s: got %s, want allowed=%v", c.action, c.resource, d, c.allowed)
		}
		if strings.HasPrefix(c.note, "bucket administration") && !d.Explicit {
			t.Errorf("boundary: %s on %s: got %s, want an explicit Deny", c.action, c.resource, d)
		}
		fmt.Fprintf(&table, "%-36s %-46s %-40s %s\n", c.action, c.resource, d, c.note)
	}
	t.Logf("boundary table:\n%s", table.String())
}

// TestBoundarySizeIsCheckedInTheLongestPartition: the boundary's ARNs
// carry the deployment's partition, so its size is checked with the
// longest partition name, aws-us-gov: a rules file that fits in aws but
// not in aws-us-gov fails synth.
func TestBoundarySizeIsCheckedInTheLongestPartition(t *testing.T) {
	for n := 1; n < 400; n++ {
		rules := &authz.Rules{}
		r := authz.Rule{Principals: []string{"arn:aws:iam::123456789012:user/a"}, Access: []policy.Access{policy.ReadOnly}}
		for i := 0; i < n; i++ {
			r.Buckets = append(r.Buckets, fmt.Sprintf("bucket-%03d", i))
		}
		rules.Rules = []authz.Rule{r}
		inAWS, err := boundaryStatements(rules, "aws")
		if err != nil {
			t.Fatal(err)
		}
		if documentChars(inAWS) <= MaxManagedPolicyChars {
			inGov, _ := boundaryStatements(rules, "aws-us-gov")
			if documentChars(inGov) > MaxManagedPolicyChars {
				if _, err := BoundaryStatements(rules, "${Token[AWS.Partition.1]}"); err == nil {
					t.Errorf("%d buckets: %d characters in aws, %d in aws-us-gov, and BoundaryStatements accepted it", n, documentChars(inAWS), documentChars(inGov))
				}
				return
			}
			continue
		}
		t.Fatalf("%d buckets: over the limit in aws before it was in aws-us-gov", n)
	}
	t.Fatal("no rules size fits in aws but not in aws-us-gov")
}

// TestEvaluator pins the evaluator's own semantics, so the tables above
// mean what they say.
func TestEvaluator(t *testing.T) {
	parse := func(stmts ...map[string]any) []Statement {
		list := make([]any, len(stmts))
		for i, s := range stmts {
			list[i] = s
		}
		out, err := ParseStatements(map[string]any{"Statement": list})
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	allowAll := map[string]any{"Sid": "All", "Effect": "Allow", "Action": "*", "Resource": "*"}
	cases := []struct {
		name  string
		stmts []Statement
		req   Request
		want  bool
	}{
		{"allow glob", parse(map[string]any{"Effect": "Allow", "Action": "iam:Get*", "Resource": "arn:aws:iam::1:user/keyvend/*"}),
			Request{Action: "iam:GetUser", Resource: "arn:aws:iam::1:user/keyvend/a/b"}, true},
		{"action case-insensitive", parse(map[string]any{"Effect": "Allow", "Action": "IAM:getuser", "Resource": "*"}),
			Request{Action: "iam:GetUser", Resource: "x"}, true},
		{"resource case-sensitive", parse(map[string]any{"Effect": "Allow", "Action": "*", "Resource": "arn:aws:iam::1:user/KEYVEND/*"}),
			Request{Action: "iam:GetUser", Resource: "arn:aws:iam::1:user/keyvend/a"}, false},
		{"question mark is one character", parse(map[string]any{"Effect": "Allow", "Action": "*", "Resource": "a?c"}),
			Request{Action: "x:y", Resource: "abbc"}, false},
		{"implicit deny", parse(map[string]any{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}),
			Request{Action: "iam:GetUser", Resource: "*"}, false},
		{"explicit deny wins", parse(allowAll, map[string]any{"Effect": "Deny", "Action": "iam:PassRole", "Resource": "*"}),
			Request{Action: "iam:PassRole", Resource: "r"}, false},
		{"NotAction", parse(map[string]any{"Effect": "Allow", "NotAction": "iam:*", "Resource": "*"}),
			Request{Action: "iam:CreateUser", Resource: "*"}, false},
		{"NotResource deny", parse(allowAll, map[string]any{"Effect": "Deny", "Action": "*", "NotResource": "arn:ok"}),
			Request{Action: "s3:GetObject", Resource: "arn:other"}, false},
		{"StringEquals holds", parse(map[string]any{"Effect": "Allow", "Action": "*", "Resource": "*", "Condition": map[string]any{"StringEquals": map[string]any{"iam:PermissionsBoundary": "b"}}}),
			Request{Action: "iam:CreateUser", Resource: "u", Context: map[string][]string{"IAM:permissionsboundary": {"b"}}}, true},
		{"StringEquals missing key", parse(map[string]any{"Effect": "Allow", "Action": "*", "Resource": "*", "Condition": map[string]any{"StringEquals": map[string]any{"iam:PermissionsBoundary": "b"}}}),
			Request{Action: "iam:CreateUser", Resource: "u"}, false},
		{"StringLike glob", parse(map[string]any{"Effect": "Allow", "Action": "*", "Resource": "*", "Condition": map[string]any{"StringLike": map[string]any{"k": "a*"}}}),
			Request{Action: "x:y", Resource: "u", Context: map[string][]string{"k": {"abc"}}}, true},
		{"StringNotEquals deny applies on a missing key", parse(allowAll, map[string]any{"Effect": "Deny", "Action": "*", "Resource": "*", "Condition": map[string]any{"StringNotEquals": map[string]any{"k": "v"}}}),
			Request{Action: "x:y", Resource: "u"}, false},
		{"StringNotEquals deny skips the right value", parse(allowAll, map[string]any{"Effect": "Deny", "Action": "*", "Resource": "*", "Condition": map[string]any{"StringNotEquals": map[string]any{"k": "v"}}}),
			Request{Action: "x:y", Resource: "u", Context: map[string][]string{"k": {"v"}}}, true},
		{"ForAllValues all match", parse(map[string]any{"Effect": "Allow", "Action": "*", "Resource": "*", "Condition": map[string]any{"ForAllValues:StringLike": map[string]any{"aws:TagKeys": "keyvend:*"}}}),
			Request{Action: "iam:TagUser", Resource: "u", Context: map[string][]string{"aws:TagKeys": {"keyvend:a", "keyvend:b"}}}, true},
		{"ForAllValues one outsider", parse(map[string]any{"Effect": "Allow", "Action": "*", "Resource": "*", "Condition": map[string]any{"ForAllValues:StringLike": map[string]any{"aws:TagKeys": "keyvend:*"}}}),
			Request{Action: "iam:TagUser", Resource: "u", Context: map[string][]string{"aws:TagKeys": {"keyvend:a", "team"}}}, false},
		// ForAnyValue: holds when some value of a multi-valued key matches;
		// with the key absent (or empty) it is false.
		{"ForAnyValue:StringNotLike deny applies with one outsider", parse(allowAll, map[string]any{"Effect": "Deny", "Action": "*", "Resource": "*", "Condition": map[string]any{"ForAnyValue:StringNotLike": map[string]any{"aws:TagKeys": "keyvend:*"}}}),
			Request{Action: "iam:TagUser", Resource: "u", Context: map[string][]string{"aws:TagKeys": {"keyvend:a", "team"}}}, false},
		{"ForAnyValue:StringNotLike deny skips keyvend keys only", parse(allowAll, map[string]any{"Effect": "Deny", "Action": "*", "Resource": "*", "Condition": map[string]any{"ForAnyValue:StringNotLike": map[string]any{"aws:TagKeys": "keyvend:*"}}}),
			Request{Action: "iam:TagUser", Resource: "u", Context: map[string][]string{"aws:TagKeys": {"keyvend:a", "keyvend:b"}}}, true},
		{"ForAnyValue:StringNotLike deny skips an absent key", parse(allowAll, map[string]any{"Effect": "Deny", "Action": "*", "Resource": "*", "Condition": map[string]any{"ForAnyValue:StringNotLike": map[string]any{"aws:TagKeys": "keyvend:*"}}}),
			Request{Action: "iam:TagUser", Resource: "u"}, true},
		{"ForAnyValue:StringNotLike with several patterns: a value must miss them all", parse(allowAll, map[string]any{"Effect": "Deny", "Action": "*", "Resource": "*", "Condition": map[string]any{"ForAnyValue:StringNotLike": map[string]any{"k": []any{"a*", "b*"}}}}),
			Request{Action: "x:y", Resource: "u", Context: map[string][]string{"k": {"a1", "b1"}}}, true},
		{"ForAnyValue:StringLike one match", parse(map[string]any{"Effect": "Allow", "Action": "*", "Resource": "*", "Condition": map[string]any{"ForAnyValue:StringLike": map[string]any{"k": "keyvend:*"}}}),
			Request{Action: "x:y", Resource: "u", Context: map[string][]string{"k": {"team", "keyvend:a"}}}, true},
		{"ForAnyValue:StringLike no match", parse(map[string]any{"Effect": "Allow", "Action": "*", "Resource": "*", "Condition": map[string]any{"ForAnyValue:StringLike": map[string]any{"k": "keyvend:*"}}}),
			Request{Action: "x:y", Resource: "u", Context: map[string][]string{"k": {"team", "owner"}}}, false},
		{"ForAnyValue:StringLike absent key", parse(map[string]any{"Effect": "Allow", "Action": "*", "Resource": "*", "Condition": map[string]any{"ForAnyValue:StringLike": map[string]any{"k": "*"}}}),
			Request{Action: "x:y", Resource: "u"}, false},
		{"ForAnyValue:StringLike empty key", parse(map[string]any{"Effect": "Allow", "Action": "*", "Resource": "*", "Condition": map[string]any{"ForAnyValue:StringLike": map[string]any{"k": "*"}}}),
			Request{Action: "x:y", Resource: "u", Context: map[string][]string{"k": {}}}, false},
		{"ForAllValues:StringNotLike every value misses", parse(map[string]any{"Effect": "Allow", "Action": "*", "Resource": "*", "Condition": map[string]any{"ForAllValues:StringNotLike": map[string]any{"k": "aws:*"}}}),
			Request{Action: "x:y", Resource: "u", Context: map[string][]string{"k": {"a", "b"}}}, true},
		{"ForAllValues:StringNotLike one value matches", parse(map[string]any{"Effect": "Allow", "Action": "*", "Resource": "*", "Condition": map[string]any{"ForAllValues:StringNotLike": map[string]any{"k": "aws:*"}}}),
			Request{Action: "x:y", Resource: "u", Context: map[string][]string{"k": {"a", "aws:b"}}}, false},
		{"unknown set operator: Deny applies", parse(allowAll, map[string]any{"Effect": "Deny", "Action": "*", "Resource": "*", "Condition": map[string]any{"ForAnyValue:NumericLessThan": map[string]any{"k": "3"}}}),
			Request{Action: "x:y", Resource: "u", Context: map[string][]string{"k": {"5"}}}, false},
		{"unknown operator: Allow does not apply", parse(map[string]any{"Effect": "Allow", "Action": "*", "Resource": "*", "Condition": map[string]any{"NumericLessThan": map[string]any{"k": "3"}}}),
			Request{Action: "x:y", Resource: "u", Context: map[string][]string{"k": {"1"}}}, false},
		{"unknown operator: Deny applies", parse(allowAll, map[string]any{"Effect": "Deny", "Action": "*", "Resource": "*", "Condition": map[string]any{"IpAddress": map[string]any{"aws:SourceIp": "10.0.0.0/8"}}}),
			Request{Action: "x:y", Resource: "u", Context: map[string][]string{"aws:SourceIp": {"192.0.2.1"}}}, false},
		// Bool: "true"/"false", case-insensitive; an absent key does not
		// match (Bool is not …IfExists).
		{"Bool holds", parse(map[string]any{"Effect": "Allow", "Action": "*", "Resource": "*", "Condition": map[string]any{"Bool": map[string]any{"kms:GrantIsForAWSResource": "true"}}}),
			Request{Action: "kms:CreateGrant", Resource: "k", Context: map[string][]string{"kms:GrantIsForAWSResource": {"True"}}}, true},
		{"Bool other value", parse(map[string]any{"Effect": "Allow", "Action": "*", "Resource": "*", "Condition": map[string]any{"Bool": map[string]any{"kms:GrantIsForAWSResource": "true"}}}),
			Request{Action: "kms:CreateGrant", Resource: "k", Context: map[string][]string{"kms:GrantIsForAWSResource": {"false"}}}, false},
		{"Bool absent key", parse(map[string]any{"Effect": "Allow", "Action": "*", "Resource": "*", "Condition": map[string]any{"Bool": map[string]any{"kms:GrantIsForAWSResource": "true"}}}),
			Request{Action: "kms:CreateGrant", Resource: "k"}, false},
		{"Bool deny applies on the value", parse(allowAll, map[string]any{"Effect": "Deny", "Action": "*", "Resource": "*", "Condition": map[string]any{"Bool": map[string]any{"aws:SecureTransport": "false"}}}),
			Request{Action: "x:y", Resource: "u", Context: map[string][]string{"aws:SecureTransport": {"false"}}}, false},
		{"Bool deny skips the other value", parse(allowAll, map[string]any{"Effect": "Deny", "Action": "*", "Resource": "*", "Condition": map[string]any{"Bool": map[string]any{"aws:SecureTransport": "false"}}}),
			Request{Action: "x:y", Resource: "u", Context: map[string][]string{"aws:SecureTransport": {"true"}}}, true},
		{"Bool deny skips an absent key", parse(allowAll, map[string]any{"Effect": "Deny", "Action": "*", "Resource": "*", "Condition": map[string]any{"Bool": map[string]any{"aws:SecureTransport": "false"}}}),
			Request{Action: "x:y", Resource: "u"}, true},
		{"Bool with a value that is not a boolean is unknown: Allow does not apply", parse(map[string]any{"Effect": "Allow", "Action": "*", "Resource": "*", "Condition": map[string]any{"Bool": map[string]any{"k": "yes"}}}),
			Request{Action: "x:y", Resource: "u", Context: map[string][]string{"k": {"yes"}}}, false},
		{"Bool with a value that is not a boolean is unknown: Deny applies", parse(allowAll, map[string]any{"Effect": "Deny", "Action": "*", "Resource": "*", "Condition": map[string]any{"Bool": map[string]any{"k": "yes"}}}),
			Request{Action: "x:y", Resource: "u", Context: map[string][]string{"k": {"no"}}}, false},
		{"IfExists is unknown: Allow does not apply", parse(map[string]any{"Effect": "Allow", "Action": "*", "Resource": "*", "Condition": map[string]any{"StringEqualsIfExists": map[string]any{"k": "v"}}}),
			Request{Action: "x:y", Resource: "u", Context: map[string][]string{"k": {"v"}}}, false},
		{"policy variable is unknown", parse(map[string]any{"Effect": "Allow", "Action": "*", "Resource": "*", "Condition": map[string]any{"StringEquals": map[string]any{"k": "${aws:username}"}}}),
			Request{Action: "x:y", Resource: "u", Context: map[string][]string{"k": {"${aws:username}"}}}, false},
		{"multi-valued key with a plain operator is unknown", parse(map[string]any{"Effect": "Allow", "Action": "*", "Resource": "*", "Condition": map[string]any{"StringLike": map[string]any{"k": "*"}}}),
			Request{Action: "x:y", Resource: "u", Context: map[string][]string{"k": {"a", "b"}}}, false},
	}
	for _, c := range cases {
		if got := Evaluate(c.stmts, c.req); got.Allowed != c.want {
			t.Errorf("%s: got %s, want allowed=%v", c.name, got, c.want)
		}
	}
	if _, err := ParseStatements(map[string]any{"Statement": []any{map[string]any{"Effect": "Allow", "Action": "*", "Resource": "*", "Principal": "*"}}}); err == nil {
		t.Error("a Principal in an identity policy should be refused")
	}
}

func strPtr(s string) *string { return &s }

func sortedCopy(ss []string) []string {
	out := append([]string(nil), ss...)
	sort.Strings(out)
	return out
}
