// Package app assembles keyvend from its configuration (Config, FromEnv):
// one builder per binary — API, Slack, Worker, Reaper and Rotator for the
// Lambda functions, Serve for `keyvend serve`, Service for keyvend's jobs
// run by hand and the bench. The AWS SDK settings are pkg/awsclient's.
package app

import (
	"io"
	"log/slog"
	"os"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"

	"github.com/keyvend/keyvend/pkg/authz"
	"github.com/keyvend/keyvend/pkg/idempotency"
	"github.com/keyvend/keyvend/pkg/keycheck"
	"github.com/keyvend/keyvend/pkg/provision"
	"github.com/keyvend/keyvend/pkg/state"
)

// Logger is keyvend's JSON logger on stdout.
func Logger() *slog.Logger {
	return LoggerTo(os.Stdout)
}

// LoggerTo is keyvend's JSON logger on w.
func LoggerTo(w io.Writer) *slog.Logger {
	return slog.New(slog.NewJSONHandler(w, nil))
}

// Service builds the provisioning service over awsCfg, with adjustments
// to its settings: what `keyvend reap` and `keyvend reindex` run on (with
// their clock), and the bench's service. A bad rules file or setting is an
// error: keyvend refuses to start rather than run misconfigured.
func Service(c Config, awsCfg aws.Config, log *slog.Logger, adjust ...func(*provision.Settings)) (*provision.Service, error) {
	rules, err := authz.Load(c.RulesPath)
	if err != nil {
		return nil, err
	}
	return service(c, awsCfg, rules, log, adjust...)
}

// service builds the provisioning service with rules already loaded.
func service(c Config, awsCfg aws.Config, rules *authz.Rules, log *slog.Logger, adjust ...func(*provision.Settings)) (*provision.Service, error) {
	st, err := store(c, awsCfg)
	if err != nil {
		return nil, err
	}
	settings := provision.Settings{
		Store:               st,
		HistoryRetention:    time.Duration(c.HistoryDays) * 24 * time.Hour,
		UserPath:            c.UserPath,
		GrantMode:           c.GrantMode,
		BoundaryARN:         c.BoundaryARN,
		SecretPrefix:        c.SecretPrefix,
		KMSKeyID:            c.KMSKeyID,
		Region:              awsCfg.Region,
		RepairAfter:         c.RepairAfter,
		SecretRecoveryDays:  c.RecoveryDays,
		RotationGrace:       c.RotationGrace,
		RotationFunctionARN: c.RotationFunctionARN,
		KeyCheck:            &keycheck.Checker{Base: awsCfg, Timeout: c.ReadyTimeout, Successes: c.ReadySuccesses},
	}
	for _, f := range adjust {
		f(&settings)
	}
	return provision.New(iam.NewFromConfig(awsCfg), secretsmanager.NewFromConfig(awsCfg), rules, settings, log)
}

// store is the state table named by c.Table (KEYVEND_TABLE).
func store(c Config, awsCfg aws.Config) (*state.Store, error) {
	return state.New(dynamodb.NewFromConfig(awsCfg), c.Table)
}

// idempotencyKeys is the store of idempotency keys, in the state table
// named by c.Table.
func idempotencyKeys(c Config, awsCfg aws.Config) (*idempotency.Store, error) {
	return idempotency.New(dynamodb.NewFromConfig(awsCfg), c.Table)
}

// serviceWithKeys is Service and the idempotency keys of the requests it
// serves: what the API, the worker and keyvend serve are built over.
func serviceWithKeys(c Config, awsCfg aws.Config, log *slog.Logger) (*provision.Service, *idempotency.Store, error) {
	svc, err := Service(c, awsCfg, log)
	if err != nil {
		return nil, nil, err
	}
	idem, err := idempotencyKeys(c, awsCfg)
	if err != nil {
		return nil, nil, err
	}
	return svc, idem, nil
}
