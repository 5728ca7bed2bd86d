package app

import (
	"context"
	"log/slog"

	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"

	"github.com/keyvend/keyvend/pkg/awsclient"
	"github.com/keyvend/keyvend/pkg/chatops"
	"github.com/keyvend/keyvend/pkg/slacksig"
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
	w := worker(c, svc, secretsmanager.NewFromConfig(awsCfg), log)
	w.Idempotency = idem
	return w, nil
}

// worker is the job worker over svc, without idempotency keys; with
// KEYVEND_SLACK_APPROVALS_CHANNEL it posts new pending approval requests
// there, with the bot token (read through secrets when it is an ARN).
func worker(c Config, svc chatops.Service, secrets slacksig.SecretsGetter, log *slog.Logger) *chatops.Worker {
	w := &chatops.Worker{
		Service:     svc,
		Poster:      &chatops.Responder{Hosts: chatops.ParseResponseHosts(c.SlackResponseHosts)},
		MaxReceives: c.ChatopsMaxReceives,
		Log:         log,
	}
	if c.SlackApprovalsChannel != "" {
		var token chatops.TokenSource = chatops.StaticToken(c.SlackBotToken)
		if c.SlackBotTokenARN != "" {
			token = &chatops.ManagedToken{ARN: c.SlackBotTokenARN, Client: secrets}
		}
		w.Announcer = &chatops.Announcer{Token: token, Channel: c.SlackApprovalsChannel, APIURL: c.SlackAPIURL}
	}
	return w
}
