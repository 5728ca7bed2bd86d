package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"github.com/keyvend/keyvend/pkg/authz"
	"github.com/keyvend/keyvend/pkg/awsclient"
	"github.com/keyvend/keyvend/pkg/caller"
	"github.com/keyvend/keyvend/pkg/chatops"
	"github.com/keyvend/keyvend/pkg/provision"
	"github.com/keyvend/keyvend/pkg/slacksig"
)

// Slack builds the Slack function's handler. At start it only reads the
// rules file (a bad one stops the function before it answers anything);
// the AWS configuration (from the environment), each client, the
// provisioning service and the signing secret are made when a request
// first needs them: a forged request never gets past the signing secret,
// help needs nothing more, and only commands on existing users read IAM.
func Slack(c Config, log *slog.Logger) (http.Handler, error) {
	if !c.ChatopsEnabled() {
		return nil, errors.New("chatops: no Slack signing secret: set KEYVEND_SLACK_SIGNING_SECRET_ARN")
	}
	rules, err := authz.Load(c.RulesPath)
	if err != nil {
		return nil, err
	}
	awsCfg := &lazy[aws.Config]{build: func(ctx context.Context) (aws.Config, error) { return awsclient.Load(ctx) }}
	checks := &lazyChecks{svc: lazy[*provision.Service]{build: func(ctx context.Context) (*provision.Service, error) {
		cfg, err := awsCfg.get(ctx)
		if err != nil {
			return nil, err
		}
		return service(c, cfg, rules, log)
	}}}
	sender := &lazySQS{c: lazy[*sqs.Client]{build: func(ctx context.Context) (*sqs.Client, error) {
		cfg, err := awsCfg.get(ctx)
		if err != nil {
			return nil, err
		}
		return sqs.NewFromConfig(cfg), nil
	}}}
	secrets := &lazySecrets{c: lazy[*secretsmanager.Client]{build: func(ctx context.Context) (*secretsmanager.Client, error) {
		cfg, err := awsCfg.get(ctx)
		if err != nil {
			return nil, err
		}
		return secretsmanager.NewFromConfig(cfg), nil
	}}}
	ep, err := slackEndpoint(c, checks, sender, secrets, log)
	if err != nil {
		return nil, err
	}
	return ep.Routes(), nil
}

// slackEndpoint builds the Slack command's endpoint: checks decides
// what the rules refuse before queueing, sender sends jobs to
// KEYVEND_CHATOPS_QUEUE_URL, secrets reads the signing secret when it is in
// Secrets Manager.
func slackEndpoint(c Config, checks chatops.Prechecker, sender chatops.SQSSender, secrets slacksig.SecretsGetter, log *slog.Logger) (*chatops.Endpoint, error) {
	source, err := c.signingSecret(secrets)
	if err != nil {
		return nil, err
	}
	if c.ChatopsQueueURL == "" {
		return nil, errors.New("chatops: no job queue: set KEYVEND_CHATOPS_QUEUE_URL")
	}
	return &chatops.Endpoint{
		Verifier: &slacksig.Verifier{Secret: source, Replay: slacksig.NewReplayCache(0)},
		Checks:   checks,
		Queue:    chatops.SQSQueue{Client: sender, URL: c.ChatopsQueueURL},
		Hosts:    chatops.ParseResponseHosts(c.SlackResponseHosts),
		Log:      log,
	}, nil
}

// lazy makes a value on first use and keeps it. A failed build is not
// kept: the next use tries again.
type lazy[T any] struct {
	build func(context.Context) (T, error)
	mu    sync.Mutex
	done  bool
	v     T
}

func (l *lazy[T]) get(ctx context.Context) (T, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.done {
		return l.v, nil
	}
	v, err := l.build(ctx)
	if err != nil {
		return v, err
	}
	l.v, l.done = v, true
	return v, nil
}

// lazyChecks is the provisioning service's prechecks, the service made on
// first use.
type lazyChecks struct{ svc lazy[*provision.Service] }

func (l *lazyChecks) CheckCreate(in provision.CreateInput) error {
	svc, err := l.svc.get(context.Background())
	if err != nil {
		return fmt.Errorf("chatops precheck: %w", err)
	}
	return svc.CheckCreate(in)
}

func (l *lazyChecks) CheckOnUser(ctx context.Context, p caller.Principal, action authz.Action, name string) error {
	svc, err := l.svc.get(ctx)
	if err != nil {
		return fmt.Errorf("chatops precheck: %w", err)
	}
	return svc.CheckOnUser(ctx, p, action, name)
}

// lazySQS is an SQS client made on first use.
type lazySQS struct{ c lazy[*sqs.Client] }

func (l *lazySQS) SendMessage(ctx context.Context, in *sqs.SendMessageInput, opts ...func(*sqs.Options)) (*sqs.SendMessageOutput, error) {
	c, err := l.c.get(ctx)
	if err != nil {
		return nil, err
	}
	return c.SendMessage(ctx, in, opts...)
}

// lazySecrets is a Secrets Manager client made on first use.
type lazySecrets struct{ c lazy[*secretsmanager.Client] }

func (l *lazySecrets) GetSecretValue(ctx context.Context, in *secretsmanager.GetSecretValueInput, opts ...func(*secretsmanager.Options)) (*secretsmanager.GetSecretValueOutput, error) {
	c, err := l.c.get(ctx)
	if err != nil {
		return nil, err
	}
	return c.GetSecretValue(ctx, in, opts...)
}
