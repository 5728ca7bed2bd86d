package chatops

import (
	"context"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/slack-go/slack"

	"github.com/keyvend/keyvend/pkg/caller"
	"github.com/keyvend/keyvend/pkg/provision"
)

// Service is what the worker needs of the provisioning service: the same
// operations, and the same code, as the HTTP API's.
type Service interface {
	Create(ctx context.Context, in provision.Input) (*provision.Result, error)
	Rotate(ctx context.Context, in provision.RotateInput) (*provision.RotateResult, error)
	Describe(ctx context.Context, p caller.Principal, name string) (*provision.Description, error)
	List(ctx context.Context, in provision.ListInput) (*provision.ListResult, error)
	Delete(ctx context.Context, in provision.DeleteInput) error
}

// Poster posts a message to a response_url (*Responder).
type Poster interface {
	Post(ctx context.Context, responseURL string, msg *slack.WebhookMessage) error
}

// DefaultMaxReceives is the queue's maxReceiveCount unless configured.
const DefaultMaxReceives = 3

// List bounds of a Slack answer: at most listShow users, from at most
// listPages pages of the service's listing.
const (
	listShow  = 40
	listPages = 5
)

// Worker runs queued jobs: SQS messages, in batches, as Lambda's SQS event
// source (or the local Poller) delivers them. For each job it performs the
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
	// MaxReceives must equal the queue's maxReceiveCount (DefaultMaxReceives).
	MaxReceives int
	Log         *slog.Logger
	// Concurrency bounds the jobs of one batch that run at once (4).
	Concurrency int
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
		return DefaultMaxReceives
	}
	return w.MaxReceives
}

// process runs one message; an error reports it failed (SQS retries it).
func (w *Worker) process(ctx context.Context, m events.SQSMessage) error {
	start := time.Now()
	attempt := receiveCount(m)
	log := w.log().With(slog.String("message_id", m.MessageId), slog.Int("attempt", attempt))
	job, err := DecodeJob(m.Body)
	if err != nil {
		// No trustworthy response_url to tell anyone: retried, then the
		// dead-letter queue and its alarm.
		log.ErrorContext(ctx, "chatops job unreadable", slog.String("error", err.Error()))
		return err
	}
	log = log.With(slog.String("request_id", job.ID), slog.String("op", string(job.Command.Op)),
		slog.String("principal", job.Principal().ID), slog.String("user", job.Command.User))
	final := attempt >= w.maxReceives()
	msg, err := w.run(ctx, job)
	result := "done"
	var failed error
	switch kind := provision.KindOf(err); {
	case err == nil:
	case kind != 0 && (kind != provision.KindInProgress || final):
		result = resultOfKind(kind)
		msg = RefusalMessage(job.Command, err)
	case !final:
		log.WarnContext(ctx, "chatops job failed; SQS delivers it again", slog.String("error", err.Error()),
			slog.Float64("duration_ms", ms(time.Since(start))))
		return err
	default:
		result, failed = "failed", err
		msg = FailureMessage(job.Command, err, job.ID, attempt)
	}
	if perr := w.Poster.Post(ctx, job.ResponseURL, msg); perr != nil {
		log.ErrorContext(ctx, "chatops result not posted to Slack", slog.String("result", result), slog.String("error", perr.Error()))
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

// run performs the job's operation and returns the message that reports it.
func (w *Worker) run(ctx context.Context, job Job) (*slack.WebhookMessage, error) {
	p, c := job.Principal(), job.Command
	switch c.Op {
	case OpProvision:
		res, err := w.Service.Create(ctx, provision.Input{Principal: p, RequestID: job.ID, Request: c.CreateRequest()})
		if err != nil {
			return nil, err
		}
		return ProvisionMessage(res, job.ID), nil
	case OpRotate:
		res, err := w.Service.Rotate(ctx, provision.RotateInput{Principal: p, RequestID: job.ID, User: c.User, Wait: true})
		if err != nil {
			return nil, err
		}
		return RotateMessage(res, job.ID), nil
	case OpStatus:
		d, err := w.Service.Describe(ctx, p, c.User)
		if err != nil {
			return nil, err
		}
		return StatusMessage(d, job.ID), nil
	case OpDelete:
		if err := w.Service.Delete(ctx, provision.DeleteInput{Principal: p, RequestID: job.ID, User: c.User}); err != nil {
			return nil, err
		}
		return DeleteMessage(c.User, job.ID), nil
	case OpList:
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
		return ListMessage(users, c.Bucket, more, job.ID), nil
	}
	return ephemeral(Usage(job.Slash)), nil
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
