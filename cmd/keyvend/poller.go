package main

import (
	"context"
	"log/slog"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"
)

// sqsReceiver is what the poller calls.
type sqsReceiver interface {
	ReceiveMessage(context.Context, *sqs.ReceiveMessageInput, ...func(*sqs.Options)) (*sqs.ReceiveMessageOutput, error)
	DeleteMessage(context.Context, *sqs.DeleteMessageInput, ...func(*sqs.Options)) (*sqs.DeleteMessageOutput, error)
}

// poller stands in for Lambda's SQS event source for keyvend serve, where
// there is no Lambda: it receives batches with their attributes, hands
// them to Handle as an SQS event, and deletes the messages the response
// does not report failed. Failed ones become visible again after the
// queue's visibility timeout, and SQS moves them to the dead-letter queue
// after its maxReceiveCount, exactly as with the event source.
type poller struct {
	Client   sqsReceiver
	QueueURL string
	Handle   func(context.Context, events.SQSEvent) (events.SQSEventResponse, error)
	// BatchSize is at most 10 (5); Wait the long-poll time (5 s).
	BatchSize int32
	Wait      time.Duration
	Log       *slog.Logger
}

// run polls until ctx is done.
func (p *poller) run(ctx context.Context) {
	log := p.Log
	if log == nil {
		log = slog.Default()
	}
	batch, wait := p.BatchSize, p.Wait
	if batch <= 0 || batch > 10 {
		batch = 5
	}
	if wait <= 0 {
		wait = 5 * time.Second
	}
	for ctx.Err() == nil {
		out, err := p.Client.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{
			QueueUrl:                    aws.String(p.QueueURL),
			MaxNumberOfMessages:         batch,
			WaitTimeSeconds:             int32(wait / time.Second),
			MessageSystemAttributeNames: []sqstypes.MessageSystemAttributeName{sqstypes.MessageSystemAttributeNameAll},
		})
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			log.WarnContext(ctx, "chatops poller: receive failed", slog.String("queue", p.QueueURL), slog.String("error", err.Error()))
			select {
			case <-ctx.Done():
			case <-time.After(time.Second):
			}
			continue
		}
		if len(out.Messages) == 0 {
			continue
		}
		ev := events.SQSEvent{Records: make([]events.SQSMessage, 0, len(out.Messages))}
		for _, m := range out.Messages {
			ev.Records = append(ev.Records, events.SQSMessage{
				MessageId:     aws.ToString(m.MessageId),
				ReceiptHandle: aws.ToString(m.ReceiptHandle),
				Body:          aws.ToString(m.Body),
				Md5OfBody:     aws.ToString(m.MD5OfBody),
				Attributes:    m.Attributes,
				EventSource:   "aws:sqs",
			})
		}
		resp, err := p.Handle(ctx, ev)
		if err != nil { // the whole batch failed
			log.ErrorContext(ctx, "chatops poller: batch failed", slog.String("error", err.Error()))
			continue
		}
		failed := map[string]bool{}
		for _, f := range resp.BatchItemFailures {
			failed[f.ItemIdentifier] = true
		}
		for _, m := range ev.Records {
			if failed[m.MessageId] {
				continue
			}
			if _, err := p.Client.DeleteMessage(context.WithoutCancel(ctx), &sqs.DeleteMessageInput{QueueUrl: aws.String(p.QueueURL), ReceiptHandle: aws.String(m.ReceiptHandle)}); err != nil {
				log.WarnContext(ctx, "chatops poller: delete failed; the job may run again", slog.String("message_id", m.MessageId), slog.String("error", err.Error()))
			}
		}
	}
}
