package app

import (
	"context"
	"log/slog"

	"github.com/keyvend/keyvend/pkg/awsclient"
	"github.com/keyvend/keyvend/pkg/chatops"
)

// Worker builds the worker function's handler, with the AWS configuration
// from the environment and its jobs' idempotency keys in the state table
// (KEYVEND_TABLE).
func Worker(ctx context.Context, c Config, log *slog.Logger) (*chatops.Worker, error) {
	awsCfg, err := awsclient.Load(ctx)
	if err != nil {
		return nil, err
	}
	svc, idem, err := serviceWithKeys(c, awsCfg, log)
	if err != nil {
		return nil, err
	}
	w := worker(c, svc, log)
	w.Idempotency = idem
	return w, nil
}

// worker is the job worker over svc, without idempotency keys.
func worker(c Config, svc chatops.Service, log *slog.Logger) *chatops.Worker {
	return &chatops.Worker{
		Service:     svc,
		Poster:      &chatops.Responder{Hosts: chatops.ParseResponseHosts(c.SlackResponseHosts)},
		MaxReceives: c.ChatopsMaxReceives,
		Log:         log,
	}
}
