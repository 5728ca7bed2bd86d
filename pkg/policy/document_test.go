package policy_test

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/keyvend/keyvend/pkg/policy"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

const goldenBucket = "B"

// goldenPrefixes are the two prefixes every access level has a golden for,
// by the name the golden file uses.
var goldenPrefixes = []struct{ name, prefix string }{
	{"noprefix", ""},
	{"prefix", "deploy/site/"},
}

func goldenPath(level policy.Access, prefixName string) string {
	return filepath.Join("testdata", string(level)+"_"+prefixName+".json")
}

// TestDocumentGolden compares every access level's policy, with and without
// a prefix, with testdata/<level>_<prefix>.json. The goldens are pretty
// printed; the comparison is of the compacted bytes, so key order, array
// order and string escaping all count. Regenerate with -update.
func TestDocumentGolden(t *testing.T) {
	for _, level := range policy.Levels {
		for _, p := range goldenPrefixes {
			t.Run(string(level)+"/"+p.name, func(t *testing.T) {
				doc, err := policy.Document("aws", policy.Grant{Bucket: goldenBucket, Access: level, Prefix: p.prefix})
				if err != nil {
					t.Fatal(err)
				}
				path := goldenPath(level, p.name)
				if *update {
					var pretty bytes.Buffer
					if err := json.Indent(&pretty, []byte(doc), "", "  "); err != nil {
						t.Fatalf("indent %s: %v", doc, err)
					}
					pretty.WriteByte('\n')
					if err := os.WriteFile(path, pretty.Bytes(), 0o644); err != nil {
						t.Fatal(err)
					}
				}
				golden, err := os.ReadFile(path)
				if err != nil {
					t.Fatalf("%v (run go test ./pkg/policy -run TestDocumentGolden -update)", err)
				}
				var want bytes.Buffer
				if err := json.Compact(&want, golden); err != nil {
					t.Fatalf("golden %s is not JSON: %v", path, err)
				}
				if doc != want.String() {
					t.Errorf("policy differs from %s\n got: %s\nwant: %s", path, doc, want.String())
				}
			})
		}
	}
}

// TestFullNeverAdministersTheBucket: full is every action on the objects
// and reading the bucket's configuration, never an action that changes the
// bucket itself: a bucket policy, ACL or public access block written by a
// vended key would outlive the user. (Before, full was s3:* on the bucket.)
func TestFullNeverAdministersTheBucket(t *testing.T) {
	admin := []string{
		"s3:PutBucketPolicy", "s3:DeleteBucketPolicy", "s3:PutBucketAcl", "s3:PutBucketPublicAccessBlock",
		"s3:PutBucketOwnershipControls", "s3:PutBucketObjectLockConfiguration", "s3:PutLifecycleConfiguration",
		"s3:PutReplicationConfiguration", "s3:PutBucketNotification", "s3:PutInventoryConfiguration",
		"s3:PutBucketLogging", "s3:PutBucketVersioning", "s3:PutEncryptionConfiguration", "s3:PutBucketCORS",
		"s3:PutBucketWebsite", "s3:PutBucketTagging", "s3:DeleteBucket", "s3:CreateBucket",
	}
	reads := []string{"s3:GetBucketPolicy", "s3:GetBucketAcl", "s3:GetBucketVersioning", "s3:GetLifecycleConfiguration",
		"s3:GetReplicationConfiguration", "s3:GetBucketLocation", "s3:ListBucket", "s3:ListBucketVersions"}
	for _, prefix := range []string{"", "deploy/"} {
		g := policy.Grant{Bucket: "b.example.com", Access: policy.Full, Prefix: prefix}
		doc, err := policy.Document("aws", g)
		if err != nil {
			t.Fatal(err)
		}
		p := parseDoc(t, doc)
		bucketActions := map[string]bool{}
		for _, s := range p.Statement {
			for _, r := range s.Resource {
				if r == "arn:aws:s3:::b.example.com" {
					for _, a := range actionList(t, s.Action) {
						bucketActions[a] = true
					}
				}
			}
		}
		for _, a := range admin {
			for pat := range bucketActions {
				if globMatch(strings.ToLower(pat), strings.ToLower(a)) {
					t.Errorf("full (prefix %q): %s on the bucket is allowed by %s", prefix, a, pat)
				}
			}
			// and the boundary's deny list covers it
			covered := false
			for _, pat := range policy.BucketAdminActions {
				covered = covered || globMatch(strings.ToLower(pat), strings.ToLower(a))
			}
			if !covered {
				t.Errorf("BucketAdminActions does not cover %s", a)
			}
		}
		for _, a := range reads {
			ok := false
			for pat := range bucketActions {
				ok = ok || globMatch(strings.ToLower(pat), strings.ToLower(a))
			}
			if !ok {
				t.Errorf("full (prefix %q): cannot %s", prefix, a)
			}
			for _, pat := range policy.BucketAdminActions {
				if globMatch(strings.ToLower(pat), strings.ToLower(a)) {
					t.Errorf("BucketAdminActions pattern %s denies the read %s that full grants", pat, a)
				}
			}
		}
	}
}

// globMatch is IAM's action glob: '*' any run, '?' one character.
func globMatch(p, s string) bool {
	if p == "" {
		return s == ""
	}
	switch p[0] {
	case '*':
		for i := 0; i <= len(s); i++ {
			if globMatch(p[1:], s[i:]) {
				return true
			}
		}
		return false
	case '?':
		return s != "" && globMatch(p[1:], s[1:])
	default:
		return s != "" && s[0] == p[0] && globMatch(p[1:], s[1:])
	}
}

func TestDocumentUnknownAccess(t *testing.T) {
	for _, a := range []policy.Access{"", "admin", "READ-ONLY", "readonly"} {
		if doc, err := policy.Document("aws", policy.Grant{Bucket: "b.example.com", Access: a}); err == nil {
			t.Errorf("Document(access %q) = %s, want an error", a, doc)
		}
	}
}

// parsed mirrors an IAM policy document loosely enough to check any shape:
// Action may be a string or a list.
type parsed struct {
	Version   string
	Statement []struct {
		Sid       string
		Effect    string
		Action    json.RawMessage
		Resource  []string
		Condition map[string]map[string][]string
		// Anything else (NotAction, NotResource, Principal) would be a bug.
		NotAction   json.RawMessage
		NotResource json.RawMessage
		Principal   json.RawMessage
	}
}

func parseDoc(t *testing.T, doc string) parsed {
	t.Helper()
	dec := json.NewDecoder(strings.NewReader(doc))
	dec.DisallowUnknownFields()
	var p parsed
	if err := dec.Decode(&p); err != nil {
		t.Fatalf("policy is not a document of the expected shape: %v\n%s", err, doc)
	}
	return p
}

func actionList(t *testing.T, raw json.RawMessage) []string {
	t.Helper()
	var one string
	if err := json.Unmarshal(raw, &one); err == nil {
		return []string{one}
	}
	var many []string
	if err := json.Unmarshal(raw, &many); err != nil {
		t.Fatalf("Action %s is neither a string nor a list of strings", raw)
	}
	return many
}

// TestDocumentInvariants checks, for every level and a range of buckets and
// prefixes (including prefixes that try to break out of their JSON string),
// the properties the vended credentials rely on.
func TestDocumentInvariants(t *testing.T) {
	buckets := []string{"b.example.com", "abc", strings.Repeat("a", 63)}
	prefixes := []string{
		"", "deploy/site/", "a", "x\"],\"Action\":\"s3:PutObject", `back\slash/`,
		"100% done+more/with spaces/", "<html>&amp;/", strings.Repeat(`"`, policy.MaxPrefixLen),
	}
	// Object-data reads and key listing: never in write-only.
	readActions := func(a string) bool {
		return strings.HasPrefix(a, "s3:GetObject") || strings.HasPrefix(a, "s3:ListBucket")
	}
	// The only Get/List actions write-only may carry: region discovery and
	// the parts of the holder's own multipart uploads.
	writeOnlyGetList := []string{"s3:GetBucketLocation", "s3:ListMultipartUploadParts"}
	for _, level := range policy.Levels {
		for _, bucket := range buckets {
			for _, prefix := range prefixes {
				g := policy.Grant{Bucket: bucket, Access: level, Prefix: prefix}
				if errs := g.Validate(); errs != nil {
					t.Fatalf("test grant %+v is invalid: %v", g, errs)
				}
				doc, err := policy.Document("aws", g)
				if err != nil {
					t.Fatal(err)
				}
				p := parseDoc(t, doc)
				if p.Version != "2012-10-17" || len(p.Statement) == 0 {
					t.Fatalf("%+v: version %q, %d statements", g, p.Version, len(p.Statement))
				}
				bucketARN := "arn:aws:s3:::" + bucket
				objectsARN := bucketARN + "/" + prefix + "*"
				all := map[string]bool{}
				sids := map[string]bool{}
				for _, s := range p.Statement {
					if s.Effect != "Allow" {
						t.Errorf("%+v: statement %s has effect %q", g, s.Sid, s.Effect)
					}
					if s.NotAction != nil || s.NotResource != nil || s.Principal != nil {
						t.Errorf("%+v: statement %s uses NotAction/NotResource/Principal", g, s.Sid)
					}
					if sids[s.Sid] {
						t.Errorf("%+v: duplicate Sid %q", g, s.Sid)
					}
					sids[s.Sid] = true
					acts := actionList(t, s.Action)
					if len(acts) == 0 {
						t.Errorf("%+v: statement %s has no action", g, s.Sid)
					}
					for _, a := range acts {
						all[a] = true
						if !strings.HasPrefix(a, "s3:") {
							t.Errorf("%+v: non-S3 action %q", g, a)
						}
						if strings.ContainsAny(a, "*?") && level != policy.Full {
							t.Errorf("%+v: wildcard action %q outside full", g, a)
						}
					}
					if len(s.Resource) == 0 {
						t.Errorf("%+v: statement %s has no resource", g, s.Sid)
					}
					for _, r := range s.Resource {
						if r != bucketARN && r != objectsARN {
							t.Errorf("%+v: resource %q is neither %q nor %q", g, r, bucketARN, objectsARN)
						}
					}
					if slices.Contains(acts, "s3:ListBucket") && prefix != "" { // and the other List actions of the statement
						want := map[string]map[string][]string{"StringLike": {"s3:prefix": {prefix + "*"}}}
						b1, _ := json.Marshal(s.Condition)
						b2, _ := json.Marshal(want)
						if !bytes.Equal(b1, b2) {
							t.Errorf("%+v: listing is not limited to the prefix: condition %s", g, b1)
						}
					}
					if slices.Contains(acts, "s3:*") && !slices.Equal(s.Resource, []string{objectsARN}) {
						t.Errorf("%+v: s3:* reaches %v, want only the objects %s", g, s.Resource, objectsARN)
					}
				}
				switch level {
				case policy.ReadWrite:
					// What `aws s3 sync --delete` needs on a prefix.
					for _, a := range []string{"s3:ListBucket", "s3:GetObject", "s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload"} {
						if !all[a] {
							t.Errorf("%+v: read-write lacks %s", g, a)
						}
					}
				case policy.ReadOnly:
					for _, a := range []string{"s3:ListBucket", "s3:GetObject"} {
						if !all[a] {
							t.Errorf("%+v: read-only lacks %s", g, a)
						}
					}
					for a := range all {
						if strings.Contains(a, "Put") || strings.Contains(a, "Delete") || strings.Contains(a, "Abort") || strings.Contains(a, "Restore") {
							t.Errorf("%+v: read-only allows %s", g, a)
						}
					}
				case policy.WriteOnly:
					for _, a := range []string{"s3:PutObject", "s3:AbortMultipartUpload"} {
						if !all[a] {
							t.Errorf("%+v: write-only lacks %s", g, a)
						}
					}
					for a := range all {
						if readActions(a) {
							t.Errorf("%+v: write-only allows %s", g, a)
						}
						if (strings.HasPrefix(a, "s3:Get") || strings.HasPrefix(a, "s3:List")) && !slices.Contains(writeOnlyGetList, a) {
							t.Errorf("%+v: write-only allows %s", g, a)
						}
					}
				case policy.Full:
					if !all["s3:*"] {
						t.Errorf("%+v: full lacks s3:*", g)
					}
				}
			}
		}
	}
}

// TestPrefixCannotBreakOutOfItsString: a prefix full of JSON syntax lands,
// escaped, in exactly the two places a prefix belongs.
func TestPrefixCannotBreakOutOfItsString(t *testing.T) {
	prefix := "x\"],\"Action\":\"s3:PutObject\",\"Resource\":[\"arn:aws:s3:::other/"
	g := policy.Grant{Bucket: "b.example.com", Access: policy.ReadOnly, Prefix: prefix}
	if errs := g.Validate(); errs != nil {
		t.Fatalf("the prefix is a valid S3 key prefix, Validate says %v", errs)
	}
	doc, err := policy.Document("aws", g)
	if err != nil {
		t.Fatal(err)
	}
	p := parseDoc(t, doc)
	var acts []string
	var res []string
	for _, s := range p.Statement {
		acts = append(acts, actionList(t, s.Action)...)
		res = append(res, s.Resource...)
	}
	slices.Sort(acts)
	if want := []string{"s3:GetBucketLocation", "s3:GetObject", "s3:ListBucket"}; !slices.Equal(acts, want) {
		t.Errorf("actions = %v, want %v", acts, want)
	}
	if !slices.Contains(res, "arn:aws:s3:::b.example.com/"+prefix+"*") {
		t.Errorf("resources = %v: the prefix did not stay inside its ARN", res)
	}
}
