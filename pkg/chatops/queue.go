package chatops

import (
	"context"
	"fmt"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
)

// Queue takes jobs for the worker.
type Queue interface {
	Enqueue(ctx context.Context, j Job) error
}

// SQSSender is the SQS call the endpoint makes.
type SQSSender interface {
	SendMessage(context.Context, *sqs.SendMessageInput, ...func(*sqs.Options)) (*sqs.SendMessageOutput, error)
}

// SQSQueue sends jobs to an SQS queue, whose consumer is the worker: in
// AWS the worker function's event source, locally keyvend serve's poller.
type SQSQueue struct {
	Client SQSSender
	URL    string
}

// Enqueue implements Queue.
func (q SQSQueue) Enqueue(ctx context.Context, j Job) error {
	body, err := encodeJob(j)
	if err != nil {
		return err
	}
	if _, err := q.Client.SendMessage(ctx, &sqs.SendMessageInput{QueueUrl: aws.String(q.URL), MessageBody: aws.String(body)}); err != nil {
		return fmt.Errorf("enqueue job %s on %s: %w", j.ID, q.URL, err)
	}
	return nil
}
