// Package rotation is the Secrets Manager rotation function for keyvend's
// user secrets: a rotation schedule on a secret rotates the IAM access key
// inside it. It implements the four steps with the AWSPENDING, AWSCURRENT
// and AWSPREVIOUS stages; every step can be re-run safely.
//
// It acts only on what keyvend made. Before any step does anything, the
// secret must be named SecretPrefix+user for the user in its keyvend:user
// tag, be tagged keyvend:managed-by=keyvend and be encrypted with
// keyvend's KMS key; the user must be under keyvend's IAM path, tagged
// keyvend:managed-by=keyvend and bounded by keyvend's permissions
// boundary. Anything else is refused: tags alone can be set by anyone who
// may tag a secret, and would otherwise make this function mint keys for
// any user.
package rotation

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"

	"github.com/keyvend/keyvend/pkg/awserr"
	"github.com/keyvend/keyvend/pkg/credential"
	"github.com/keyvend/keyvend/pkg/keycheck"
	"github.com/keyvend/keyvend/pkg/policy"
	"github.com/keyvend/keyvend/pkg/provision"
	"github.com/keyvend/keyvend/pkg/state"
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

	// SecretPrefix names keyvend's secrets: user's is SecretPrefix+user
	// (DefaultSecretPrefix when empty).
	SecretPrefix string
	// UserPath is the IAM path of keyvend's users (DefaultUserPath when empty).
	UserPath string
	// KMSKeyID is the KMS key keyvend encrypts its secrets with; empty
	// means the account's aws/secretsmanager key.
	KMSKeyID string
	// BoundaryARN is the permissions boundary of every keyvend user.
	// Required: without it every event is refused.
	BoundaryARN string
	// Store is keyvend's state table: the steps that change keys hold the
	// user's lease. Required.
	Store *state.Store
	// Grace is how long the key a rotation replaced stays active after
	// finishSecret, so clients that still hold it keep working
	// (provision.DefaultRotationGrace when zero; provision.NoGrace deletes
	// it at once). The record names it; keyvend's reaper deletes it when
	// the grace ends, or the next rotation does first.
	Grace time.Duration
	// Now is the clock (time.Now when nil).
	Now func() time.Time
}

func (r *Rotator) grace() time.Duration {
	if r.Grace == 0 {
		return provision.DefaultRotationGrace
	}
	return r.Grace
}

func (r *Rotator) now() time.Time {
	if r.Now == nil {
		return time.Now()
	}
	return r.Now()
}

// Defaults of the Rotator's settings (keyvend's own).
const (
	DefaultSecretPrefix = "keyvend/users/"
	DefaultUserPath     = "/keyvend/"
)

// defaultKMSAlias is the account's Secrets Manager key. DescribeSecret
// omits KmsKeyId for a secret encrypted with it.
const defaultKMSAlias = "alias/aws/secretsmanager"

// managedByValue is the keyvend:managed-by tag of what keyvend makes.
const managedByValue = "keyvend"

func (r *Rotator) secretPrefix() string {
	if r.SecretPrefix == "" {
		return DefaultSecretPrefix
	}
	return r.SecretPrefix
}

func (r *Rotator) userPath() string {
	if r.UserPath == "" {
		return DefaultUserPath
	}
	return r.UserPath
}

// CheckSettings reports what is wrong with the Rotator's settings. Handle
// refuses every event while it reports an error.
func (r *Rotator) CheckSettings() error {
	var problems []string
	if r.Store == nil {
		problems = append(problems, "keyvend's state table is required (KEYVEND_TABLE)")
	}
	if r.BoundaryARN == "" {
		problems = append(problems, "keyvend's permissions boundary ARN is required (KEYVEND_BOUNDARY_ARN)")
	} else if policy.PartitionOf(r.BoundaryARN) == "" || !strings.Contains(r.BoundaryARN, ":policy/") {
		problems = append(problems, fmt.Sprintf("boundary %q is not an IAM policy ARN (KEYVEND_BOUNDARY_ARN)", r.BoundaryARN))
	}
	if p := r.userPath(); !strings.HasPrefix(p, "/") || !strings.HasSuffix(p, "/") || len(p) < 3 {
		problems = append(problems, fmt.Sprintf("user path %q must look like /name/ (KEYVEND_USER_PATH)", p))
	}
	if len(problems) > 0 {
		return errors.New("rotation settings: " + strings.Join(problems, "; "))
	}
	return nil
}

// secretInfo is what every step learns from DescribeSecret and GetUser.
type secretInfo struct {
	arn      string
	user     string
	userARN  string // from GetUser, once the user is verified
	versions map[string][]string
}

// Handle runs one step. It refuses secrets and users that keyvend did not
// make (see the package comment), secrets without rotation enabled and
// tokens that are not staged, before it acts.
func (r *Rotator) Handle(ctx context.Context, ev Event) error {
	switch ev.Step {
	case StepCreate, StepSet, StepTest, StepFinish:
	default:
		return fmt.Errorf("rotation of %s: unknown step %q", ev.SecretID, ev.Step)
	}
	info, err := r.verify(ctx, ev)
	if err != nil {
		r.log().WarnContext(ctx, "rotation step not run: secret or user not verified as keyvend's", "secret", ev.SecretID, "step", ev.Step, "token", ev.ClientRequestToken, "error", err.Error())
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
		_, holder, err := r.lease(ctx, info.user, ev.ClientRequestToken)
		if err != nil {
			return err
		}
		defer r.release(ctx, info.user, holder)
		return r.create(ctx, log, info, ev.ClientRequestToken)
	case StepSet:
		// IAM keys are active when created: nothing to set.
		log.InfoContext(ctx, "setSecret: nothing to do for IAM access keys")
		return nil
	case StepTest:
		return r.test(ctx, log, info, ev.ClientRequestToken)
	case StepFinish:
		rec, holder, err := r.lease(ctx, info.user, ev.ClientRequestToken)
		if err != nil {
			return err
		}
		keyID, prev, err := r.finish(ctx, log, info, ev.ClientRequestToken, rec)
		if err != nil {
			r.release(ctx, info.user, holder)
			return err
		}
		if err := r.record(ctx, rec, holder, keyID, prev, ev.ClientRequestToken); err != nil {
			r.release(ctx, info.user, holder)
			return err
		}
		return nil
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

// verify checks the settings, the secret and its user before a step acts.
func (r *Rotator) verify(ctx context.Context, ev Event) (*secretInfo, error) {
	if err := r.CheckSettings(); err != nil {
		return nil, fmt.Errorf("rotation of %s refused: %w", ev.SecretID, err)
	}
	info, err := r.describe(ctx, ev)
	if err != nil {
		return nil, err
	}
	if err := r.verifyUser(ctx, info); err != nil {
		return nil, err
	}
	return info, nil
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
		case provision.TagManagedBy:
			managed = aws.ToString(t.Value) == managedByValue
		case provision.TagUser:
			info.user = aws.ToString(t.Value)
		}
	}
	name, kmsKey := aws.ToString(d.Name), aws.ToString(d.KmsKeyId)
	switch {
	case !managed || info.user == "":
		return nil, fmt.Errorf("secret %s is not a keyvend user secret (tags %s, %s)", info.arn, provision.TagManagedBy, provision.TagUser)
	case provision.CheckUserName(info.user) != "":
		return nil, fmt.Errorf("secret %s is not a keyvend user secret: its %s tag %q is not a valid IAM user name: %s", info.arn, provision.TagUser, info.user, provision.CheckUserName(info.user))
	case name != r.secretPrefix()+info.user:
		return nil, fmt.Errorf("secret %s is not a keyvend user secret: it is named %q, but keyvend's secret of user %s is named %q", info.arn, name, info.user, r.secretPrefix()+info.user)
	case !sameKMSKey(r.KMSKeyID, kmsKey):
		return nil, fmt.Errorf("secret %s is not a keyvend user secret: it is encrypted with KMS key %s, not with keyvend's %s", info.arn, kmsName(kmsKey), kmsName(r.KMSKeyID))
	case !aws.ToBool(d.RotationEnabled):
		return nil, fmt.Errorf("secret %s does not have rotation enabled", info.arn)
	}
	if _, ok := info.versions[ev.ClientRequestToken]; !ok {
		return nil, fmt.Errorf("secret %s has no version %s to rotate", info.arn, ev.ClientRequestToken)
	}
	return info, nil
}

// verifyUser checks that info's user is one keyvend made: named exactly as
// the secret's tag says, under keyvend's path, tagged as managed by
// keyvend and bounded by keyvend's permissions boundary.
func (r *Rotator) verifyUser(ctx context.Context, info *secretInfo) error {
	out, err := r.IAM.GetUser(ctx, &iam.GetUserInput{UserName: &info.user})
	if err != nil {
		return fmt.Errorf("read user %s of secret %s: %w", info.user, info.arn, err)
	}
	u := out.User
	if u == nil {
		return fmt.Errorf("read user %s of secret %s: GetUser answered without a user", info.user, info.arn)
	}
	var problems []string
	if name := aws.ToString(u.UserName); name != info.user {
		// IAM names are case-insensitive: a secret tagged "Alice" is not
		// keyvend's secret of "alice".
		problems = append(problems, fmt.Sprintf("IAM names it %q, not %q", name, info.user))
	}
	if path := aws.ToString(u.Path); path != r.userPath() {
		problems = append(problems, fmt.Sprintf("its path is %q, not %q", path, r.userPath()))
	}
	managed := false
	for _, t := range u.Tags {
		if aws.ToString(t.Key) == provision.TagManagedBy && aws.ToString(t.Value) == managedByValue {
			managed = true
		}
	}
	if !managed {
		problems = append(problems, fmt.Sprintf("it is not tagged %s=%s", provision.TagManagedBy, managedByValue))
	}
	boundary := ""
	if u.PermissionsBoundary != nil {
		boundary = aws.ToString(u.PermissionsBoundary.PermissionsBoundaryArn)
	}
	if boundary != r.BoundaryARN {
		if boundary == "" {
			boundary = "(none)"
		}
		problems = append(problems, fmt.Sprintf("its permissions boundary is %s, not %s", boundary, r.BoundaryARN))
	}
	if len(problems) > 0 {
		return fmt.Errorf("user %s of secret %s is not a keyvend user: %s", info.user, info.arn, strings.Join(problems, "; "))
	}
	info.userARN = aws.ToString(u.Arn)
	return nil
}

// sameKMSKey reports whether a secret whose DescribeSecret KmsKeyId is
// actual is encrypted with the key keyvend is configured with.
//
//   - configured empty (or alias/aws/secretsmanager): the account's
//     Secrets Manager key, for which DescribeSecret gives no KmsKeyId (or
//     that alias).
//   - a key ARN and a bare key id name the same key when the id is the
//     ARN's; two ARNs must be equal (a multi-Region key's replica has the
//     same id in another Region's ARN, and is another key).
//   - an alias, by name or ARN, only when it equals the configured value:
//     which key it names only KMS could say.
func sameKMSKey(configured, actual string) bool {
	if configured == "" || configured == defaultKMSAlias {
		return actual == "" || actual == defaultKMSAlias
	}
	if actual == configured {
		return true
	}
	c, cARN := kmsKeyID(configured)
	a, aARN := kmsKeyID(actual)
	return c != "" && c == a && cARN != aARN
}

// kmsKeyID returns the key id of a KMS key ARN
// (arn:PARTITION:kms:REGION:ACCOUNT:key/ID) or bare key id, "" for an
// alias or anything else, and whether s is an ARN.
func kmsKeyID(s string) (id string, isARN bool) {
	if strings.HasPrefix(s, "arn:") {
		parts := strings.SplitN(s, ":", 6)
		if len(parts) == 6 && parts[2] == "kms" && parts[3] != "" && parts[4] != "" && strings.HasPrefix(parts[5], "key/") {
			id = strings.TrimPrefix(parts[5], "key/")
			if validKeyID(id) {
				return id, true
			}
		}
		return "", true
	}
	if validKeyID(s) {
		return s, false
	}
	return "", false
}

// validKeyID reports whether s can be a bare KMS key id (a UUID, or mrk-
// and hex for a multi-Region key): letters, digits and hyphens.
func validKeyID(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

// kmsName is how an error names the key keyID.
func kmsName(keyID string) string {
	if keyID == "" {
		return "aws/secretsmanager (the account's default)"
	}
	return fmt.Sprintf("%q", keyID)
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
	if err != nil && !awserr.Is(err, "ResourceNotFoundException") {
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
		if _, err := r.IAM.DeleteAccessKey(ctx, &iam.DeleteAccessKeyInput{UserName: &info.user, AccessKeyId: aws.String(id)}); err != nil && !awserr.Is(err, "NoSuchEntity") {
			return fmt.Errorf("delete stray key %s of %s: %w", id, info.user, err)
		}
		log.InfoContext(ctx, "createSecret: deleted stray key", "access_key_id", id)
	}
	out, err := r.IAM.CreateAccessKey(ctx, &iam.CreateAccessKeyInput{UserName: &info.user})
	if err != nil {
		return fmt.Errorf("create access key for %s: %w", info.user, err)
	}
	_, err = r.Secrets.PutSecretValue(ctx, &secretsmanager.PutSecretValueInput{
		SecretId: &info.arn, ClientRequestToken: &token, SecretString: aws.String(credential.Of(out.AccessKey).JSON()), VersionStages: []string{stagePending},
	})
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
	out, err := r.Check.Wait(ctx, pending.AccessKeyID, pending.SecretAccessKey, info.userARN)
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
// the user but the previous one — the key the record named before, or
// that a re-run of this step already kept — which stays active for the
// grace (none with NoGrace). It returns the current key and the previous
// one kept ("" for none).
func (r *Rotator) finish(ctx context.Context, log *slog.Logger, info *secretInfo, token string, rec *state.Record) (current, prev string, err error) {
	if !has(info.versions[token], stageCurrent) {
		// Promote only a key that still exists: keyvend's own rotate may
		// have run since testSecret, deleting the pending key as a stray
		// and storing a new current one. Promoting the dead key would also
		// delete that new key below, leaving the user with no key at all.
		pending, err := r.value(ctx, info.arn, token, stagePending)
		if err != nil {
			return "", "", err
		}
		keys, err := r.keyIDs(ctx, info.user)
		if err != nil {
			return "", "", err
		}
		if !keys[pending.AccessKeyID] {
			return "", "", fmt.Errorf("finishSecret: pending key %q of %s no longer exists (rotated by keyvend meanwhile?); AWSCURRENT left as it is", pending.AccessKeyID, info.user)
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
			return "", "", fmt.Errorf("make version %s current: %w", token, err)
		}
		log.InfoContext(ctx, "finishSecret: version is current", "previous_version", from)
	}
	if _, err := r.Secrets.UpdateSecretVersionStage(ctx, &secretsmanager.UpdateSecretVersionStageInput{
		SecretId: &info.arn, VersionStage: aws.String(stagePending), RemoveFromVersionId: &token,
	}); err != nil && !awserr.Is(err, "InvalidParameterException", "ResourceNotFoundException") {
		log.WarnContext(ctx, "finishSecret: could not remove AWSPENDING", "error", err.Error())
	}
	cur, err := r.value(ctx, info.arn, "", stageCurrent)
	if err != nil {
		return "", "", err
	}
	keys, err := r.keyIDs(ctx, info.user)
	if err != nil {
		return "", "", err
	}
	if r.grace() > 0 {
		switch {
		case rec.KeyID != "" && rec.KeyID != cur.AccessKeyID && keys[rec.KeyID]:
			prev = rec.KeyID // the key this rotation replaced
		case rec.KeyID == cur.AccessKeyID && rec.PrevKeyID != "" && keys[rec.PrevKeyID] && r.now().Before(rec.PrevKeyDeletesAt):
			prev = rec.PrevKeyID // a re-run: kept the first time
		}
	}
	for id := range keys {
		if id == cur.AccessKeyID || id == prev {
			continue
		}
		if _, err := r.IAM.DeleteAccessKey(ctx, &iam.DeleteAccessKeyInput{UserName: &info.user, AccessKeyId: aws.String(id)}); err != nil && !awserr.Is(err, "NoSuchEntity") {
			return "", "", fmt.Errorf("delete previous key %s of %s: %w", id, info.user, err)
		}
		log.InfoContext(ctx, "finishSecret: previous key deleted", "access_key_id", id)
	}
	if prev != "" {
		log.InfoContext(ctx, "finishSecret: previous key kept for its grace", "access_key_id", prev, "grace", r.grace().String())
	}
	return cur.AccessKeyID, prev, nil
}

// value reads one version of the secret as a credential.
func (r *Rotator) value(ctx context.Context, arn, versionID, stage string) (*credential.Credential, error) {
	in := &secretsmanager.GetSecretValueInput{SecretId: &arn, VersionStage: &stage}
	if versionID != "" {
		in.VersionId = &versionID
	}
	out, err := r.Secrets.GetSecretValue(ctx, in)
	if err != nil {
		return nil, fmt.Errorf("read %s version of %s: %w", stage, arn, err)
	}
	c, _ := credential.Parse(aws.ToString(out.SecretString)) // not a credential: no usable key in it
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
