// Package slashcmd is the language of keyvend's Slack slash command:
// Parse reads what follows /keyvend into a Command (or a *UsageError),
// Command.Text writes it back as Slack text, and Usage is the help. It
// knows nothing of HTTP, Slack's signatures or the queue (pkg/chatops).
package slashcmd

import (
	"fmt"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/keyvend/keyvend/pkg/approval"
	"github.com/keyvend/keyvend/pkg/policy"
	"github.com/keyvend/keyvend/pkg/provision"
)

// Op is what a command does.
type Op string

// The commands.
const (
	OpProvision Op = "provision"
	OpRotate    Op = "rotate"
	OpStatus    Op = "status"
	OpList      Op = "list"
	OpDelete    Op = "delete"
	OpHelp      Op = "help"
	// Approvals (pkg/provision's Decide and ListRequests).
	OpApprove Op = "approve"
	OpDeny    Op = "deny"
	OpPending Op = "pending"
)

// Limits of the command text. Slack sends at most a few thousand
// characters; anything longer is not a command keyvend wrote help for.
const (
	MaxTextLen = 4000
	maxTokens  = 64
)

// DefaultReason is the reason of a provision command that gives none.
const DefaultReason = "requested in Slack"

// Command is a parsed slash command, as the job carries it to the worker.
type Command struct {
	Op     Op             `json:"op"`
	User   string         `json:"user,omitempty"`
	Grants []policy.Grant `json:"grants,omitempty"`
	Reason string         `json:"reason,omitempty"`
	// ExpiresIn (a Go duration) or ExpiresAt (RFC 3339), from --expires.
	ExpiresIn string `json:"expires_in,omitempty"`
	ExpiresAt string `json:"expires_at,omitempty"`
	// Bucket filters list.
	Bucket string `json:"bucket,omitempty"`
	// ID is the approval request approve and deny decide (deny's reason is
	// Reason).
	ID string `json:"id,omitempty"`
}

// UsageError is text that is not a command; the endpoint answers it with
// the usage help.
type UsageError struct{ Reason string }

func (e *UsageError) Error() string { return e.Reason }

func usagef(format string, args ...any) error {
	return &UsageError{Reason: fmt.Sprintf(format, args...)}
}

// accessAliases are the access levels and their short forms.
var accessAliases = map[string]policy.Access{
	"read-only": policy.ReadOnly, "ro": policy.ReadOnly,
	"read-write": policy.ReadWrite, "rw": policy.ReadWrite,
	"write-only": policy.WriteOnly, "wo": policy.WriteOnly,
	"full": policy.Full,
}

// Parse reads the text of a slash command (what follows /keyvend):
//
//	provision <user> <bucket>[:<access>[:<prefix>]]… ["reason"] [--expires 720h]
//	rotate <user> | status <user> | delete <user> | list [bucket] | help
//	approve <id> | deny <id> "reason" | pending
//
// Tokens are separated by white space; "…", '…' and “…” quote, also
// inside a token (bucket:rw:"a prefix/"). The reason is the one token that
// starts with a quote, so it is never taken for a bucket. The access level
// defaults to read-only; ro, rw and wo are short forms. Slack's markup is
// undone first: <http://a.example.com|a.example.com> is the label, &amp;
// &lt; &gt; are the characters. Parse checks the shape of the command;
// provision.CreateRequest.Validate checks its values.
func Parse(text string) (Command, error) {
	if len(text) > MaxTextLen {
		return Command{}, usagef("the command is longer than %d characters", MaxTextLen)
	}
	if !utf8.ValidString(text) {
		return Command{}, usagef("the command is not valid UTF-8")
	}
	toks, err := tokenize(unescapeSlack(text))
	if err != nil {
		return Command{}, err
	}
	if len(toks) == 0 {
		return Command{Op: OpHelp}, nil
	}
	if len(toks) > maxTokens {
		return Command{}, usagef("too many words (%d); at most %d", len(toks), maxTokens)
	}
	verb, args := strings.ToLower(toks[0].text), toks[1:]
	switch verb {
	case "help", "-h", "--help":
		return Command{Op: OpHelp}, nil
	case "provision":
		return parseProvision(args)
	case "rotate", "status", "delete", "deprovision":
		op := Op(verb)
		if verb == "deprovision" {
			op = OpDelete
		}
		if len(args) != 1 || args[0].text == "" {
			return Command{}, usagef("%s takes one user name", verb)
		}
		return Command{Op: op, User: args[0].text}, nil
	case "list":
		switch len(args) {
		case 0:
			return Command{Op: OpList}, nil
		case 1:
			return Command{Op: OpList, Bucket: args[0].text}, nil
		}
		return Command{}, usagef("list takes at most one bucket")
	case "approve":
		if len(args) != 1 || args[0].quoted {
			return Command{}, usagef("approve takes one approval request id (apr-…)")
		}
		return decision(OpApprove, args[0].text, "")
	case "deny":
		if len(args) != 2 || args[0].quoted || !args[1].quoted || strings.TrimSpace(args[1].text) == "" {
			return Command{}, usagef("deny takes an approval request id (apr-…) and a quoted reason")
		}
		return decision(OpDeny, args[0].text, args[1].text)
	case "pending":
		if len(args) != 0 {
			return Command{}, usagef("pending takes nothing")
		}
		return Command{Op: OpPending}, nil
	}
	return Command{}, usagef("unknown command %q", truncate(toks[0].text, 40))
}

// decision is an approve or deny command on request id.
func decision(op Op, id, reason string) (Command, error) {
	if !approval.ValidID(id) {
		return Command{}, usagef("%q is not an approval request id (apr- and 20 hex digits)", truncate(id, 40))
	}
	return Command{Op: op, ID: id, Reason: reason}, nil
}

func parseProvision(args []token) (Command, error) {
	c := Command{Op: OpProvision}
	if len(args) == 0 || args[0].text == "" || strings.HasPrefix(args[0].text, "--") && !args[0].quoted {
		return c, usagef("provision needs a user name, then one or more buckets")
	}
	c.User = args[0].text
	reasonSeen := false
	for i := 1; i < len(args); i++ {
		t := args[i]
		switch {
		case !t.quoted && (t.text == "--expires" || strings.HasPrefix(t.text, "--expires=")):
			if c.ExpiresIn != "" || c.ExpiresAt != "" {
				return c, usagef("--expires is given twice")
			}
			v, ok := strings.CutPrefix(t.text, "--expires=")
			if !ok {
				if i+1 == len(args) {
					return c, usagef("--expires needs a lifetime such as 720h")
				}
				i++
				v = args[i].text
			}
			if v == "" {
				return c, usagef("--expires needs a lifetime such as 720h")
			}
			if _, err := time.Parse(time.RFC3339, v); err == nil {
				c.ExpiresAt = v
			} else {
				c.ExpiresIn = v
			}
		case !t.quoted && strings.HasPrefix(t.text, "--"):
			return c, usagef("unknown option %q", truncate(t.text, 40))
		case t.quoted:
			if reasonSeen {
				return c, usagef("give one quoted reason")
			}
			reasonSeen = true
			c.Reason = t.text
		default:
			g, err := parseGrant(t.text)
			if err != nil {
				return c, err
			}
			c.Grants = append(c.Grants, g)
		}
	}
	if len(c.Grants) == 0 {
		return c, usagef("provision needs at least one bucket after the user name")
	}
	return c, nil
}

// parseGrant reads bucket[:access[:prefix]]; the prefix may hold ':'.
func parseGrant(s string) (policy.Grant, error) {
	parts := strings.SplitN(s, ":", 3)
	g := policy.Grant{Bucket: parts[0], Access: policy.ReadOnly}
	if len(parts) > 1 {
		a, ok := accessAliases[strings.ToLower(parts[1])]
		if !ok {
			return g, usagef("unknown access level %q in %q: use read-only, read-write, write-only or full", truncate(parts[1], 20), truncate(s, 80))
		}
		g.Access = a
	}
	if len(parts) > 2 {
		g.Prefix = parts[2]
	}
	return g, nil
}

// CreateRequest is the provision command as the service takes it.
func (c Command) CreateRequest() provision.CreateRequest {
	reason := c.Reason
	if reason == "" {
		reason = DefaultReason
	}
	return provision.CreateRequest{
		User: c.User, Grants: c.Grants, Reason: reason,
		ExpiresIn: c.ExpiresIn, ExpiresAt: c.ExpiresAt,
		// The worker has time: confirm the key works before posting it.
		Wait: true,
	}
}

// Text is the command as Slack text: escaped for Slack (&amp; &lt; &gt;),
// with a token quoted where it has to be. Parse(c.Text()) is c again.
func (c Command) Text() string {
	parts := []string{string(c.Op)}
	switch c.Op {
	case OpProvision:
		parts = append(parts, quoteToken(c.User))
		for _, g := range c.Grants {
			s := g.Bucket + ":" + string(g.Access)
			if g.Prefix != "" {
				s += ":" + quoteToken(g.Prefix)
			}
			parts = append(parts, s)
		}
		if c.Reason != "" {
			parts = append(parts, quoteAlways(c.Reason))
		}
		if e := c.ExpiresIn + c.ExpiresAt; e != "" {
			parts = append(parts, "--expires="+quoteToken(e))
		}
	case OpRotate, OpStatus, OpDelete:
		parts = append(parts, quoteToken(c.User))
	case OpList:
		if c.Bucket != "" {
			parts = append(parts, quoteToken(c.Bucket))
		}
	case OpApprove:
		parts = append(parts, c.ID)
	case OpDeny:
		parts = append(parts, c.ID, quoteAlways(c.Reason))
	}
	return Escape(strings.Join(parts, " "))
}

type token struct {
	text string
	// quoted: the token starts with a quote (a reason, never a grant). A
	// quote later in a token only quotes that part: bucket:rw:"a b/".
	quoted bool
}

// closers maps each opening quote to the quotes that close it.
var closers = map[rune]string{'"': `"”`, '\'': `'’`, '“': `”"`, '‘': `’'`}

// tokenize splits on white space; a quote opens a quoted run (which may
// hold white space) that the matching quote closes, as in a shell.
func tokenize(s string) ([]token, error) {
	var out []token
	var cur strings.Builder
	in := false // inside a token
	quoted := false
	var closeBy string
	for _, r := range s {
		switch {
		case closeBy != "":
			if strings.ContainsRune(closeBy, r) {
				closeBy = ""
				continue
			}
			cur.WriteRune(r)
		case unicode.IsSpace(r):
			if in {
				out = append(out, token{text: cur.String(), quoted: quoted})
				cur.Reset()
				in, quoted = false, false
			}
		case closers[r] != "":
			if !in {
				quoted = true
			}
			in, closeBy = true, closers[r]
		default:
			in = true
			cur.WriteRune(r)
		}
	}
	if closeBy != "" {
		return nil, usagef("a quote is not closed")
	}
	if in {
		out = append(out, token{text: cur.String(), quoted: quoted})
	}
	return out, nil
}

// quoteToken quotes s when it would not read back as one unquoted token.
func quoteToken(s string) string {
	if s != "" && !strings.ContainsFunc(s, func(r rune) bool { return unicode.IsSpace(r) || closers[r] != "" || isCloser(r) }) &&
		!strings.HasPrefix(s, "--") {
		return s
	}
	return quoteAlways(s)
}

// quoteAlways quotes s with a quote it does not contain.
func quoteAlways(s string) string {
	for _, q := range []struct{ open, close string }{{`"`, `"`}, {`'`, `'`}, {`“`, `”`}, {`‘`, `’`}} {
		if !strings.ContainsAny(s, closers[[]rune(q.open)[0]]) {
			return q.open + s + q.close
		}
	}
	// s holds every kind of closing quote: quote it in pieces.
	var b strings.Builder
	for _, r := range s {
		if r == '"' || r == '”' {
			b.WriteString(`'` + string(r) + `'`)
		} else {
			b.WriteString(`"` + string(r) + `"`)
		}
	}
	return b.String()
}

func isCloser(r rune) bool { return r == '”' || r == '’' }

// unescapeSlack undoes Slack's markup in a slash command's text: <…> is a
// link, channel or user reference, shown as its label or its target, and
// &amp; &lt; &gt; stand for the characters (Slack escapes what users type).
func unescapeSlack(s string) string {
	if !strings.ContainsAny(s, "<&") {
		return s
	}
	var b strings.Builder
	for {
		i := strings.IndexByte(s, '<')
		if i < 0 {
			break
		}
		j := strings.IndexByte(s[i:], '>')
		if j < 0 {
			break
		}
		b.WriteString(s[:i])
		ref := s[i+1 : i+j]
		if _, label, ok := strings.Cut(ref, "|"); ok {
			ref = label
		} else {
			for _, scheme := range []string{"http://", "https://", "mailto:"} {
				ref = strings.TrimPrefix(ref, scheme)
			}
		}
		b.WriteString(ref)
		s = s[i+j+1:]
	}
	b.WriteString(s)
	return strings.NewReplacer("&lt;", "<", "&gt;", ">", "&amp;", "&").Replace(b.String())
}

// Escape escapes the characters Slack reserves for its markup (&amp;
// &lt; &gt;).
func Escape(s string) string {
	return strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;").Replace(s)
}

func truncate(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	r := []rune(s)
	return string(r[:n]) + "…"
}

// Usage is the help text for the slash command cmd (e.g. /keyvend), in
// Slack mrkdwn (escaped).
func Usage(cmd string) string {
	if cmd == "" {
		cmd = "/keyvend"
	}
	// Escaped as a whole: <user> would otherwise be Slack markup.
	return Escape(strings.Join([]string{
		"*keyvend* vends S3 credentials for one bucket (or a few), stored in Secrets Manager. Commands:",
		"• `" + cmd + " provision <user> <bucket>[:<access>[:<prefix>]]… [\"reason\"] [--expires 720h]`: create an IAM user with those grants and its key." +
			" Access is `read-only` (the default), `read-write`, `write-only` or `full` (`ro`, `rw`, `wo`). Quote the reason.",
		"• `" + cmd + " rotate <user>`: a new access key in the same secret; the old one is deleted.",
		"• `" + cmd + " status <user>`: grants, keys and expiry.",
		"• `" + cmd + " list [bucket]`: the users you may see.",
		"• `" + cmd + " delete <user>`: deprovision the user; its secret is scheduled for deletion.",
		"• `" + cmd + " pending`: the approval requests waiting for you, and yours.",
		"• `" + cmd + " approve <id>`: approve request `<id>` (apr-…); the last approval it needs provisions it.",
		"• `" + cmd + " deny <id> \"reason\"`: deny request `<id>`; the reason is required.",
		"• `" + cmd + " help`: this text.",
		"Example: `" + cmd + " provision site-deployer site.example.com:read-write \"blog deploys\" --expires 720h`",
		"Results arrive here, visible only to you. keyvend never shows a key: it names the secret and the `credential_process` line that reads it.",
	}, "\n"))
}
