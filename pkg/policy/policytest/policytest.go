// Package policytest states, independently of pkg/policy's builders, what
// every policy keyvend generates must satisfy. The fuzz targets of
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
// (arn:<partition>:s3:::bucket/prefix*). full has s3:* instead: every
// action on those objects, and only on them.
var objectActions = map[policy.Access][]string{
	policy.ReadOnly:  {"s3:GetObject"},
	policy.WriteOnly: {"s3:PutObject", "s3:AbortMultipartUpload", "s3:ListMultipartUploadParts"},
	policy.ReadWrite: {"s3:GetObject", "s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload", "s3:ListMultipartUploadParts"},
	policy.Full:      {"s3:*"},
}

// bucketActions are the actions each level may have on the bucket itself:
// none of them changes the bucket. Listing (s3:List…) is limited to the
// grant's prefix when it has one.
var bucketActions = map[policy.Access][]string{
	policy.ReadOnly:  {"s3:GetBucketLocation", "s3:ListBucket"},
	policy.WriteOnly: {"s3:GetBucketLocation"},
	policy.ReadWrite: {"s3:GetBucketLocation", "s3:ListBucket"},
	policy.Full:      {"s3:GetBucket*", "s3:Get*Configuration", "s3:ListBucket", "s3:ListBucketVersions", "s3:ListBucketMultipartUploads"},
}

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

// CheckDocument is CheckUserDocument for the group policy of one grant,
// in partition aws, against a group's inline limit.
func CheckDocument(g policy.Grant, doc string) error {
	return CheckUserDocument("aws", []policy.Grant{g}, doc, policy.MaxGroupInlineBytes)
}

// CheckUserDocument returns every way doc, the policy generated for
// grants, breaks keyvend's contract, or nil:
//
//   - it is a JSON policy of IAM's characters (tab, LF, CR, U+0020–U+00FF)
//     of at most limit characters (white space not counted);
//   - every statement is an Allow with Action and Resource only (and a
//     listing prefix condition), with a unique Sid;
//   - it grants nothing outside the grants' buckets: every resource is
//     exactly a granted bucket's ARN, or the ARN of its objects under a
//     grant's prefix, in partition;
//   - no resource holds a wildcard or a policy variable but the object
//     ARN's one trailing '*';
//   - the actions on each resource are those of a grant's access level
//     there (s3:* only on a full grant's objects), no action changes a
//     bucket, and listing a prefixed grant is limited to its prefix.
func CheckUserDocument(partition string, grants []policy.Grant, doc string, limit int) error {
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
	if size > limit {
		bad("%d characters: over the inline limit of %d", size, limit)
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
	arnPrefix := "arn:" + partition + ":s3:::"
	// Who may do what where: per resource, the grants that reach it.
	onBucket := map[string][]policy.Grant{}
	onObjects := map[string][]policy.Grant{}
	for _, g := range grants {
		onBucket[arnPrefix+g.Bucket] = append(onBucket[arnPrefix+g.Bucket], g)
		onObjects[arnPrefix+g.Bucket+"/"+g.Prefix+"*"] = append(onObjects[arnPrefix+g.Bucket+"/"+g.Prefix+"*"], g)
	}
	sids := map[string]bool{}
	for i, s := range d.Statement {
		at := fmt.Sprintf("Statement[%d] (%s)", i, s.Sid)
		if s.Sid == "" || sids[s.Sid] {
			bad("%s: missing or duplicate Sid", at)
		}
		sids[s.Sid] = true
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
		var prefixCond []string
		if s.Condition != nil {
			prefixCond = s.Condition["StringLike"]["s3:prefix"]
			if len(s.Condition) != 1 || len(s.Condition["StringLike"]) != 1 || len(prefixCond) != 1 || !strings.HasSuffix(prefixCond[0], "*") {
				bad("%s: unexpected condition %v", at, s.Condition)
				prefixCond = nil
			}
		}
		for _, r := range resources {
			if strings.Contains(r, "${") {
				bad("%s: resource %q has a policy variable", at, r)
			}
			switch {
			case onBucket[r] != nil:
				for _, a := range actions {
					if !bucketActionAllowed(onBucket[r], a, s.Condition != nil, prefixCond) {
						bad("%s: %s on bucket %s: no grant allows it there (listing of a prefixed grant must be limited to its prefix)", at, a, r)
					}
				}
			case onObjects[r] != nil:
				if strings.ContainsAny(strings.TrimSuffix(r, "*"), "*?") {
					bad("%s: object resource %q has a wildcard besides its trailing '*'", at, r)
				}
				if s.Condition != nil {
					bad("%s: condition on object actions", at)
				}
				for _, a := range actions {
					ok := false
					for _, g := range onObjects[r] {
						ok = ok || slices.Contains(objectActions[g.Access], a)
					}
					if !ok {
						bad("%s: object action %q on %s: no grant's level allows it", at, a, r)
					}
				}
			default:
				bad("%s: resource %q is neither a granted bucket nor a grant's objects: outside the grants", at, r)
			}
		}
	}
	if len(problems) > 0 {
		return errors.New(strings.Join(problems, "; "))
	}
	return nil
}

// bucketActionAllowed reports whether one of gs (the grants on a bucket)
// allows action a on the bucket: listing under the condition given
// (prefixCond: the s3:prefix the statement limits listing to, if any).
func bucketActionAllowed(gs []policy.Grant, a string, hasCond bool, prefixCond []string) bool {
	listing := strings.HasPrefix(a, "s3:List")
	for _, g := range gs {
		if !slices.Contains(bucketActions[g.Access], a) {
			continue
		}
		switch {
		case !listing && !hasCond:
			return true
		case listing && g.Prefix == "" && !hasCond:
			return true
		case listing && g.Prefix != "" && len(prefixCond) == 1 && prefixCond[0] == g.Prefix+"*":
			return true
		}
	}
	return false
}
