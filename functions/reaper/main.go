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
	svc, err := app.ServiceFromEnv(context.Background(), log)
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
