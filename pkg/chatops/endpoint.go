// Package chatops is keyvend's Slack slash command: the endpoint that
// verifies Slack's signature (pkg/slacksig), parses the command
// (pkg/slashcmd), authorizes it and queues it (answering within Slack's 3
// seconds), and the worker that runs the queued job through the
// provisioning service and posts the result to the command's
// response_url. One file per concern: the endpoint (endpoint.go), jobs
// and their queue (job.go, queue.go), the worker (worker.go), the
// messages (messages.go) and posting them (responder.go).
package chatops

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"time"

	"github.com/slack-go/slack"

	"github.com/keyvend/keyvend/pkg/authz"
	"github.com/keyvend/keyvend/pkg/caller"
	"github.com/keyvend/keyvend/pkg/httpapi"
	"github.com/keyvend/keyvend/pkg/provision"
	"github.com/keyvend/keyvend/pkg/slacksig"
	"github.com/keyvend/keyvend/pkg/slashcmd"
)

// Path is where Slack sends the slash command (POST).
const Path = "/v1/chatops/slack"

// Prechecker decides, before anything is queued, what the service would
// refuse (provision.Service).
type Prechecker interface {
	CheckCreate(in provision.CreateInput) error
	CheckOnUser(ctx context.Context, p caller.Principal, action authz.Action, name string) error
}

// Endpoint serves the slash command: verify Slack's signature over the raw
// body, parse the command, precheck it against the rules, queue it, and
// answer at once with an ephemeral message. It never runs the operation.
type Endpoint struct {
	Verifier *slacksig.Verifier
	Checks   Prechecker
	Queue    Queue
	Hosts    ResponseHosts
	Log      *slog.Logger
	// Budget bounds the work of a request (reading the signing secret on
	// first use, the prechecks, the enqueue), so the answer reaches Slack
	// within its 3 seconds (2.5 s).
	Budget time.Duration
	// MaxBody bounds the request body (64 KiB; Slack sends ~1 KiB).
	MaxBody int64
	// Now is the clock of queued jobs (time.Now).
	Now func() time.Time
}

// outcome is what one request came to, for its audit line.
type outcome struct {
	status    int
	result    string // unauthenticated, invalid, forbidden, not-found, queued, help, error, …
	reason    string
	principal caller.Principal
	command   string
	err       error
}

// ServeHTTP implements http.Handler.
func (e *Endpoint) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	e.audited(w, r, "chatops.slack", e.serve)
}

// audited serves r with serve under a new request id and writes the audit
// line of its outcome as action.
func (e *Endpoint) audited(w http.ResponseWriter, r *http.Request, action string, serve func(http.ResponseWriter, *http.Request, string) outcome) {
	start := time.Now()
	id := httpapi.NewRequestID(r)
	o := serve(w, r, id)
	attrs := []slog.Attr{
		slog.String("action", action),
		slog.String("request_id", id),
		slog.Int("status", o.status),
		slog.String("result", o.result),
		slog.String("principal", o.principal.ID),
		slog.String("channel", o.principal.Channel),
		slog.String("command", o.command),
		slog.Float64("duration_ms", float64(time.Since(start).Microseconds())/1000),
	}
	if o.reason != "" {
		attrs = append(attrs, slog.String("reason", o.reason))
	}
	if o.err != nil {
		attrs = append(attrs, slog.String("error", o.err.Error()))
	}
	e.log().LogAttrs(r.Context(), slog.LevelInfo, "audit", attrs...)
}

func (e *Endpoint) log() *slog.Logger {
	if e.Log == nil {
		return slog.Default()
	}
	return e.Log
}

// verified reads a POST's body and verifies Slack's signature over it
// (the slash command and the interactivity endpoint alike), within the
// budget whose context it returns (cancel it); when !ok it has answered
// (405, 413, 401 or 500) and o says why.
func (e *Endpoint) verified(w http.ResponseWriter, r *http.Request) (body []byte, ctx context.Context, cancel context.CancelFunc, o outcome, ok bool) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		httpapi.WriteJSON(w, http.StatusMethodNotAllowed, map[string]string{"error": "method not allowed"})
		return nil, nil, nil, outcome{status: http.StatusMethodNotAllowed, result: "invalid", reason: "method " + r.Method}, false
	}
	limit := e.MaxBody
	if limit <= 0 {
		limit = 64 << 10
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, limit+1))
	if err != nil || int64(len(body)) > limit {
		httpapi.WriteJSON(w, http.StatusRequestEntityTooLarge, map[string]string{"error": "request too large"})
		return nil, nil, nil, outcome{status: http.StatusRequestEntityTooLarge, result: "invalid", reason: "body over the limit or unreadable", err: err}, false
	}

	// Everything below — the signing secret on a cold start, the
	// prechecks, the queue — within the budget, so Slack hears back in time.
	budget := e.Budget
	if budget <= 0 {
		budget = 2500 * time.Millisecond
	}
	ctx, cancel = context.WithTimeout(r.Context(), budget)

	// Slack's signature, over the raw body (the Lambda adapter has
	// already base64-decoded it when API Gateway marked it so).
	if err := e.Verifier.Verify(ctx, r.Header, body); err != nil {
		cancel()
		var rej *slacksig.Rejection
		if errors.As(err, &rej) {
			httpapi.WriteJSON(w, http.StatusUnauthorized, map[string]string{"error": "unauthorized"})
			return nil, nil, nil, outcome{status: http.StatusUnauthorized, result: "unauthenticated", reason: rej.Reason, err: rej.Err}, false
		}
		httpapi.WriteJSON(w, http.StatusInternalServerError, map[string]string{"error": "keyvend cannot verify requests right now"})
		return nil, nil, nil, outcome{status: http.StatusInternalServerError, result: "error", reason: "signing secret", err: err}, false
	}
	return body, ctx, cancel, outcome{}, true
}

func (e *Endpoint) now() time.Time {
	if e.Now != nil {
		return e.Now()
	}
	return time.Now()
}

func (e *Endpoint) serve(w http.ResponseWriter, r *http.Request, id string) outcome {
	body, ctx, cancel, o, ok := e.verified(w, r)
	if !ok {
		return o
	}
	defer cancel()

	// 2. The command.
	r.Body = io.NopCloser(bytes.NewReader(body))
	sc, err := slack.SlashCommandParse(r)
	if err != nil {
		httpapi.WriteJSON(w, http.StatusBadRequest, map[string]string{"error": "not a slash command"})
		return outcome{status: http.StatusBadRequest, result: "invalid", reason: "form", err: err}
	}
	if r.PostForm.Get("ssl_check") == "1" {
		// Slack checking the certificate of the command's URL: nothing to do.
		httpapi.WriteJSON(w, http.StatusOK, map[string]string{})
		return outcome{status: http.StatusOK, result: "ssl-check"}
	}
	if msg := checkIDs(sc.TeamID, sc.UserID, sc.ChannelID); msg != "" {
		httpapi.WriteJSON(w, http.StatusBadRequest, map[string]string{"error": "not a slash command"})
		return outcome{status: http.StatusBadRequest, result: "invalid", reason: msg}
	}
	p := slackPrincipal(sc.TeamID, sc.UserID, sc.UserName, sc.ChannelID)
	o = outcome{status: http.StatusOK, principal: p}
	cmd, err := slashcmd.Parse(sc.Text)
	if err != nil {
		o.result, o.reason, o.command = "invalid", "usage", truncate(sc.Text, 200)
		httpapi.WriteJSON(w, http.StatusOK, usageMessage(sc.Command, err.Error()))
		return o
	}
	o.command = cmd.Text()
	if cmd.Op == slashcmd.OpHelp {
		o.result = "help"
		httpapi.WriteJSON(w, http.StatusOK, usageMessage(sc.Command, ""))
		return o
	}
	if err := e.Hosts.Check(sc.ResponseURL); err != nil {
		o.result, o.reason, o.err = "invalid", "response_url", err
		httpapi.WriteJSON(w, http.StatusOK, ephemeral(":x: keyvend cannot post results to this workspace's response_url; ask the operator to check KEYVEND_SLACK_RESPONSE_HOSTS."))
		return o
	}

	// 3. The rules, before anything is queued; then the queue.
	if err := e.precheck(ctx, p, id, cmd); err != nil {
		if kind := provision.KindOf(err); kind != 0 {
			o.result, o.err = kind.String(), err
			httpapi.WriteJSON(w, http.StatusOK, refusalMessage(cmd, err))
			return o
		}
		o.result, o.reason, o.err = "error", "precheck", err
		httpapi.WriteJSON(w, http.StatusOK, failureMessage(cmd, err, id, 1))
		return o
	}
	job := Job{ID: id, Command: cmd, Slash: sc.Command, TeamID: sc.TeamID, UserID: sc.UserID, UserName: sc.UserName,
		ChannelID: sc.ChannelID, ResponseURL: sc.ResponseURL, QueuedAt: e.now().UTC()}
	if err := e.Queue.Enqueue(ctx, job); err != nil {
		o.result, o.reason, o.err = "error", "enqueue", err
		httpapi.WriteJSON(w, http.StatusOK, failureMessage(cmd, err, id, 1))
		return o
	}
	o.result = "queued"
	httpapi.WriteJSON(w, http.StatusOK, ackMessage(cmd))
	return o
}

// precheck asks the service what it would refuse.
func (e *Endpoint) precheck(ctx context.Context, p caller.Principal, id string, c slashcmd.Command) error {
	switch c.Op {
	case slashcmd.OpProvision:
		return e.Checks.CheckCreate(provision.CreateInput{Principal: p, RequestID: id, Request: c.CreateRequest()})
	case slashcmd.OpRotate:
		return e.Checks.CheckOnUser(ctx, p, authz.Rotate, c.User)
	case slashcmd.OpStatus:
		return e.Checks.CheckOnUser(ctx, p, authz.Describe, c.User)
	case slashcmd.OpDelete:
		return e.Checks.CheckOnUser(ctx, p, authz.Delete, c.User)
	}
	// list shows each caller what the rules let it see: nothing to refuse.
	return nil
}
