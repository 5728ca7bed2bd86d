package policy_test

import (
	"fmt"
	"net/url"
	"regexp"
	"strings"
	"testing"

	"github.com/keyvend/keyvend/pkg/policy"
)

// iamNameRE is IAM's character set for group names.
var iamNameRE = regexp.MustCompile(`^[A-Za-z0-9+=,.@_-]+$`)

func TestGroupName(t *testing.T) {
	longBucket := strings.Repeat("b", 63)
	longPrefix := strings.Repeat("p/", policy.MaxPrefixLen/2)
	if len(longPrefix) != policy.MaxPrefixLen {
		t.Fatalf("long prefix is %d characters", len(longPrefix))
	}
	seen := map[string]policy.Grant{}
	for _, level := range policy.Levels {
		for _, bucket := range []string{"abc", "b.example.com", longBucket} {
			for _, prefix := range []string{"", "deploy/site/", "deploy/site", "deploy/sitf/", "a b+c%d/", longPrefix} {
				g := policy.Grant{Bucket: bucket, Access: level, Prefix: prefix}
				name := policy.GroupName(g)
				if again := policy.GroupName(g); again != name {
					t.Errorf("GroupName(%+v) is not deterministic: %s, then %s", g, name, again)
				}
				if len(name) > 128 {
					t.Errorf("GroupName(%+v) is %d characters, over IAM's 128", g, len(name))
				}
				if !iamNameRE.MatchString(name) {
					t.Errorf("GroupName(%+v) = %q has characters IAM refuses", g, name)
				}
				if !strings.HasPrefix(name, "keyvend_"+string(level)+"_"+bucket) {
					t.Errorf("GroupName(%+v) = %q does not name its access and bucket", g, name)
				}
				if other, dup := seen[strings.ToLower(name)]; dup {
					// IAM names are unique case-insensitively.
					t.Errorf("GroupName(%+v) = GroupName(%+v) = %s", g, other, name)
				}
				seen[strings.ToLower(name)] = g
			}
		}
	}
	// The longest possible name stays well inside IAM's limit.
	longest := policy.GroupName(policy.Grant{Bucket: longBucket, Access: policy.ReadWrite, Prefix: longPrefix})
	if len(longest) > 99 {
		t.Errorf("longest group name is %d characters, documented as at most 99: %s", len(longest), longest)
	}
}

// rfc3986Escape percent-encodes everything but RFC 3986's unreserved
// characters, as IAM does to the policy documents it returns.
func rfc3986Escape(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || strings.IndexByte("-._~", c) >= 0 {
			b.WriteByte(c)
		} else {
			fmt.Fprintf(&b, "%%%02X", c)
		}
	}
	return b.String()
}

func TestParseGroupRoundTrip(t *testing.T) {
	prefixes := []string{
		"", "deploy/site/", "a",
		"100% off+more/with spaces/", // '%', '+' and ' ' must not be mangled
		"already%2Fencoded/%7B/",     // a literal %XX must be decoded exactly once
		`quote"and\backslash/`,
		strings.Repeat("x", policy.MaxPrefixLen),
	}
	for _, level := range policy.Levels {
		for _, prefix := range prefixes {
			g := policy.Grant{Bucket: "b.example.com", Access: level, Prefix: prefix}
			if errs := g.Validate(); errs != nil {
				t.Fatalf("test grant %+v is invalid: %v", g, errs)
			}
			name := policy.GroupName(g)
			doc, err := policy.Document("aws", g)
			if err != nil {
				t.Fatal(err)
			}
			encodings := map[string]string{
				"plain":         doc,
				"rfc3986":       rfc3986Escape(doc),
				"rfc3986-lower": strings.ToLower(rfc3986Escape(doc)[:3]) + rfc3986Escape(doc)[3:],
				"path-escaped":  url.PathEscape(doc),
			}
			for enc, d := range encodings {
				got, err := policy.ParseGroup("aws", name, d)
				if err != nil {
					t.Errorf("ParseGroup(%s, %s policy of %+v): %v", name, enc, g, err)
					continue
				}
				if got != g {
					t.Errorf("ParseGroup(%s, %s policy) = %+v, want %+v", name, enc, got, g)
				}
			}
			if prefix == "" {
				// A group without a prefix is recognised from its name alone.
				got, err := policy.ParseGroup("aws", name, "")
				if err != nil || got != g {
					t.Errorf("ParseGroup(%s, \"\") = %+v, %v; want %+v", name, got, err, g)
				}
			}
		}
	}
}

func TestParseGroupRejects(t *testing.T) {
	g := policy.Grant{Bucket: "b.example.com", Access: policy.ReadWrite, Prefix: "deploy/site/"}
	doc, _ := policy.Document("aws", g)
	other, _ := policy.Document("aws", policy.Grant{Bucket: "b.example.com", Access: policy.ReadWrite, Prefix: "deploy/other/"})
	otherBucket, _ := policy.Document("aws", policy.Grant{Bucket: "c.example.com", Access: policy.ReadWrite, Prefix: "deploy/site/"})
	name := policy.GroupName(g)
	cases := []struct{ what, name, doc string }{
		{"not a keyvend group", "admins", doc},
		{"foreign prefix", "other_read-write_b.example.com", doc},
		{"unknown access level", "keyvend_admin_b.example.com", ""},
		{"too few parts", "keyvend_read-write", ""},
		{"too many parts", name + "_extra", doc},
		{"policy of another prefix (drift)", name, other},
		{"policy of another bucket", name, otherBucket},
		{"prefixed name without policy", name, ""},
		{"prefixed name with garbage policy", name, "not json"},
		{"bad percent-encoding", name, "%7B%zz"},
		{"hash of a different prefix", "keyvend_read-write_b.example.com_0000000000000000", doc},
	}
	for _, c := range cases {
		if got, err := policy.ParseGroup("aws", c.name, c.doc); err == nil {
			t.Errorf("%s: ParseGroup(%q) = %+v, want an error", c.what, c.name, got)
		}
	}
}

func TestCheckBucketName(t *testing.T) {
	valid := []string{
		"abc", "a.b", "a-b", "b.example.com", "1bucket", "bucket1", "my.bucket-name.123",
		strings.Repeat("a", 63), "xn-abc", "sthree", "abc-s3alia", "192.168.1.1.example", "1.2.3",
	}
	for _, name := range valid {
		if msg := policy.CheckBucketName(name); msg != "" {
			t.Errorf("CheckBucketName(%q) = %q, want valid", name, msg)
		}
	}
	invalid := []struct{ name, wantMsg string }{
		{"", "required"},
		{"ab", "3 to 63"},
		{strings.Repeat("a", 64), "3 to 63"},
		{"Abc", "invalid character"},
		{"ABC.EXAMPLE.COM", "invalid character"},
		{"a_b", "invalid character"},
		{"a b", "invalid character"},
		{"*", "3 to 63"},
		{"***", "invalid character"},
		{"b*.example.com", "invalid character"},
		{"arn:aws:s3:::x", "invalid character"},
		{"a/b", "invalid character"},
		{`a"],"Action":"*`, "invalid character"},
		{"bücket", "invalid character"},
		{"-abc", "begin and end"},
		{"abc-", "begin and end"},
		{".abc", "begin and end"},
		{"abc.", "begin and end"},
		{"a..b", "adjacent periods"},
		{"192.168.1.1", "IP address"},
		{"10.0.0.1", "IP address"},
		{"xn--abc", "reserved prefix"},
		{"sthree-abc", "reserved prefix"},
		{"amzn-s3-demo-bucket", "reserved prefix"},
		{"abc-s3alias", "reserved suffix"},
		{"abc--ol-s3", "reserved suffix"},
		{"abc.mrap", "reserved suffix"},
		{"abc--x-s3", "reserved suffix"},
		{"abc--table-s3", "reserved suffix"},
	}
	for _, c := range invalid {
		msg := policy.CheckBucketName(c.name)
		if msg == "" {
			t.Errorf("CheckBucketName(%q) = valid, want an error", c.name)
		} else if !strings.Contains(msg, c.wantMsg) {
			t.Errorf("CheckBucketName(%q) = %q, want it to mention %q", c.name, msg, c.wantMsg)
		}
	}
}

func TestCheckPrefix(t *testing.T) {
	valid := []string{
		"", "a", "deploy/site/", "deploy/site", "a/b/c/", "with space/", "100%+x/", ".hidden/",
		"a.b/", "a-b_c=d,e@f/", `quote"back\`, "trailing.", strings.Repeat("x", policy.MaxPrefixLen),
	}
	for _, p := range valid {
		if msg := policy.CheckPrefix(p); msg != "" {
			t.Errorf("CheckPrefix(%q) = %q, want valid", p, msg)
		}
	}
	invalid := []struct{ prefix, wantMsg string }{
		{"*", "wildcard"},
		{"deploy/*", "wildcard"},
		{"deploy/?", "wildcard"},
		{`a"],"Action":"*`, "wildcard"},
		{"$", "'$'"},
		{"${aws:username}/", "'$'"},
		{"..", "segment"},
		{".", "segment"},
		{"../admin", "segment"},
		{"a/../b", "segment"},
		{"a/./b", "segment"},
		{"a/..", "segment"},
		{"a..b", "'..'"},
		{"/leading", "start with '/'"},
		{"/", "start with '/'"},
		{"a\x00b", "control"},
		{"a\tb", "control"},
		{"a\nb", "control"},
		{"a\rb", "control"},
		{"\x7f", "control"},
		{"déploy/", "printable ASCII"},
		{"日本/", "printable ASCII"},
		{"\u00a0", "printable ASCII"},
		{strings.Repeat("x", policy.MaxPrefixLen+1), "at most"},
	}
	for _, c := range invalid {
		msg := policy.CheckPrefix(c.prefix)
		if msg == "" {
			t.Errorf("CheckPrefix(%q) = valid, want an error", c.prefix)
		} else if !strings.Contains(msg, c.wantMsg) {
			t.Errorf("CheckPrefix(%q) = %q, want it to mention %q", c.prefix, msg, c.wantMsg)
		}
	}
}

func TestValidateReportsEveryField(t *testing.T) {
	errs := policy.Grant{Bucket: "Bad_Bucket", Access: "admin", Prefix: "../x"}.Validate()
	got := map[string]bool{}
	for _, e := range errs {
		got[e.Field] = true
	}
	for _, f := range []string{"bucket", "access", "prefix"} {
		if !got[f] {
			t.Errorf("Validate errors %v do not name %s", errs, f)
		}
	}
	if errs := (policy.Grant{Bucket: "b.example.com", Access: policy.ReadOnly}).Validate(); errs != nil {
		t.Errorf("valid grant: %v", errs)
	}
}

// TestPolicySizeLimit: IAM refuses group inline policies over 5,120
// characters. MaxPrefixLen keeps every valid grant under that, so instead of
// a rejected grant (none exists) this checks the largest possible ones: the
// longest bucket with the longest prefix of the characters JSON escapes
// (each doubles), at every access level. It also checks that the one way
// to grow a policy further, a longer prefix, is refused by Validate.
func TestPolicySizeLimit(t *testing.T) {
	bucket := strings.Repeat("b", 63)
	largest := 0
	for _, level := range policy.Levels {
		for _, c := range []string{`"`, `\`, "<", "&", "a"} {
			g := policy.Grant{Bucket: bucket, Access: level, Prefix: strings.Repeat(c, policy.MaxPrefixLen)}
			if errs := g.Validate(); errs != nil {
				t.Fatalf("largest grant %s/%q: Validate = %v, want valid", level, c, errs)
			}
			doc, err := policy.Document("aws", g)
			if err != nil {
				t.Fatal(err)
			}
			if policy.Chars(doc) > policy.MaxGroupInlineBytes {
				t.Errorf("%s with a %d-character %q prefix: policy is %d characters, over %d but Validate accepted it",
					level, policy.MaxPrefixLen, c, len(doc), policy.MaxGroupInlineBytes)
			}
			largest = max(largest, len(doc))
		}
		over := policy.Grant{Bucket: bucket, Access: level, Prefix: strings.Repeat(`"`, policy.MaxPrefixLen+1)}
		errs := over.Validate()
		if len(errs) != 1 || errs[0].Field != "prefix" {
			t.Errorf("%s with a %d-character prefix: Validate = %v, want one prefix error", level, policy.MaxPrefixLen+1, errs)
		}
	}
	t.Logf("largest valid policy: %d of %d characters", largest, policy.MaxGroupInlineBytes)
	if largest == 0 {
		t.Fatal("no policy measured")
	}
}
