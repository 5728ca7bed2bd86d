package provision

import (
	"context"
	"fmt"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	iamtypes "github.com/aws/aws-sdk-go-v2/service/iam/types"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	smtypes "github.com/aws/aws-sdk-go-v2/service/secretsmanager/types"

	"github.com/keyvend/keyvend/pkg/caller"
	"github.com/keyvend/keyvend/pkg/credential"
)

// Credential is the SecretString of a user's secret (pkg/credential).
type Credential = credential.Credential

// credentialProcess is the ~/.aws/config line that makes the AWS CLI and
// SDKs read the key from the secret. The reader needs
// secretsmanager:GetSecretValue on the secret (and kms:Decrypt on its key).
func (s *Service) credentialProcess(secretARN string) string {
	line := "credential_process = aws secretsmanager get-secret-value --secret-id " + secretARN + " --query SecretString --output text"
	if s.cfg.Region != "" {
		line += " --region " + s.cfg.Region
	}
	return line
}

// credentialProcessKeyvend is the ~/.aws/config line that reads the key
// with keyvend's own helper (`keyvend credentials`): no AWS CLI needed,
// and its answer carries an Expiration, so SDKs read the secret again
// after a rotation. The helper takes the region from the ARN.
func credentialProcessKeyvend(secretARN string) string {
	return "credential_process = keyvend credentials --secret " + secretARN
}

// storeKey puts the key in the user's secret, creating the secret or, when
// a secret of that name is left from an earlier user, overwriting it with a
// new current version. It returns the secret's ARN.
// Its tags name p and requestID as who wrote it.
func (s *Service) storeKey(ctx context.Context, p caller.Principal, requestID, user string, key *iamtypes.AccessKey) (string, error) {
	value := credential.Of(key).JSON()
	name := s.SecretName(user)
	create := &secretsmanager.CreateSecretInput{
		Name:         &name,
		Description:  aws.String("keyvend: access key of IAM user " + user + " (credential_process JSON)"),
		SecretString: aws.String(value),
		Tags:         secretTags(p, requestID, user),
	}
	if s.cfg.KMSKeyID != "" {
		create.KmsKeyId = &s.cfg.KMSKeyID
	}
	out, err := s.sm.CreateSecret(ctx, create)
	switch {
	case err == nil:
		return aws.ToString(out.ARN), nil
	case isCode(err, codeResourceExists, codeInvalidRequest):
		return s.overwriteSecret(ctx, p, requestID, user, value)
	default:
		return "", fmt.Errorf("create secret %s: %w", name, err)
	}
}

// overwriteSecret reuses an existing secret of the user's name — left by
// an earlier user of that name, or by a crash — by putting a new current
// version, but only a secret keyvend made for this user (ownSecret):
// anything else is a conflict and nothing is written. A secret scheduled
// for deletion is restored under the same conditions.
func (s *Service) overwriteSecret(ctx context.Context, p caller.Principal, requestID, user, value string) (string, error) {
	name := s.SecretName(user)
	desc, err := s.ownSecret(ctx, user)
	if err != nil {
		return "", err
	}
	if desc.DeletedDate != nil {
		if _, err := s.sm.RestoreSecret(ctx, &secretsmanager.RestoreSecretInput{SecretId: &name}); err != nil {
			return "", fmt.Errorf("restore secret %s scheduled for deletion: %w", name, err)
		}
		if err := s.noResourcePolicy(ctx, user); err != nil {
			return "", err
		}
	}
	if _, err := s.sm.PutSecretValue(ctx, &secretsmanager.PutSecretValueInput{SecretId: &name, SecretString: &value}); err != nil {
		return "", fmt.Errorf("put new version of secret %s: %w", name, err)
	}
	// The key is stored: the secret already carries keyvend's tags for
	// this user (ownSecret), and failing now would delete a key that is in
	// its secret. The requester and request-id tags are only brought up to
	// date, best effort.
	if _, err := s.sm.TagResource(ctx, &secretsmanager.TagResourceInput{SecretId: &name, Tags: secretTags(p, requestID, user)}); err != nil {
		s.log.WarnContext(ctx, "secret holds the new key but its requester tags were not updated", "secret", name, "error", err.Error())
	}
	return aws.ToString(desc.ARN), nil
}

// ownSecret reads the user's secret and returns it only if keyvend made it
// for this user: tagged as keyvend's and for this user, encrypted with
// keyvend's key, and without a resource policy (which could let someone
// else read the keys keyvend would put in it). Anything else is a
// KindConflict naming what is wrong; a secret that does not exist is
// Secrets Manager's ResourceNotFoundException.
func (s *Service) ownSecret(ctx context.Context, user string) (*secretsmanager.DescribeSecretOutput, error) {
	name := s.SecretName(user)
	var (
		desc       *secretsmanager.DescribeSecretOutput
		pol        *secretsmanager.GetResourcePolicyOutput
		dErr, pErr error
		done       = make(chan struct{})
	)
	go func() {
		defer close(done)
		pol, pErr = s.sm.GetResourcePolicy(ctx, &secretsmanager.GetResourcePolicyInput{SecretId: &name})
	}()
	desc, dErr = s.sm.DescribeSecret(ctx, &secretsmanager.DescribeSecretInput{SecretId: &name})
	<-done
	switch {
	case pErr != nil && !isCode(pErr, codeResourceNotFound) && !(isCode(pErr, codeInvalidRequest) && dErr == nil && desc.DeletedDate != nil):
		// (AWS answers InvalidRequestException for a secret scheduled for
		// deletion: its policy is read once it is restored, noResourcePolicy)
		return nil, fmt.Errorf("read resource policy of secret %s: %w", name, pErr)
	case isCode(dErr, codeResourceNotFound):
		return nil, dErr
	case dErr != nil:
		return nil, fmt.Errorf("describe existing secret %s: %w", name, dErr)
	}
	refuse := func(why string) error { return notOurSecret(name, user, why) }
	switch {
	case !secretManaged(desc.Tags):
		return nil, refuse("it is not tagged as keyvend's")
	case secretTag(desc.Tags, TagUser) != user:
		return nil, refuse("it is tagged for another user")
	case !sameKMSKey(aws.ToString(desc.KmsKeyId), s.cfg.KMSKeyID):
		return nil, refuse("it is encrypted with another KMS key")
	case pErr == nil && strings.TrimSpace(aws.ToString(pol.ResourcePolicy)) != "":
		return nil, refuse("it has a resource policy")
	}
	return desc, nil
}

// noResourcePolicy checks, once a secret scheduled for deletion has been
// restored, what AWS would not say before: that it has no resource
// policy. If it has one, the secret is scheduled for deletion again, as it
// was, and the answer is ownSecret's conflict.
func (s *Service) noResourcePolicy(ctx context.Context, user string) error {
	name := s.SecretName(user)
	pol, err := s.sm.GetResourcePolicy(ctx, &secretsmanager.GetResourcePolicyInput{SecretId: &name})
	if err != nil {
		return fmt.Errorf("read resource policy of restored secret %s: %w", name, err)
	}
	if strings.TrimSpace(aws.ToString(pol.ResourcePolicy)) == "" {
		return nil
	}
	if _, err := s.sm.DeleteSecret(ctx, &secretsmanager.DeleteSecretInput{SecretId: &name, RecoveryWindowInDays: aws.Int64(int64(s.cfg.SecretRecoveryDays))}); err != nil {
		s.log.ErrorContext(ctx, "a restored secret with a resource policy could not be scheduled for deletion again", "secret", name, "error", err.Error())
	}
	return notOurSecret(name, user, "it has a resource policy")
}

// notOurSecret refuses to write to a secret keyvend did not make for user.
func notOurSecret(secret, user, why string) error {
	return conflict("secret %s exists and keyvend did not make it for user %s (%s); keyvend will not write to it", secret, user, why)
}

// sameKMSKey reports whether a secret's KmsKeyId (as DescribeSecret gives
// it) is keyvend's key: the same key ARN, alias or id, or a key ARN and
// the bare id of the same key. keyvend without a key of its own uses the
// account's aws/secretsmanager key, which DescribeSecret leaves out.
func sameKMSKey(got, want string) bool {
	if want == "" {
		return got == "" || got == "alias/aws/secretsmanager" || strings.HasSuffix(got, ":alias/aws/secretsmanager")
	}
	if got == want {
		return true
	}
	id := func(k string) string {
		if i := strings.LastIndex(k, ":key/"); i >= 0 {
			return k[i+len(":key/"):]
		}
		return k
	}
	return !strings.Contains(got, "alias/") && !strings.Contains(want, "alias/") && id(got) == id(want)
}

// secretTags are the tags of user's secret, written for p (its requester
// as encodeRequester writes it; a create has checked it fits) in request
// requestID.
func secretTags(p caller.Principal, requestID, user string) []smtypes.Tag {
	requester, _ := encodeRequester(p.Requester())
	return []smtypes.Tag{
		{Key: aws.String(TagManagedBy), Value: aws.String(managedByValue)},
		{Key: aws.String(TagUser), Value: aws.String(user)},
		{Key: aws.String(TagRequester), Value: aws.String(requester)},
		{Key: aws.String(TagRequestID), Value: aws.String(tagValue(requestID))},
	}
}

func secretManaged(tags []smtypes.Tag) bool {
	return secretTag(tags, TagManagedBy) == managedByValue
}

func secretTag(tags []smtypes.Tag, key string) string {
	for _, t := range tags {
		if aws.ToString(t.Key) == key {
			return aws.ToString(t.Value)
		}
	}
	return ""
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
	// A secret we cannot read as a credential holds no usable key: no id.
	c, _ := credential.Parse(aws.ToString(out.SecretString))
	return &storedSecret{ARN: aws.ToString(out.ARN), AccessKeyID: c.AccessKeyID}, nil
}
