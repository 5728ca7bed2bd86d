package main

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"github.com/keyvend/keyvend/pkg/app"
	"github.com/keyvend/keyvend/pkg/caller"
	"github.com/keyvend/keyvend/pkg/moto"
)

// slackAckTarget is the Slack ack's p99 target; Slack's own limit is 3 s.
const slackAckTarget = 50 * time.Millisecond

const (
	slackSecret = "bench-signing-secret"
	slackRules  = `{"rules":[{"principals":["slack:T0BENCH/*"],"buckets":["*.example.com"],"access":["read-write"]}]}`
)

// slackResult is the ack latency of the chatops endpoint, in process.
type slackResult struct {
	acks []time.Duration
	// sends is a bare SendMessage to the same queue, timed alongside: the
	// part of each ack that is moto's.
	sends []time.Duration
}

// measureSlackAck times the Slack endpoint's answer to n signed
// `/keyvend provision` commands, in process (httptest), with the job
// queued on a real SQS queue in moto: signature check, parsing, the rules'
// precheck and SendMessage — what Slack waits for.
func measureSlackAck(ctx context.Context, dir string, n int, progress func(string)) (*slackResult, error) {
	srv, err := moto.Start(ctx, moto.Options{})
	if err != nil {
		return nil, err
	}
	defer srv.Stop()
	awsCfg, err := config.LoadDefaultConfig(ctx, config.WithRegion(benchRegion), config.WithBaseEndpoint(srv.URL),
		config.WithCredentialsProvider(credentials.NewStaticCredentialsProvider("AKIAKEYVENDBENCH0000", "bench-secret", "")),
		config.WithSharedConfigFiles(nil), config.WithSharedCredentialsFiles(nil))
	if err != nil {
		return nil, err
	}
	sqsc := sqs.NewFromConfig(awsCfg)
	q, err := sqsc.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String("keyvend-bench-jobs")})
	if err != nil {
		return nil, fmt.Errorf("create the job queue: %w", err)
	}
	rules := filepath.Join(dir, "slack-rules.json")
	if err := os.WriteFile(rules, []byte(slackRules), 0o600); err != nil {
		return nil, err
	}
	discard := slog.New(slog.NewJSONHandler(io.Discard, nil))
	c := app.Config{RulesPath: rules, BoundaryARN: benchBoundary, SlackSigningSecret: slackSecret,
		ChatopsQueueURL: aws.ToString(q.QueueUrl), SlackResponseHosts: "hooks.slack.com", Table: benchTable}
	local, err := app.Serve(c, awsCfg, caller.Static{}, discard)
	if err != nil {
		return nil, err
	}
	ep := local.Slack
	progress(fmt.Sprintf("Slack ack: %d signed provision commands", n))
	res := &slackResult{}
	for i := 0; i < n+10; i++ { // the first 10 warm up the clients
		body := url.Values{
			"token": {"x"}, "team_id": {"T0BENCH"}, "team_domain": {"bench"}, "channel_id": {"C0BENCH"},
			"channel_name": {"deploys"}, "user_id": {"U0BENCH"}, "user_name": {"bench"}, "command": {"/keyvend"},
			"text":         {fmt.Sprintf(`provision bench-%d site.example.com:read-write "bench"`, i)},
			"response_url": {"https://hooks.slack.com/commands/T0BENCH/1/" + strconv.Itoa(i)},
			"trigger_id":   {"1.2.3"}, "api_app_id": {"A0BENCH"},
		}.Encode()
		ts := time.Now().Unix()
		mac := hmac.New(sha256.New, []byte(slackSecret))
		fmt.Fprintf(mac, "v0:%d:%s", ts, body)
		r := httptest.NewRequest(http.MethodPost, "/v1/chatops/slack", strings.NewReader(body)).WithContext(ctx)
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		r.Header.Set("X-Slack-Request-Timestamp", strconv.FormatInt(ts, 10))
		r.Header.Set("X-Slack-Signature", "v0="+hex.EncodeToString(mac.Sum(nil)))
		w := httptest.NewRecorder()
		start := time.Now()
		ep.ServeHTTP(w, r)
		took := time.Since(start)
		if w.Code != http.StatusOK || !strings.Contains(w.Body.String(), "orking on it") {
			return nil, fmt.Errorf("Slack ack %d: %d %s", i, w.Code, w.Body.String())
		}
		if i >= 10 {
			res.acks = append(res.acks, took)
		}
		start = time.Now()
		if _, err := sqsc.SendMessage(ctx, &sqs.SendMessageInput{QueueUrl: q.QueueUrl, MessageBody: aws.String(body)}); err != nil {
			return nil, fmt.Errorf("reference SendMessage: %w", err)
		}
		if i >= 10 {
			res.sends = append(res.sends, time.Since(start))
		}
	}
	return res, nil
}
