// Command worker is the SQS-triggered Lambda function that runs queued
// Slack commands through the provisioning service and posts each result to
// the command's response_url (pkg/chatops.Worker). It reports partial
// batch failures; SQS retries them and, after maxReceiveCount, moves them
// to the dead-letter queue.
package main

import (
	"context"
	"os"

	"github.com/aws/aws-lambda-go/lambda"

	"github.com/keyvend/keyvend/pkg/app"
	"github.com/keyvend/keyvend/pkg/chatops"
)

func main() {
	log := app.Logger()
	c, err := app.FromEnv()
	var w *chatops.Worker
	if err == nil {
		w, err = app.Worker(context.Background(), c, log)
	}
	if err != nil {
		log.Error("keyvend worker cannot start", "error", err.Error())
		os.Exit(1)
	}
	lambda.Start(w.Handle)
}
