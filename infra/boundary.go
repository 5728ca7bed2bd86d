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
	Sid          string
	Effect       string // Allow or Deny
	Actions      []string
	Resources    []string
	NotResources []string // instead of Resources (Deny statements only)
	Conditions   map[string]map[string]any
}

// sizingPartition is the longest partition name: the boundary's ARNs
// carry the deployment's partition (a CloudFormation token at synth), so
// its size is checked as if deployed there; it then fits in every
// partition.
const sizingPartition = "aws-us-gov"

// BoundaryStatements is the permissions boundary of every vended user,
// derived from the rules: for each rule, the S3 actions its access levels
// put in a user's grants (built by pkg/policy, the same code the service
// uses), split as pkg/policy splits them: the bucket actions on
// arn:<partition>:s3:::<pattern>, the object actions on
// arn:<partition>:s3:::<pattern>/*, for each of its bucket patterns.
// Rules with the same actions share a statement. partition is the
// deployment's (awscdk.Aws_PARTITION(), never a literal "aws").
//
// A boundary is a ceiling: the grant policies name the exact bucket and
// prefix; the boundary keeps a user inside what the rules could ever grant
// even if a grant policy were rewritten. On top, an explicit Deny of
// policy.BucketAdminActions on every resource: no policy, however
// rewritten, lets a vended key change a bucket itself (its policy, ACL,
// public access block, lifecycle, replication, object lock) or create or
// delete one. full's s3:* is on objects only.
//
// Rules patterns are globs whose '*' matches any run of characters; IAM's
// '*' does too, including '/', so a pattern with characters after a '*'
// (such as "*.example.com") also matches object ARNs of other buckets whose
// keys end that way. docs/deploy.md says so; prefer patterns like "team-*".
func BoundaryStatements(rules *authz.Rules, partition string) ([]Stmt, error) {
	sized, err := boundaryStatements(rules, sizingPartition)
	if err != nil {
		return nil, err
	}
	if n := documentChars(sized); n > MaxManagedPolicyChars {
		return nil, fmt.Errorf("the permissions boundary derived from the rules file is %d characters (in the %s partition, the longest); IAM allows %d for a managed policy: merge bucket patterns (e.g. \"team-*\")", n, sizingPartition, MaxManagedPolicyChars)
	}
	return boundaryStatements(rules, partition)
}

// boundaryStatements builds the boundary in partition, without the size
// check.
func boundaryStatements(rules *authz.Rules, partition string) ([]Stmt, error) {
	type acc struct {
		kind      string // "Buckets" or "Objects"
		actions   []string
		resources map[string]bool
	}
	groups := map[string]*acc{}
	var order []string
	add := func(kind string, actions map[string]bool, resources []string) {
		if len(actions) == 0 {
			return
		}
		acts := sortedKeys(actions)
		key := kind + ":" + strings.Join(acts, ",")
		if groups[key] == nil {
			groups[key] = &acc{kind: kind, actions: acts, resources: map[string]bool{}}
			order = append(order, key)
		}
		for _, r := range resources {
			groups[key].resources[r] = true
		}
	}
	for i, r := range rules.Rules {
		bucketActions, objectActions := map[string]bool{}, map[string]bool{}
		for _, a := range r.Access {
			for _, b := range r.Buckets {
				// The document is parsed in "aws" to tell bucket from
				// object statements; the boundary's ARNs are rebuilt in
				// the deployment's partition below.
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
					return nil, fmt.Errorf("rules[%d]: grant policy for %s: %w", i, b, err)
				}
				for _, s := range parsed.Statement {
					var acts []string
					var one string
					if json.Unmarshal(s.Action, &one) == nil {
						acts = []string{one}
					} else if err := json.Unmarshal(s.Action, &acts); err != nil {
						return nil, fmt.Errorf("rules[%d]: grant policy action: %w", i, err)
					}
					for _, res := range s.Resource {
						var into map[string]bool
						switch res {
						case policy.BucketARN("aws", b):
							into = bucketActions
						case policy.BucketARN("aws", b) + "/*":
							into = objectActions
						default:
							return nil, fmt.Errorf("rules[%d]: grant policy for %s names %s, neither the bucket nor its objects", i, b, res)
						}
						for _, x := range acts {
							into[x] = true
						}
					}
				}
			}
		}
		var buckets, objects []string
		for _, b := range r.Buckets {
			buckets = append(buckets, policy.BucketARN(partition, b))
			objects = append(objects, policy.BucketARN(partition, b)+"/*")
		}
		add("Buckets", bucketActions, buckets)
		add("Objects", objectActions, objects)
	}
	var out []Stmt
	n := map[string]int{}
	for _, key := range order {
		g := groups[key]
		n[g.kind]++
		out = append(out, Stmt{
			Sid:       fmt.Sprintf("Rules%s%d", g.kind, n[g.kind]),
			Effect:    "Allow",
			Actions:   g.actions,
			Resources: sortedKeys(g.resources),
		})
	}
	if len(out) == 0 {
		// IAM refuses a policy without statements. No rules: nothing.
		return []Stmt{{Sid: "NoRulesNoAccess", Effect: "Deny", Actions: []string{"*"}, Resources: []string{"*"}}}, nil
	}
	out = append(out, Stmt{Sid: "NoBucketAdministration", Effect: "Deny",
		Actions: append([]string(nil), policy.BucketAdminActions...), Resources: []string{"*"}})
	return out, nil
}

// documentChars is the size IAM counts for a policy of stmts: the JSON
// without whitespace.
func documentChars(stmts []Stmt) int {
	type js struct {
		Sid         string
		Effect      string
		Action      []string
		Resource    []string                  `json:",omitempty"`
		NotResource []string                  `json:",omitempty"`
		Condition   map[string]map[string]any `json:",omitempty"`
	}
	doc := struct {
		Version   string
		Statement []js
	}{Version: "2012-10-17"}
	for _, s := range stmts {
		doc.Statement = append(doc.Statement, js{s.Sid, s.Effect, s.Actions, s.Resources, s.NotResources, s.Conditions})
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
