// Package policytest states, independently of pkg/policy's builders, what
// every inline policy keyvend generates must satisfy. The fuzz targets of
// pkg/policy and pkg/httpapi check each generated policy against it.
package policytest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/keyvend/keyvend/pkg/policy"
)

// Actions each access level may be granted on its objects
// (arn:aws:s3:::bucket/prefix*). full may have s3:* instead.
var objectActions = map[policy.Access][]string{
	policy.ReadOnly:  {"s3:GetObject"},
	policy.WriteOnly: {"s3:PutObject", "s3:AbortMultipartUpload", "s3:ListMultipartUploadParts"},
	policy.ReadWrite: {"s3:GetObject", "s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload", "s3:ListMultipartUploadParts"},
	policy.Full:      {"s3:*"},
}

// bucketActions are what any level may do on the bucket itself; full
// without a prefix has s3:* on the bucket too (the hand-made policy it
// replaces).
var bucketActions = []string{"s3:GetBucketLocation", "s3:ListBucket"}

type statement struct {
	Sid          string                         `json:"Sid"`
	Effect       string                         `json:"Effect"`
	Action       json.RawMessage                `json:"Action"`
	Resource     json.RawMessage                `json:"Resource"`
	Condition    map[string]map[string][]string `json:"Condition"`
	NotAction    json.RawMessage                `json:"NotAction"`
	NotResource  json.RawMessage                `json:"NotResource"`
	Principal    json.RawMessage                `json:"Principal"`
	NotPrincipal json.RawMessage                `json:"NotPrincipal"`
}

type document struct {
	Version   string      `json:"Version"`
	Statement []statement `json:"Statement"`
}

// stringOrList decodes an IAM "string or list of strings" member.
func stringOrList(raw json.RawMessage) ([]string, error) {
	if len(raw) == 0 {
		return nil, errors.New("missing")
	}
	var one string
	if err := json.Unmarshal(raw, &one); err == nil {
		return []string{one}, nil
	}
	var many []string
	if err := json.Unmarshal(raw, &many); err != nil {
		return nil, err
	}
	return many, nil
}

// CheckDocument returns every way doc, the inline policy generated for
// g, breaks keyvend's contract, or nil:
//
//   - it is a JSON policy of IAM's characters (tab, LF, CR, U+0020–U+00FF)
//     that fits a group's inline limit (policy.MaxGroupInlineBytes, white
//     space not counted);
//   - every statement is an Allow with Action and Resource only;
//   - it grants nothing outside g's bucket: every resource is exactly the
//     bucket's ARN or the ARN of its objects under g's prefix;
//   - no resource holds a wildcard or a policy variable but the object
//     ARN's one trailing '*';
//   - the actions are those of g's access level (s3:* only for full), and
//     listing a prefixed grant is limited to its prefix.
func CheckDocument(g policy.Grant, doc string) error {
	var problems []string
	bad := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }
	for i, r := range doc {
		if !(r == '\t' || r == '\n' || r == '\r' || (r >= 0x20 && r <= 0xff)) {
			bad("character %q at %d is outside IAM's policy character set", r, i)
			break
		}
	}
	size := 0
	for _, r := range doc {
		if r != ' ' && r != '\t' && r != '\n' && r != '\r' {
			size++
		}
	}
	if size > policy.MaxGroupInlineBytes {
		bad("%d characters: over the group inline limit of %d", size, policy.MaxGroupInlineBytes)
	}
	dec := json.NewDecoder(bytes.NewReader([]byte(doc)))
	dec.DisallowUnknownFields()
	var d document
	if err := dec.Decode(&d); err != nil {
		return fmt.Errorf("policy is not a policy document: %v", err)
	}
	if d.Version != "2012-10-17" {
		bad("Version %q", d.Version)
	}
	if len(d.Statement) == 0 {
		bad("no statement")
	}
	bucketARN := "arn:aws:s3:::" + g.Bucket
	objectsARN := bucketARN + "/" + g.Prefix + "*"
	for i, s := range d.Statement {
		at := fmt.Sprintf("Statement[%d] (%s)", i, s.Sid)
		if s.Effect != "Allow" {
			bad("%s: Effect %q", at, s.Effect)
		}
		if s.NotAction != nil || s.NotResource != nil || s.Principal != nil || s.NotPrincipal != nil {
			bad("%s: NotAction, NotResource or a principal", at)
		}
		actions, err := stringOrList(s.Action)
		if err != nil || len(actions) == 0 {
			bad("%s: Action: %v", at, err)
		}
		resources, err := stringOrList(s.Resource)
		if err != nil || len(resources) == 0 {
			bad("%s: Resource: %v", at, err)
		}
		onBucket, onObjects := false, false
		for _, r := range resources {
			switch r {
			case bucketARN:
				onBucket = true
				if strings.ContainsAny(r, "*?") || strings.Contains(r, "${") {
					bad("%s: bucket resource %q has a wildcard or variable", at, r)
				}
			case objectsARN:
				onObjects = true
				body := strings.TrimSuffix(r, "*")
				if strings.ContainsAny(body, "*?") || strings.Contains(r, "${") {
					bad("%s: object resource %q has a wildcard or variable besides its trailing '*'", at, r)
				}
			default:
				bad("%s: resource %q is neither %s nor %s: outside the grant", at, r, bucketARN, objectsARN)
			}
		}
		for _, a := range actions {
			switch {
			case !strings.HasPrefix(a, "s3:"):
				bad("%s: action %q is not S3", at, a)
			case a == "s3:*" && g.Access != policy.Full:
				bad("%s: s3:* for %s", at, g.Access)
			case a == "s3:*":
				if onBucket && g.Prefix != "" {
					bad("%s: s3:* on the whole bucket for a prefixed grant", at)
				}
			case strings.ContainsAny(a, "*?"):
				bad("%s: wildcard action %q", at, a)
			case onObjects && !slices.Contains(objectActions[g.Access], a):
				bad("%s: object action %q not in %s", at, a, g.Access)
			case onBucket && !slices.Contains(bucketActions, a):
				bad("%s: bucket action %q", at, a)
			case onBucket && a == "s3:ListBucket" && g.Access == policy.WriteOnly:
				bad("%s: write-only may not list", at)
			}
			if a == "s3:ListBucket" && g.Prefix != "" {
				want := map[string]map[string][]string{"StringLike": {"s3:prefix": {g.Prefix + "*"}}}
				if !equalCondition(s.Condition, want) {
					bad("%s: listing a prefixed grant is not limited to %q: %v", at, g.Prefix+"*", s.Condition)
				}
			}
		}
		if s.Condition != nil && !slices.Contains(actions, "s3:ListBucket") {
			bad("%s: unexpected condition %v", at, s.Condition)
		}
	}
	if len(problems) > 0 {
		return errors.New(strings.Join(problems, "; "))
	}
	return nil
}

func equalCondition(a, b map[string]map[string][]string) bool {
	if len(a) != len(b) {
		return false
	}
	for op, kv := range b {
		if len(a[op]) != len(kv) {
			return false
		}
		for k, v := range kv {
			if !slices.Equal(a[op][k], v) {
				return false
			}
		}
	}
	return true
}
