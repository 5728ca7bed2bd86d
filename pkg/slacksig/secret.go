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
	out, err := m.Client.GetSecretValue(ctx, &secretsmanager.GetSecretValueInput{SecretId: aws.String(m.ARN)})
	if err != nil {
		return "", fmt.Errorf("read the Slack signing secret %s: %w", m.ARN, err)
	}
	v, err := signingSecretOf(aws.ToString(out.SecretString))
	if err != nil {
		return "", fmt.Errorf("Slack signing secret %s: %w", m.ARN, err)
	}
	m.value = v
	return v, nil
}

func signingSecretOf(s string) (string, error) {
	s = strings.TrimSpace(s)
	if strings.HasPrefix(s, "{") {
		var doc struct {
			SigningSecret string `json:"signing_secret"`
		}
		if err := json.Unmarshal([]byte(s), &doc); err != nil {
			return "", errors.New("the value looks like JSON but is not an object with signing_secret")
		}
		s = strings.TrimSpace(doc.SigningSecret)
	}
	if s == "" {
		return "", errors.New("the value is empty")
	}
	return s, nil
}
