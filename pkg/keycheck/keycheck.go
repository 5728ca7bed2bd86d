// Package keycheck answers "does this new access key work yet?". IAM keys
// are eventually consistent: a key can be rejected for seconds after
// CreateAccessKey returns, and one accepted call does not prove the next
// one is (another AWS front end may not know the key yet). keycheck checks
// the key with sts:GetCallerIdentity and, when it is given a bucket, with
// one S3 call on that bucket, until several checks in a row succeed, with
// backoff, within a bound.
package keycheck

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/aws/smithy-go"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/sts"
)

// DefaultSuccesses is how many consecutive successful checks make a key
// ready when Checker.Successes is zero.
const DefaultSuccesses = 3

// Checker checks a key until it works several times in a row.
type Checker struct {
	// Base is the SDK configuration (region, endpoint, HTTP client); its
	// credentials are replaced by the key under test.
	Base aws.Config
	// Timeout bounds one Wait or Check (10s), every check included. Keep
	// it well inside the Lambda timeout.
	Timeout time.Duration
	// First and Max bound the backoff between attempts (200ms, 2s). First
	// is also the pause between two successful checks.
	First, Max time.Duration
	// Successes is how many consecutive successful checks make the key
	// ready (DefaultSuccesses). A failed check starts the count again.
	Successes int
}

// Key is the key under test and what it must be able to do.
type Key struct {
	AccessKeyID, SecretAccessKey string
	// WantARN, when set, is the principal the key must authenticate as.
	WantARN string
	// Bucket, when set, is a bucket the key was granted: each check also
	// calls S3's GetBucketLocation on it, which every access level grants
	// — the key authenticates to S3 and the policy naming the bucket is in
	// effect. (A listing under the grant's prefix would say no more, and
	// moto, enforcing IAM for the local demo, refuses the signature of a
	// listing with a prefix.) S3's AccessDenied (or any other refusal) is
	// "not yet"; NoSuchBucket means the bucket does not exist (a grant may
	// name a bucket made later), and then the STS call alone is the check.
	Bucket string
}

// Outcome is the result of one Wait or Check.
type Outcome struct {
	Ready bool
	// Attempts counts the checks made; Successes the consecutive
	// successful ones at the end.
	Attempts, Successes int
	// Hint says what to do when the key is not ready.
	Hint string
}

// wrongPrincipal is a key that authenticates as someone else: an error,
// not "not ready".
type wrongPrincipal struct{ error }

// Wait checks the key with STS only (no bucket); see Check.
func (c *Checker) Wait(ctx context.Context, accessKeyID, secretAccessKey, wantARN string) (Outcome, error) {
	return c.Check(ctx, Key{AccessKeyID: accessKeyID, SecretAccessKey: secretAccessKey, WantARN: wantARN})
}

// Check checks k until Successes checks in a row succeed, the timeout
// passes, or ctx ends. A key that authenticates as someone other than
// k.WantARN is an error, not "not ready".
func (c *Checker) Check(ctx context.Context, k Key) (Outcome, error) {
	timeout, first, maxWait, need := c.Timeout, c.First, c.Max, c.Successes
	if timeout == 0 {
		timeout = 10 * time.Second
	}
	if first == 0 {
		first = 200 * time.Millisecond
	}
	if maxWait == 0 {
		maxWait = 2 * time.Second
	}
	if need <= 0 {
		need = DefaultSuccesses
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cfg := c.Base.Copy()
	cfg.Credentials = credentials.NewStaticCredentialsProvider(k.AccessKeyID, k.SecretAccessKey, "")
	cfg.Retryer = func() aws.Retryer { return aws.NopRetryer{} }
	stsc := sts.NewFromConfig(cfg)
	var s3c *s3.Client
	if k.Bucket != "" {
		// Path style for a local endpoint (no virtual hosts) and for a
		// dotted bucket name (its virtual host fails TLS).
		pathStyle := cfg.BaseEndpoint != nil || strings.Contains(k.Bucket, ".")
		s3c = s3.NewFromConfig(cfg, func(o *s3.Options) { o.UsePathStyle = pathStyle })
	}

	var out Outcome
	var last error
	backoff := first
	for {
		out.Attempts++
		err := c.once(ctx, stsc, s3c, k)
		var wp wrongPrincipal
		if errors.As(err, &wp) {
			return out, wp.error
		}
		pause := first
		if err == nil {
			if out.Successes++; out.Successes >= need {
				out.Ready = true
				return out, nil
			}
			backoff = first
		} else {
			out.Successes, last = 0, err
			pause = backoff
			if backoff *= 2; backoff > maxWait {
				backoff = maxWait
			}
		}
		timer := time.NewTimer(pause)
		select {
		case <-ctx.Done():
			timer.Stop()
			out.Hint = fmt.Sprintf("AWS did not accept the new key %d times in a row yet (%d checks, %d in a row at the end, last failure: %s); IAM keys usually work within 5-10 s: retry shortly", need, out.Attempts, out.Successes, describe(last))
			return out, nil
		case <-timer.C:
		}
	}
}

// once is one check: STS, then S3 on the bucket.
func (c *Checker) once(ctx context.Context, stsc *sts.Client, s3c *s3.Client, k Key) error {
	id, err := stsc.GetCallerIdentity(ctx, &sts.GetCallerIdentityInput{})
	if err != nil {
		return fmt.Errorf("sts:GetCallerIdentity: %w", err)
	}
	if k.WantARN != "" && aws.ToString(id.Arn) != k.WantARN {
		return wrongPrincipal{fmt.Errorf("new key %s authenticates as %s, not %s", k.AccessKeyID, aws.ToString(id.Arn), k.WantARN)}
	}
	if s3c == nil {
		return nil
	}
	_, err = s3c.GetBucketLocation(ctx, &s3.GetBucketLocationInput{Bucket: &k.Bucket})
	if err != nil {
		err = fmt.Errorf("s3:GetBucketLocation on %s: %w", k.Bucket, err)
	}
	if code(err) == "NoSuchBucket" {
		return nil // no bucket to check: STS alone counts
	}
	return err
}

func code(err error) string {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		return ae.ErrorCode()
	}
	return ""
}

// describe names the failed call and AWS's error code, never more (a
// message could quote a request).
func describe(err error) string {
	if err == nil {
		return "none"
	}
	op, _, _ := strings.Cut(err.Error(), ": ")
	if c := code(err); c != "" {
		return op + " " + c
	}
	return op + " no answer"
}
