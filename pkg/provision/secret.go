package provision

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/aws/aws-sdk-go-v2/aws"
	iamtypes "github.com/aws/aws-sdk-go-v2/service/iam/types"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	smtypes "github.com/aws/aws-sdk-go-v2/service/secretsmanager/types"
)

// Credential is the SecretString of a user's secret: exactly the JSON the
// AWS CLI and SDKs accept as credential_process output.
type Credential struct {
	Version         int    `json:"Version"`
	AccessKeyID     string `json:"AccessKeyId"`
	SecretAccessKey string `json:"SecretAccessKey"`
}

// String keeps the secret out of any accidental %v or log line.
func (c Credential) String() string {
	return fmt.Sprintf("Credential{AccessKeyId: %s, SecretAccessKey: [redacted]}", c.AccessKeyID)
}

// LogValue implements slog.LogValuer with the same redaction.
func (c Credential) LogValue() any { return c.String() }

// storeKey puts the key in the user's secret, creating the secret or, when
// a secret of that name is left from an earlier user, overwriting it with a
// new current version. It returns the secret's ARN.
func (s *Service) storeKey(ctx context.Context, in Input, user string, key *iamtypes.AccessKey) (string, error) {
	value, err := json.Marshal(Credential{Version: 1, AccessKeyID: aws.ToString(key.AccessKeyId), SecretAccessKey: aws.ToString(key.SecretAccessKey)})
	if err != nil {
		return "", fmt.Errorf("encode credential for %s: %w", user, err)
	}
	name := s.SecretName(user)
	create := &secretsmanager.CreateSecretInput{
		Name:         &name,
		Description:  aws.String("keyvend: access key of IAM user " + user + " (credential_process JSON)"),
		SecretString: aws.String(string(value)),
		Tags:         s.secretTags(in, user),
	}
	if s.cfg.KMSKeyID != "" {
		create.KmsKeyId = &s.cfg.KMSKeyID
	}
	out, err := s.sm.CreateSecret(ctx, create)
	switch {
	case err == nil:
		return aws.ToString(out.ARN), nil
	case isCode(err, codeResourceExists, codeInvalidRequest):
		return s.overwriteSecret(ctx, in, user, string(value))
	default:
		return "", fmt.Errorf("create secret %s: %w", name, err)
	}
}

// overwriteSecret reuses an existing keyvend secret (restoring it if it was
// scheduled for deletion) by putting a new current version.
func (s *Service) overwriteSecret(ctx context.Context, in Input, user, value string) (string, error) {
	name := s.SecretName(user)
	desc, err := s.sm.DescribeSecret(ctx, &secretsmanager.DescribeSecretInput{SecretId: &name})
	if err != nil {
		return "", fmt.Errorf("describe existing secret %s: %w", name, err)
	}
	if !secretManaged(desc.Tags) {
		return "", &Error{Kind: KindConflict, Detail: fmt.Sprintf("secret %s exists and is not managed by keyvend", name)}
	}
	if desc.DeletedDate != nil {
		if _, err := s.sm.RestoreSecret(ctx, &secretsmanager.RestoreSecretInput{SecretId: &name}); err != nil {
			return "", fmt.Errorf("restore secret %s scheduled for deletion: %w", name, err)
		}
	}
	if _, err := s.sm.PutSecretValue(ctx, &secretsmanager.PutSecretValueInput{SecretId: &name, SecretString: &value}); err != nil {
		return "", fmt.Errorf("put new version of secret %s: %w", name, err)
	}
	if _, err := s.sm.TagResource(ctx, &secretsmanager.TagResourceInput{SecretId: &name, Tags: s.secretTags(in, user)}); err != nil {
		return "", fmt.Errorf("tag secret %s: %w", name, err)
	}
	return aws.ToString(desc.ARN), nil
}

func (s *Service) secretTags(in Input, user string) []smtypes.Tag {
	return []smtypes.Tag{
		{Key: aws.String(TagManagedBy), Value: aws.String(managedByValue)},
		{Key: aws.String(TagUser), Value: aws.String(user)},
		{Key: aws.String(TagRequester), Value: aws.String(tagValue(in.Principal.ID))},
		{Key: aws.String(TagRequestID), Value: aws.String(tagValue(in.RequestID))},
	}
}

func secretManaged(tags []smtypes.Tag) bool {
	for _, t := range tags {
		if aws.ToString(t.Key) == TagManagedBy && aws.ToString(t.Value) == managedByValue {
			return true
		}
	}
	return false
}

// storedSecret is what keyvend needs to know of a user's secret.
type storedSecret struct {
	ARN         string
	AccessKeyID string
}

// readSecret returns the user's secret, or nil when there is none (or it
// is scheduled for deletion).
func (s *Service) readSecret(ctx context.Context, user string) (*storedSecret, error) {
	name := s.SecretName(user)
	out, err := s.sm.GetSecretValue(ctx, &secretsmanager.GetSecretValueInput{SecretId: &name})
	switch {
	case isCode(err, codeResourceNotFound, codeInvalidRequest):
		return nil, nil
	case err != nil:
		return nil, fmt.Errorf("read secret %s: %w", name, err)
	}
	var c Credential
	if err := json.Unmarshal([]byte(aws.ToString(out.SecretString)), &c); err != nil || c.AccessKeyID == "" {
		// A secret we cannot read as a credential holds no usable key.
		return &storedSecret{ARN: aws.ToString(out.ARN)}, nil
	}
	return &storedSecret{ARN: aws.ToString(out.ARN), AccessKeyID: c.AccessKeyID}, nil
}
