package app

import (
	"context"
	"log/slog"
	"net/http"

	"github.com/keyvend/keyvend/pkg/awsclient"
	"github.com/keyvend/keyvend/pkg/caller"
	"github.com/keyvend/keyvend/pkg/httpapi"
	"github.com/keyvend/keyvend/pkg/idempotency"
	"github.com/keyvend/keyvend/pkg/provision"
)

// API builds the API function's HTTP handler, with the AWS configuration
// from the environment and callers from the API Gateway authorizer
// context (c's JWT claims).
func API(ctx context.Context, c Config, log *slog.Logger) (http.Handler, error) {
	awsCfg, err := awsclient.Load(ctx)
	if err != nil {
		return nil, err
	}
	svc, idem, err := serviceWithKeys(c, awsCfg, log)
	if err != nil {
		return nil, err
	}
	return api(c, svc, idem, c.resolver(), log), nil
}

// api is the HTTP API over svc for callers established by who, with
// idempotency keys in idem.
func api(c Config, svc *provision.Service, idem *idempotency.Store, who caller.Resolver, log *slog.Logger) http.Handler {
	return httpapi.New(svc, who, log, httpapi.WithCORSOrigins(c.CORSOrigins...), httpapi.WithIdempotency(idem))
}
