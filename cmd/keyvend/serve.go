package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sts"

	"github.com/keyvend/keyvend/pkg/app"
	"github.com/keyvend/keyvend/pkg/awsclient"
	"github.com/keyvend/keyvend/pkg/caller"
	"github.com/keyvend/keyvend/pkg/chatops"
	"github.com/keyvend/keyvend/pkg/localenv"
)

const defaultCaller = "arn:aws:iam::123456789012:user/local-dev"

// serve runs the API on KEYVEND_LISTEN. Without AWS_ENDPOINT_URL it starts
// the embedded moto and seeds it, enforcing IAM unless --enforce-iam=false
// (or KEYVEND_LOCAL_ENFORCE_IAM=false); --aws uses the default AWS
// credential chain against real AWS instead. Every API request is
// KEYVEND_LOCAL_CALLER.
//
// With a Slack signing secret (KEYVEND_SLACK_SIGNING_SECRET) it also
// serves the Slack command on /v1/chatops/slack, verified by Slack's
// signature rather than the local caller, and runs the worker in-process
// on the job queue (the embedded moto's, or KEYVEND_CHATOPS_QUEUE_URL).
func serve(args []string) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	realAWS := fs.Bool("aws", false, "use real AWS (the default credential chain) instead of the embedded moto")
	envFile := fs.String("env-file", ".keyvend/local.env", "where to write AWS CLI exports for the embedded moto")
	enforceDefault := true
	if v := os.Getenv("KEYVEND_LOCAL_ENFORCE_IAM"); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return fmt.Errorf("KEYVEND_LOCAL_ENFORCE_IAM=%q: want true or false", v)
		}
		enforceDefault = b
	}
	enforceIAM := fs.Bool("enforce-iam", enforceDefault, "the embedded moto checks every request's signature and IAM policy, as AWS does (KEYVEND_LOCAL_ENFORCE_IAM)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	log := app.Logger()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	cfg, err := app.FromEnv()
	if err != nil {
		return err
	}
	var awsCfg aws.Config
	iamNote := ""
	endpoint := os.Getenv("AWS_ENDPOINT_URL")
	if cfg.SlackResponseHosts == "" {
		// Locally, results may also go to a listener on this machine.
		cfg.SlackResponseHosts = "hooks.slack.com,127.0.0.1,localhost"
	}
	switch {
	case endpoint == "" && !*realAWS:
		env, err := localenv.Start(ctx, io.Discard, localenv.Options{EnforceIAM: *enforceIAM})
		if err != nil {
			return fmt.Errorf("embedded moto: %w", err)
		}
		defer env.Moto.Stop()
		iamNote = ", IAM: not enforced"
		if env.IAMEnforced {
			iamNote = ", IAM: enforced"
		}
		awsCfg, endpoint = env.AWS, env.Moto.URL
		if cfg.BoundaryARN == "" {
			cfg.BoundaryARN = env.BoundaryARN
		}
		if cfg.RulesPath == "" {
			cfg.RulesPath = "rules/demo.json"
		}
		if cfg.Table == "" {
			cfg.Table = localenv.Table
		}
		if cfg.ChatopsQueueURL == "" {
			cfg.ChatopsQueueURL = env.QueueURL
			cfg.ChatopsMaxReceives = localenv.MaxReceives
		}
		if err := env.WriteEnvFile(*envFile, cfg.RulesPath); err != nil {
			return fmt.Errorf("write %s: %w", *envFile, err)
		}
		defer os.Remove(*envFile) // it points at this moto, which stops with us
	default:
		if awsCfg, err = awsclient.Load(ctx); err != nil {
			return err
		}
		if endpoint == "" {
			endpoint = "real AWS"
		}
		if err := reachable(ctx, awsCfg); err != nil {
			return fmt.Errorf("cannot reach AWS at %s: %w (a stale .keyvend/local.env sourced in this shell? `unset AWS_ENDPOINT_URL` for the embedded moto)", endpoint, err)
		}
	}
	who := caller.Static{ARN: envOr("KEYVEND_LOCAL_CALLER", defaultCaller)}
	local, err := app.Serve(cfg, awsCfg, who, log)
	if err != nil {
		return err
	}
	chat := "off (set KEYVEND_SLACK_SIGNING_SECRET)"
	workerDone := make(chan struct{})
	workerCtx, stopWorker := context.WithCancel(context.Background())
	defer stopWorker()
	if local.Worker != nil {
		jobs := &poller{Client: local.Queue, QueueURL: cfg.ChatopsQueueURL, Handle: local.Worker.Handle, Log: log}
		go func() { defer close(workerDone); jobs.run(workerCtx) }()
		chat = fmt.Sprintf("POST %s and %s, worker on %s, results to %s", chatops.Path, chatops.InteractivePath, cfg.ChatopsQueueURL, strings.Join(local.Slack.Hosts, ","))
	} else {
		close(workerDone)
	}
	ln, err := net.Listen("tcp", envOr("KEYVEND_LISTEN", "127.0.0.1:8080"))
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: local.Handler, ReadHeaderTimeout: 10 * time.Second}
	fmt.Printf("keyvend ready on http://%s (AWS: %s, caller: %s, rules: %s, chatops: %s%s)\n", ln.Addr(), endpoint, who.ARN, orNone(cfg.RulesPath), chat, iamNote)
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
		stop() // a second Ctrl-C ends keyvend at once
	}
	shutdown, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err = srv.Shutdown(shutdown)
	stopWorker()
	<-workerDone
	if err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

func orNone(s string) string {
	if s == "" {
		return "none (deny all)"
	}
	return s
}

// reachable asks STS who we are, to fail early and clearly when the AWS
// endpoint is down or the credentials are missing.
func reachable(ctx context.Context, cfg aws.Config) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	_, err := sts.NewFromConfig(cfg).GetCallerIdentity(ctx, &sts.GetCallerIdentityInput{})
	return err
}
