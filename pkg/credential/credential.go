// Package credential is the SecretString of a keyvend user's secret:
// exactly the JSON the AWS CLI and SDKs accept as credential_process
// output. keyvend writes it (create, rotate, the rotation function) and
// reads back the key id it holds.
package credential

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	iamtypes "github.com/aws/aws-sdk-go-v2/service/iam/types"
)

// Credential is one access key as credential_process prints it.
type Credential struct {
	Version         int    `json:"Version"`
	AccessKeyID     string `json:"AccessKeyId"`
	SecretAccessKey string `json:"SecretAccessKey"`
}

// Of is the credential of a key CreateAccessKey returned.
func Of(key *iamtypes.AccessKey) Credential {
	return Credential{Version: 1, AccessKeyID: aws.ToString(key.AccessKeyId), SecretAccessKey: aws.ToString(key.SecretAccessKey)}
}

// JSON is c as a secret holds it.
func (c Credential) JSON() string {
	b, _ := json.Marshal(c) // a struct of strings and an int always marshals
	return string(b)
}

// Lifetime is how far ahead `keyvend credentials` sets Expiration: SDKs
// read the secret again once it passes (the AWS CLI and boto3 fifteen
// minutes before, so every five minutes; the Go SDK at it), which picks up
// a rotated key well within a rotation's grace period.
const Lifetime = 20 * time.Minute

// ProcessJSON is c as credential_process output with an Expiration (RFC
// 3339, UTC, whole seconds): the form `keyvend credentials` prints. The
// stored secret keeps the form JSON writes.
func (c Credential) ProcessJSON(expires time.Time) string {
	b, _ := json.Marshal(struct {
		Credential
		Expiration string `json:"Expiration"`
	}{c, expires.UTC().Truncate(time.Second).Format(time.RFC3339)})
	return string(b)
}

// Parse reads a secret's value. ok is false when it holds no usable key:
// not JSON, or no access key id.
func Parse(value string) (c Credential, ok bool) {
	if err := json.Unmarshal([]byte(value), &c); err != nil || c.AccessKeyID == "" {
		return Credential{}, false
	}
	return c, true
}

// String keeps the secret out of any accidental %v or log line.
func (c Credential) String() string {
	return fmt.Sprintf("Credential{AccessKeyId: %s, SecretAccessKey: [redacted]}", c.AccessKeyID)
}

// LogValue implements slog.LogValuer with the same redaction.
func (c Credential) LogValue() slog.Value { return slog.StringValue(c.String()) }
