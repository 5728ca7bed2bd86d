package policy

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/url"
	"regexp"
	"sort"
	"strings"
)

// IAM's size limits of inline policies, in characters without white space
// (Chars): all inline policies of one group, and of one user.
const (
	MaxGroupInlineBytes = 5120
	MaxUserInlineChars  = 2048
)

// document is an IAM policy document. Field order is the JSON order.
type document struct {
	Version   string      `json:"Version"`
	Statement []statement `json:"Statement"`
}

type statement struct {
	Sid       string                         `json:"Sid"`
	Effect    string                         `json:"Effect"`
	Action    actions                        `json:"Action"`
	Resource  resources                      `json:"Resource"`
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

// resources is a Resource list; a single resource may be written as a
// plain string, and reads back as a list of one.
type resources []string

func (r *resources) UnmarshalJSON(b []byte) error {
	var one string
	if err := json.Unmarshal(b, &one); err == nil {
		*r = resources{one}
		return nil
	}
	return json.Unmarshal(b, (*[]string)(r))
}

// Object actions per access level, on arn:<partition>:s3:::bucket/prefix*.
// Only full has a wildcard: every action on its objects.
var (
	readObjects  = actions{"s3:GetObject"}
	writeObjects = actions{"s3:PutObject", "s3:AbortMultipartUpload", "s3:ListMultipartUploadParts"}
	rwObjects    = actions{"s3:GetObject", "s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload", "s3:ListMultipartUploadParts"}
	fullObjects  = actions{"s3:*"}
)

// Bucket actions, on arn:<partition>:s3:::bucket.
var (
	locationActions = actions{"s3:GetBucketLocation"}
	listActions     = actions{"s3:ListBucket"}
	// FullListActions list a bucket's keys, versions and multipart uploads.
	fullListActions = actions{"s3:ListBucket", "s3:ListBucketVersions", "s3:ListBucketMultipartUploads"}
	// FullConfigActions read a bucket's configuration: its policy, ACL,
	// versioning, encryption, lifecycle, replication and the rest. Reading
	// only: every Put and Delete on the bucket is outside full, and the
	// boundary denies them (BucketAdminActions).
	FullConfigActions = []string{"s3:GetBucket*", "s3:Get*Configuration"}
)

// BucketAdminActions are what no vended key may ever do: they change a
// bucket itself, and what they write (a bucket policy, an ACL, a public
// access block, replication to another account, lifecycle expiry, object
// lock) outlives the user that wrote it. No access level grants them, and
// the permissions boundary denies them explicitly, so no grant can reach
// them even if a policy were rewritten.
var BucketAdminActions = []string{
	"s3:CreateBucket*", "s3:DeleteBucket*", "s3:PutBucket*", "s3:Put*Configuration",
	"s3:PutAccountPublicAccessBlock",
	"s3:CreateAccessPoint*", "s3:DeleteAccessPoint*", "s3:PutAccessPoint*",
	"s3:CreateMultiRegionAccessPoint", "s3:DeleteMultiRegionAccessPoint", "s3:PutMultiRegionAccessPointPolicy",
}

var partitionRE = regexp.MustCompile(`^aws(-[a-z]+)*$`)

// checkPartition returns why p is not an AWS partition name ("aws",
// "aws-us-gov", "aws-cn", …), or "".
func checkPartition(p string) string {
	if !partitionRE.MatchString(p) {
		return fmt.Sprintf("%q is not an AWS partition (aws, aws-cn, aws-us-gov, …)", p)
	}
	return ""
}

// PartitionOf returns the partition of an ARN (arn:<partition>:…), or "".
func PartitionOf(arn string) string {
	parts := strings.SplitN(arn, ":", 3)
	if len(parts) < 3 || parts[0] != "arn" || checkPartition(parts[1]) != "" {
		return ""
	}
	return parts[1]
}

// BucketARN is the ARN of bucket (a name or a rules glob) in partition.
func BucketARN(partition, bucket string) string { return "arn:" + partition + ":s3:::" + bucket }

func objectsARN(partition string, g Grant) string {
	return BucketARN(partition, g.Bucket) + "/" + g.Prefix + "*"
}

// Statement ids. Each access level has its own object statement, which is
// how a merged document says which level a resource is granted at; the
// bucket statements carry no level. In a merged document a second statement
// of the same kind (another listing prefix) gets a number: List2, List3.
const (
	sidLocation   = "Location"
	sidList       = "List"
	sidFullConfig = "FullConfig"
	sidFullList   = "FullList"
)

// objectSids names each level's object statement; levelOfSid inverts it.
var objectSids = map[Access]string{
	ReadOnly: "ReadObjects", WriteOnly: "WriteObjects", ReadWrite: "ReadWriteObjects", Full: "FullObjects",
}

var levelOfSid = map[string]Access{}

// sidOrder is the order of statements in a document.
var sidOrder = map[string]int{}

func init() {
	for a, sid := range objectSids {
		levelOfSid[sid] = a
	}
	for i, sid := range []string{sidLocation, sidList, sidFullConfig, sidFullList,
		objectSids[ReadOnly], objectSids[WriteOnly], objectSids[ReadWrite], objectSids[Full]} {
		sidOrder[sid] = i
	}
}

// listCondition limits listing to a prefix; nil for the whole bucket.
func listCondition(prefix string) map[string]map[string][]string {
	if prefix == "" {
		return nil
	}
	return map[string]map[string][]string{"StringLike": {"s3:prefix": {prefix + "*"}}}
}

func bucketStatement(partition, sid string, a actions, g Grant, cond map[string]map[string][]string) statement {
	return statement{Sid: sid, Effect: "Allow", Action: a, Resource: []string{BucketARN(partition, g.Bucket)}, Condition: cond}
}

func objectStatement(partition string, g Grant, a actions) statement {
	return statement{Sid: objectSids[g.Access], Effect: "Allow", Action: a, Resource: []string{objectsARN(partition, g)}}
}

// The statements of each access level, one small pure function each. A
// prefix limits the object actions to bucket/prefix* and listing to keys
// under the prefix.

func readOnlyStatements(p string, g Grant) []statement {
	return []statement{
		bucketStatement(p, sidLocation, locationActions, g, nil),
		bucketStatement(p, sidList, listActions, g, listCondition(g.Prefix)),
		objectStatement(p, g, readObjects),
	}
}

func writeOnlyStatements(p string, g Grant) []statement {
	return []statement{bucketStatement(p, sidLocation, locationActions, g, nil), objectStatement(p, g, writeObjects)}
}

func readWriteStatements(p string, g Grant) []statement {
	return []statement{
		bucketStatement(p, sidLocation, locationActions, g, nil),
		bucketStatement(p, sidList, listActions, g, listCondition(g.Prefix)),
		objectStatement(p, g, rwObjects),
	}
}

// fullStatements: every action on the objects, listing (keys, versions,
// multipart uploads) and reading the bucket's configuration. Nothing that
// changes the bucket itself.
func fullStatements(p string, g Grant) []statement {
	return []statement{
		bucketStatement(p, sidFullConfig, FullConfigActions, g, nil),
		bucketStatement(p, sidFullList, fullListActions, g, listCondition(g.Prefix)),
		objectStatement(p, g, fullObjects),
	}
}

var builders = map[Access]func(partition string, g Grant) []statement{
	ReadOnly:  readOnlyStatements,
	WriteOnly: writeOnlyStatements,
	ReadWrite: readWriteStatements,
	Full:      fullStatements,
}

// Document returns the compact JSON policy of one grant: the inline policy
// of the group that carries it (grant mode "group"). It does not validate g;
// call Validate first.
func Document(partition string, g Grant) (string, error) {
	return UserDocument(partition, []Grant{g})
}

// UserDocument returns the compact JSON policy that holds all of grants
// (grant mode "policy": one inline policy on the user). Statements of the
// same kind are merged, with resource lists: one statement per access level
// for the objects, one for bucket locations, one per listing prefix, and so
// on. The document is canonical: the same set of grants, in any order,
// gives the same bytes, and ParseUserDocument inverts it.
func UserDocument(partition string, grants []Grant) (string, error) {
	if msg := checkPartition(partition); msg != "" {
		return "", fmt.Errorf("policy: %s", msg)
	}
	if len(grants) == 0 {
		return "", fmt.Errorf("policy: no grants")
	}
	type key struct{ sid, actions, cond string }
	merged := map[key]*statement{}
	var keys []key
	for _, g := range grants {
		build, ok := builders[g.Access]
		if !ok {
			return "", fmt.Errorf("no policy for access level %q", g.Access)
		}
		for _, s := range build(partition, g) {
			cond, _ := json.Marshal(s.Condition)
			k := key{s.Sid, strings.Join(s.Action, ","), string(cond)}
			if m := merged[k]; m != nil {
				m.Resource = append(m.Resource, s.Resource...)
				continue
			}
			s := s
			merged[k] = &s
			keys = append(keys, k)
		}
	}
	sort.Slice(keys, func(i, j int) bool {
		a, b := keys[i], keys[j]
		if sidOrder[a.sid] != sidOrder[b.sid] {
			return sidOrder[a.sid] < sidOrder[b.sid]
		}
		if (a.cond == "null") != (b.cond == "null") {
			return a.cond == "null" // the whole-bucket statement first
		}
		return a.cond < b.cond
	})
	doc := document{Version: "2012-10-17"}
	seen := map[string]int{}
	for _, k := range keys {
		s := *merged[k]
		s.Resource = uniqueSorted(s.Resource)
		if n := seen[s.Sid]; n > 0 {
			seen[s.Sid]++
			s.Sid = fmt.Sprintf("%s%d", s.Sid, n+1)
		} else {
			seen[s.Sid] = 1
		}
		doc.Statement = append(doc.Statement, s)
	}
	return encode(doc, grants[0].Bucket)
}

func encode(doc document, bucket string) (string, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(doc); err != nil {
		return "", fmt.Errorf("encode policy for bucket %s: %w", bucket, err)
	}
	return strings.TrimSuffix(buf.String(), "\n"), nil
}

func uniqueSorted(ss []string) []string {
	sort.Strings(ss)
	out := ss[:0]
	for i, s := range ss {
		if i == 0 || s != ss[i-1] {
			out = append(out, s)
		}
	}
	return out
}

// Chars is the size IAM counts for a policy document: every character but
// white space between JSON tokens (white space inside strings counts).
func Chars(doc string) int {
	n, inString, escaped := 0, false, false
	for _, r := range doc {
		switch {
		case inString:
			n++
			switch {
			case escaped:
				escaped = false
			case r == '\\':
				escaped = true
			case r == '"':
				inString = false
			}
		case r == ' ' || r == '\t' || r == '\n' || r == '\r':
		default:
			n++
			if r == '"' {
				inString = true
			}
		}
	}
	return n
}

// decodeDocument reads a policy document as IAM returns it (URL-encoded)
// or as written (plain JSON).
func decodeDocument(doc string) (document, error) {
	if strings.HasPrefix(doc, "%7B") || strings.HasPrefix(doc, "%7b") {
		decoded, err := url.PathUnescape(doc)
		if err != nil {
			return document{}, fmt.Errorf("decode policy: %w", err)
		}
		doc = decoded
	}
	dec := json.NewDecoder(strings.NewReader(doc))
	dec.DisallowUnknownFields()
	var d document
	if err := dec.Decode(&d); err != nil {
		return document{}, fmt.Errorf("decode policy: %w", err)
	}
	return d, nil
}

// ParseUserDocument recovers the grants a user policy made by UserDocument
// carries, from the resources of its per-level object statements. exact is
// true only when the document is byte for byte UserDocument of those
// grants: anything else in it (a statement added, an action widened, a
// resource changed) makes exact false, and then the grants understate what
// the policy allows. An error means no grant could be read at all.
func ParseUserDocument(partition, doc string) (grants []Grant, exact bool, err error) {
	d, err := decodeDocument(doc)
	if err != nil {
		return nil, false, err
	}
	want := BucketARN(partition, "")
	seen := map[Grant]bool{}
	for _, s := range d.Statement {
		level, ok := levelOfSid[strings.TrimRight(s.Sid, "0123456789")]
		if !ok {
			continue
		}
		for _, r := range s.Resource {
			rest, ok := strings.CutPrefix(r, want)
			if !ok {
				return nil, false, fmt.Errorf("policy resource %q is not an S3 object ARN of partition %s", r, partition)
			}
			bucket, pattern, ok := strings.Cut(rest, "/")
			if !ok || !strings.HasSuffix(pattern, "*") {
				return nil, false, fmt.Errorf("policy resource %q is not bucket/prefix*", r)
			}
			g := Grant{Bucket: bucket, Access: level, Prefix: strings.TrimSuffix(pattern, "*")}
			if errs := g.Validate(); errs != nil {
				return nil, false, fmt.Errorf("policy resource %q is not a valid grant: %v", r, errs[0])
			}
			if !seen[g] {
				seen[g] = true
				grants = append(grants, g)
			}
		}
	}
	if len(grants) == 0 {
		return nil, false, fmt.Errorf("policy names no grant")
	}
	SortGrants(grants)
	canonical, err := UserDocument(partition, grants)
	if err != nil {
		return nil, false, err
	}
	got, err := encode(d, grants[0].Bucket)
	return grants, err == nil && got == canonical, nil
}

// SortGrants orders grants by bucket, access level and prefix.
func SortGrants(gs []Grant) {
	sort.Slice(gs, func(i, j int) bool {
		a, b := gs[i], gs[j]
		if a.Bucket != b.Bucket {
			return a.Bucket < b.Bucket
		}
		if a.Access != b.Access {
			return a.Access < b.Access
		}
		return a.Prefix < b.Prefix
	})
}

// ParseGroup recovers the grant a keyvend group carries from its name and
// its inline policy document (URL-encoded, as IAM returns it, or plain).
// Access and bucket come from the name, the prefix from the policy's
// object resource; the result must name the group back.
func ParseGroup(partition, name, policyDoc string) (Grant, error) {
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
		doc, err := decodeDocument(policyDoc)
		if err != nil {
			return Grant{}, fmt.Errorf("group %s: inline policy: %w", name, err)
		}
		want := BucketARN(partition, g.Bucket) + "/"
		for _, s := range doc.Statement {
			// "Objects" is the statement id of groups made before the
			// per-level ids.
			if (s.Sid != "Objects" && !strings.HasSuffix(s.Sid, "Objects")) || len(s.Resource) != 1 {
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

// ExactGroupDocument reports whether doc, a grant group's inline policy as
// IAM returns it, is exactly what keyvend writes for g: Document, or the
// document keyvend wrote before statements were named per access level and
// full lost bucket administration (legacyGroupDocument), so that groups of
// an existing deployment stay keyvend's. Anything else — a statement
// added, an action widened — means the group grants more than g.
func ExactGroupDocument(partition string, g Grant, doc string) bool {
	d, err := decodeDocument(doc)
	if err != nil || len(d.Statement) == 0 {
		return false
	}
	got, err := encode(d, g.Bucket)
	if err != nil {
		return false
	}
	if want, err := Document(partition, g); err == nil && got == want {
		return true
	}
	return got == legacyGroupDocument(g)
}

// legacyGroupDocument is the group policy keyvend wrote for g before:
// partition aws, the object statement named "Objects", and full as s3:*
// on the whole bucket (or, with a prefix, on its objects).
func legacyGroupDocument(g Grant) string {
	const p = "aws"
	var stmts []statement
	obj := func(a actions) statement {
		return statement{Sid: "Objects", Effect: "Allow", Action: a, Resource: []string{objectsARN(p, g)}}
	}
	location := bucketStatement(p, sidLocation, locationActions, g, nil)
	list := bucketStatement(p, sidList, listActions, g, listCondition(g.Prefix))
	switch g.Access {
	case ReadOnly:
		stmts = []statement{location, list, obj(readObjects)}
	case WriteOnly:
		stmts = []statement{location, obj(writeObjects)}
	case ReadWrite:
		stmts = []statement{location, list, obj(rwObjects)}
	case Full:
		if g.Prefix == "" {
			stmts = []statement{{Sid: "Full", Effect: "Allow", Action: actions{"s3:*"}, Resource: []string{BucketARN(p, g.Bucket), objectsARN(p, g)}}}
		} else {
			stmts = []statement{location, list, obj(actions{"s3:*"})}
		}
	}
	out, _ := encode(document{Version: "2012-10-17", Statement: stmts}, g.Bucket)
	return out
}
