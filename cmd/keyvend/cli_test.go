package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/keyvend/keyvend/pkg/client"
	"github.com/keyvend/keyvend/pkg/policy"
)

func TestFlagsBeforeAndAfterArguments(t *testing.T) {
	for _, args := range [][]string{
		{"--reason", "r", "--wait", "--expires=1h", "u", "b"},
		{"u", "b", "--reason", "r", "--wait", "--expires", "1h"},
		{"u", "--wait", "b", "-reason=r", "--expires", "1h"},
		{"--wait", "u", "--reason", "r", "b", "--expires", "1h"},
	} {
		fs, g := newFlags("vend", io.Discard)
		reason := fs.String("reason", "", "")
		expires := fs.String("expires", "", "")
		wait := fs.Bool("wait", false, "")
		pos, err := parse(fs, append(args, "--json"), 2, -1, vendSynopsis)
		if err != nil {
			t.Fatalf("%q: %v", args, err)
		}
		if got := strings.Join(pos, " "); got != "u b" || *reason != "r" || *expires != "1h" || !*wait || !g.json {
			t.Errorf("%q: positional %q, reason %q, expires %q, wait %v, json %v", args, got, *reason, *expires, *wait, g.json)
		}
	}
	// "--" ends the flags: what follows is positional even if it looks like one.
	fs, _ := newFlags("show", io.Discard)
	if pos, err := parse(fs, []string{"--", "-odd"}, 1, 1, showSynopsis); err != nil || len(pos) != 1 || pos[0] != "-odd" {
		t.Errorf("parse(-- -odd) = %q, %v", pos, err)
	}
}

func TestUsageErrors(t *testing.T) {
	for _, args := range [][]string{
		{},              // no user
		{"a", "b"},      // too many
		{"a", "--nope"}, // unknown flag
		{"a", "--api"},  // flag without its value
	} {
		fs, _ := newFlags("show", io.Discard)
		_, err := parse(fs, args, 1, 1, showSynopsis)
		if exitCode(err) != exitUsage {
			t.Errorf("show %q: %v (exit %d), want a usage error", args, err, exitCode(err))
		}
	}
	fs, _ := newFlags("show", io.Discard)
	if _, err := parse(fs, []string{"--help"}, 1, 1, showSynopsis); !errors.As(err, new(helpRequested)) || !strings.Contains(err.Error(), "--api") {
		t.Errorf("show --help: %v, want the verb's help", err)
	}
}

func TestParseGrant(t *testing.T) {
	for spec, want := range map[string]policy.Grant{
		"site.example.com":                  {Bucket: "site.example.com", Access: policy.ReadOnly},
		"site.example.com:read-write":       {Bucket: "site.example.com", Access: policy.ReadWrite},
		"site.example.com::img/":            {Bucket: "site.example.com", Access: policy.ReadOnly, Prefix: "img/"},
		"site.example.com:full:a:b/":        {Bucket: "site.example.com", Access: policy.Full, Prefix: "a:b/"},
		"site.example.com:write-only:logs/": {Bucket: "site.example.com", Access: policy.WriteOnly, Prefix: "logs/"},
	} {
		if got, err := parseGrant(spec); err != nil || got != want {
			t.Errorf("parseGrant(%q) = %+v, %v; want %+v", spec, got, err, want)
		}
	}
	for _, spec := range []string{"", ":read-only", "b:admin", "b:READ-ONLY"} {
		if _, err := parseGrant(spec); exitCode(err) != exitUsage {
			t.Errorf("parseGrant(%q): %v, want a usage error", spec, err)
		}
	}
}

func TestExitCodes(t *testing.T) {
	for status, want := range map[int]int{400: 1, 401: 3, 403: 3, 404: 4, 409: 5, 412: 5, 422: 1, 500: 1, 503: 1} {
		err := fmt.Errorf("wrapped: %w", &client.Problem{Status: status})
		if got := exitCode(err); got != want {
			t.Errorf("exitCode(%d problem) = %d, want %d", status, got, want)
		}
	}
	if exitCode(nil) != 0 || exitCode(errors.New("x")) != 1 || exitCode(usagef("x")) != 2 {
		t.Error("exitCode of nil, a plain error, a usage error: want 0, 1, 2")
	}
}

func TestSetProfile(t *testing.T) {
	set := [][2]string{{"credential_process", "/bin/keyvend credentials --secret arn:new"}, {"region", "eu-west-1"}}
	for _, c := range []struct{ name, in, want string }{
		{"empty file", "", "[profile p]\ncredential_process = /bin/keyvend credentials --secret arn:new\nregion = eu-west-1\n"},
		{"appended after others, no final newline",
			"[default]\nregion = us-east-1",
			"[default]\nregion = us-east-1\n\n[profile p]\ncredential_process = /bin/keyvend credentials --secret arn:new\nregion = eu-west-1\n"},
		{"updated in place, other keys and sections kept",
			"# mine\n[profile p]\noutput = json\ncredential_process = old\n  continued\nregion=us-east-1\n\n[profile q]\ncredential_process = other\n",
			"# mine\n[profile p]\noutput = json\ncredential_process = /bin/keyvend credentials --secret arn:new\nregion = eu-west-1\n\n[profile q]\ncredential_process = other\n"},
		{"missing key added at the section's end",
			"[ profile  p ]\noutput = json\n\n[profile q]\nregion = x\n",
			"[ profile  p ]\noutput = json\ncredential_process = /bin/keyvend credentials --secret arn:new\nregion = eu-west-1\n\n[profile q]\nregion = x\n"},
		{"a repeated key dropped", "[profile p]\nregion = a\nregion = b\n",
			"[profile p]\nregion = eu-west-1\ncredential_process = /bin/keyvend credentials --secret arn:new\n"},
		{"a profile named like p in another section untouched", "[profile pp]\nregion = a\n",
			"[profile pp]\nregion = a\n\n[profile p]\ncredential_process = /bin/keyvend credentials --secret arn:new\nregion = eu-west-1\n"},
	} {
		got := setProfile(c.in, "p", set)
		if got != c.want {
			t.Errorf("%s:\n%s\nwant:\n%s", c.name, got, c.want)
		}
		if again := setProfile(got, "p", set); again != got {
			t.Errorf("%s: not idempotent:\n%s", c.name, again)
		}
	}
	if got := setProfile("", "default", set[1:]); got != "[default]\nregion = eu-west-1\n" {
		t.Errorf("default profile: %q", got)
	}
}

// TestHelpAndREADMEAgree: every client verb and each of its flags is in
// keyvend --help and in the README's CLI section, and so are the exit codes.
func TestHelpAndREADMEAgree(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join("..", "..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	readme := string(raw)
	start := strings.Index(readme, "## The keyvend CLI")
	end := strings.Index(readme, "## API")
	if start < 0 || end < start {
		t.Fatal("README has no section \"The keyvend CLI\" before \"API\"")
	}
	section := readme[start:end]
	flags := map[string][]string{
		"vend": {"--reason", "--expires", "--wait"}, "rotate": {"--wait"}, "delete": {"--force"},
		"grants": {"--expires"}, "list": {"--bucket", "--requester"}, "credentials": {"--secret"},
		"profile": {"--name", "--config"}, "show": nil, "history": nil,
		"requests": {"--status"}, "approve": {"--reason"}, "deny": {"--reason"},
	}
	for verb := range verbs {
		want, ok := flags[verb]
		if !ok {
			t.Errorf("verb %s: the test does not know its flags", verb)
		}
		for _, s := range append([]string{"  " + verb + " "}, want...) {
			if !strings.Contains(usage, s) {
				t.Errorf("keyvend --help does not mention %q (verb %s)", s, verb)
			}
		}
		for _, s := range append([]string{"`" + verb + " "}, want...) {
			if !strings.Contains(section, s) {
				t.Errorf("the README's CLI section does not mention %q (verb %s)", s, verb)
			}
		}
	}
	for _, s := range []string{"--api", "--stack", "--token", "--json", "KEYVEND_API", "KEYVEND_STACK", "KEYVEND_TOKEN", "http://127.0.0.1:8080"} {
		if !strings.Contains(usage, s) || !strings.Contains(section, s) {
			t.Errorf("%q is not in both keyvend --help and the README", s)
		}
	}
	for _, code := range []string{"0", "1", "2", "3", "4", "5"} {
		if !strings.Contains(usage, "  "+code+" ") && !strings.Contains(usage, " "+code+" ") {
			t.Errorf("exit code %s not in keyvend --help", code)
		}
		if !strings.Contains(section, "`"+code+"`") {
			t.Errorf("exit code %s not in the README", code)
		}
	}
}
