// Package keycheck answers "does this new access key work yet?". IAM keys
// are eventually consistent: a key can be rejected for seconds after
// CreateAccessKey returns. keycheck polls sts:GetCallerIdentity with the
// key, with backoff, within a bound.
package keycheck

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/aws/smithy-go"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/sts"
)

// Checker polls STS with a key until it authenticates.
type Checker struct {
	// Base is the SDK configuration (region, endpoint, HTTP client); its
	// credentials are replaced by the key under test.
	Base aws.Config
	// Timeout bounds one Wait (10s). Keep it well inside the Lambda timeout.
	Timeout time.Duration
	// First and Max bound the backoff between attempts (200ms, 2s).
	First, Max time.Duration
}

// Outcome is the result of one Wait.
type Outcome struct {
	Ready    bool
	Attempts int
	// Hint says what to do when the key is not ready.
	Hint string
}

// Wait polls until the key authenticates as wantARN (when not empty), the
// timeout passes, or ctx ends. A key that authenticates as someone else is
// an error, not "not ready".
func (c *Checker) Wait(ctx context.Context, accessKeyID, secretAccessKey, wantARN string) (Outcome, error) {
	timeout, first, maxWait := c.Timeout, c.First, c.Max
	if timeout == 0 {
		timeout = 10 * time.Second
	}
	if first == 0 {
		first = 200 * time.Millisecond
	}
	if maxWait == 0 {
		maxWait = 2 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cfg := c.Base.Copy()
	cfg.Credentials = credentials.NewStaticCredentialsProvider(accessKeyID, secretAccessKey, "")
	cfg.Retryer = func() aws.Retryer { return aws.NopRetryer{} }
	client := sts.NewFromConfig(cfg)

	var out Outcome
	wait := first
	for {
		out.Attempts++
		id, err := client.GetCallerIdentity(ctx, &sts.GetCallerIdentityInput{})
		if err == nil {
			if wantARN != "" && aws.ToString(id.Arn) != wantARN {
				return out, fmt.Errorf("new key %s authenticates as %s, not %s", accessKeyID, aws.ToString(id.Arn), wantARN)
			}
			out.Ready = true
			return out, nil
		}
		timer := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			timer.Stop()
			out.Hint = fmt.Sprintf("AWS did not accept the new key yet (%d attempts, last: %v); IAM keys usually work within 5-10 s: retry shortly", out.Attempts, shortErr(err))
			return out, nil
		case <-timer.C:
		}
		if wait *= 2; wait > maxWait {
			wait = maxWait
		}
	}
}

func shortErr(err error) string {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		return ae.ErrorCode()
	}
	return "no answer"
}
