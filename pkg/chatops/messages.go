package chatops

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/slack-go/slack"

	"github.com/keyvend/keyvend/pkg/approval"
	"github.com/keyvend/keyvend/pkg/awserr"
	"github.com/keyvend/keyvend/pkg/caller"
	"github.com/keyvend/keyvend/pkg/policy"
	"github.com/keyvend/keyvend/pkg/provision"
	"github.com/keyvend/keyvend/pkg/slashcmd"
)

// The messages keyvend posts: all ephemeral (only the user who typed the
// command sees them), in Block Kit with a plain-text fallback. None ever
// holds a secret key or an access key id: a provision names the secret
// and the credential_process line that reads it.

// Slack limits a section's text to 3,000 characters and a message to 50
// blocks.
const (
	maxSectionText = 2900
	maxBlocks      = 45
)

func ephemeral(text string, blocks ...slack.Block) *slack.WebhookMessage {
	m := &slack.WebhookMessage{ResponseType: slack.ResponseTypeEphemeral, Text: text}
	if len(blocks) > 0 {
		m.Blocks = &slack.Blocks{BlockSet: blocks}
	}
	return m
}

func section(mrkdwn string) *slack.SectionBlock {
	return slack.NewSectionBlock(slack.NewTextBlockObject(slack.MarkdownType, truncate(mrkdwn, maxSectionText), false, false), nil, nil)
}

func fields(mrkdwn ...string) *slack.SectionBlock {
	var fs []*slack.TextBlockObject
	for _, f := range mrkdwn {
		fs = append(fs, slack.NewTextBlockObject(slack.MarkdownType, truncate(f, 1900), false, false))
	}
	return slack.NewSectionBlock(nil, fs, nil)
}

func contextLine(mrkdwn string) *slack.ContextBlock {
	return slack.NewContextBlock("", slack.NewTextBlockObject(slack.MarkdownType, truncate(mrkdwn, maxSectionText), false, false))
}

// code is s as inline code, escaped.
func code(s string) string { return "`" + slashcmd.Escape(strings.ReplaceAll(s, "`", "'")) + "`" }

// ackMessage answers a queued command at once.
func ackMessage(c slashcmd.Command) *slack.WebhookMessage {
	return ephemeral(":hourglass_flowing_sand: Working on it: `" + strings.ReplaceAll(c.Text(), "`", "'") + "`. The result will be posted here, only to you.")
}

// usageMessage answers text that is not a command (reason says why; empty
// for help).
func usageMessage(slash, reason string) *slack.WebhookMessage {
	if reason == "" {
		return ephemeral(slashcmd.Usage(slash))
	}
	return ephemeral(":grey_question: " + slashcmd.Escape(reason) + ".\n\n" + slashcmd.Usage(slash))
}

// refusalMessage answers a command the prechecks (or the operation)
// refused: invalid, not allowed, no such user, conflict.
func refusalMessage(c slashcmd.Command, err error) *slack.WebhookMessage {
	var pe *provision.Error
	if !errors.As(err, &pe) {
		return ephemeral(":x: keyvend could not " + string(c.Op) + ".")
	}
	var icon, lead string
	switch pe.Kind {
	case provision.KindInvalid:
		icon, lead = ":warning:", "That request is not valid"
	case provision.KindForbidden:
		icon, lead = ":no_entry:", "Not allowed"
	case provision.KindNotFound:
		icon, lead = ":grey_question:", "Not found"
	case provision.KindConflict:
		icon, lead = ":warning:", "Conflict"
	case provision.KindInProgress:
		icon, lead = ":hourglass:", "Busy"
	case provision.KindLimit:
		icon, lead = ":no_entry_sign:", "Limit reached"
	}
	text := fmt.Sprintf("%s %s (`%s`): %s", icon, lead, strings.ReplaceAll(c.Text(), "`", "'"), slashcmd.Escape(pe.Detail))
	for _, f := range pe.Fields {
		text += "\n• " + code(f.Field) + ": " + slashcmd.Escape(f.Detail)
	}
	return ephemeral(text)
}

// pendingMessage tells the user that the request waits for approval.
func pendingMessage(c slashcmd.Command, p *provision.Pending) *slack.WebhookMessage {
	return ephemeral(fmt.Sprintf(":hourglass_flowing_sand: Pending approval (`%s`): request %s waits until %s for %s.",
		strings.ReplaceAll(c.Text(), "`", "'"), code(p.Request.ID), p.Request.ExpiresAt.UTC().Format(time.RFC3339), slashcmd.Escape(approversOf(p))))
}

func approversOf(p *provision.Pending) string {
	var names []string
	for _, n := range p.Request.Needs {
		names = append(names, n.Approvers...)
	}
	return strings.Join(names, ", ")
}

// failureMessage tells the user that keyvend (or AWS) failed, after
// attempts tries; the details are in the log under the request id. It
// names the AWS error code whatever the code is, where
// httpapi.ProblemFor classifies further (throttling, keyvend's own
// permissions, AWS unreachable) and logs as it does: the worker and the
// endpoint log the error themselves, and the Slack text stays as it was.
func failureMessage(c slashcmd.Command, err error, requestID string, attempts int) *slack.WebhookMessage {
	why := "an internal error"
	switch code := awserr.Code(err); {
	case code != "":
		why = "an AWS error (" + slashcmd.Escape(code) + ")"
	case errors.Is(err, context.DeadlineExceeded):
		why = "AWS not answering in time"
	}
	tries := ""
	if attempts > 1 {
		tries = fmt.Sprintf(" after %d attempts", attempts)
	}
	text := fmt.Sprintf(":x: keyvend could not finish `%s`%s: %s. The operator has the details in the log (request %s). It is safe to try again.",
		strings.ReplaceAll(c.Text(), "`", "'"), tries, why, code(requestID))
	return ephemeral(text)
}

func grantLines(gs []policy.Grant) string {
	if len(gs) == 0 {
		return "none"
	}
	var b strings.Builder
	for i, g := range gs {
		if i > 0 {
			b.WriteString("\n")
		}
		b.WriteString("• " + code(g.Bucket) + " " + string(g.Access))
		if g.Prefix != "" {
			b.WriteString(" under " + code(g.Prefix))
		}
	}
	return b.String()
}

func expiryText(at *time.Time) string {
	if at == nil {
		return "never"
	}
	return at.UTC().Format(time.RFC3339)
}

func readinessText(r provision.Readiness) string {
	switch {
	case r.Ready == nil:
		return "New keys take a few seconds to work everywhere."
	case *r.Ready:
		return "AWS accepts the new key."
	default:
		return sentence(slashcmd.Escape(r.ReadyHint))
	}
}

// sentence ends s with a full stop.
func sentence(s string) string {
	s = strings.TrimSpace(s)
	if s != "" && !strings.HasSuffix(s, ".") {
		s += "."
	}
	return s
}

func profileBlock(user, line string) string {
	return "Add this to `~/.aws/config`, then use `--profile " + slashcmd.Escape(user) + "`:\n```[profile " + slashcmd.Escape(user) + "]\n" + slashcmd.Escape(line) + "```"
}

// provisionMessage reports a provisioned user.
func provisionMessage(res *provision.CreateResult, requestID string) *slack.WebhookMessage {
	head := fmt.Sprintf(":white_check_mark: Provisioned *%s*: its access key is in secret %s.", slashcmd.Escape(res.User), code(res.SecretName))
	if !res.Created {
		head = fmt.Sprintf(":white_check_mark: *%s* already exists with these grants; its key is unchanged, in secret %s.", slashcmd.Escape(res.User), code(res.SecretName))
	}
	expiry := expiryText(res.ExpiresAt)
	if res.ExpiryCapped {
		expiry += " (capped by the rules)"
	}
	return ephemeral(head,
		section(head),
		fields("*Grants*\n"+grantLines(res.Grants), "*Secret*\n"+code(res.SecretName), "*Expires*\n"+expiry),
		section(profileBlock(res.User, res.CredentialProcess)),
		contextLine(readinessText(res.Readiness)+" keyvend never shows the key itself. Request "+code(requestID)+"."),
	)
}

// rotateMessage reports a rotated key.
func rotateMessage(res *provision.RotateResult, requestID string) *slack.WebhookMessage {
	head := fmt.Sprintf(":arrows_counterclockwise: New access key for *%s*, stored in secret %s.", slashcmd.Escape(res.User), code(res.SecretName))
	prev := "The previous key is deleted."
	if res.PreviousAccessKeyID == "" {
		prev = "There was no previous key."
	} else if res.PreviousKeyDeletesAt != nil {
		prev = "The previous key keeps working until " + res.PreviousKeyDeletesAt.UTC().Format(time.RFC3339) + ", then is deleted."
	} else if !res.PreviousKeyDeleted {
		prev = "The previous key could not be deleted yet; the next rotation or the reaper removes it."
	}
	return ephemeral(head,
		section(head+" "+prev),
		section(profileBlock(res.User, res.CredentialProcess)),
		contextLine(readinessText(res.Readiness)+" Request "+code(requestID)+"."),
	)
}

// statusMessage describes a user.
func statusMessage(d *provision.Description, requestID string) *slack.WebhookMessage {
	state := "complete: its secret holds one of its keys"
	if !d.Complete {
		state = "incomplete: its secret holds none of its keys (a request is on it, or the reaper repairs it)"
	}
	head := fmt.Sprintf(":information_source: *%s* is %s.", slashcmd.Escape(d.User), state)
	var keys []string
	for _, k := range d.AccessKeys {
		line := fmt.Sprintf("• …%s %s, created %s", slashcmd.Escape(lastN(k.AccessKeyID, 4)), strings.ToLower(k.Status), k.CreatedAt.UTC().Format(time.RFC3339))
		if k.InSecret {
			line += ", in the secret"
		}
		keys = append(keys, line)
	}
	if len(keys) == 0 {
		keys = []string{"none"}
	}
	requester := d.Tags[provision.TagRequester]
	return ephemeral(head,
		section(head),
		fields("*Grants*\n"+grantLines(d.Grants), "*Access keys*\n"+strings.Join(keys, "\n"),
			"*Secret*\n"+code(d.SecretName), "*Expires*\n"+expiryText(d.ExpiresAt),
			"*Requested by*\n"+code(requester), "*Created*\n"+d.CreatedAt.UTC().Format(time.RFC3339)),
		contextLine("Request "+code(requestID)+"."),
	)
}

// listMessage lists users; more says the listing stopped before the end.
func listMessage(users []provision.UserSummary, bucket string, more bool, requestID string) *slack.WebhookMessage {
	scope := " you may see"
	if bucket != "" {
		scope += " with a grant on " + code(bucket)
	}
	var head string
	switch len(users) {
	case 0:
		head = ":clipboard: No keyvend users" + scope + "."
	case 1:
		head = ":clipboard: 1 keyvend user" + scope + "."
	default:
		head = fmt.Sprintf(":clipboard: %d keyvend users%s.", len(users), scope)
	}
	blocks := []slack.Block{section(head)}
	var chunk strings.Builder
	flush := func() {
		if chunk.Len() > 0 && len(blocks) < maxBlocks {
			blocks = append(blocks, section(chunk.String()))
		}
		chunk.Reset()
	}
	for _, u := range users {
		var gs []string
		for _, g := range u.Grants {
			gl := slashcmd.Escape(g.Bucket) + " " + string(g.Access)
			if g.Prefix != "" {
				gl += " under " + code(g.Prefix)
			}
			gs = append(gs, gl)
		}
		line := fmt.Sprintf("• *%s*: %s; requested by %s; expires %s\n", slashcmd.Escape(u.User), strings.Join(gs, ", "), code(u.Requester), expiryText(u.ExpiresAt))
		if chunk.Len()+len(line) > maxSectionText {
			flush()
		}
		chunk.WriteString(line)
	}
	flush()
	if more {
		blocks = append(blocks, contextLine("There are more: use `GET /v1/users` of the API to page through them all."))
	}
	blocks = append(blocks, contextLine("Request "+code(requestID)+"."))
	return ephemeral(head, blocks...)
}

// deleteMessage reports a deprovisioned user.
func deleteMessage(user string, requestID string) *slack.WebhookMessage {
	text := fmt.Sprintf(":wastebasket: Deprovisioned *%s*: its keys are deleted, it has left its groups, its secret is scheduled for deletion and the user is gone.", slashcmd.Escape(user))
	return ephemeral(text, section(text), contextLine("Request "+code(requestID)+"."))
}

func lastN(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[len(s)-n:]
}

// truncate shortens s to n runes, marking the cut with an ellipsis.
func truncate(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	r := []rune(s)
	return string(r[:n]) + "…"
}

// requestLine is one approval request in a line: its id, what it asks and
// who asked.
func requestLine(r *approval.Request) string {
	what := "create user"
	if r.Kind == approval.UpdateGrants {
		what = "change the grants of"
	}
	var gs []string
	for _, g := range r.Grants {
		s := g.Bucket + ":" + string(g.Access)
		if g.Prefix != "" {
			s += ":" + g.Prefix
		}
		gs = append(gs, s)
	}
	line := fmt.Sprintf("%s: %s %s (%s), asked by %s", code(r.ID), what, code(r.User), code(strings.Join(gs, " ")), slashcmd.Escape(r.Requester))
	if r.Reason != "" {
		line += ": “" + slashcmd.Escape(r.Reason) + "”"
	}
	return line
}

// decidedMessage says who decided request r and where it is now. A
// button's result replaces the message with the buttons, in the channel
// (replace); a slash command's is ephemeral.
func decidedMessage(r *approval.Request, p caller.Principal, approve, replace bool, requestID string) *slack.WebhookMessage {
	icon, verb := ":no_entry:", "Denied"
	if approve {
		icon, verb = ":white_check_mark:", "Approved"
	}
	text := fmt.Sprintf("%s %s by %s: %s.", icon, verb, slashcmd.Escape(p.Raw), requestLine(r))
	switch r.Status {
	case approval.Pending:
		text += " It still waits for more approvals (" + slashcmd.Escape(strings.Join(approverNames(r), ", ")) + ")."
	case approval.Provisioned:
		text += " Provisioned: the requester reads the key with `keyvend status` or the API; keyvend never shows it here."
	case approval.Failed:
		text += " Provisioning it failed; the requester can see why in the request."
	case approval.Denied:
		text += " Reason: “" + slashcmd.Escape(r.Decisions[len(r.Decisions)-1].Reason) + "”."
	}
	m := ephemeral(text, section(text), contextLine("request "+code(requestID)))
	if replace {
		m.ResponseType, m.ReplaceOriginal = slack.ResponseTypeInChannel, true
	}
	return m
}

func approverNames(r *approval.Request) []string {
	var names []string
	for _, n := range r.Needs {
		names = append(names, n.Approvers...)
	}
	return names
}

// pendingListMessage lists the pending requests p asked or may decide.
func pendingListMessage(rs []*approval.Request, p caller.Principal, requestID string) *slack.WebhookMessage {
	if len(rs) == 0 {
		return ephemeral(":zero: No approval requests are pending for you or from you.")
	}
	var mine, theirs []string
	for _, r := range rs {
		if r.Requester == p.Requester() {
			mine = append(mine, "• "+requestLine(r))
		} else {
			theirs = append(theirs, "• "+requestLine(r))
		}
	}
	var blocks []slack.Block
	text := fmt.Sprintf("%d pending approval requests.", len(rs))
	if len(theirs) > 0 {
		blocks = append(blocks, section("*Waiting for your decision* (`approve <id>` or `deny <id> \"reason\"`):\n"+strings.Join(theirs, "\n")))
	}
	if len(mine) > 0 {
		blocks = append(blocks, section("*Yours, waiting for approvers:*\n"+strings.Join(mine, "\n")))
	}
	blocks = append(blocks, contextLine("request "+code(requestID)))
	return ephemeral(text, blocks...)
}
