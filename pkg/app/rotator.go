package app

import (
	"context"
	"log/slog"

	"github.com/aws/aws-sdk-go-v2/service/iam"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"

	"github.com/keyvend/keyvend/pkg/awsclient"
	"github.com/keyvend/keyvend/pkg/keycheck"
	"github.com/keyvend/keyvend/pkg/rotation"
)

// Rotator builds the rotation function's handler, with the AWS
// configuration from the environment. It acts only on secrets and users
// made with c's secret prefix, KMS key, user path and permissions
// boundary; without a boundary (KEYVEND_BOUNDARY_ARN) or with a malformed
// setting it is an error: the function refuses to start.
func Rotator(ctx context.Context, c Config, log *slog.Logger) (*rotation.Rotator, error) {
	awsCfg, err := awsclient.Load(ctx)
	if err != nil {
		return nil, err
	}
	r := &rotation.Rotator{
		IAM:          iam.NewFromConfig(awsCfg),
		Secrets:      secretsmanager.NewFromConfig(awsCfg),
		Check:        &keycheck.Checker{Base: awsCfg, Timeout: c.ReadyTimeout, Successes: c.ReadySuccesses},
		Log:          log,
		SecretPrefix: c.SecretPrefix,
		UserPath:     c.UserPath,
		KMSKeyID:     c.KMSKeyID,
		BoundaryARN:  c.BoundaryARN,
		Grace:        c.RotationGrace,
	}
	if c.Table != "" {
		if r.Store, err = store(c, awsCfg); err != nil {
			return nil, err
		}
	}
	if err := r.CheckSettings(); err != nil {
		return nil, err
	}
	return r, nil
}
