package main

import (
	"fmt"
	"sort"
	"strings"
	"testing"
)

// keyPolicy is the secrets key's policy as (principal, statements)
// pairs: the evaluator reads identity policies, so each statement is
// filed under every principal it names, without its Principal element.
func keyPolicy(t *testing.T, s *synthesized) map[string][]Statement {
	t.Helper()
	return keyPolicyOf(t, s, s.id(s.K.Stack.Node().FindChild(strPtr("SecretsKey"))))
}

// keyPolicyOf is keyPolicy for the key with logical id id.
func keyPolicyOf(t *testing.T, s *synthesized, id string) map[string][]Statement {
	t.Helper()
	r := resolver{resources: s.JSON["Resources"].(map[string]any)}
	doc, err := r.resolve(s.props(id)["KeyPolicy"])
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]Statement{}
	for _, raw := range doc.(map[string]any)["Statement"].([]any) {
		st := map[string]any{}
		for k, v := range raw.(map[string]any) {
			st[k] = v
		}
		principal, ok := st["Principal"].(map[string]any)
		if !ok {
			t.Fatalf("key policy statement without an AWS principal map: %v", raw)
		}
		delete(st, "Principal")
		parsed, err := ParseStatements(map[string]any{"Statement": []any{st}})
		if err != nil {
			t.Fatal(err)
		}
		for kind, p := range principal {
			names, err := strs(p)
			if err != nil {
				t.Fatalf("key policy principal %v: %v", p, err)
			}
			for _, n := range names {
				out[kind+":"+n] = append(out[kind+":"+n], parsed...)
			}
		}
	}
	return out
}

// TestSecretsKeyPolicy: the account root (IAM) keeps administration of
// the secrets key only, never its use; keyvend's roles that handle secrets
// may decrypt and generate data keys only through Secrets Manager; the
// principals of secretReaders may decrypt only through Secrets Manager and
// only for secrets under the prefix; nobody else is in the key policy.
func TestSecretsKeyPolicy(t *testing.T) {
	reader, admin := "arn:aws:iam::"+testAccount+":role/deployer", "arn:aws:iam::444455556666:user/ci"
	s, err := synthWith(t, map[string]any{"slackSigningSecretArn": testSigningSecretARN, "secretReaders": reader + ", " + admin})
	if err != nil {
		t.Fatal(err)
	}
	policies := keyPolicy(t, s)
	root := "AWS:arn:aws:iam::" + testAccount + ":root"
	roleARN := func(fn string) string { return "AWS:arn:aws:iam::" + testAccount + ":role/" + s.id(s.K.Roles[fn]) }

	// Who is in the key policy at all.
	want := map[string]bool{root: true, "AWS:" + reader: true, "AWS:" + admin: true}
	for _, fn := range SecretsKeyFunctions {
		want[roleARN(fn)] = true
	}
	var got []string
	for p := range policies {
		got = append(got, p)
		if !want[p] {
			t.Errorf("key policy names %s", p)
		}
	}
	sort.Strings(got)
	for p := range want {
		if policies[p] == nil {
			t.Errorf("key policy does not name %s", p)
		}
	}

	// The root's statements: an explicit list, nothing that uses the key.
	for _, st := range policies[root] {
		for _, a := range st.Actions {
			if strings.Contains(a, "*") {
				t.Errorf("root statement %s: wildcard action %s (administration is an explicit list)", st.Sid, a)
			}
		}
	}

	viaSM := "secretsmanager." + testRegion + ".amazonaws.com"
	keyARN := "arn:aws:kms:" + testRegion + ":" + testAccount + ":key/x"
	secretARN := func(name string) string {
		return "arn:aws:secretsmanager:" + testRegion + ":" + testAccount + ":secret:" + name
	}
	ctx := func(via, secret string) map[string][]string {
		c := map[string][]string{}
		if via != "" {
			c["kms:ViaService"] = []string{via}
		}
		if secret != "" {
			c["kms:EncryptionContext:SecretARN"] = []string{secret}
		}
		return c
	}
	user := secretARN("keyvend/users/x-AbCdEf")
	type row struct {
		principal, action string
		ctx               map[string][]string
		allowed           bool
	}
	var rows []row
	use := []string{"kms:Decrypt", "kms:Encrypt", "kms:GenerateDataKey", "kms:GenerateDataKeyWithoutPlaintext", "kms:ReEncryptFrom", "kms:ReEncryptTo", "kms:CreateGrant"}
	for _, a := range use {
		rows = append(rows, row{root, a, ctx(viaSM, user), false}, row{root, a, nil, false})
	}
	for _, a := range []string{"kms:DescribeKey", "kms:PutKeyPolicy", "kms:GetKeyPolicy", "kms:EnableKeyRotation", "kms:ScheduleKeyDeletion", "kms:TagResource", "kms:CreateAlias"} {
		rows = append(rows, row{root, a, nil, true})
	}
	for _, fn := range SecretsKeyFunctions {
		rows = append(rows,
			row{roleARN(fn), "kms:Decrypt", ctx(viaSM, user), true},
			row{roleARN(fn), "kms:GenerateDataKey", ctx(viaSM, user), true},
			row{roleARN(fn), "kms:Decrypt", ctx("", user), false},
			row{roleARN(fn), "kms:Decrypt", ctx("s3."+testRegion+".amazonaws.com", user), false},
			row{roleARN(fn), "kms:Encrypt", ctx(viaSM, user), false},
			row{roleARN(fn), "kms:CreateGrant", ctx(viaSM, user), false},
			row{roleARN(fn), "kms:PutKeyPolicy", nil, false})
	}
	rows = append(rows, row{roleARN(FnSlack), "kms:Decrypt", ctx(viaSM, user), false})
	for _, p := range []string{"AWS:" + reader, "AWS:" + admin} {
		rows = append(rows,
			row{p, "kms:Decrypt", ctx(viaSM, user), true},
			row{p, "kms:Decrypt", ctx(viaSM, secretARN("prod/db-AbCdEf")), false},
			row{p, "kms:Decrypt", ctx(viaSM, secretARN("keyvend/other-AbCdEf")), false},
			row{p, "kms:Decrypt", ctx(viaSM, ""), false},
			row{p, "kms:Decrypt", ctx("", user), false},
			row{p, "kms:GenerateDataKey", ctx(viaSM, user), false},
			row{p, "kms:PutKeyPolicy", nil, false})
	}
	var table strings.Builder
	for _, r := range rows {
		d := Evaluate(policies[r.principal], Request{Action: r.action, Resource: keyARN, Context: r.ctx})
		mark := ""
		if d.Allowed != r.allowed {
			mark = " <-- WRONG"
			t.Errorf("key policy: %s %s %v: got %s, want allowed=%v", r.principal, r.action, r.ctx, d, r.allowed)
		}
		fmt.Fprintf(&table, "%-62s %-36s %-150s %s%s\n", r.principal, r.action, ctxString(r.ctx), d, mark)
	}
	t.Logf("secrets key policy (principals %v):\n%s", got, table.String())
}

// TestSecretsKeyPolicyWithoutReaders: no secretReaders, no reader
// statement.
func TestSecretsKeyPolicyWithoutReaders(t *testing.T) {
	s := defaultStack(t)
	for p := range keyPolicy(t, s) {
		if !strings.HasPrefix(p, "AWS:arn:aws:iam::"+testAccount+":r") { // :root or :role/
			t.Errorf("key policy names %s without secretReaders", p)
		}
	}
}

// TestNoDependencyCycle: the key policy names the roles and the roles'
// policies name the key; CloudFormation refuses a template whose
// resources depend on each other in a circle.
func TestNoDependencyCycle(t *testing.T) {
	for name, s := range map[string]*synthesized{"default": defaultStack(t), "policy+slack": slackStack(t), "group+slack": groupStack(t)} {
		resources := s.JSON["Resources"].(map[string]any)
		deps := map[string][]string{}
		for id, r := range resources {
			var walk func(v any)
			walk = func(v any) {
				switch x := v.(type) {
				case map[string]any:
					if ref, ok := x["Ref"].(string); ok && resources[ref] != nil {
						deps[id] = append(deps[id], ref)
					}
					if ga, ok := x["Fn::GetAtt"].([]any); ok && len(ga) > 0 {
						deps[id] = append(deps[id], ga[0].(string))
					}
					for _, e := range x {
						walk(e)
					}
				case []any:
					for _, e := range x {
						walk(e)
					}
				}
			}
			res := r.(map[string]any)
			walk(res["Properties"])
			if d, ok := res["DependsOn"]; ok {
				ds, _ := strs(d)
				deps[id] = append(deps[id], ds...)
			}
		}
		state := map[string]int{} // 1 visiting, 2 done
		var path []string
		var visit func(id string) bool
		visit = func(id string) bool {
			switch state[id] {
			case 1:
				t.Errorf("%s: dependency cycle: %s -> %s", name, strings.Join(path, " -> "), id)
				return false
			case 2:
				return true
			}
			state[id] = 1
			path = append(path, id)
			for _, d := range deps[id] {
				if !visit(d) {
					return false
				}
			}
			path = path[:len(path)-1]
			state[id] = 2
			return true
		}
		for id := range resources {
			if !visit(id) {
				break
			}
		}
	}
}
