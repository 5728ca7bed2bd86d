package chatops

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/slack-go/slack"

	"github.com/keyvend/keyvend/pkg/approval"
	"github.com/keyvend/keyvend/pkg/slacksig"
	"github.com/keyvend/keyvend/pkg/slashcmd"
)

// TokenSource gives the Slack app's bot token (xoxb-…).
type TokenSource interface {
	BotToken(ctx context.Context) (string, error)
}

// StaticToken is a bot token given directly (local mode's
// KEYVEND_SLACK_BOT_TOKEN).
type StaticToken string

// BotToken implements TokenSource.
func (s StaticToken) BotToken(context.Context) (string, error) {
	if s == "" {
		return "", errors.New("no Slack bot token configured")
	}
	return string(s), nil
}

// ManagedToken reads the bot token from Secrets Manager on first use and
// keeps it (a failed read is not kept). The secret is the token itself,
// or a JSON object with it under "bot_token".
type ManagedToken struct {
	ARN    string
	Client slacksig.SecretsGetter

	mu    sync.Mutex
	value string
}

// BotToken implements TokenSource.
func (m *ManagedToken) BotToken(ctx context.Context) (string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.value != "" {
		return m.value, nil
	}
	v, err := slacksig.ReadSecret(ctx, m.Client, m.ARN, "Slack bot token", "bot_token")
	if err != nil {
		return "", err
	}
	m.value = v
	return v, nil
}

// Announcer posts a new pending approval request to the approvals channel
// with Approve and Deny buttons (the interactivity endpoint takes the
// clicks), through the Slack Web API's chat.postMessage as the app's bot.
type Announcer struct {
	Token   TokenSource
	Channel string // the approvals channel's id (C…)
	// APIURL is the Slack Web API's base URL, ending in '/' (slack-go's
	// default, https://slack.com/api/, when empty); a loopback listener
	// locally and in tests.
	APIURL string
	// HTTPClient posts (a client with a 10 s timeout when nil).
	HTTPClient *http.Client
}

// Announce posts r to the channel.
func (a *Announcer) Announce(ctx context.Context, r *approval.Request) error {
	token, err := a.Token.BotToken(ctx)
	if err != nil {
		return err
	}
	hc := a.HTTPClient
	if hc == nil {
		hc = &http.Client{Timeout: 10 * time.Second}
	}
	opts := []slack.Option{slack.OptionHTTPClient(hc)}
	if a.APIURL != "" {
		opts = append(opts, slack.OptionAPIURL(a.APIURL))
	}
	text, blocks := announcement(r)
	_, _, err = slack.New(token, opts...).PostMessageContext(ctx, a.Channel, slack.MsgOptionText(text, false), slack.MsgOptionBlocks(blocks...))
	if err != nil {
		return fmt.Errorf("post approval request %s to %s: %w", r.ID, a.Channel, err)
	}
	return nil
}

// announcement is the channel message of a pending request: what it asks,
// who asked, until when, and the buttons (their value is the request id).
func announcement(r *approval.Request) (string, []slack.Block) {
	text := ":raised_hand: Approval needed: " + requestLine(r)
	approve := slack.NewButtonBlockElement(ActionApprove, r.ID, slack.NewTextBlockObject(slack.PlainTextType, "Approve", false, false)).WithStyle(slack.StylePrimary)
	deny := slack.NewButtonBlockElement(ActionDeny, r.ID, slack.NewTextBlockObject(slack.PlainTextType, "Deny", false, false)).WithStyle(slack.StyleDanger)
	return text, []slack.Block{
		section(text),
		contextLine("Approvers: " + slashcmd.Escape(strings.Join(approverNames(r), ", ")) + ". Waits until " + r.ExpiresAt.UTC().Format(time.RFC3339) + "."),
		slack.NewActionBlock("keyvend_decide", approve, deny),
	}
}
