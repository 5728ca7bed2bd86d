package provision

import (
	"context"

	"github.com/aws/aws-sdk-go-v2/aws"
	iamtypes "github.com/aws/aws-sdk-go-v2/service/iam/types"

	"github.com/keyvend/keyvend/pkg/keycheck"
)

// KeyChecker confirms that AWS accepts a new key; *keycheck.Checker is one.
type KeyChecker interface {
	Wait(ctx context.Context, accessKeyID, secretAccessKey, wantARN string) (keycheck.Outcome, error)
}

// checkReady runs the optional readiness check for a new key. Without a
// checker configured it says so rather than pretending.
func (s *Service) checkReady(ctx context.Context, key *iamtypes.AccessKey, userARN string) Readiness {
	f := false
	if s.cfg.KeyCheck == nil {
		return Readiness{Ready: &f, ReadyHint: "keyvend has no readiness check configured; new IAM keys usually work within 5-10 s"}
	}
	out, err := s.cfg.KeyCheck.Wait(ctx, aws.ToString(key.AccessKeyId), aws.ToString(key.SecretAccessKey), userARN)
	if err != nil {
		s.log.ErrorContext(ctx, "readiness check failed", "access_key_id", aws.ToString(key.AccessKeyId), "error", err.Error())
		return Readiness{Ready: &f, ReadyHint: "the readiness check failed; see keyvend's log"}
	}
	ready := out.Ready
	return Readiness{Ready: &ready, ReadyHint: out.Hint}
}
