package policy_test

import (
	"encoding/json"
	"math/rand"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/keyvend/keyvend/pkg/policy"
	"github.com/keyvend/keyvend/pkg/policy/policytest"
)

var mixedGrants = []policy.Grant{
	{Bucket: "site.example.com", Access: policy.ReadWrite},
	{Bucket: "logs.example.com", Access: policy.ReadOnly, Prefix: "app/"},
	{Bucket: "logs.example.com", Access: policy.ReadOnly, Prefix: "web/"},
	{Bucket: "assets.example.com", Access: policy.WriteOnly, Prefix: "img/"},
	{Bucket: "assets.example.com", Access: policy.Full, Prefix: "tmp/"},
	{Bucket: "data.example.com", Access: policy.Full},
	{Bucket: "other.example.com", Access: policy.ReadOnly, Prefix: "app/"},
}

// TestUserDocumentMergesByLevel: one statement per access level for the
// objects, with every grant's objects in its resource list; bucket
// statements merged; each listing prefix its own statement; unique Sids.
func TestUserDocumentMergesByLevel(t *testing.T) {
	doc, err := policy.UserDocument("aws", mixedGrants)
	if err != nil {
		t.Fatal(err)
	}
	if err := policytest.CheckUserDocument("aws", mixedGrants, doc, policy.MaxUserInlineChars); err != nil {
		t.Fatalf("%v\n%s", err, doc)
	}
	p := parseDoc(t, doc)
	bySid := map[string][]string{}
	for _, s := range p.Statement {
		bySid[s.Sid] = s.Resource
	}
	want := map[string][]string{
		"Location": {"arn:aws:s3:::assets.example.com", "arn:aws:s3:::logs.example.com", "arn:aws:s3:::other.example.com", "arn:aws:s3:::site.example.com"},
		"List":     {"arn:aws:s3:::site.example.com"},
		// one statement per listing prefix, each with every bucket listed under it
		"List2":            {"arn:aws:s3:::logs.example.com", "arn:aws:s3:::other.example.com"},
		"List3":            {"arn:aws:s3:::logs.example.com"},
		"FullConfig":       {"arn:aws:s3:::assets.example.com", "arn:aws:s3:::data.example.com"},
		"FullList":         {"arn:aws:s3:::data.example.com"},
		"FullList2":        {"arn:aws:s3:::assets.example.com"},
		"ReadObjects":      {"arn:aws:s3:::logs.example.com/app/*", "arn:aws:s3:::logs.example.com/web/*", "arn:aws:s3:::other.example.com/app/*"},
		"WriteObjects":     {"arn:aws:s3:::assets.example.com/img/*"},
		"ReadWriteObjects": {"arn:aws:s3:::site.example.com/*"},
		"FullObjects":      {"arn:aws:s3:::assets.example.com/tmp/*", "arn:aws:s3:::data.example.com/*"},
	}
	for sid, res := range want {
		if !slices.Equal(bySid[sid], res) {
			t.Errorf("%s: resources %v, want %v", sid, bySid[sid], res)
		}
	}
	if len(bySid) != len(want) {
		t.Errorf("statements %v, want exactly %d", keys(bySid), len(want))
	}
	t.Logf("%d grants in %d characters", len(mixedGrants), policy.Chars(doc))
}

func keys(m map[string][]string) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// TestUserDocumentIsCanonical: the same grants in any order give the same
// bytes, and ParseUserDocument gives them back, exact, from the document
// as IAM returns it (URL-encoded) or as written.
func TestUserDocumentIsCanonical(t *testing.T) {
	first, err := policy.UserDocument("aws", mixedGrants)
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewSource(1))
	for i := 0; i < 20; i++ {
		gs := slices.Clone(mixedGrants)
		rng.Shuffle(len(gs), func(i, j int) { gs[i], gs[j] = gs[j], gs[i] })
		doc, err := policy.UserDocument("aws", gs)
		if err != nil {
			t.Fatal(err)
		}
		if doc != first {
			t.Fatalf("order %v gives another document:\n%s\n%s", gs, doc, first)
		}
	}
	want := slices.Clone(mixedGrants)
	policy.SortGrants(want)
	for enc, doc := range map[string]string{"plain": first, "url-encoded": url.PathEscape(first)} {
		got, exact, err := policy.ParseUserDocument("aws", doc)
		if err != nil || !exact || !slices.Equal(got, want) {
			t.Errorf("%s: ParseUserDocument = %v, exact %v, %v; want %v, exact", enc, got, exact, err, want)
		}
	}
}

// TestParseUserDocumentNotExact: a user policy that says more than the
// grants it names is never read as exactly those grants: the caller treats
// it as drifted (put again) or unknown (authorize as its requester only).
func TestParseUserDocumentNotExact(t *testing.T) {
	gs := []policy.Grant{{Bucket: "site.example.com", Access: policy.ReadOnly}}
	doc, _ := policy.UserDocument("aws", gs)
	tamper := func(f func(d map[string]any)) string {
		var d map[string]any
		if err := json.Unmarshal([]byte(doc), &d); err != nil {
			t.Fatal(err)
		}
		f(d)
		b, _ := json.Marshal(d)
		return string(b)
	}
	stmts := func(d map[string]any) []any { return d["Statement"].([]any) }
	cases := map[string]string{
		"a statement added": tamper(func(d map[string]any) {
			d["Statement"] = append(stmts(d), map[string]any{"Sid": "Extra", "Effect": "Allow", "Action": "iam:*", "Resource": "*"})
		}),
		"an action widened": tamper(func(d map[string]any) {
			stmts(d)[2].(map[string]any)["Action"] = "s3:*"
		}),
		"a bucket added to listing": tamper(func(d map[string]any) {
			stmts(d)[1].(map[string]any)["Resource"] = []any{"arn:aws:s3:::site.example.com", "arn:aws:s3:::other.example.com"}
		}),
		"a condition removed": func() string {
			d, _ := policy.UserDocument("aws", []policy.Grant{{Bucket: "site.example.com", Access: policy.ReadOnly, Prefix: "p/"}})
			var m map[string]any
			_ = json.Unmarshal([]byte(d), &m)
			delete(stmts(m)[1].(map[string]any), "Condition")
			b, _ := json.Marshal(m)
			return string(b)
		}(),
	}
	for what, d := range cases {
		got, exact, err := policy.ParseUserDocument("aws", d)
		if err != nil {
			t.Errorf("%s: %v (want the grants, not exact)", what, err)
			continue
		}
		if exact {
			t.Errorf("%s: read as exactly %v", what, got)
		}
	}
	for what, d := range map[string]string{
		"not JSON":         "{",
		"no grant":         `{"Version":"2012-10-17","Statement":[{"Sid":"X","Effect":"Allow","Action":"s3:*","Resource":["*"]}]}`,
		"other partition":  strings.ReplaceAll(doc, "arn:aws:", "arn:aws-cn:"),
		"wildcard bucket":  strings.ReplaceAll(doc, "site.example.com/*", "*/*"),
		"unknown elements": strings.Replace(doc, `"Effect"`, `"NotPrincipal":"*","Effect"`, 1),
	} {
		if got, _, err := policy.ParseUserDocument("aws", d); err == nil {
			t.Errorf("%s: ParseUserDocument = %v, want an error", what, got)
		}
	}
}

// TestPartition: every ARN names the deployment's partition, never a
// literal aws; a name that is not a partition is refused.
func TestPartition(t *testing.T) {
	for _, p := range []string{"aws-cn", "aws-us-gov"} {
		doc, err := policy.UserDocument(p, mixedGrants)
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(doc, "arn:aws:") {
			t.Errorf("%s: document names partition aws: %s", p, doc)
		}
		if err := policytest.CheckUserDocument(p, mixedGrants, doc, policy.MaxGroupInlineBytes); err != nil {
			t.Errorf("%s: %v", p, err)
		}
		if got, exact, err := policy.ParseUserDocument(p, doc); err != nil || !exact || len(got) != len(mixedGrants) {
			t.Errorf("%s: ParseUserDocument = %v %v %v", p, got, exact, err)
		}
		g := policy.Grant{Bucket: "b.example.com", Access: policy.ReadOnly, Prefix: "p/"}
		gdoc, _ := policy.Document(p, g)
		if back, err := policy.ParseGroup(p, policy.GroupName(g), gdoc); err != nil || back != g {
			t.Errorf("%s: ParseGroup = %v, %v", p, back, err)
		}
	}
	for _, bad := range []string{"", "AWS", "aws:", "arn", "aws-", "aws cn"} {
		if _, err := policy.UserDocument(bad, mixedGrants); err == nil {
			t.Errorf("partition %q accepted", bad)
		}
	}
	for arn, want := range map[string]string{
		"arn:aws-us-gov:iam::123456789012:policy/keyvend/b": "aws-us-gov",
		"arn:aws:iam::123456789012:policy/b":                "aws",
		"arn::iam::1:policy/b":                              "",
		"not-an-arn":                                        "",
	} {
		if got := policy.PartitionOf(arn); got != want {
			t.Errorf("PartitionOf(%s) = %q, want %q", arn, got, want)
		}
	}
}

// TestChars counts what IAM counts: white space between tokens is free,
// white space inside strings is not.
func TestChars(t *testing.T) {
	cases := map[string]int{
		`{"a":"b"}`:              9,
		"{ \"a\" :\n\t\"b\" }":   9,
		`{"a":"b c"}`:            11,
		`{"a":"\" x"}`:           12,
		`{"Statement":[ "x" ]} `: 19,
	}
	for doc, want := range cases {
		if got := policy.Chars(doc); got != want {
			t.Errorf("Chars(%q) = %d, want %d", doc, got, want)
		}
	}
}

// TestExactGroupDocument: a grant group is keyvend's exactly when its
// policy is what keyvend writes for its grant — now, or as keyvend wrote it
// before (groups of an existing deployment) — and not when it says more.
func TestExactGroupDocument(t *testing.T) {
	for _, g := range []policy.Grant{
		{Bucket: "b.example.com", Access: policy.ReadOnly},
		{Bucket: "b.example.com", Access: policy.Full},
		{Bucket: "b.example.com", Access: policy.Full, Prefix: "p/"},
		{Bucket: "b.example.com", Access: policy.WriteOnly, Prefix: "p/"},
	} {
		doc, _ := policy.Document("aws", g)
		if !policy.ExactGroupDocument("aws", g, doc) || !policy.ExactGroupDocument("aws", g, url.PathEscape(doc)) {
			t.Errorf("%+v: its own document is not exact", g)
		}
		legacy := strings.Replace(doc, `"Sid":"`+map[policy.Access]string{policy.ReadOnly: "ReadObjects", policy.WriteOnly: "WriteObjects", policy.Full: "FullObjects"}[g.Access]+`"`, `"Sid":"Objects"`, 1)
		if g.Access == policy.Full {
			legacy = `{"Version":"2012-10-17","Statement":[{"Sid":"Location","Effect":"Allow","Action":"s3:GetBucketLocation","Resource":["arn:aws:s3:::b.example.com"]},{"Sid":"List","Effect":"Allow","Action":"s3:ListBucket","Resource":["arn:aws:s3:::b.example.com"],"Condition":{"StringLike":{"s3:prefix":["p/*"]}}},{"Sid":"Objects","Effect":"Allow","Action":"s3:*","Resource":["arn:aws:s3:::b.example.com/p/*"]}]}`
			if g.Prefix == "" {
				legacy = `{"Version":"2012-10-17","Statement":[{"Sid":"Full","Effect":"Allow","Action":"s3:*","Resource":["arn:aws:s3:::b.example.com","arn:aws:s3:::b.example.com/*"]}]}`
			}
		}
		if !policy.ExactGroupDocument("aws", g, legacy) {
			t.Errorf("%+v: the document keyvend wrote before is not exact: %s", g, legacy)
		}
		for what, bad := range map[string]string{
			"a statement added": strings.Replace(doc, `"Statement":[`, `"Statement":[{"Sid":"X","Effect":"Allow","Action":"iam:*","Resource":["*"]},`, 1),
			"a bucket added":    strings.Replace(doc, `"Resource":["arn:aws:s3:::b.example.com"]`, `"Resource":["arn:aws:s3:::b.example.com","arn:aws:s3:::other"]`, 1),
			"allow everything":  `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"*","Resource":"*"}]}`,
			"another grant's":   mustDoc(t, policy.Grant{Bucket: "b.example.com", Access: policy.ReadWrite}),
			"not JSON":          "{",
		} {
			if policy.ExactGroupDocument("aws", g, bad) {
				t.Errorf("%+v: %s taken as exact", g, what)
			}
		}
	}
}

func mustDoc(t *testing.T, g policy.Grant) string {
	t.Helper()
	d, err := policy.Document("aws", g)
	if err != nil {
		t.Fatal(err)
	}
	return d
}
