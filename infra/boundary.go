package main

import (
	"encoding/json"
	"fmt"
	"sort"
	"strings"

	"github.com/keyvend/keyvend/pkg/authz"
	"github.com/keyvend/keyvend/pkg/policy"
)

// MaxManagedPolicyChars is IAM's size limit of a managed policy document
// (whitespace not counted).
const MaxManagedPolicyChars = 6144

// Stmt is one IAM policy statement as plain data: the app turns it into an
// awsiam.PolicyStatement and the tests compare it with the template.
type Stmt struct {
	Sid        string
	Effect     string // Allow or Deny
	Actions    []string
	Resources  []string
	Conditions map[string]map[string]any
}

// BoundaryStatements is the permissions boundary of every vended user,
// derived from the rules: for each rule, the S3 actions its access levels
// put in a group policy (built by pkg/policy, the same code the service
// uses) on `arn:aws:s3:::<pattern>` and `arn:aws:s3:::<pattern>/*` of each
// of its bucket patterns. Rules with the same actions share a statement.
// A boundary is a ceiling: the group policies grant the exact bucket and
// prefix; the boundary keeps a user inside what the rules could ever grant
// even if a group policy were rewritten.
//
// Rules patterns are globs whose '*' matches any run of characters; IAM's
// '*' does too, including '/', so a pattern with characters after a '*'
// (such as "*.example.com") also matches object ARNs of other buckets whose
// keys end that way. docs/deploy.md says so; prefer patterns like "team-*".
func BoundaryStatements(rules *authz.Rules) ([]Stmt, error) {
	type acc struct {
		actions   map[string]bool
		resources map[string]bool
	}
	byActions := map[string]*acc{}
	var order []string
	for i, r := range rules.Rules {
		actions := map[string]bool{}
		resources := map[string]bool{}
		for _, a := range r.Access {
			for _, b := range r.Buckets {
				doc, err := policy.Document("aws", policy.Grant{Bucket: b, Access: a})
				if err != nil {
					return nil, fmt.Errorf("rules[%d]: %w", i, err)
				}
				var parsed struct {
					Statement []struct {
						Action   json.RawMessage
						Resource []string
					}
				}
				if err := json.Unmarshal([]byte(doc), &parsed); err != nil {
					return nil, fmt.Errorf("rules[%d]: group policy for %s: %w", i, b, err)
				}
				for _, s := range parsed.Statement {
					var acts []string
					var one string
					if json.Unmarshal(s.Action, &one) == nil {
						acts = []string{one}
					} else if err := json.Unmarshal(s.Action, &acts); err != nil {
						return nil, fmt.Errorf("rules[%d]: group policy action: %w", i, err)
					}
					for _, x := range acts {
						actions[x] = true
					}
				}
				resources["arn:aws:s3:::"+b] = true
				resources["arn:aws:s3:::"+b+"/*"] = true
			}
		}
		if actions["s3:*"] {
			actions = map[string]bool{"s3:*": true}
		}
		key := strings.Join(sortedKeys(actions), ",")
		if byActions[key] == nil {
			byActions[key] = &acc{actions: actions, resources: map[string]bool{}}
			order = append(order, key)
		}
		for r := range resources {
			byActions[key].resources[r] = true
		}
	}
	var out []Stmt
	for i, key := range order {
		a := byActions[key]
		out = append(out, Stmt{
			Sid:       fmt.Sprintf("RulesS3Access%d", i+1),
			Effect:    "Allow",
			Actions:   sortedKeys(a.actions),
			Resources: sortedKeys(a.resources),
		})
	}
	if len(out) == 0 {
		// IAM refuses a policy without statements. No rules: nothing.
		out = []Stmt{{Sid: "NoRulesNoAccess", Effect: "Deny", Actions: []string{"*"}, Resources: []string{"*"}}}
	}
	if n := documentChars(out); n > MaxManagedPolicyChars {
		return nil, fmt.Errorf("the permissions boundary derived from the rules file is %d characters; IAM allows %d for a managed policy: merge bucket patterns (e.g. \"team-*\")", n, MaxManagedPolicyChars)
	}
	return out, nil
}

// documentChars is the size IAM counts for a policy of stmts: the JSON
// without whitespace.
func documentChars(stmts []Stmt) int {
	type js struct {
		Sid       string
		Effect    string
		Action    []string
		Resource  []string
		Condition map[string]map[string]any `json:",omitempty"`
	}
	doc := struct {
		Version   string
		Statement []js
	}{Version: "2012-10-17"}
	for _, s := range stmts {
		doc.Statement = append(doc.Statement, js{s.Sid, s.Effect, s.Actions, s.Resources, s.Conditions})
	}
	b, _ := json.Marshal(doc)
	return len(b)
}

func sortedKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
