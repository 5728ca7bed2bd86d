package app

import (
	"errors"
	"log/slog"
	"net/http"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"github.com/keyvend/keyvend/pkg/caller"
	"github.com/keyvend/keyvend/pkg/chatops"
)

// Server is what `keyvend serve` runs.
type Server struct {
	// Handler is the HTTP API and, when the Slack command is configured,
	// its endpoints on chatops.Path and chatops.InteractivePath: verified by Slack's signature, not by
	// the local caller, it sits next to the API, not inside it.
	Handler http.Handler
	// Slack is the Slack command's endpoint, Worker its job worker (on the
	// API's idempotency keys) and Queue the job queue's client; all nil
	// without the Slack command.
	Slack  *chatops.Endpoint
	Worker *chatops.Worker
	Queue  *sqs.Client
}

// Serve builds `keyvend serve` over awsCfg, every API request made by
// who. With the Slack command configured (c.ChatopsEnabled) it needs the job
// queue (c.ChatopsQueueURL).
func Serve(c Config, awsCfg aws.Config, who caller.Resolver, log *slog.Logger) (*Server, error) {
	svc, idem, err := serviceWithKeys(c, awsCfg, log)
	if err != nil {
		return nil, err
	}
	s := &Server{Handler: api(c, svc, idem, who, log)}
	if !c.ChatopsEnabled() {
		return s, nil
	}
	if c.ChatopsQueueURL == "" {
		return nil, errors.New("chatops: set KEYVEND_CHATOPS_QUEUE_URL (only the embedded moto has a queue of its own)")
	}
	s.Queue = sqs.NewFromConfig(awsCfg)
	if s.Slack, err = slackEndpoint(c, svc, s.Queue, secretsmanager.NewFromConfig(awsCfg), log); err != nil {
		return nil, err
	}
	mux := http.NewServeMux()
	mux.Handle(chatops.Path, s.Slack)
	mux.Handle(chatops.InteractivePath, s.Slack.Interactive())
	mux.Handle("/", s.Handler)
	s.Handler = mux
	s.Worker = worker(c, svc, secretsmanager.NewFromConfig(awsCfg), log)
	s.Worker.Idempotency = idem
	return s, nil
}
