// Command slack is the Lambda function behind POST /v1/chatops/slack, the
// route API Gateway leaves without an authorizer (Slack cannot sign
// SigV4): the handler (pkg/chatops) verifies Slack's signature itself,
// prechecks the command against the rules, queues it and answers within
// Slack's 3 seconds. It only wires; nothing is made before a request needs
// it (app.Slack).
package main

import (
	"net/http"
	"os"

	"github.com/aws/aws-lambda-go/lambda"

	"github.com/keyvend/keyvend/pkg/app"
	"github.com/keyvend/keyvend/pkg/httpapi"
)

func main() {
	log := app.Logger()
	c, err := app.FromEnv()
	var h http.Handler
	if err == nil {
		h, err = app.Slack(c, log)
	}
	if err != nil {
		log.Error("keyvend slack cannot start", "error", err.Error())
		os.Exit(1)
	}
	lambda.Start(httpapi.LambdaHandler(h))
}
