package slashcmd_test

import (
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/keyvend/keyvend/pkg/policy"
	"github.com/keyvend/keyvend/pkg/provision"
	"github.com/keyvend/keyvend/pkg/slashcmd"
)

func TestParseCommands(t *testing.T) {
	g := func(bucket string, a policy.Access, prefix string) policy.Grant {
		return policy.Grant{Bucket: bucket, Access: a, Prefix: prefix}
	}
	cases := []struct {
		text string
		want slashcmd.Command
	}{
		{`provision site-deployer site.example.com:read-write "blog deploys"`,
			slashcmd.Command{Op: slashcmd.OpProvision, User: "site-deployer", Grants: []policy.Grant{g("site.example.com", policy.ReadWrite, "")}, Reason: "blog deploys"}},
		{`provision site-deployer site.example.com:read-write "blog deploys" --expires 720h`,
			slashcmd.Command{Op: slashcmd.OpProvision, User: "site-deployer", Grants: []policy.Grant{g("site.example.com", policy.ReadWrite, "")}, Reason: "blog deploys", ExpiresIn: "720h"}},
		{`PROVISION u a.example.com b.example.com:rw:img/ c.example.com:wo:x:y --expires=2030-01-02T03:04:05Z 'two words'`,
			slashcmd.Command{Op: slashcmd.OpProvision, User: "u", Grants: []policy.Grant{
				g("a.example.com", policy.ReadOnly, ""), g("b.example.com", policy.ReadWrite, "img/"), g("c.example.com", policy.WriteOnly, "x:y")},
				Reason: "two words", ExpiresAt: "2030-01-02T03:04:05Z"}},
		{"provision  u\ta.example.com:FULL  “smart quotes from the Slack client”",
			slashcmd.Command{Op: slashcmd.OpProvision, User: "u", Grants: []policy.Grant{g("a.example.com", policy.Full, "")}, Reason: "smart quotes from the Slack client"}},
		{`provision u a.example.com:rw:"my dir/"`,
			slashcmd.Command{Op: slashcmd.OpProvision, User: "u", Grants: []policy.Grant{g("a.example.com", policy.ReadWrite, "my dir/")}}},
		// Slack links a domain-looking word and escapes what users type.
		{`provision u <http://site.example.com|site.example.com>:rw "a &amp; b"`,
			slashcmd.Command{Op: slashcmd.OpProvision, User: "u", Grants: []policy.Grant{g("site.example.com", policy.ReadWrite, "")}, Reason: "a & b"}},
		{`provision u <http://site.example.com>:ro`,
			slashcmd.Command{Op: slashcmd.OpProvision, User: "u", Grants: []policy.Grant{g("site.example.com", policy.ReadOnly, "")}}},
		{`rotate site-deployer`, slashcmd.Command{Op: slashcmd.OpRotate, User: "site-deployer"}},
		{`status site-deployer`, slashcmd.Command{Op: slashcmd.OpStatus, User: "site-deployer"}},
		{`delete site-deployer`, slashcmd.Command{Op: slashcmd.OpDelete, User: "site-deployer"}},
		{`deprovision site-deployer`, slashcmd.Command{Op: slashcmd.OpDelete, User: "site-deployer"}},
		{`list`, slashcmd.Command{Op: slashcmd.OpList}},
		{`list site.example.com`, slashcmd.Command{Op: slashcmd.OpList, Bucket: "site.example.com"}},
		{`help`, slashcmd.Command{Op: slashcmd.OpHelp}},
		{`approve apr-0123456789abcdef0123`, slashcmd.Command{Op: slashcmd.OpApprove, ID: "apr-0123456789abcdef0123"}},
		{`Deny apr-0123456789abcdef0123 “not for prod”`, slashcmd.Command{Op: slashcmd.OpDeny, ID: "apr-0123456789abcdef0123", Reason: "not for prod"}},
		{`pending`, slashcmd.Command{Op: slashcmd.OpPending}},
		{``, slashcmd.Command{Op: slashcmd.OpHelp}},
		{"   \n", slashcmd.Command{Op: slashcmd.OpHelp}},
	}
	for _, c := range cases {
		got, err := slashcmd.Parse(c.text)
		if err != nil {
			t.Errorf("Parse(%q): %v", c.text, err)
			continue
		}
		if !reflect.DeepEqual(got, c.want) {
			t.Errorf("Parse(%q)\n got %+v\nwant %+v", c.text, got, c.want)
		}
		back, err := slashcmd.Parse(got.Text())
		if err != nil || !reflect.DeepEqual(back, got) {
			t.Errorf("Parse(%q.Text() = %q) = %+v, %v", c.text, got.Text(), back, err)
		}
	}
}

func TestParseUsageErrors(t *testing.T) {
	for _, text := range []string{
		`frobnicate x`,
		`provision`,
		`provision site-deployer`,
		`provision site-deployer "only a reason"`,
		`provision --expires 1h site.example.com`,
		`provision u a.example.com:admin`,
		`provision u a.example.com "one" "two"`,
		`provision u a.example.com --expires`,
		`provision u a.example.com --expires=`,
		`provision u a.example.com --expires 1h --expires 2h`,
		`provision u a.example.com --force`,
		`provision u a.example.com "unclosed`,
		`rotate`,
		`rotate a b`,
		`status`,
		`delete a b`,
		`list a b`,
		`approve`,
		`approve apr-0123`,
		`approve apr-0123456789abcdef0123 apr-0123456789abcdef0124`,
		`approve "apr-0123456789abcdef0123"`,
		`deny apr-0123456789abcdef0123`,
		`deny apr-0123456789abcdef0123 unquoted`,
		`deny apr-0123456789abcdef0123 "  "`,
		`deny x "reason"`,
		`pending now`,
		"provision u a.example.com \xff",
		`provision u ` + strings.Repeat("a.example.com ", 70),
		strings.Repeat("x", slashcmd.MaxTextLen+1),
	} {
		c, err := slashcmd.Parse(text)
		var ue *slashcmd.UsageError
		if !errors.As(err, &ue) || ue.Reason == "" {
			t.Errorf("Parse(%.60q) = %+v, %v; want a usage error", text, c, err)
		}
	}
}

// TestProvisionRequest: the parsed command becomes the service's request,
// with the default reason and a readiness wait, and validates there.
func TestProvisionRequest(t *testing.T) {
	c, err := slashcmd.Parse(`provision site-deployer site.example.com:rw --expires 720h`)
	if err != nil {
		t.Fatal(err)
	}
	req := c.CreateRequest()
	want := provision.CreateRequest{User: "site-deployer", Grants: []policy.Grant{{Bucket: "site.example.com", Access: policy.ReadWrite}},
		Reason: slashcmd.DefaultReason, ExpiresIn: "720h", Wait: true}
	if !reflect.DeepEqual(req, want) {
		t.Fatalf("request %+v, want %+v", req, want)
	}
	if err := req.Validate(); err != nil {
		t.Fatalf("default request does not validate: %v", err)
	}
	bad, err := slashcmd.Parse(`provision "bad user!" Not_A_Bucket:rw "a reason" --expires soon`)
	if err != nil {
		t.Fatal(err)
	}
	verr := bad.CreateRequest().Validate()
	var pe *provision.Error
	if !errors.As(verr, &pe) || pe.Kind != provision.KindInvalid {
		t.Fatalf("Validate = %v, want KindInvalid", verr)
	}
	fields := map[string]bool{}
	for _, f := range pe.Fields {
		fields[f.Field] = true
	}
	for _, f := range []string{"user", "grants[0].bucket", "expires_in"} {
		if !fields[f] {
			t.Errorf("no problem reported for %s: %v", f, pe.Fields)
		}
	}
}

func TestTextEscapesForSlack(t *testing.T) {
	c := slashcmd.Command{Op: slashcmd.OpProvision, User: "u", Grants: []policy.Grant{{Bucket: "b", Access: policy.ReadOnly, Prefix: "a<b>&c d"}}, Reason: `it's "quoted"`}
	text := c.Text()
	if strings.ContainsAny(strings.NewReplacer("&amp;", "", "&lt;", "", "&gt;", "").Replace(text), "<>&") {
		t.Errorf("Text %q has unescaped Slack markup characters", text)
	}
	back, err := slashcmd.Parse(text)
	if err != nil || !reflect.DeepEqual(back, c) {
		t.Errorf("Parse(%q) = %+v, %v; want %+v", text, back, err, c)
	}
}

func TestUsageNamesEveryCommand(t *testing.T) {
	u := slashcmd.Usage("/kv")
	for _, want := range []string{"/kv provision &lt;user&gt; &lt;bucket&gt;", "/kv rotate", "/kv status", "/kv list", "/kv delete", "/kv help", "/kv pending", "/kv approve &lt;id&gt;", "/kv deny &lt;id&gt;", "--expires", "read-write"} {
		if !strings.Contains(u, want) {
			t.Errorf("usage does not mention %q:\n%s", want, u)
		}
	}
	if strings.ContainsAny(strings.NewReplacer("&amp;", "", "&lt;", "", "&gt;", "").Replace(slashcmd.Usage("/a<b>")), "<>&") {
		t.Error("usage has unescaped Slack markup characters")
	}
}
