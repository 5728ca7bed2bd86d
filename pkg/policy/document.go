package policy

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/url"
	"strings"
)

// MaxGroupInlineBytes is IAM's limit on the inline policies of one group.
// keyvend puts exactly one inline policy on each group.
const MaxGroupInlineBytes = 5120

// document is an IAM policy document. Field order is the JSON order.
type document struct {
	Version   string      `json:"Version"`
	Statement []statement `json:"Statement"`
}

type statement struct {
	Sid       string                         `json:"Sid"`
	Effect    string                         `json:"Effect"`
	Action    actions                        `json:"Action"`
	Resource  []string                       `json:"Resource"`
	Condition map[string]map[string][]string `json:"Condition,omitempty"`
}

// actions marshals a single action as a plain string, as people write it.
type actions []string

func (a actions) MarshalJSON() ([]byte, error) {
	if len(a) == 1 {
		return json.Marshal(a[0])
	}
	return json.Marshal([]string(a))
}

func (a *actions) UnmarshalJSON(b []byte) error {
	var one string
	if err := json.Unmarshal(b, &one); err == nil {
		*a = actions{one}
		return nil
	}
	return json.Unmarshal(b, (*[]string)(a))
}

// Object actions per access level. No wildcards except for full, which is
// the hand-made policy keyvend replaces: s3:* on the bucket and its objects.
var (
	readObjects  = actions{"s3:GetObject"}
	writeObjects = actions{"s3:PutObject", "s3:AbortMultipartUpload", "s3:ListMultipartUploadParts"}
	rwObjects    = actions{"s3:GetObject", "s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload", "s3:ListMultipartUploadParts"}
)

func bucketARN(bucket string) string { return "arn:aws:s3:::" + bucket }

func objectsARN(g Grant) string { return bucketARN(g.Bucket) + "/" + g.Prefix + "*" }

// listStatement lets the holder list the bucket, limited to the prefix if
// there is one.
func listStatement(g Grant) statement {
	s := statement{Sid: "List", Effect: "Allow", Action: actions{"s3:ListBucket"}, Resource: []string{bucketARN(g.Bucket)}}
	if g.Prefix != "" {
		s.Condition = map[string]map[string][]string{"StringLike": {"s3:prefix": {g.Prefix + "*"}}}
	}
	return s
}

func locationStatement(g Grant) statement {
	return statement{Sid: "Location", Effect: "Allow", Action: actions{"s3:GetBucketLocation"}, Resource: []string{bucketARN(g.Bucket)}}
}

func objectStatement(g Grant, a actions) statement {
	return statement{Sid: "Objects", Effect: "Allow", Action: a, Resource: []string{objectsARN(g)}}
}

func readOnlyPolicy(g Grant) document {
	return document{Statement: []statement{locationStatement(g), listStatement(g), objectStatement(g, readObjects)}}
}

func writeOnlyPolicy(g Grant) document {
	return document{Statement: []statement{locationStatement(g), objectStatement(g, writeObjects)}}
}

func readWritePolicy(g Grant) document {
	return document{Statement: []statement{locationStatement(g), listStatement(g), objectStatement(g, rwObjects)}}
}

// fullPolicy is exactly the hand-made policy for a whole bucket; with a
// prefix, s3:* applies to the prefix's objects and listing is limited to it.
func fullPolicy(g Grant) document {
	if g.Prefix == "" {
		return document{Statement: []statement{{
			Sid: "Full", Effect: "Allow", Action: actions{"s3:*"},
			Resource: []string{bucketARN(g.Bucket), objectsARN(g)},
		}}}
	}
	return document{Statement: []statement{locationStatement(g), listStatement(g), objectStatement(g, actions{"s3:*"})}}
}

var builders = map[Access]func(Grant) document{
	ReadOnly:  readOnlyPolicy,
	WriteOnly: writeOnlyPolicy,
	ReadWrite: readWritePolicy,
	Full:      fullPolicy,
}

// Document returns the compact JSON inline policy for g. It does not
// validate g; call Validate first.
func Document(g Grant) (string, error) {
	build, ok := builders[g.Access]
	if !ok {
		return "", fmt.Errorf("no policy for access level %q", g.Access)
	}
	doc := build(g)
	doc.Version = "2012-10-17"
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(doc); err != nil {
		return "", fmt.Errorf("encode policy for bucket %s: %w", g.Bucket, err)
	}
	return strings.TrimSuffix(buf.String(), "\n"), nil
}

// ParseGroup recovers the grant a keyvend group carries from its name and
// its inline policy document (URL-encoded, as IAM returns it, or plain).
// Access and bucket come from the name, the prefix from the policy's
// object resource; the result must name the group back.
func ParseGroup(name, policyDoc string) (Grant, error) {
	rest, ok := strings.CutPrefix(name, "keyvend_")
	if !ok {
		return Grant{}, fmt.Errorf("group %s is not a keyvend group", name)
	}
	parts := strings.Split(rest, "_")
	if len(parts) < 2 || len(parts) > 3 {
		return Grant{}, fmt.Errorf("group %s: unexpected name shape", name)
	}
	g := Grant{Access: Access(parts[0]), Bucket: parts[1]}
	if !g.Access.Valid() {
		return Grant{}, fmt.Errorf("group %s: unknown access level %q", name, parts[0])
	}
	if len(parts) == 3 {
		if strings.HasPrefix(policyDoc, "%7B") || strings.HasPrefix(policyDoc, "%7b") {
			decoded, err := url.PathUnescape(policyDoc)
			if err != nil {
				return Grant{}, fmt.Errorf("group %s: decode inline policy: %w", name, err)
			}
			policyDoc = decoded
		}
		var doc document
		if err := json.Unmarshal([]byte(policyDoc), &doc); err != nil {
			return Grant{}, fmt.Errorf("group %s: decode inline policy: %w", name, err)
		}
		want := bucketARN(g.Bucket) + "/"
		for _, s := range doc.Statement {
			if s.Sid != "Objects" || len(s.Resource) != 1 {
				continue
			}
			p, ok := strings.CutPrefix(s.Resource[0], want)
			if ok && strings.HasSuffix(p, "*") {
				g.Prefix = strings.TrimSuffix(p, "*")
			}
		}
	}
	if GroupName(g) != name {
		return Grant{}, fmt.Errorf("group %s: its policy does not match its name (drifted?)", name)
	}
	return g, nil
}
