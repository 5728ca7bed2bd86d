package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/keyvend/keyvend/pkg/awstest"
)

// TestPoller: as Lambda's SQS event source, the poller hands batches to
// the handler with their receive counts, deletes what the handler does
// not report failed, and leaves a failed message to SQS, which delivers it
// again after the visibility timeout and, after maxReceiveCount receives,
// moves it to the dead-letter queue. It stops when its context is done.
func TestPoller(t *testing.T) {
	srv := awstest.Dedicated(t)
	c := sqs.NewFromConfig(awstest.Config(t, srv.URL))
	ctx := context.Background()
	name := awstest.Name("poller")
	dlq, err := c.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String(name + "-dlq")})
	if err != nil {
		t.Fatal(err)
	}
	attrs, err := c.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{QueueUrl: dlq.QueueUrl,
		AttributeNames: []sqstypes.QueueAttributeName{sqstypes.QueueAttributeNameQueueArn}})
	if err != nil {
		t.Fatal(err)
	}
	q, err := c.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String(name), Attributes: map[string]string{"VisibilityTimeout": "1",
		"RedrivePolicy": fmt.Sprintf(`{"deadLetterTargetArn":%q,"maxReceiveCount":"2"}`, attrs.Attributes["QueueArn"])}})
	if err != nil {
		t.Fatal(err)
	}
	for _, body := range []string{"ok", "fail"} {
		if _, err := c.SendMessage(ctx, &sqs.SendMessageInput{QueueUrl: q.QueueUrl, MessageBody: aws.String(body)}); err != nil {
			t.Fatal(err)
		}
	}

	var mu sync.Mutex
	receives := map[string][]int{} // body → the ApproximateReceiveCount of each delivery
	handle := func(_ context.Context, ev events.SQSEvent) (events.SQSEventResponse, error) {
		var resp events.SQSEventResponse
		mu.Lock()
		defer mu.Unlock()
		for _, m := range ev.Records {
			n, _ := strconv.Atoi(m.Attributes["ApproximateReceiveCount"])
			receives[m.Body] = append(receives[m.Body], n)
			if m.Body == "fail" {
				resp.BatchItemFailures = append(resp.BatchItemFailures, events.SQSBatchItemFailure{ItemIdentifier: m.MessageId})
			}
		}
		return resp, nil
	}
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	p := &poller{Client: c, QueueURL: aws.ToString(q.QueueUrl), Handle: handle, Wait: time.Second, Log: slog.New(slog.NewJSONHandler(io.Discard, nil))}
	go func() { defer close(done); p.run(runCtx) }()
	defer func() { cancel(); <-done }()

	depth := func(url *string) int {
		out, err := c.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{QueueUrl: url, AttributeNames: []sqstypes.QueueAttributeName{
			sqstypes.QueueAttributeNameApproximateNumberOfMessages, sqstypes.QueueAttributeNameApproximateNumberOfMessagesNotVisible}})
		if err != nil {
			t.Fatal(err)
		}
		a, _ := strconv.Atoi(out.Attributes[string(sqstypes.QueueAttributeNameApproximateNumberOfMessages)])
		b, _ := strconv.Atoi(out.Attributes[string(sqstypes.QueueAttributeNameApproximateNumberOfMessagesNotVisible)])
		return a + b
	}
	deadline := time.Now().Add(30 * time.Second)
	for depth(dlq.QueueUrl) == 0 && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	if n := depth(dlq.QueueUrl); n != 1 {
		t.Fatalf("%d messages in the dead-letter queue, want 1 (the failed one)", n)
	}
	if n := depth(q.QueueUrl); n != 0 {
		t.Errorf("%d messages left on the queue, want 0 (the done one deleted)", n)
	}
	mu.Lock()
	defer mu.Unlock()
	if got := fmt.Sprint(receives["ok"]); got != "[1]" {
		t.Errorf("the done message was delivered with receive counts %s, want [1]", got)
	}
	if got := fmt.Sprint(receives["fail"]); got != "[1 2]" {
		t.Errorf("the failed message was delivered with receive counts %s, want [1 2]", got)
	}
}
