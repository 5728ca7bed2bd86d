package chatops

import (
	"encoding/json"
	"net/http"
	"net/url"

	"github.com/keyvend/keyvend/pkg/approval"
	"github.com/keyvend/keyvend/pkg/httpapi"
	"github.com/keyvend/keyvend/pkg/slashcmd"
)

// InteractivePath is where Slack sends interactions (POST): the clicks on
// the Approve and Deny buttons of an approval request's message.
const InteractivePath = "/v1/chatops/slack/interactive"

// The action ids of the buttons; each button's value is the approval
// request id.
const (
	ActionApprove = "keyvend_approve"
	ActionDeny    = "keyvend_deny"
)

// ButtonDenyReason is the reason of a denial by button (Slack's buttons
// carry none; `/keyvend deny <id> "reason"` gives one).
const ButtonDenyReason = "denied in Slack"

// interaction is the part of Slack's block_actions payload keyvend reads.
type interaction struct {
	Type string `json:"type"`
	Team struct {
		ID string `json:"id"`
	} `json:"team"`
	User struct {
		ID       string `json:"id"`
		Username string `json:"username"`
	} `json:"user"`
	Channel struct {
		ID string `json:"id"`
	} `json:"channel"`
	ResponseURL string `json:"response_url"`
	Actions     []struct {
		ActionID string `json:"action_id"`
		Value    string `json:"value"`
	} `json:"actions"`
}

// Interactive serves Slack's interactivity requests with the endpoint's
// verifier, queue and response hosts: the request is verified exactly as a
// slash command is (signature over the raw body, timestamp, replay cache:
// 401 otherwise), the click becomes an approve or deny job of the clicking
// Slack user, and the worker decides it through the service — which
// refuses a user who is not an approver, changing nothing — and replaces
// the message with who decided (replace_original).
func (e *Endpoint) Interactive() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		e.audited(w, r, "chatops.slack.interactive", e.interact)
	})
}

func (e *Endpoint) interact(w http.ResponseWriter, r *http.Request, id string) outcome {
	body, ctx, cancel, o, ok := e.verified(w, r)
	if !ok {
		return o
	}
	defer cancel()
	bad := func(reason string, err error) outcome {
		httpapi.WriteJSON(w, http.StatusBadRequest, map[string]string{"error": "not a keyvend interaction"})
		return outcome{status: http.StatusBadRequest, result: "invalid", reason: reason, err: err}
	}
	form, err := url.ParseQuery(string(body))
	if err != nil || form.Get("payload") == "" {
		return bad("form", err)
	}
	var in interaction
	if err := json.Unmarshal([]byte(form.Get("payload")), &in); err != nil {
		return bad("payload", err)
	}
	if in.Type != "block_actions" || len(in.Actions) != 1 {
		return bad("not one block action", nil)
	}
	if msg := checkIDs(in.Team.ID, in.User.ID, in.Channel.ID); msg != "" {
		return bad(msg, nil)
	}
	act := in.Actions[0]
	cmd := slashcmd.Command{ID: act.Value}
	switch act.ActionID {
	case ActionApprove:
		cmd.Op = slashcmd.OpApprove
	case ActionDeny:
		cmd.Op, cmd.Reason = slashcmd.OpDeny, ButtonDenyReason
	default:
		return bad("action "+truncate(act.ActionID, 40), nil)
	}
	if !approval.ValidID(act.Value) {
		return bad("value is not an approval request id", nil)
	}
	p := slackPrincipal(in.Team.ID, in.User.ID, in.User.Username, in.Channel.ID)
	o = outcome{status: http.StatusOK, principal: p, command: cmd.Text()}
	if err := e.Hosts.Check(in.ResponseURL); err != nil {
		o.result, o.reason, o.err = "invalid", "response_url", err
		httpapi.WriteJSON(w, http.StatusOK, ephemeral(":x: keyvend cannot post results to this workspace's response_url; ask the operator to check KEYVEND_SLACK_RESPONSE_HOSTS."))
		return o
	}
	job := Job{ID: id, Command: cmd, Slash: "/keyvend", TeamID: in.Team.ID, UserID: in.User.ID, UserName: in.User.Username,
		ChannelID: in.Channel.ID, ResponseURL: in.ResponseURL, QueuedAt: e.now().UTC(), Replace: true}
	if err := e.Queue.Enqueue(ctx, job); err != nil {
		o.status, o.result, o.reason, o.err = http.StatusInternalServerError, "error", "enqueue", err
		httpapi.WriteJSON(w, http.StatusInternalServerError, map[string]string{"error": "keyvend cannot take the decision right now; try again"})
		return o
	}
	o.result = "queued"
	httpapi.WriteJSON(w, http.StatusOK, map[string]string{})
	return o
}

// Routes is the endpoint's two routes, as the Slack function and keyvend
// serve mount them: the slash command on Path and the interactivity
// endpoint on InteractivePath; anything else is 404.
func (e *Endpoint) Routes() http.Handler {
	mux := http.NewServeMux()
	mux.Handle(Path, e)
	mux.Handle(InteractivePath, e.Interactive())
	return mux
}
