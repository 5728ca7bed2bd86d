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
// userARN holding grants: STS, and S3 on one granted bucket (probeGrant's). Without
// a checker configured it says so rather than pretending.
func (s *Service) checkReady(ctx context.Context, key *iamtypes.AccessKey, userARN string, grants []policy.Grant) Readiness {
	f := false
	if s.cfg.KeyCheck == nil {
		return Readiness{Ready: &f, ReadyHint: "keyvend has no readiness check configured; new IAM keys usually work within 5-10 s"}
	}
	k := keycheck.Key{AccessKeyID: aws.ToString(key.AccessKeyId), SecretAccessKey: aws.ToString(key.SecretAccessKey), WantARN: userARN}
	if g, ok := probeGrant(grants); ok {
		k.Bucket, k.Prefix, k.List = g.Bucket, g.Prefix, g.Access != policy.WriteOnly
	}
	out, err := s.cfg.KeyCheck.Check(ctx, k)
	if err != nil {
		s.log.ErrorContext(ctx, "readiness check failed", "access_key_id", k.AccessKeyID, "error", err.Error())
		return Readiness{Ready: &f, ReadyHint: "the readiness check failed; see keyvend's log"}
	}
	ready := out.Ready
	return Readiness{Ready: &ready, ReadyHint: out.Hint}
}

// probeGrant is the grant whose bucket the readiness check calls: the
// first by bucket name, then prefix — the same grant whether the grants
// come from a request or, in IAM's order, from the user's policy.
func probeGrant(grants []policy.Grant) (policy.Grant, bool) {
	if len(grants) == 0 {
		return policy.Grant{}, false
	}
	best := grants[0]
	for _, g := range grants[1:] {
		if g.Bucket < best.Bucket || (g.Bucket == best.Bucket && g.Prefix < best.Prefix) {
			best = g
		}
	}
	return best, true
}
