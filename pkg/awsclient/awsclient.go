// Package awsclient is how every keyvend process talks to AWS: the SDK
// configuration from the environment, with keyvend's retry policy
// (Retryer) and connection limits (MaxConnsPerHost). Why these settings:
// docs/architecture.md, "Retries and throttling".
package awsclient

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/ratelimit"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/config"
)

// Retry settings of every AWS client keyvend makes (docs/architecture.md,
// "Retries and throttling").
const (
	RetryMaxAttempts = 8                      // attempts per call
	RetryMaxBackoff  = 2 * time.Second        // longest single backoff
	RateLimitMaxWait = 500 * time.Millisecond // longest wait for the adaptive rate limiter per attempt
)

// MaxConnsPerHost bounds the connections a process opens to one AWS
// endpoint, and how many it keeps idle for reuse (docs/architecture.md,
// "Retries and throttling").
const MaxConnsPerHost = 64

// Retryer is keyvend's retry strategy: the SDK's adaptive mode without a
// retry quota, with RetryMaxAttempts, RetryMaxBackoff and RateLimitMaxWait.
func Retryer() aws.Retryer {
	return boundedAdaptive{
		AdaptiveMode: retry.NewAdaptiveMode(func(o *retry.AdaptiveModeOptions) {
			o.StandardOptions = append(o.StandardOptions, func(so *retry.StandardOptions) {
				so.MaxAttempts = RetryMaxAttempts
				so.MaxBackoff = RetryMaxBackoff
				so.RateLimiter = ratelimit.None
			})
		}),
		maxWait: RateLimitMaxWait,
	}
}

// boundedAdaptive is the SDK's adaptive retry mode with a bound on how long
// an attempt waits for the client-side rate limiter.
type boundedAdaptive struct {
	*retry.AdaptiveMode
	maxWait time.Duration
}

// GetAttemptToken waits at most maxWait for the rate limiter, then lets
// the attempt go without it (that attempt's outcome does not feed the
// limiter).
func (b boundedAdaptive) GetAttemptToken(ctx context.Context) (func(error) error, error) {
	wait, cancel := context.WithTimeout(ctx, b.maxWait)
	defer cancel()
	release, err := b.AdaptiveMode.GetAttemptToken(wait)
	switch {
	case err == nil:
		return release, nil
	case ctx.Err() != nil: // the caller gave up, not the bound
		return nil, err
	default:
		return func(error) error { return nil }, nil
	}
}

// Load loads the AWS SDK configuration from the environment (including
// AWS_ENDPOINT_URL), with keyvend's retries (Retryer) and connection
// bounds (MaxConnsPerHost), request bodies of its own (OwnBodies), plus
// any extra options.
func Load(ctx context.Context, opts ...func(*config.LoadOptions) error) (aws.Config, error) {
	httpClient := awshttp.NewBuildableClient().WithTransportOptions(func(tr *http.Transport) {
		tr.MaxConnsPerHost = MaxConnsPerHost
		tr.MaxIdleConnsPerHost = MaxConnsPerHost
	})
	base := []func(*config.LoadOptions) error{config.WithRetryer(Retryer), config.WithHTTPClient(httpClient)}
	cfg, err := config.LoadDefaultConfig(ctx, append(base, opts...)...)
	if err != nil {
		return cfg, fmt.Errorf("load AWS configuration: %w", err)
	}
	if cfg.Region == "" {
		return cfg, fmt.Errorf("load AWS configuration: no region: set AWS_REGION")
	}
	cfg.HTTPClient = OwnBodies(cfg.HTTPClient) // after loading: the loader fits AWS_CA_BUNDLE to the SDK's own client
	return cfg, nil
}
