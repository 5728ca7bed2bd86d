// Command rotate is the Secrets Manager rotation Lambda for keyvend's user
// secrets (pkg/rotation).
package main

import (
	"context"
	"os"

	"github.com/aws/aws-lambda-go/lambda"

	"github.com/keyvend/keyvend/pkg/app"
	"github.com/keyvend/keyvend/pkg/rotation"
)

func main() {
	log := app.Logger()
	c, err := app.FromEnv()
	var r *rotation.Rotator
	if err == nil {
		r, err = app.Rotator(context.Background(), c, log)
	}
	if err != nil {
		log.Error("keyvend rotate cannot start", "error", err.Error())
		os.Exit(1)
	}
	lambda.Start(r.Handle)
}
