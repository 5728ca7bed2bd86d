package authz_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/keyvend/keyvend/pkg/authz"
	"github.com/keyvend/keyvend/pkg/policy"
)

func TestMatch(t *testing.T) {
	cases := []struct {
		p, s string
		want bool
	}{
		{"", "", true},
		{"", "a", false},
		{"a", "", false},
		{"*", "", true},
		{"**", "", true},
		{"?", "", false},
		{"abc", "abc", true},
		{"abc", "abd", false},
		{"abc", "ab", false},
		{"ab", "abc", false},
		{"abc", "ABC", false},
		{"*", "anything at all", true},
		{"*.example.com", "site.example.com", true},
		{"*.example.com", "a.b.example.com", true},
		{"*.example.com", ".example.com", true},
		{"*.example.com", "example.com", false},
		{"*.example.com", "site.example.com.evil", false},
		{"*.example.com", "siteXexample.com", false},
		{"site-*", "site-", true},
		{"site-*", "site", false},
		{"a*b*c", "abc", true},
		{"a*b*c", "aXXbYYc", true},
		// A '*' in the string where the pattern has one (a JWT subject may
		// hold one) was matched literally, with no way back (found by FuzzMatch).
		{"*", "*0", true},
		{"jwt:*", "jwt:*evil", true},
		{"*a", "*ba", true},
		{"a*b*c", "acb", false},
		{"a*", "a", true},
		{"*a", "ba", true},
		{"*a", "ab", false},
		{"?", "a", true},
		{"?", "ab", false},
		{"??", "ab", true},
		{"b?t", "bat", true},
		{"b?t", "bt", false},
		{"b?t", "b/t", true},
		{"a?c*", "abcdef", true},
		// '*' spans '/' and ':' (unlike path.Match).
		{"arn:aws:iam::123456789012:user/*", "arn:aws:iam::123456789012:user/alice", true},
		{"arn:aws:iam::123456789012:user/*", "arn:aws:iam::123456789012:user/team/alice", true},
		{"arn:aws:iam::123456789012:user/*", "arn:aws:iam::123456789012:role/alice", false},
		{"arn:aws:iam::*:role/deployer", "arn:aws:iam::999999999999:role/deployer", true},
		{"arn:*:role/deployer", "arn:aws:iam::1:role/deployer", true},
		{"arn:aws:iam::123456789012:user/alice", "arn:aws:iam::123456789012:user/alice2", false},
		{"arn:aws:iam::12345678901?:user/alice", "arn:aws:iam::123456789012:user/alice", true},
		// No character class or escape syntax: '[' and '\' are literal.
		{"[ab]", "a", false},
		{"[ab]", "[ab]", true},
		{`a\*`, `a\xyz`, true},
		{`a\*`, "a*", false},
		// Backtracking that a greedy matcher gets wrong.
		{"*ab", "aab", true},
		{"*aab", "aaab", true},
		{"a*a", "aa", true},
		{"a*a", "a", false},
		{"*?", "", false},
		{"*?", "x", true},
	}
	for _, c := range cases {
		if got := authz.Match(c.p, c.s); got != c.want {
			t.Errorf("Match(%q, %q) = %v, want %v", c.p, c.s, got, c.want)
		}
	}
}

// TestMatchPathological: a backtracking matcher takes time exponential in
// the stars for these; the linear-backtrack one returns at once. The input
// is large enough that an exponential matcher would not return before the
// test binary's timeout, so this needs no clock.
func TestMatchPathological(t *testing.T) {
	long := strings.Repeat("a", 1<<16)
	cases := []struct {
		p, s string
		want bool
	}{
		{"a*a*a*a*b", long, false},
		{"a*a*a*a*a*a*a*a*a*a*b", long, false},
		{"*a*a*a*a*a*a*a*a*a*a", long, true},
		{strings.Repeat("*a", 100) + "b", long, false},
		{strings.Repeat("a", 1<<15) + "*" + strings.Repeat("a", 1<<15) + "b", long, false},
		{"a*a*a*a*b", long + "b", true},
	}
	for _, c := range cases {
		if got := authz.Match(c.p, c.s); got != c.want {
			t.Errorf("Match(%.20q…, %d×a…) = %v, want %v", c.p, len(c.s), got, c.want)
		}
	}
}

func TestParseRejects(t *testing.T) {
	valid := `{"principals":["arn:aws:iam::1:user/a"],"buckets":["*.example.com"],"access":["read-only"]}`
	cases := []struct {
		name, doc string
		want      []string // substrings the error must contain
	}{
		{"unknown top-level field", `{"rules":[], "extra":1}`, []string{`"extra"`}},
		{"unknown rule field", `{"rules":[` + valid + `,{"principals":["a"],"buckets":["b"],"access":["full"],"effect":"deny"}]}`, []string{`"effect"`}},
		{"missing principals", `{"rules":[` + valid + `,{"buckets":["abc"],"access":["full"]}]}`, []string{"rules[1].principals"}},
		{"empty principals", `{"rules":[{"principals":[],"buckets":["abc"],"access":["full"]}]}`, []string{"rules[0].principals"}},
		{"empty principal pattern", `{"rules":[{"principals":["arn:x",""],"buckets":["abc"],"access":["full"]}]}`, []string{"rules[0].principals[1]"}},
		{"blank principal pattern", `{"rules":[` + valid + `,` + valid + `,{"principals":["  "],"buckets":["abc"],"access":["full"]}]}`, []string{"rules[2].principals[0]"}},
		{"missing buckets", `{"rules":[{"principals":["a"],"access":["full"]}]}`, []string{"rules[0].buckets"}},
		{"empty bucket pattern", `{"rules":[{"principals":["a"],"buckets":["abc",""],"access":["full"]}]}`, []string{"rules[0].buckets[1]"}},
		{"uppercase bucket pattern", `{"rules":[` + valid + `,{"principals":["a"],"buckets":["Site.example.com"],"access":["full"]}]}`, []string{"rules[1].buckets[0]", "Site.example.com"}},
		{"bucket pattern with slash", `{"rules":[{"principals":["a"],"buckets":["b/*"],"access":["full"]}]}`, []string{"rules[0].buckets[0]"}},
		{"bucket pattern that is an ARN", `{"rules":[{"principals":["a"],"buckets":["arn:aws:s3:::b"],"access":["full"]}]}`, []string{"rules[0].buckets[0]"}},
		{"missing access", `{"rules":[{"principals":["a"],"buckets":["abc"]}]}`, []string{"rules[0].access"}},
		{"unknown access level", `{"rules":[` + valid + `,{"principals":["a"],"buckets":["abc"],"access":["read-only","admin"]}]}`, []string{"rules[1].access[1]", "admin"}},
		{"access level in capitals", `{"rules":[{"principals":["a"],"buckets":["abc"],"access":["FULL"]}]}`, []string{"rules[0].access[0]"}},
		{"every problem of a rule", `{"rules":[{"principals":[""],"buckets":["A"],"access":["x"]}]}`, []string{"rules[0].principals[0]", "rules[0].buckets[0]", "rules[0].access[0]"}},
		{"wrong type", `{"rules":{"principals":["a"]}}`, []string{"invalid JSON"}},
		{"access not a list", `{"rules":[{"principals":["a"],"buckets":["abc"],"access":"full"}]}`, []string{"invalid JSON"}},
		{"not JSON", `rules: []`, []string{"invalid JSON"}},
		{"empty", ``, []string{"invalid JSON"}},
		{"truncated", `{"rules":[`, []string{"invalid JSON"}},
		{"trailing document", `{"rules":[]}{"rules":[]}`, []string{"trailing"}},
		{"trailing garbage", `{"rules":[]} x`, []string{"invalid JSON"}},
		{"trailing brace", `{"rules":[]}}`, []string{"invalid JSON"}},
		// A pattern that reaches every bucket of the account must be meant.
		{"bare * without all_buckets", `{"rules":[{"principals":["a"],"buckets":["*"],"access":["read-only"]}]}`, []string{"rules[0].buckets[0]", "all_buckets"}},
		{"** without all_buckets", `{"rules":[{"principals":["a"],"buckets":["abc","**"],"access":["read-only"]}]}`, []string{"rules[0].buckets[1]", "all_buckets"}},
		{"???* without all_buckets", `{"rules":[{"principals":["a"],"buckets":["???*"],"access":["read-only"]}]}`, []string{"rules[0].buckets[0]", "all_buckets"}},
		{"all_buckets without a match-all pattern", `{"rules":[{"principals":["a"],"buckets":["team-*"],"all_buckets":true,"access":["read-only"]}]}`, []string{"rules[0].all_buckets"}},
		{"trailing bracket", `{"rules":[]}]`, []string{"invalid JSON"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			rs, err := authz.Parse(strings.NewReader(c.doc))
			if err == nil {
				t.Fatalf("Parse(%s) = %+v, want an error", c.doc, rs)
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}

func TestParseAccepts(t *testing.T) {
	for _, doc := range []string{
		`{"rules":[]}`,
		`{}`,
		"  {\"rules\":[{\"principals\":[\"*\"],\"buckets\":[\"*\"],\"all_buckets\":true,\"access\":[\"read-only\",\"write-only\",\"read-write\",\"full\"]}]}\n\n",
		`{"rules":[{"principals":["arn:aws:iam::1:role/x"],"buckets":["site-??.example.com","*"],"all_buckets":true,"access":["full"]}]}`,
		// Patterns of only wildcards that cannot match a 3-character name
		// do not reach every bucket.
		`{"rules":[{"principals":["a"],"buckets":["????*","?"],"access":["full"]}]}`,
	} {
		if _, err := authz.Parse(strings.NewReader(doc)); err != nil {
			t.Errorf("Parse(%s): %v", doc, err)
		}
	}
}

func grant(bucket string, a policy.Access) policy.Grant {
	return policy.Grant{Bucket: bucket, Access: a}
}

// authorize is Decide for the create action and one principal ("" is
// anonymous: no names).
func authorize(rs *authz.Rules, principal string, grants []policy.Grant) error {
	var names []string
	if principal != "" {
		names = []string{principal}
	}
	return rs.Decide(names, authz.Create, grants)
}

func TestLoadEmptyPathDeniesAll(t *testing.T) {
	rs, err := authz.Load("")
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"", "*", "arn:aws:iam::123456789012:user/alice", "arn:aws:iam::123456789012:root"} {
		for _, a := range policy.Levels {
			g := grant("b.example.com", a)
			var d *authz.ActionDenial
			if err := authorize(rs, p, []policy.Grant{g}); !errors.As(err, &d) {
				t.Errorf("Load(\"\") lets %q create %s: %v, want an *ActionDenial", p, a, err)
			}
		}
	}
	var zero authz.Rules
	if err := authorize(&zero, "arn:aws:iam::1:user/a", []policy.Grant{grant("abc", policy.ReadOnly)}); err == nil {
		t.Error("the zero Rules allowed a grant")
	}
}

func TestLoadErrors(t *testing.T) {
	dir := t.TempDir()
	if _, err := authz.Load(filepath.Join(dir, "missing.json")); err == nil {
		t.Error("Load of a missing file succeeded")
	}
	bad := filepath.Join(dir, "bad.json")
	if err := os.WriteFile(bad, []byte(`{"rules":[{"principals":["a"],"buckets":["abc"],"access":["root"]}]}`), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := authz.Load(bad)
	if err == nil || !strings.Contains(err.Error(), bad) || !strings.Contains(err.Error(), "rules[0].access[0]") {
		t.Errorf("Load(bad) = %v, want an error naming the file and rules[0].access[0]", err)
	}
}

const (
	alice = "arn:aws:iam::123456789012:user/alice"
	bob   = "arn:aws:iam::123456789012:user/bob"
	ci    = "arn:aws:iam::123456789012:role/ci"
)

func testRules(t *testing.T) *authz.Rules {
	t.Helper()
	rs, err := authz.Parse(strings.NewReader(`{"rules":[
		{"principals":["` + alice + `"],"buckets":["*.example.com"],"access":["read-only","read-write"]},
		{"principals":["` + alice + `","` + ci + `"],"buckets":["assets.example.com","logs-??.example.org"],"access":["full"]},
		{"principals":["arn:aws:iam::123456789012:role/*"],"buckets":["public-*"],"access":["read-only"]}
	]}`))
	if err != nil {
		t.Fatal(err)
	}
	return rs
}

// TestAuthorizeGrants: which grants the rules let one principal create.
func TestAuthorizeGrants(t *testing.T) {
	rs := testRules(t)
	cases := []struct {
		name      string
		principal string
		grants    []policy.Grant
		deny      int // index of the denied grant, or -1
	}{
		{"allowed by the first rule", alice, []policy.Grant{grant("site.example.com", policy.ReadWrite)}, -1},
		{"allowed by the second rule", ci, []policy.Grant{grant("assets.example.com", policy.Full)}, -1},
		{"allowed by a '?' pattern", ci, []policy.Grant{grant("logs-01.example.org", policy.Full)}, -1},
		{"allowed by a principal pattern", "arn:aws:iam::123456789012:role/any", []policy.Grant{grant("public-data", policy.ReadOnly)}, -1},
		{"several grants from different rules", alice, []policy.Grant{grant("site.example.com", policy.ReadOnly), grant("assets.example.com", policy.Full), grant("x.example.com", policy.ReadWrite)}, -1},
		{"prefix does not matter to rules", alice, []policy.Grant{{Bucket: "site.example.com", Access: policy.ReadOnly, Prefix: "deploy/"}}, -1},
		{"principal mismatch", bob, []policy.Grant{grant("site.example.com", policy.ReadOnly)}, 0},
		{"principal differs in case", strings.ToUpper(alice), []policy.Grant{grant("site.example.com", policy.ReadOnly)}, 0},
		{"anonymous", "", []policy.Grant{grant("site.example.com", policy.ReadOnly)}, 0},
		{"bucket mismatch", alice, []policy.Grant{grant("site.example.org", policy.ReadOnly)}, 0},
		{"bucket is a suffix trick", alice, []policy.Grant{grant("example.com.evil.org", policy.ReadOnly)}, 0},
		{"access mismatch", alice, []policy.Grant{grant("site.example.com", policy.Full)}, 0},
		{"write-only not listed", alice, []policy.Grant{grant("site.example.com", policy.WriteOnly)}, 0},
		{"rules do not combine across principals", ci, []policy.Grant{grant("site.example.com", policy.ReadOnly)}, 0},
		{"'?' is exactly one character", ci, []policy.Grant{grant("logs-1.example.org", policy.Full)}, 0},
		{"one of several denied", alice, []policy.Grant{grant("a.example.com", policy.ReadOnly), grant("b.example.com", policy.ReadWrite), grant("c.example.com", policy.Full), grant("d.example.com", policy.ReadOnly)}, 2},
		{"last of several denied", ci, []policy.Grant{grant("assets.example.com", policy.Full), grant("public-x", policy.ReadOnly), grant("public-x", policy.ReadWrite)}, 2},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := authorize(rs, c.principal, c.grants)
			if c.deny < 0 {
				if err != nil {
					t.Fatalf("Decide = %v, want allowed", err)
				}
				return
			}
			var d *authz.ActionDenial
			if !errors.As(err, &d) {
				t.Fatalf("Decide = %v, want an *ActionDenial", err)
			}
			if c.principal != "" && d.Grant != c.grants[c.deny] {
				t.Errorf("denied grant = %+v, want grants[%d] = %+v", d.Grant, c.deny, c.grants[c.deny])
			}
			if c.principal != "" && !strings.Contains(err.Error(), c.principal) {
				t.Errorf("denial %q does not name the principal", err)
			}
		})
	}
}

func TestDemoRulesParse(t *testing.T) {
	rs, err := authz.Load(filepath.Join("..", "..", "rules", "demo.json"))
	if err != nil {
		t.Fatal(err)
	}
	if len(rs.Rules) == 0 {
		t.Fatal("demo rules are empty")
	}
	dev := "arn:aws:iam::123456789012:user/local-dev"
	for _, c := range []struct {
		principal string
		g         policy.Grant
		want      bool
	}{
		{dev, grant("site.example.com", policy.ReadWrite), true},
		{dev, grant("assets.example.com", policy.Full), true},
		{dev, grant("site.example.com", policy.Full), false},
		{"arn:aws:iam::123456789012:user/someone", grant("site.example.com", policy.ReadOnly), true},
		{"arn:aws:iam::123456789012:role/someone", grant("site.example.com", policy.ReadOnly), false},
		{"arn:aws:iam::999999999999:user/someone", grant("site.example.com", policy.ReadOnly), false},
	} {
		if got := authorize(rs, c.principal, []policy.Grant{c.g}) == nil; got != c.want {
			t.Errorf("demo rules: %s may create %+v: %v, want %v", c.principal, c.g, got, c.want)
		}
	}
}

// TestRotateEvery: rotate_every is whole days from 1 to 1000 (Secrets
// Manager's schedule); anything else is refused naming the rule. A user's
// schedule is the shortest of the rules covering one of its grants.
func TestRotateEvery(t *testing.T) {
	rule := func(every string) string {
		return `{"rules":[{"principals":["*"],"buckets":["*.example.com"],"access":["read-write"],"rotate_every":` + every + `}]}`
	}
	for _, ok := range []string{`"24h"`, `"2160h"`, `"24000h"`} {
		if _, err := authz.Parse(strings.NewReader(rule(ok))); err != nil {
			t.Errorf("rotate_every %s: %v", ok, err)
		}
	}
	for _, bad := range []string{`"23h"`, `"0.5h"`, `"24001h"`, `"36h"`, `"-48h"`, `"90d"`, `2160`, `"soon"`} {
		if _, err := authz.Parse(strings.NewReader(rule(bad))); err == nil || !strings.Contains(err.Error(), "rotate_every") {
			t.Errorf("rotate_every %s: %v, want an error naming rotate_every", bad, err)
		}
	}
	rs, err := authz.Parse(strings.NewReader(`{"rules":[
		{"principals":["a"],"buckets":["*.example.com"],"access":["read-write"],"rotate_every":"2160h"},
		{"principals":["b"],"buckets":["prod.example.com"],"access":["read-write"],"rotate_every":"720h"},
		{"principals":["c"],"buckets":["*.example.org"],"access":["read-only"]}]}`))
	if err != nil {
		t.Fatal(err)
	}
	rw := func(b string) policy.Grant { return policy.Grant{Bucket: b, Access: policy.ReadWrite} }
	for _, c := range []struct {
		grants []policy.Grant
		want   time.Duration
	}{
		{[]policy.Grant{rw("site.example.com")}, 2160 * time.Hour},
		{[]policy.Grant{rw("site.example.com"), rw("prod.example.com")}, 720 * time.Hour},
		{[]policy.Grant{{Bucket: "x.example.org", Access: policy.ReadOnly}}, 0},
		{[]policy.Grant{{Bucket: "site.example.com", Access: policy.ReadOnly}}, 0}, // no rule covers read-only there
		{nil, 0},
	} {
		if got := rs.RotateEvery(c.grants); got != c.want {
			t.Errorf("RotateEvery(%v) = %s, want %s", c.grants, got, c.want)
		}
	}
	if !rs.AskRotation() || (&authz.Rules{}).AskRotation() {
		t.Error("AskRotation")
	}
}
