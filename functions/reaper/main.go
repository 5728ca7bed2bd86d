// Command reaper is the scheduled Lambda function that deprovisions expired
// users and repairs or removes half-made ones (provision.Service.Reap).
package main

import (
	"context"
	"os"

	"github.com/aws/aws-lambda-go/lambda"

	"github.com/keyvend/keyvend/pkg/app"
	"github.com/keyvend/keyvend/pkg/provision"
)

func main() {
	log := app.Logger()
	c, err := app.FromEnv()
	var svc *provision.Service
	if err == nil {
		svc, err = app.Reaper(context.Background(), c, log)
	}
	if err != nil {
		log.Error("keyvend reaper cannot start", "error", err.Error())
		os.Exit(1)
	}
	lambda.Start(func(ctx context.Context) (*provision.ReapReport, error) {
		rep, err := svc.Reap(ctx)
		if err == nil {
			log.InfoContext(ctx, "reaped", "report", rep)
		}
		return rep, err
	})
}
