package slacksig

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
)

// SecretSource gives the Slack app's signing secret.
type SecretSource interface {
	SigningSecret(ctx context.Context) (string, error)
}

// StaticSecret is a signing secret given directly: local mode's
// KEYVEND_SLACK_SIGNING_SECRET.
type StaticSecret string

// SigningSecret implements SecretSource.
func (s StaticSecret) SigningSecret(context.Context) (string, error) {
	if s == "" {
		return "", errors.New("no Slack signing secret configured (KEYVEND_SLACK_SIGNING_SECRET)")
	}
	return string(s), nil
}

// SecretsGetter is the Secrets Manager call the signing secret needs.
type SecretsGetter interface {
	GetSecretValue(context.Context, *secretsmanager.GetSecretValueInput, ...func(*secretsmanager.Options)) (*secretsmanager.GetSecretValueOutput, error)
}

// ManagedSecret reads the signing secret from Secrets Manager on first use
// and keeps it for the life of the process (in Lambda: the execution
// environment). A failed read is not kept: the next request tries again.
// The secret is the signing secret itself, or a JSON object with it under
// "signing_secret".
type ManagedSecret struct {
	ARN    string
	Client SecretsGetter

	mu    sync.Mutex
	value string
}

// SigningSecret implements SecretSource.
func (m *ManagedSecret) SigningSecret(ctx context.Context) (string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.value != "" {
		return m.value, nil
	}
	v, err := ReadSecret(ctx, m.Client, m.ARN, "Slack signing secret", "signing_secret")
	if err != nil {
		return "", err
	}
	m.value = v
	return v, nil
}

// ReadSecret reads one of the Slack app's secrets (what: "Slack signing
// secret", "Slack bot token") from Secrets Manager: the value itself, or a
// JSON object holding it under field. The value is never in the error.
func ReadSecret(ctx context.Context, c SecretsGetter, arn, what, field string) (string, error) {
	out, err := c.GetSecretValue(ctx, &secretsmanager.GetSecretValueInput{SecretId: aws.String(arn)})
	if err != nil {
		return "", fmt.Errorf("read the %s %s: %w", what, arn, err)
	}
	s := strings.TrimSpace(aws.ToString(out.SecretString))
	if strings.HasPrefix(s, "{") {
		var doc map[string]any
		v, ok := "", json.Unmarshal([]byte(s), &doc) == nil
		if ok {
			v, ok = doc[field].(string)
		}
		if !ok {
			return "", fmt.Errorf("%s %s: the value looks like JSON but is not an object with %s", what, arn, field)
		}
		s = strings.TrimSpace(v)
	}
	if s == "" {
		return "", fmt.Errorf("%s %s: the value is empty", what, arn)
	}
	return s, nil
}
