package provision

import (
	"context"

	"github.com/aws/aws-sdk-go-v2/aws"
	iamtypes "github.com/aws/aws-sdk-go-v2/service/iam/types"

	"github.com/keyvend/keyvend/pkg/keycheck"
	"github.com/keyvend/keyvend/pkg/policy"
)

// KeyChecker confirms that AWS accepts a new key; *keycheck.Checker is one.
type KeyChecker interface {
	Check(ctx context.Context, k keycheck.Key) (keycheck.Outcome, error)
}

// checkReady runs the optional readiness check for a new key of the user
// userARN holding grants: STS, and S3 on one granted bucket (probeBucket's). Without
// a checker configured it says so rather than pretending.
func (s *Service) checkReady(ctx context.Context, key *iamtypes.AccessKey, userARN string, grants []policy.Grant) Readiness {
	f := false
	if s.cfg.KeyCheck == nil {
		return Readiness{Ready: &f, ReadyHint: "keyvend has no readiness check configured; new IAM keys usually work within 5-10 s"}
	}
	k := keycheck.Key{AccessKeyID: aws.ToString(key.AccessKeyId), SecretAccessKey: aws.ToString(key.SecretAccessKey), WantARN: userARN}
	k.Bucket = probeBucket(grants)
	out, err := s.cfg.KeyCheck.Check(ctx, k)
	if err != nil {
		s.log.ErrorContext(ctx, "readiness check failed", "access_key_id", k.AccessKeyID, "error", err.Error())
		return Readiness{Ready: &f, ReadyHint: "the readiness check failed; see keyvend's log"}
	}
	ready := out.Ready
	return Readiness{Ready: &ready, ReadyHint: out.Hint}
}

// probeBucket is the bucket the readiness check calls: the first granted
// by name — the same whether the grants come from a request or, in IAM's
// order, from the user's policy.
func probeBucket(grants []policy.Grant) string {
	best := ""
	for _, g := range grants {
		if best == "" || g.Bucket < best {
			best = g.Bucket
		}
	}
	return best
}
