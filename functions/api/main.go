// Command api is the Lambda function behind keyvend's HTTP API. It only
// wires: the handler is pkg/httpapi, and the caller comes from the API
// Gateway authorizer context, never from a header.
package main

import (
	"context"
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
		h, err = app.API(context.Background(), c, log)
	}
	if err != nil {
		log.Error("keyvend api cannot start", "error", err.Error())
		os.Exit(1)
	}
	lambda.Start(httpapi.LambdaHandler(h))
}
