package chatops

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"regexp"
	"time"

	"github.com/keyvend/keyvend/pkg/caller"
	"github.com/keyvend/keyvend/pkg/slashcmd"
)

// Job is a verified, authorized slash command on its way to the worker:
// the SQS message body. It holds no secret: the response_url is a
// capability to post into the user's Slack conversation for 30 minutes,
// which is why only keyvend's Slack function may send to the queue.
type Job struct {
	ID          string           `json:"id"` // the request id of the slash command
	Command     slashcmd.Command `json:"command"`
	Slash       string           `json:"slash"` // the slash command as configured, e.g. /keyvend
	TeamID      string           `json:"team_id"`
	UserID      string           `json:"user_id"`
	UserName    string           `json:"user_name,omitempty"`
	ChannelID   string           `json:"channel_id,omitempty"`
	ResponseURL string           `json:"response_url"`
	QueuedAt    time.Time        `json:"queued_at"`
	// Replace: the job is a button click (approve or deny) on a message
	// that its result replaces (replace_original), in the channel.
	Replace bool `json:"replace,omitempty"`
}

// slackIDRE is the shape of Slack team, user and channel ids (T0123ABCD,
// U0123ABCD, C0123ABCD…). Checking it keeps a principal from holding '/'
// or '*' that a rule's glob would read differently.
var slackIDRE = regexp.MustCompile(`^[A-Z0-9]{1,32}$`)

// Principal is the Slack caller as rules see it: slack:<team>/<user>, in
// its channel.
func (j Job) Principal() caller.Principal {
	return slackPrincipal(j.TeamID, j.UserID, j.UserName, j.ChannelID)
}

// slackPrincipal is the principal of Slack user user of team team acting
// from channel.
func slackPrincipal(team, user, name, channel string) caller.Principal {
	id := "slack:" + team + "/" + user
	raw := id
	if name != "" {
		raw += " (@" + name + ")"
	}
	return caller.Principal{ID: id, Raw: raw, Channel: channel}
}

// checkIDs returns why the Slack ids are not usable, or "".
func checkIDs(team, user, channel string) string {
	switch {
	case !slackIDRE.MatchString(team):
		return "team_id is not a Slack team id"
	case !slackIDRE.MatchString(user):
		return "user_id is not a Slack user id"
	case channel != "" && !slackIDRE.MatchString(channel):
		return "channel_id is not a Slack channel id"
	}
	return ""
}

// encodeJob is the message body of j.
func encodeJob(j Job) (string, error) {
	b, err := json.Marshal(j)
	if err != nil {
		return "", fmt.Errorf("encode job %s: %w", j.ID, err)
	}
	return string(b), nil
}

// decodeJob reads a message body strictly: one JSON object of a Job, no
// unknown fields, the ids well-formed and a command of a known kind.
func decodeJob(body string) (Job, error) {
	var j Job
	dec := json.NewDecoder(bytes.NewReader([]byte(body)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&j); err != nil {
		return Job{}, fmt.Errorf("decode job: %w", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return Job{}, fmt.Errorf("decode job: trailing data")
	}
	if msg := checkIDs(j.TeamID, j.UserID, j.ChannelID); msg != "" {
		return Job{}, fmt.Errorf("job %s: %s", j.ID, msg)
	}
	switch j.Command.Op {
	case slashcmd.OpProvision, slashcmd.OpRotate, slashcmd.OpStatus, slashcmd.OpList, slashcmd.OpDelete,
		slashcmd.OpApprove, slashcmd.OpDeny, slashcmd.OpPending:
	default:
		return Job{}, fmt.Errorf("job %s: command %q is not one the worker runs", j.ID, j.Command.Op)
	}
	if j.ResponseURL == "" {
		return Job{}, fmt.Errorf("job %s: no response_url", j.ID)
	}
	return j, nil
}

// jobFingerprint is what makes two deliveries of a job the same job (its
// idempotency fingerprint): the job less the time it was queued, which a
// job sent again may not share.
func jobFingerprint(j Job) []byte {
	j.QueuedAt = time.Time{}
	b, _ := json.Marshal(j) // a Job always encodes
	return b
}
