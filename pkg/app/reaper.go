package app

import (
	"context"
	"log/slog"

	"github.com/keyvend/keyvend/pkg/awsclient"
	"github.com/keyvend/keyvend/pkg/provision"
)

// Reaper builds the reaper function's provisioning service, with the AWS
// configuration from the environment.
func Reaper(ctx context.Context, c Config, log *slog.Logger) (*provision.Service, error) {
	awsCfg, err := awsclient.Load(ctx)
	if err != nil {
		return nil, err
	}
	return Service(c, awsCfg, log)
}
