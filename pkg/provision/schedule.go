package provision

import (
	"context"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	smtypes "github.com/aws/aws-sdk-go-v2/service/secretsmanager/types"

	"github.com/keyvend/keyvend/pkg/policy"
)

// RotationSchedule is a user's secret's rotation schedule as Secrets
// Manager holds it (Describe, when a rotation function is configured).
type RotationSchedule struct {
	// Enabled: the secret rotates every EveryDays with keyvend's rotation
	// function.
	Enabled   bool  `json:"enabled"`
	EveryDays int64 `json:"every_days,omitempty"`
	// NextRotation is when Secrets Manager rotates it next.
	NextRotation *time.Time `json:"next_rotation,omitempty"`
	// LastRotated is when it last rotated.
	LastRotated *time.Time `json:"last_rotated,omitempty"`
}

// rotationDays is how often the rules ask a user with grants to rotate,
// in days; 0 for never (or no rotation function configured).
func (s *Service) rotationDays(gs []policy.Grant) int64 {
	if s.cfg.RotationFunctionARN == "" {
		return 0
	}
	return int64(s.rules.RotateEvery(gs) / (24 * time.Hour))
}

// schedule makes the user's secret rotate as the rules ask for grants gs:
// RotateSecret with keyvend's rotation function and the schedule, without
// rotating now, or CancelRotateSecret when no rule asks any more. desc is
// the secret as read (nil: a secret just created, without rotation). It
// changes nothing when the secret already rotates as asked.
func (s *Service) schedule(ctx context.Context, user string, gs []policy.Grant, desc *secretsmanager.DescribeSecretOutput) error {
	if s.cfg.RotationFunctionARN == "" {
		return nil
	}
	days := s.rotationDays(gs)
	name := s.SecretName(user)
	enabled, had := false, int64(0)
	if desc != nil {
		enabled = aws.ToBool(desc.RotationEnabled)
		if desc.RotationRules != nil {
			had = aws.ToInt64(desc.RotationRules.AutomaticallyAfterDays)
		}
	}
	switch {
	case days > 0 && enabled && had == days && aws.ToString(desc.RotationLambdaARN) == s.cfg.RotationFunctionARN:
		return nil
	case days > 0:
		_, err := s.sm.RotateSecret(ctx, &secretsmanager.RotateSecretInput{
			SecretId:          &name,
			RotationLambdaARN: &s.cfg.RotationFunctionARN,
			RotationRules:     &smtypes.RotationRulesType{AutomaticallyAfterDays: aws.Int64(days)},
			RotateImmediately: aws.Bool(false),
		})
		if err != nil {
			return wrapf(err, "schedule the rotation of secret %s every %d days", name, days)
		}
	case enabled:
		_, err := s.sm.CancelRotateSecret(ctx, &secretsmanager.CancelRotateSecretInput{SecretId: &name})
		if err != nil {
			return wrapf(err, "cancel the rotation of secret %s", name)
		}
	}
	return nil
}

// rotationOf reads the schedule of the user's secret; nil when no rotation
// function is configured or the secret cannot be read.
func (s *Service) rotationOf(ctx context.Context, user string) *RotationSchedule {
	if s.cfg.RotationFunctionARN == "" {
		return nil
	}
	name := s.SecretName(user)
	d, err := s.sm.DescribeSecret(ctx, &secretsmanager.DescribeSecretInput{SecretId: &name})
	if err != nil {
		return nil
	}
	return scheduleOf(d)
}

func scheduleOf(d *secretsmanager.DescribeSecretOutput) *RotationSchedule {
	r := &RotationSchedule{Enabled: aws.ToBool(d.RotationEnabled)}
	if r.Enabled && d.RotationRules != nil {
		r.EveryDays = aws.ToInt64(d.RotationRules.AutomaticallyAfterDays)
	}
	if r.Enabled && d.NextRotationDate != nil {
		t := d.NextRotationDate.UTC()
		r.NextRotation = &t
	}
	if d.LastRotatedDate != nil {
		t := d.LastRotatedDate.UTC()
		r.LastRotated = &t
	}
	return r
}
