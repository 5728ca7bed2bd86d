// Package rotation is the Secrets Manager rotation function for keyvend's
// user secrets: a rotation schedule on a secret rotates the IAM access key
// inside it. It implements the four steps with the AWSPENDING, AWSCURRENT
// and AWSPREVIOUS stages; every step can be re-run safely.
package rotation

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	"github.com/aws/smithy-go"

	"github.com/keyvend/keyvend/pkg/keycheck"
)

// Event is what Secrets Manager sends the rotation function.
type Event struct {
	SecretID           string `json:"SecretId"`
	ClientRequestToken string `json:"ClientRequestToken"`
	Step               string `json:"Step"`
}

// The steps.
const (
	StepCreate = "createSecret"
	StepSet    = "setSecret"
	StepTest   = "testSecret"
	StepFinish = "finishSecret"
)

// Version stages.
const (
	stageCurrent = "AWSCURRENT"
	stagePending = "AWSPENDING"
)

// IAM is what rotation needs of IAM.
type IAM interface {
	GetUser(context.Context, *iam.GetUserInput, ...func(*iam.Options)) (*iam.GetUserOutput, error)
	ListAccessKeys(context.Context, *iam.ListAccessKeysInput, ...func(*iam.Options)) (*iam.ListAccessKeysOutput, error)
	CreateAccessKey(context.Context, *iam.CreateAccessKeyInput, ...func(*iam.Options)) (*iam.CreateAccessKeyOutput, error)
	DeleteAccessKey(context.Context, *iam.DeleteAccessKeyInput, ...func(*iam.Options)) (*iam.DeleteAccessKeyOutput, error)
}

// Secrets is what rotation needs of Secrets Manager.
type Secrets interface {
	DescribeSecret(context.Context, *secretsmanager.DescribeSecretInput, ...func(*secretsmanager.Options)) (*secretsmanager.DescribeSecretOutput, error)
	GetSecretValue(context.Context, *secretsmanager.GetSecretValueInput, ...func(*secretsmanager.Options)) (*secretsmanager.GetSecretValueOutput, error)
	PutSecretValue(context.Context, *secretsmanager.PutSecretValueInput, ...func(*secretsmanager.Options)) (*secretsmanager.PutSecretValueOutput, error)
	UpdateSecretVersionStage(context.Context, *secretsmanager.UpdateSecretVersionStageInput, ...func(*secretsmanager.Options)) (*secretsmanager.UpdateSecretVersionStageOutput, error)
}

// KeyChecker confirms a key authenticates; *keycheck.Checker is one.
type KeyChecker interface {
	Wait(ctx context.Context, accessKeyID, secretAccessKey, wantARN string) (keycheck.Outcome, error)
}

// Rotator handles rotation events.
type Rotator struct {
	IAM     IAM
	Secrets Secrets
	Check   KeyChecker
	Log     *slog.Logger
}

// credential mirrors provision.Credential (the credential_process JSON).
type credential struct {
	Version         int    `json:"Version"`
	AccessKeyID     string `json:"AccessKeyId"`
	SecretAccessKey string `json:"SecretAccessKey"`
}

// secretInfo is what every step learns from DescribeSecret.
type secretInfo struct {
	arn      string
	user     string
	versions map[string][]string
}

// Handle runs one step. It refuses secrets that keyvend does not manage,
// secrets without rotation enabled and tokens that are not staged.
func (r *Rotator) Handle(ctx context.Context, ev Event) error {
	switch ev.Step {
	case StepCreate, StepSet, StepTest, StepFinish:
	default:
		return fmt.Errorf("rotation of %s: unknown step %q", ev.SecretID, ev.Step)
	}
	info, err := r.describe(ctx, ev)
	if err != nil {
		return err
	}
	log := r.log().With("secret", info.arn, "user", info.user, "step", ev.Step, "token", ev.ClientRequestToken)
	stages := info.versions[ev.ClientRequestToken]
	if has(stages, stageCurrent) && ev.Step != StepFinish {
		log.InfoContext(ctx, "version already current; nothing to do")
		return nil
	}
	switch ev.Step {
	case StepCreate:
		return r.create(ctx, log, info, ev.ClientRequestToken)
	case StepSet:
		// IAM keys are active when created: nothing to set.
		log.InfoContext(ctx, "setSecret: nothing to do for IAM access keys")
		return nil
	case StepTest:
		return r.test(ctx, log, info, ev.ClientRequestToken)
	case StepFinish:
		return r.finish(ctx, log, info, ev.ClientRequestToken)
	default:
		return fmt.Errorf("rotation of %s: unknown step %q", info.arn, ev.Step)
	}
}

func (r *Rotator) log() *slog.Logger {
	if r.Log == nil {
		return slog.Default()
	}
	return r.Log
}

func (r *Rotator) describe(ctx context.Context, ev Event) (*secretInfo, error) {
	if ev.SecretID == "" || ev.ClientRequestToken == "" {
		return nil, errors.New("rotation event without SecretId or ClientRequestToken")
	}
	d, err := r.Secrets.DescribeSecret(ctx, &secretsmanager.DescribeSecretInput{SecretId: &ev.SecretID})
	if err != nil {
		return nil, fmt.Errorf("describe secret %s: %w", ev.SecretID, err)
	}
	info := &secretInfo{arn: aws.ToString(d.ARN), versions: d.VersionIdsToStages}
	managed := false
	for _, t := range d.Tags {
		switch aws.ToString(t.Key) {
		case "keyvend:managed-by":
			managed = aws.ToString(t.Value) == "keyvend"
		case "keyvend:user":
			info.user = aws.ToString(t.Value)
		}
	}
	switch {
	case !managed || info.user == "":
		return nil, fmt.Errorf("secret %s is not a keyvend user secret (tags keyvend:managed-by, keyvend:user)", info.arn)
	case !aws.ToBool(d.RotationEnabled):
		return nil, fmt.Errorf("secret %s does not have rotation enabled", info.arn)
	}
	if _, ok := info.versions[ev.ClientRequestToken]; !ok {
		return nil, fmt.Errorf("secret %s has no version %s to rotate", info.arn, ev.ClientRequestToken)
	}
	return info, nil
}

// create makes a new key and stores it as the AWSPENDING version. If a
// valid pending key is already there, it does nothing.
func (r *Rotator) create(ctx context.Context, log *slog.Logger, info *secretInfo, token string) error {
	current, err := r.value(ctx, info.arn, "", stageCurrent)
	if err != nil {
		return err
	}
	keys, err := r.keyIDs(ctx, info.user)
	if err != nil {
		return err
	}
	pending, err := r.value(ctx, info.arn, token, stagePending)
	if err != nil && !isCode(err, "ResourceNotFoundException") {
		return err
	}
	if pending != nil && pending.AccessKeyID != current.AccessKeyID && keys[pending.AccessKeyID] {
		log.InfoContext(ctx, "createSecret: pending key already exists", "access_key_id", pending.AccessKeyID)
		return nil
	}
	for id := range keys { // make room: IAM allows two keys per user
		if id == current.AccessKeyID {
			continue
		}
		if _, err := r.IAM.DeleteAccessKey(ctx, &iam.DeleteAccessKeyInput{UserName: &info.user, AccessKeyId: aws.String(id)}); err != nil && !isCode(err, "NoSuchEntity") {
			return fmt.Errorf("delete stray key %s of %s: %w", id, info.user, err)
		}
		log.InfoContext(ctx, "createSecret: deleted stray key", "access_key_id", id)
	}
	out, err := r.IAM.CreateAccessKey(ctx, &iam.CreateAccessKeyInput{UserName: &info.user})
	if err != nil {
		return fmt.Errorf("create access key for %s: %w", info.user, err)
	}
	value, err := json.Marshal(credential{Version: 1, AccessKeyID: aws.ToString(out.AccessKey.AccessKeyId), SecretAccessKey: aws.ToString(out.AccessKey.SecretAccessKey)})
	if err == nil {
		_, err = r.Secrets.PutSecretValue(ctx, &secretsmanager.PutSecretValueInput{
			SecretId: &info.arn, ClientRequestToken: &token, SecretString: aws.String(string(value)), VersionStages: []string{stagePending},
		})
	}
	if err != nil {
		// Nothing leaks: the key that could not be stored is deleted.
		if _, derr := r.IAM.DeleteAccessKey(context.WithoutCancel(ctx), &iam.DeleteAccessKeyInput{UserName: &info.user, AccessKeyId: out.AccessKey.AccessKeyId}); derr != nil {
			log.ErrorContext(ctx, "createSecret: new key could not be stored NOR deleted", "access_key_id", aws.ToString(out.AccessKey.AccessKeyId), "error", derr.Error())
		}
		return fmt.Errorf("store pending key of %s: %w", info.user, err)
	}
	log.InfoContext(ctx, "createSecret: pending key stored", "access_key_id", aws.ToString(out.AccessKey.AccessKeyId))
	return nil
}

// test checks that AWS accepts the pending key as the user.
func (r *Rotator) test(ctx context.Context, log *slog.Logger, info *secretInfo, token string) error {
	pending, err := r.value(ctx, info.arn, token, stagePending)
	if err != nil {
		return err
	}
	u, err := r.IAM.GetUser(ctx, &iam.GetUserInput{UserName: &info.user})
	if err != nil {
		return fmt.Errorf("read user %s: %w", info.user, err)
	}
	out, err := r.Check.Wait(ctx, pending.AccessKeyID, pending.SecretAccessKey, aws.ToString(u.User.Arn))
	if err != nil {
		return fmt.Errorf("testSecret: %w", err)
	}
	if !out.Ready {
		return fmt.Errorf("testSecret: AWS does not accept pending key %s of %s: %s", pending.AccessKeyID, info.user, out.Hint)
	}
	log.InfoContext(ctx, "testSecret: pending key works", "access_key_id", pending.AccessKeyID, "attempts", out.Attempts)
	return nil
}

// finish makes the pending version current and deletes every other key of
// the user, so only the key in AWSCURRENT remains.
func (r *Rotator) finish(ctx context.Context, log *slog.Logger, info *secretInfo, token string) error {
	if !has(info.versions[token], stageCurrent) {
		// Promote only a key that still exists: keyvend's own rotate may
		// have run since testSecret, deleting the pending key as a stray
		// and storing a new current one. Promoting the dead key would also
		// delete that new key below, leaving the user with no key at all.
		pending, err := r.value(ctx, info.arn, token, stagePending)
		if err != nil {
			return err
		}
		keys, err := r.keyIDs(ctx, info.user)
		if err != nil {
			return err
		}
		if !keys[pending.AccessKeyID] {
			return fmt.Errorf("finishSecret: pending key %q of %s no longer exists (rotated by keyvend meanwhile?); AWSCURRENT left as it is", pending.AccessKeyID, info.user)
		}
		from := ""
		for id, stages := range info.versions {
			if has(stages, stageCurrent) {
				from = id
			}
		}
		if _, err := r.Secrets.UpdateSecretVersionStage(ctx, &secretsmanager.UpdateSecretVersionStageInput{
			SecretId: &info.arn, VersionStage: aws.String(stageCurrent), MoveToVersionId: &token, RemoveFromVersionId: aws.String(from),
		}); err != nil {
			return fmt.Errorf("make version %s current: %w", token, err)
		}
		log.InfoContext(ctx, "finishSecret: version is current", "previous_version", from)
	}
	if _, err := r.Secrets.UpdateSecretVersionStage(ctx, &secretsmanager.UpdateSecretVersionStageInput{
		SecretId: &info.arn, VersionStage: aws.String(stagePending), RemoveFromVersionId: &token,
	}); err != nil && !isCode(err, "InvalidParameterException", "ResourceNotFoundException") {
		log.WarnContext(ctx, "finishSecret: could not remove AWSPENDING", "error", err.Error())
	}
	current, err := r.value(ctx, info.arn, "", stageCurrent)
	if err != nil {
		return err
	}
	keys, err := r.keyIDs(ctx, info.user)
	if err != nil {
		return err
	}
	for id := range keys {
		if id == current.AccessKeyID {
			continue
		}
		if _, err := r.IAM.DeleteAccessKey(ctx, &iam.DeleteAccessKeyInput{UserName: &info.user, AccessKeyId: aws.String(id)}); err != nil && !isCode(err, "NoSuchEntity") {
			return fmt.Errorf("delete previous key %s of %s: %w", id, info.user, err)
		}
		log.InfoContext(ctx, "finishSecret: previous key deleted", "access_key_id", id)
	}
	return nil
}

// value reads one version of the secret as a credential.
func (r *Rotator) value(ctx context.Context, arn, versionID, stage string) (*credential, error) {
	in := &secretsmanager.GetSecretValueInput{SecretId: &arn, VersionStage: &stage}
	if versionID != "" {
		in.VersionId = &versionID
	}
	out, err := r.Secrets.GetSecretValue(ctx, in)
	if err != nil {
		return nil, fmt.Errorf("read %s version of %s: %w", stage, arn, err)
	}
	var c credential
	if err := json.Unmarshal([]byte(aws.ToString(out.SecretString)), &c); err != nil || c.AccessKeyID == "" {
		return &credential{}, nil // not a credential: no usable key in it
	}
	return &c, nil
}

func (r *Rotator) keyIDs(ctx context.Context, user string) (map[string]bool, error) {
	out, err := r.IAM.ListAccessKeys(ctx, &iam.ListAccessKeysInput{UserName: &user})
	if err != nil {
		return nil, fmt.Errorf("list access keys of %s: %w", user, err)
	}
	ids := map[string]bool{}
	for _, k := range out.AccessKeyMetadata {
		ids[aws.ToString(k.AccessKeyId)] = true
	}
	return ids, nil
}

func has(stages []string, s string) bool {
	for _, x := range stages {
		if x == s {
			return true
		}
	}
	return false
}

func isCode(err error, codes ...string) bool {
	var ae smithy.APIError
	if !errors.As(err, &ae) {
		return false
	}
	for _, c := range codes {
		if ae.ErrorCode() == c {
			return true
		}
	}
	return false
}
