package chatops

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/slack-go/slack"

	"github.com/keyvend/keyvend/pkg/approval"
	"github.com/keyvend/keyvend/pkg/caller"
	"github.com/keyvend/keyvend/pkg/idempotency"
	"github.com/keyvend/keyvend/pkg/provision"
	"github.com/keyvend/keyvend/pkg/slashcmd"
)

// Service is what the worker needs of the provisioning service: the same
// operations, and the same code, as the HTTP API's.
type Service interface {
	Create(ctx context.Context, in provision.CreateInput) (*provision.CreateResult, error)
	Rotate(ctx context.Context, in provision.RotateInput) (*provision.RotateResult, error)
	Describe(ctx context.Context, p caller.Principal, name string) (*provision.Description, error)
	List(ctx context.Context, in provision.ListInput) (*provision.ListResult, error)
	Delete(ctx context.Context, in provision.DeleteInput) error
	Decide(ctx context.Context, in provision.DecideInput) (*approval.Request, error)
	ListRequests(ctx context.Context, in provision.ListRequestsInput) (*provision.RequestList, error)
}

// Poster posts a message to a response_url (*Responder).
type Poster interface {
	Post(ctx context.Context, responseURL string, msg *slack.WebhookMessage) error
}

// defaultMaxReceives is the queue's maxReceiveCount unless configured.
const defaultMaxReceives = 3

// List bounds of a Slack answer: at most listShow users, from at most
// listPages pages of the service's listing.
const (
	listShow  = 40
	listPages = 5
)

// Worker runs queued jobs: SQS messages, in batches, as Lambda's SQS event
// source (or keyvend serve's poller) delivers them. For each job it performs the
// operation through the service as the job's Slack principal and posts
// the result to the job's response_url, once:
//
//   - done, or refused by the service (invalid, not allowed, not found,
//     conflict): the result or the refusal is posted; the message is done;
//   - failed (AWS, keyvend) before the last attempt: nothing is posted (Slack
//     takes at most 5 posts per response_url) and the message is reported
//     failed, so SQS delivers it again after its visibility timeout;
//   - failed on the last attempt (MaxReceives, the queue's
//     maxReceiveCount): the failure is posted and the message reported
//     failed, so SQS moves it to the dead-letter queue.
//
// A result that cannot be posted is logged; the job is not run again.
type Worker struct {
	Service Service
	Poster  Poster
	// MaxReceives must equal the queue's maxReceiveCount (defaultMaxReceives).
	MaxReceives int
	Log         *slog.Logger
	// Concurrency bounds the jobs of one batch that run at once (4).
	Concurrency int
	// Idempotency, when set, runs provision, rotate and delete jobs under
	// their job id as an idempotency key of the job's principal, so that a
	// message SQS delivers again (at least once) does not act again: the
	// result of the first delivery is stored before it is posted, a later
	// delivery posts it if it was not posted and otherwise does nothing,
	// and a delivery that finds another one running is a failed attempt.
	Idempotency *idempotency.Store
	// Announcer, when set, posts each new pending approval request a job
	// makes to the approvals channel, with Approve and Deny buttons. A
	// failed post is logged; the requester has the request id anyway.
	Announcer interface {
		Announce(ctx context.Context, r *approval.Request) error
	}
}

// Handle is the SQS event handler, with partial batch failures: every
// message not listed in the response is done.
func (w *Worker) Handle(ctx context.Context, ev events.SQSEvent) (events.SQSEventResponse, error) {
	n := w.Concurrency
	if n <= 0 {
		n = 4
	}
	sem := make(chan struct{}, n)
	var (
		mu   sync.Mutex
		resp events.SQSEventResponse
		wg   sync.WaitGroup
	)
	for _, m := range ev.Records {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			if err := w.process(ctx, m); err != nil {
				mu.Lock()
				resp.BatchItemFailures = append(resp.BatchItemFailures, events.SQSBatchItemFailure{ItemIdentifier: m.MessageId})
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return resp, nil
}

func (w *Worker) log() *slog.Logger {
	if w.Log == nil {
		return slog.Default()
	}
	return w.Log
}

func (w *Worker) maxReceives() int {
	if w.MaxReceives <= 0 {
		return defaultMaxReceives
	}
	return w.MaxReceives
}

// process runs one message; an error reports it failed (SQS retries it).
func (w *Worker) process(ctx context.Context, m events.SQSMessage) error {
	start := time.Now()
	attempt := receiveCount(m)
	log := w.log().With(slog.String("message_id", m.MessageId), slog.Int("attempt", attempt))
	job, err := decodeJob(m.Body)
	if err != nil {
		// No trustworthy response_url to tell anyone: retried, then the
		// dead-letter queue and its alarm.
		log.ErrorContext(ctx, "chatops job unreadable", slog.String("error", err.Error()))
		return err
	}
	log = log.With(slog.String("request_id", job.ID), slog.String("op", string(job.Command.Op)),
		slog.String("principal", job.Principal().ID), slog.String("user", job.Command.User))
	final := attempt >= w.maxReceives()
	claim, err := w.claim(ctx, job)
	if err == nil && claim != nil && claim.Outcome != idempotency.Proceed {
		return w.repeated(ctx, log, job, claim, final)
	}
	var msg *slack.WebhookMessage
	if err == nil {
		msg, err = w.run(ctx, job)
	}
	result := "done"
	var failed error
	var pending *provision.Pending
	switch kind := provision.KindOf(err); {
	case err == nil:
	case errors.As(err, &pending): // waits for approval: an answer, not a failure to retry
		result, msg = "pending", pendingMessage(job.Command, pending)
		if w.Announcer != nil && !pending.Existing {
			if aerr := w.Announcer.Announce(ctx, pending.Request); aerr != nil {
				log.ErrorContext(ctx, "approval request not posted to the approvals channel", slog.String("approval_request", pending.Request.ID), slog.String("error", aerr.Error()))
			}
		}
	case kind != 0 && (kind != provision.KindInProgress || final):
		result = kind.String()
		msg = refusalMessage(job.Command, err)
	case !final:
		w.abandon(ctx, log, claim) // the next delivery acts again
		log.WarnContext(ctx, "chatops job failed; SQS delivers it again", slog.String("error", err.Error()),
			slog.Float64("duration_ms", ms(time.Since(start))))
		return err
	default:
		w.abandon(ctx, log, claim) // a job redriven from the dead-letter queue acts again
		result, failed = "failed", err
		msg = failureMessage(job.Command, err, job.ID, attempt)
	}
	if failed == nil {
		w.finish(ctx, log, claim, result, msg)
	}
	if perr := w.Poster.Post(ctx, job.ResponseURL, msg); perr != nil {
		log.ErrorContext(ctx, "chatops result not posted to Slack", slog.String("result", result), slog.String("error", perr.Error()))
	} else if failed == nil {
		w.delivered(ctx, log, claim)
	}
	level := slog.LevelInfo
	attrs := []slog.Attr{slog.String("result", result), slog.Float64("duration_ms", ms(time.Since(start)))}
	if err != nil {
		attrs = append(attrs, slog.String("error", err.Error()))
	}
	if failed != nil {
		level = slog.LevelError
		attrs = append(attrs, slog.String("next", "dead-letter queue"))
	}
	log.LogAttrs(ctx, level, "chatops job", attrs...)
	return failed
}

// errJobBusy and errJobReused fail a delivery that must not act: another
// delivery of the job is running, or the job id is another job's.
var (
	errJobBusy   = errors.New("chatops: another delivery of the job is in progress")
	errJobReused = errors.New("chatops: the job id is another job's")
)

// storedResult is a job's outcome as its idempotency key keeps it: what
// the job log says and the message posted.
type storedResult struct {
	Result  string                `json:"result"`
	Message *slack.WebhookMessage `json:"message"`
}

// claim takes the job's idempotency key if the job changes something and
// the worker keeps keys; nil when it does not.
func (w *Worker) claim(ctx context.Context, job Job) (*idempotency.Claim, error) {
	if w.Idempotency == nil {
		return nil, nil
	}
	switch job.Command.Op {
	case slashcmd.OpProvision, slashcmd.OpRotate, slashcmd.OpDelete, slashcmd.OpApprove, slashcmd.OpDeny:
		return w.Idempotency.Begin(ctx, job.Principal().Requester(), job.ID, jobFingerprint(job))
	}
	return nil, nil
}

// repeated handles a delivery whose job another delivery ran, or runs.
func (w *Worker) repeated(ctx context.Context, log *slog.Logger, job Job, c *idempotency.Claim, final bool) error {
	switch c.Outcome {
	case idempotency.Replay:
		if c.Answer.Delivered {
			log.InfoContext(ctx, "chatops job", slog.String("result", "repeat"), slog.String("note", "delivered again; already done and posted"))
			return nil
		}
		var out storedResult
		if err := json.Unmarshal(c.Answer.Body, &out); err != nil || out.Message == nil {
			log.ErrorContext(ctx, "chatops job done, but its stored result is unreadable: not posted", slog.Any("error", err))
			return nil
		}
		if perr := w.Poster.Post(ctx, job.ResponseURL, out.Message); perr != nil {
			log.ErrorContext(ctx, "chatops result not posted to Slack", slog.String("result", out.Result), slog.String("error", perr.Error()))
		} else {
			w.delivered(ctx, log, c)
		}
		log.InfoContext(ctx, "chatops job", slog.String("result", out.Result), slog.String("note", "delivered again; the stored result posted"))
		return nil
	case idempotency.InProgress:
		if final {
			// The running delivery posts the result; this one goes to the
			// dead-letter queue without telling the user anything.
			log.ErrorContext(ctx, "chatops job: another delivery of the job is in progress; last attempt", slog.String("next", "dead-letter queue"))
		} else {
			log.WarnContext(ctx, "chatops job: another delivery of the job is in progress; SQS delivers it again")
		}
		return errJobBusy
	default: // Mismatch
		log.ErrorContext(ctx, "chatops job not run: its id is the idempotency key of another job")
		return errJobReused
	}
}

// settle is the context of the writes that settle a claim: they happen
// even if the delivery's context is done.
func settle(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
}

// finish stores the job's result under its key before it is posted: a
// delivery after a crash posts it instead of acting again.
func (w *Worker) finish(ctx context.Context, log *slog.Logger, c *idempotency.Claim, result string, msg *slack.WebhookMessage) {
	if c == nil {
		return
	}
	ctx, cancel := settle(ctx)
	defer cancel()
	body, err := json.Marshal(storedResult{Result: result, Message: msg})
	if err == nil {
		err = w.Idempotency.Finish(ctx, c, idempotency.Answer{Status: 200, Header: http.Header{"Content-Type": {"application/json"}}, Body: body})
	}
	if err != nil {
		log.ErrorContext(ctx, "chatops job result not stored under its idempotency key", slog.String("error", err.Error()))
	}
}

func (w *Worker) abandon(ctx context.Context, log *slog.Logger, c *idempotency.Claim) {
	if c == nil {
		return
	}
	ctx, cancel := settle(ctx)
	defer cancel()
	if err := w.Idempotency.Abandon(ctx, c); err != nil {
		log.ErrorContext(ctx, "chatops job idempotency key not released", slog.String("error", err.Error()))
	}
}

func (w *Worker) delivered(ctx context.Context, log *slog.Logger, c *idempotency.Claim) {
	if c == nil {
		return
	}
	ctx, cancel := settle(ctx)
	defer cancel()
	if err := w.Idempotency.MarkDelivered(ctx, c); err != nil {
		log.WarnContext(ctx, "chatops job: the post is not recorded; a repeated delivery may post it again", slog.String("error", err.Error()))
	}
}

// run performs the job's operation and returns the message that reports it.
func (w *Worker) run(ctx context.Context, job Job) (*slack.WebhookMessage, error) {
	p, c := job.Principal(), job.Command
	switch c.Op {
	case slashcmd.OpProvision:
		res, err := w.Service.Create(ctx, provision.CreateInput{Principal: p, RequestID: job.ID, Request: c.CreateRequest()})
		if err != nil {
			return nil, err
		}
		return provisionMessage(res, job.ID), nil
	case slashcmd.OpRotate:
		res, err := w.Service.Rotate(ctx, provision.RotateInput{Principal: p, RequestID: job.ID, User: c.User, Wait: true})
		if err != nil {
			return nil, err
		}
		return rotateMessage(res, job.ID), nil
	case slashcmd.OpStatus:
		d, err := w.Service.Describe(ctx, p, c.User)
		if err != nil {
			return nil, err
		}
		return statusMessage(d, job.ID), nil
	case slashcmd.OpDelete:
		if err := w.Service.Delete(ctx, provision.DeleteInput{Principal: p, RequestID: job.ID, User: c.User}); err != nil {
			return nil, err
		}
		return deleteMessage(c.User, job.ID), nil
	case slashcmd.OpList:
		var users []provision.UserSummary
		next := ""
		for page := 0; page < listPages; page++ {
			res, err := w.Service.List(ctx, provision.ListInput{Principal: p, Bucket: c.Bucket, Limit: provision.MaxListLimit, Next: next})
			if err != nil {
				return nil, err
			}
			users, next = append(users, res.Users...), res.Next
			if next == "" || len(users) >= listShow {
				break
			}
		}
		more := next != "" || len(users) > listShow
		if len(users) > listShow {
			users = users[:listShow]
		}
		return listMessage(users, c.Bucket, more, job.ID), nil
	case slashcmd.OpApprove, slashcmd.OpDeny:
		r, err := w.Service.Decide(ctx, provision.DecideInput{Principal: p, RequestID: job.ID, ID: c.ID, Approve: c.Op == slashcmd.OpApprove, Reason: c.Reason})
		if err != nil {
			return nil, err
		}
		return decidedMessage(r, p, c.Op == slashcmd.OpApprove, job.Replace, job.ID), nil
	case slashcmd.OpPending:
		res, err := w.Service.ListRequests(ctx, provision.ListRequestsInput{Principal: p, Status: approval.Pending})
		if err != nil {
			return nil, err
		}
		return pendingListMessage(res.Requests, p, job.ID), nil
	}
	return ephemeral(slashcmd.Usage(job.Slash)), nil
}

// receiveCount is SQS's ApproximateReceiveCount of m (1 when absent).
func receiveCount(m events.SQSMessage) int {
	n, err := strconv.Atoi(m.Attributes["ApproximateReceiveCount"])
	if err != nil || n < 1 {
		return 1
	}
	return n
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
