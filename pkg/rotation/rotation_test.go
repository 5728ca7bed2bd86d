package rotation_test

// The rotation function against moto. moto cannot invoke a Lambda, so the
// tests enable rotation with RotateImmediately=false (moto then stages an
// AWSPENDING version) and call Handle with the four step events
// themselves, as Secrets Manager would.
//
// moto differs from AWS in two ways these tests meet:
//   - RotateSecret stages AWSPENDING on a version whose value is a COPY of
//     the current value; AWS stages the token without a value, so
//     createSecret's GetSecretValue of the pending version fails there with
//     ResourceNotFoundException. Either way createSecret must make a key:
//     the copy names the current key, which is not a pending one.
//   - PutSecretValue with an existing token overwrites that version's
//     value; AWS refuses a different value for an existing version.
//   - CreateUser drops the PermissionsBoundary, so moto's GetUser never
//     reports one; AWS's does, and the rotator refuses a user without
//     keyvend's boundary. Every client here carries awstest.KeepBoundaries
//     (config), which models AWS's answer.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	iamtypes "github.com/aws/aws-sdk-go-v2/service/iam/types"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	smtypes "github.com/aws/aws-sdk-go-v2/service/secretsmanager/types"
	"github.com/aws/aws-sdk-go-v2/service/sts"
	"github.com/aws/smithy-go"

	"github.com/keyvend/keyvend/pkg/awstest"
	"github.com/keyvend/keyvend/pkg/caller"
	"github.com/keyvend/keyvend/pkg/keycheck"
	"github.com/keyvend/keyvend/pkg/policy"
	"github.com/keyvend/keyvend/pkg/provision"
	"github.com/keyvend/keyvend/pkg/provisiontest"
	"github.com/keyvend/keyvend/pkg/rotation"
	"github.com/keyvend/keyvend/pkg/state"
)

func TestMain(m *testing.M) { awstest.Main(m) }

const (
	requester = "arn:aws:iam::123456789012:user/alice"
	lambdaARN = "arn:aws:lambda:us-east-1:123456789012:function:keyvend-rotate"
	boundary  = provisiontest.Boundary
)

var bg = context.Background()

// boundaries models AWS's GetUser, which reports the permissions boundary
// a user was created with (moto drops it). Every configuration of these
// tests carries it (config), so the CreateUser calls of the setup and the
// rotator's GetUser calls meet in it.
var boundaries = &awstest.KeepBoundaries{}

// config is awstest.Config with boundaries attached.
func config(t *testing.T, endpoint string) aws.Config {
	t.Helper()
	cfg := awstest.Config(t, endpoint)
	boundaries.Attach(&cfg)
	return cfg
}

// fixture is one keyvend user on the shared moto, with uninstrumented
// clients to look at it.
type fixture struct {
	t       *testing.T
	url     string
	iam     *iam.Client
	sm      *secretsmanager.Client
	user    string
	userARN string
	secret  string // ARN
	old     provision.Credential
	svc     *provision.Service // keyvend itself, on the same moto
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	srv := awstest.Shared(t)
	cfg := config(t, srv.URL)
	return &fixture{t: t, url: srv.URL, iam: iam.NewFromConfig(cfg), sm: secretsmanager.NewFromConfig(cfg)}
}

// vend makes a user the way keyvend does: provision.Service.Create.
func vend(t *testing.T) *fixture {
	t.Helper()
	f := newFixture(t)
	svc := provisiontest.New(t, provisiontest.Endpoint(f.url), provisiontest.Instrument(boundaries.Attach),
		provisiontest.Rules(`{"rules":[{"principals":["`+requester+`"],"buckets":["*.example.com"],"access":["read-write"]}]}`)).Service
	f.svc = svc
	f.user = awstest.Name("rotfn")
	res, err := svc.Create(bg, provision.CreateInput{
		Principal: caller.Principal{ID: requester, Raw: requester},
		RequestID: "rotation-test",
		Request: provision.CreateRequest{
			User:   f.user,
			Grants: []policy.Grant{{Bucket: awstest.Name("rotfn") + ".example.com", Access: policy.ReadWrite}},
			Reason: "rotation test",
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	f.userARN, f.secret = res.UserARN, res.SecretARN
	f.old = f.current()
	if f.old.AccessKeyID != res.AccessKeyID {
		t.Fatalf("setup: secret holds %s, create returned %s", f.old.AccessKeyID, res.AccessKeyID)
	}
	return f
}

func quiet() *slog.Logger { return slog.New(slog.NewJSONHandler(io.Discard, nil)) }

// enableRotation turns rotation on without rotating and returns the token
// moto staged as AWSPENDING.
//
// moto 5.2.1 looks the rotation Lambda up in its own Lambda backend and,
// not finding it, answers ResourceNotFoundException naming the function
// ARN; but it has already enabled rotation and staged AWSPENDING by then
// (models.py rotate_secret changes the secret before the lookup). That
// one error is accepted; DescribeSecret below checks the state it left.
func (f *fixture) enableRotation() string {
	f.t.Helper()
	_, err := f.sm.RotateSecret(bg, &secretsmanager.RotateSecretInput{
		SecretId:          &f.secret,
		RotationLambdaARN: aws.String(lambdaARN),
		RotationRules:     &smtypes.RotationRulesType{AutomaticallyAfterDays: aws.Int64(30)},
		RotateImmediately: aws.Bool(false),
	})
	var ae smithy.APIError
	if err != nil && !(errors.As(err, &ae) && ae.ErrorCode() == "ResourceNotFoundException" && strings.Contains(ae.ErrorMessage(), lambdaARN)) {
		f.t.Fatal(err)
	}
	d := f.describe()
	if !aws.ToBool(d.RotationEnabled) {
		f.t.Fatal("setup: rotation not enabled after RotateSecret")
	}
	for id, stages := range d.VersionIdsToStages {
		if slices.Contains(stages, "AWSPENDING") {
			return id
		}
	}
	f.t.Fatalf("setup: no AWSPENDING version: %v", d.VersionIdsToStages)
	return ""
}

func (f *fixture) describe() *secretsmanager.DescribeSecretOutput {
	f.t.Helper()
	d, err := f.sm.DescribeSecret(bg, &secretsmanager.DescribeSecretInput{SecretId: &f.secret})
	if err != nil {
		f.t.Fatal(err)
	}
	return d
}

func (f *fixture) stages() map[string][]string {
	f.t.Helper()
	return f.describe().VersionIdsToStages
}

func (f *fixture) read(in *secretsmanager.GetSecretValueInput) provision.Credential {
	f.t.Helper()
	in.SecretId = &f.secret
	out, err := f.sm.GetSecretValue(bg, in)
	if err != nil {
		f.t.Fatal(err)
	}
	var c provision.Credential
	if err := json.Unmarshal([]byte(aws.ToString(out.SecretString)), &c); err != nil {
		f.t.Fatalf("secret value is not a credential: %v", err)
	}
	return c
}

func (f *fixture) current() provision.Credential {
	f.t.Helper()
	return f.read(&secretsmanager.GetSecretValueInput{VersionStage: aws.String("AWSCURRENT")})
}

func (f *fixture) pending(token string) provision.Credential {
	f.t.Helper()
	return f.read(&secretsmanager.GetSecretValueInput{VersionId: &token, VersionStage: aws.String("AWSPENDING")})
}

func (f *fixture) keys() []string {
	f.t.Helper()
	out, err := f.iam.ListAccessKeys(bg, &iam.ListAccessKeysInput{UserName: &f.user})
	if err != nil {
		f.t.Fatal(err)
	}
	var ids []string
	for _, k := range out.AccessKeyMetadata {
		ids = append(ids, aws.ToString(k.AccessKeyId))
	}
	slices.Sort(ids)
	return ids
}

// identity is the ARN moto's STS reports for a key: the user's for a live
// key, moto's default identity for an unknown one.
func (f *fixture) identity(c provision.Credential) string {
	f.t.Helper()
	out, err := sts.NewFromConfig(awstest.ConfigWithKeys(f.t, f.url, c.AccessKeyID, c.SecretAccessKey)).GetCallerIdentity(bg, &sts.GetCallerIdentityInput{})
	if err != nil {
		f.t.Fatal(err)
	}
	return aws.ToString(out.Arn)
}

// snapshot is what must not change when a step refuses or does nothing.
type snapshot struct {
	keys    []string
	stages  map[string][]string
	current provision.Credential
}

func (f *fixture) snapshot() snapshot {
	f.t.Helper()
	return snapshot{keys: f.keys(), stages: f.stages(), current: f.current()}
}

func (f *fixture) unchanged(before snapshot) {
	f.t.Helper()
	after := f.snapshot()
	if !slices.Equal(after.keys, before.keys) {
		f.t.Errorf("keys changed: %v, were %v", after.keys, before.keys)
	}
	if !maps.EqualFunc(after.stages, before.stages, slices.Equal) {
		f.t.Errorf("version stages changed: %v, were %v", after.stages, before.stages)
	}
	if after.current != before.current {
		f.t.Errorf("AWSCURRENT changed: holds %s, held %s", after.current.AccessKeyID, before.current.AccessKeyID)
	}
}

// rotator is a Rotator on cfg, with keyvend's default settings and the
// tests' boundary, whose testSecret step checks keys through endpoint
// (moto, or a proxy in front of it).
func rotator(t *testing.T, cfg aws.Config, endpoint string, timeout time.Duration) *rotation.Rotator {
	t.Helper()
	return &rotation.Rotator{
		IAM:         iam.NewFromConfig(cfg),
		Secrets:     secretsmanager.NewFromConfig(cfg),
		Check:       &keycheck.Checker{Base: awstest.Config(t, endpoint), First: time.Millisecond, Max: 5 * time.Millisecond, Timeout: timeout},
		Log:         quiet(),
		BoundaryARN: boundary,
		Store:       awstest.Table(t, cfg),
	}
}

func (f *fixture) rotator() *rotation.Rotator {
	f.t.Helper()
	return rotator(f.t, config(f.t, f.url), f.url, 5*time.Second)
}

func step(r *rotation.Rotator, secret, token, name string) error {
	return r.Handle(bg, rotation.Event{SecretID: secret, ClientRequestToken: token, Step: name})
}

func TestFourStepsRotateTheKeyAndEachStepCanBeRerun(t *testing.T) {
	f := vend(t)
	token := f.enableRotation()
	r := f.rotator()
	if cur := f.current(); cur != f.old {
		t.Fatalf("setup: AWSCURRENT holds %s, want %s", cur.AccessKeyID, f.old.AccessKeyID)
	}

	// createSecret: a second key, held by AWSPENDING; AWSCURRENT untouched.
	if err := step(r, f.secret, token, rotation.StepCreate); err != nil {
		t.Fatalf("createSecret: %v", err)
	}
	pending := f.pending(token)
	if pending.AccessKeyID == "" || pending.AccessKeyID == f.old.AccessKeyID || pending.SecretAccessKey == "" || pending.Version != 1 {
		t.Fatalf("AWSPENDING holds %+v (key %s), want a new credential", pending, pending.AccessKeyID)
	}
	if keys := f.keys(); len(keys) != 2 || !slices.Contains(keys, pending.AccessKeyID) || !slices.Contains(keys, f.old.AccessKeyID) {
		t.Fatalf("keys = %v, want the old %s and the pending %s", keys, f.old.AccessKeyID, pending.AccessKeyID)
	}
	if cur := f.current(); cur != f.old {
		t.Fatalf("AWSCURRENT now holds %s, want still the old %s", cur.AccessKeyID, f.old.AccessKeyID)
	}

	// createSecret again: the pending key is kept, nothing new is made.
	before := f.snapshot()
	if err := step(r, f.secret, token, rotation.StepCreate); err != nil {
		t.Fatalf("createSecret again: %v", err)
	}
	if again := f.pending(token); again != pending {
		t.Fatalf("re-run createSecret changed AWSPENDING from %s to %s", pending.AccessKeyID, again.AccessKeyID)
	}
	f.unchanged(before)

	// setSecret: nothing to do for IAM keys.
	if err := step(r, f.secret, token, rotation.StepSet); err != nil {
		t.Fatalf("setSecret: %v", err)
	}
	f.unchanged(before)
	if again := f.pending(token); again != pending {
		t.Fatalf("setSecret changed AWSPENDING to %s", again.AccessKeyID)
	}

	// testSecret: the pending key works as the user, twice.
	for i := range 2 {
		if err := step(r, f.secret, token, rotation.StepTest); err != nil {
			t.Fatalf("testSecret run %d: %v", i+1, err)
		}
	}
	f.unchanged(before)

	// finishSecret: the pending version is current; the old key stays
	// active for the grace (1h by default), named in the user's record.
	start := time.Now()
	if err := step(r, f.secret, token, rotation.StepFinish); err != nil {
		t.Fatalf("finishSecret: %v", err)
	}
	if cur := f.current(); cur != pending {
		t.Fatalf("AWSCURRENT holds %s, want the new key %s", cur.AccessKeyID, pending.AccessKeyID)
	}
	if keys, want := f.keys(), sorted(pending.AccessKeyID, f.old.AccessKeyID); !slices.Equal(keys, want) {
		t.Fatalf("keys = %v, want the new key and the previous one in its grace, %v", keys, want)
	}
	rec, err := r.Store.Get(bg, f.user)
	if err != nil {
		t.Fatal(err)
	}
	if d := rec.PrevKeyDeletesAt.Sub(start); rec.KeyID != pending.AccessKeyID || rec.PrevKeyID != f.old.AccessKeyID || d < time.Hour-time.Second || d > time.Hour+time.Minute {
		t.Errorf("record: key %s, previous %s deleted at %v (%s after finish); want %s, %s an hour after", rec.KeyID, rec.PrevKeyID, rec.PrevKeyDeletesAt, d, pending.AccessKeyID, f.old.AccessKeyID)
	}
	stages := f.stages()
	if !slices.Contains(stages[token], "AWSCURRENT") || slices.Contains(stages[token], "AWSPENDING") {
		t.Errorf("stages of the rotated version = %v, want AWSCURRENT without AWSPENDING", stages[token])
	}
	if got := f.identity(pending); got != f.userARN {
		t.Errorf("new key authenticates as %s, want %s", got, f.userARN)
	}
	if got := f.identity(f.old); got != f.userARN {
		t.Errorf("the old key, in its grace, authenticates as %s, want %s", got, f.userARN)
	}

	// finishSecret again: nothing changes.
	before = f.snapshot()
	if err := step(r, f.secret, token, rotation.StepFinish); err != nil {
		t.Fatalf("finishSecret again: %v", err)
	}
	f.unchanged(before)
}

func TestFailingTestSecretLeavesTheOldKeyCurrent(t *testing.T) {
	f := vend(t)
	token := f.enableRotation()
	if err := step(f.rotator(), f.secret, token, rotation.StepCreate); err != nil {
		t.Fatalf("createSecret: %v", err)
	}
	pending := f.pending(token)

	proxy := awstest.NewProxy(t, f.url)
	proxy.RejectNewKeys(1 << 30)
	r := rotator(t, config(t, f.url), proxy.URL, 100*time.Millisecond)
	if err := step(r, f.secret, token, rotation.StepTest); err == nil {
		t.Fatal("testSecret passed although AWS rejects the pending key")
	}
	if proxy.Seen(pending.AccessKeyID) == 0 {
		t.Fatal("testSecret never tried the pending key")
	}
	if cur := f.current(); cur != f.old {
		t.Fatalf("AWSCURRENT holds %s, want the old %s", cur.AccessKeyID, f.old.AccessKeyID)
	}
	if !slices.Contains(f.keys(), f.old.AccessKeyID) {
		t.Fatal("the old key is gone")
	}
	if got := f.identity(f.old); got != f.userARN {
		t.Fatalf("old key authenticates as %s, want %s", got, f.userARN)
	}
}

func TestCreateSecretMakesRoomByDeletingAStrayKey(t *testing.T) {
	f := vend(t)
	stray, err := f.iam.CreateAccessKey(bg, &iam.CreateAccessKeyInput{UserName: &f.user})
	if err != nil {
		t.Fatal(err)
	}
	token := f.enableRotation()
	if err := step(f.rotator(), f.secret, token, rotation.StepCreate); err != nil {
		t.Fatalf("createSecret with two keys: %v", err)
	}
	pending := f.pending(token)
	want := []string{f.old.AccessKeyID, pending.AccessKeyID}
	slices.Sort(want)
	if keys := f.keys(); !slices.Equal(keys, want) || pending.AccessKeyID == aws.ToString(stray.AccessKey.AccessKeyId) {
		t.Fatalf("keys = %v, want the old and the pending %v (stray %s gone)", keys, want, aws.ToString(stray.AccessKey.AccessKeyId))
	}
}

func TestCreateSecretDeletesTheKeyItCouldNotStore(t *testing.T) {
	f := vend(t)
	token := f.enableRotation()
	cfg := config(t, f.url)
	calls, faults := &awstest.Recorder{}, &awstest.Faults{}
	calls.Attach(&cfg)
	faults.Attach(&cfg)
	faults.FailNth("PutSecretValue", 0)
	r := rotator(t, cfg, f.url, time.Second)

	if err := step(r, f.secret, token, rotation.StepCreate); err == nil {
		t.Fatal("createSecret succeeded with PutSecretValue failing")
	}
	if faults.Fired() != 1 || calls.Count("CreateAccessKey") != 1 || calls.Count("DeleteAccessKey") != 1 {
		t.Fatalf("fired %d, CreateAccessKey %d, DeleteAccessKey %d; want 1 each: %v", faults.Fired(), calls.Count("CreateAccessKey"), calls.Count("DeleteAccessKey"), calls.Calls())
	}
	if keys := f.keys(); !slices.Equal(keys, []string{f.old.AccessKeyID}) {
		t.Fatalf("keys = %v, want only the original %s", keys, f.old.AccessKeyID)
	}
	if cur := f.current(); cur != f.old {
		t.Fatalf("AWSCURRENT holds %s, want %s", cur.AccessKeyID, f.old.AccessKeyID)
	}
}

// TestFinishSecretAfterKeyvendRotatedMeanwhile: keyvend's own rotate
// (POST /v1/users/{name}/rotate) runs between testSecret and finishSecret.
// It deletes the pending key as a stray and stores a new current key;
// finishSecret must not then promote the deleted pending key (nor delete
// keyvend's new one): the user has to keep a working key in AWSCURRENT.
func TestFinishSecretAfterKeyvendRotatedMeanwhile(t *testing.T) {
	f := vend(t)
	token := f.enableRotation()
	r := f.rotator()
	for _, s := range []string{rotation.StepCreate, rotation.StepSet, rotation.StepTest} {
		if err := step(r, f.secret, token, s); err != nil {
			t.Fatalf("%s: %v", s, err)
		}
	}
	pending := f.pending(token)
	res, err := f.svc.Rotate(bg, provision.RotateInput{Principal: caller.Principal{ID: requester, Raw: requester}, User: f.user})
	if err != nil {
		t.Fatalf("keyvend rotate: %v", err)
	}
	if slices.Contains(f.keys(), pending.AccessKeyID) {
		t.Fatalf("setup: keyvend's rotate kept the pending key %s; the test needs it deleted", pending.AccessKeyID)
	}

	if err := step(r, f.secret, token, rotation.StepFinish); err == nil {
		t.Error("finishSecret promoted a pending key that no longer exists")
	}
	cur := f.current()
	if cur.AccessKeyID != res.AccessKeyID {
		t.Errorf("AWSCURRENT holds %s, want keyvend's new key %s", cur.AccessKeyID, res.AccessKeyID)
	}
	if keys, want := f.keys(), sorted(cur.AccessKeyID, res.PreviousAccessKeyID); !slices.Equal(keys, want) {
		t.Errorf("keys = %v, want the key in AWSCURRENT and the one keyvend's rotate keeps for its grace, %v", keys, want)
	}
	if got := f.identity(cur); got != f.userARN {
		t.Errorf("the key in AWSCURRENT authenticates as %s, want %s", got, f.userARN)
	}
}

// TestRefusals: every step refuses a secret keyvend does not manage, one
// without rotation, a token that is not staged and an unknown step, and
// changes nothing.
func TestRefusals(t *testing.T) {
	steps := []string{rotation.StepCreate, rotation.StepSet, rotation.StepTest, rotation.StepFinish}

	t.Run("secret without the keyvend tags", func(t *testing.T) {
		for name, tags := range map[string][]smtypes.Tag{
			"no tags":          nil,
			"user tag only":    {{Key: aws.String("keyvend:user"), Value: nil}},
			"other manager":    {{Key: aws.String(provision.TagManagedBy), Value: aws.String("someone-else")}, {Key: aws.String(provision.TagUser)}},
			"managed, no user": {{Key: aws.String(provision.TagManagedBy), Value: aws.String("keyvend")}},
		} {
			t.Run(name, func(t *testing.T) {
				f := handMade(t, func(m *made) { m.secretTags = tags })
				token := f.enableRotation()
				before := f.snapshot()
				for _, s := range steps {
					if err := step(f.rotator(), f.secret, token, s); err == nil || !strings.Contains(err.Error(), "not a keyvend user secret") {
						t.Errorf("%s: err = %v, want a refusal of an unmanaged secret", s, err)
					}
				}
				f.unchanged(before)
			})
		}
	})

	t.Run("rotation not enabled", func(t *testing.T) {
		f := vend(t)
		var token string
		for id, stages := range f.stages() {
			if slices.Contains(stages, "AWSCURRENT") {
				token = id
			}
		}
		before := f.snapshot()
		for _, s := range steps {
			if err := step(f.rotator(), f.secret, token, s); err == nil || !strings.Contains(err.Error(), "rotation enabled") {
				t.Errorf("%s: err = %v, want a refusal for rotation not enabled", s, err)
			}
		}
		f.unchanged(before)
	})

	t.Run("unknown token", func(t *testing.T) {
		f := vend(t)
		f.enableRotation()
		before := f.snapshot()
		for _, s := range steps {
			if err := step(f.rotator(), f.secret, "3f1c2b7e-0000-4000-8000-000000000000", s); err == nil || !strings.Contains(err.Error(), "no version") {
				t.Errorf("%s: err = %v, want a refusal of an unstaged token", s, err)
			}
		}
		f.unchanged(before)
	})

	t.Run("unknown step", func(t *testing.T) {
		f := vend(t)
		token := f.enableRotation()
		before := f.snapshot()
		for _, s := range []string{"deleteSecret", "CreateSecret", ""} {
			if err := step(f.rotator(), f.secret, token, s); err == nil || !strings.Contains(err.Error(), "unknown step") {
				t.Errorf("step %q: err = %v, want unknown step", s, err)
			}
		}
		f.unchanged(before)
	})
}

// made is a user with one key and a secret holding it, made with the SDK.
// handMade starts from what keyvend makes — the user under /keyvend/,
// tagged keyvend:managed-by=keyvend, with keyvend's boundary; the secret
// keyvend/users/<user>, tagged for the user, with the account's default
// key — and a test changes one thing.
type made struct {
	user       string
	userPath   string
	userTags   []iamtypes.Tag
	boundary   string // "": none
	secretName string
	secretTags []smtypes.Tag // a keyvend:user tag without a value names the user
	kmsKeyID   string        // "": the account's aws/secretsmanager key
}

func handMade(t *testing.T, change func(*made)) *fixture {
	t.Helper()
	f := newFixture(t)
	m := made{user: awstest.Name("rotfn-hand"), userPath: "/keyvend/", boundary: boundary}
	m.userTags = []iamtypes.Tag{{Key: aws.String(provision.TagManagedBy), Value: aws.String("keyvend")}}
	m.secretName = "keyvend/users/" + m.user
	m.secretTags = []smtypes.Tag{{Key: aws.String(provision.TagManagedBy), Value: aws.String("keyvend")}, {Key: aws.String(provision.TagUser)}}
	if change != nil {
		change(&m)
	}
	f.user = m.user
	for i := range m.secretTags {
		if aws.ToString(m.secretTags[i].Key) == provision.TagUser && m.secretTags[i].Value == nil {
			m.secretTags[i].Value = aws.String(f.user)
		}
	}
	in := &iam.CreateUserInput{UserName: &f.user, Path: &m.userPath, Tags: m.userTags}
	if m.boundary != "" {
		in.PermissionsBoundary = &m.boundary
	}
	u, err := f.iam.CreateUser(bg, in)
	if err != nil {
		t.Fatal(err)
	}
	k, err := f.iam.CreateAccessKey(bg, &iam.CreateAccessKeyInput{UserName: &f.user})
	if err != nil {
		t.Fatal(err)
	}
	f.userARN = aws.ToString(u.User.Arn)
	f.old = provision.Credential{Version: 1, AccessKeyID: aws.ToString(k.AccessKey.AccessKeyId), SecretAccessKey: aws.ToString(k.AccessKey.SecretAccessKey)}
	value, _ := json.Marshal(f.old)
	sin := &secretsmanager.CreateSecretInput{Name: &m.secretName, SecretString: aws.String(string(value)), Tags: m.secretTags}
	if m.kmsKeyID != "" {
		sin.KmsKeyId = &m.kmsKeyID
	}
	s, err := f.sm.CreateSecret(bg, sin)
	if err != nil {
		t.Fatal(err)
	}
	f.secret = aws.ToString(s.ARN)
	if got := aws.ToString(f.describe().KmsKeyId); got != m.kmsKeyID {
		t.Fatalf("setup: DescribeSecret reports KmsKeyId %q, want %q", got, m.kmsKeyID)
	}
	// The user's record, as keyvend reindex makes it for a user vended
	// before the state table.
	store := awstest.Table(t, config(t, f.url))
	if _, err := store.Claim(bg, state.Record{Name: f.user, UserARN: f.userARN, Phase: state.Ready, KeyID: f.old.AccessKeyID}, "setup", time.Minute); err != nil {
		t.Fatal(err)
	}
	if err := store.Release(bg, f.user, "setup"); err != nil {
		t.Fatal(err)
	}
	return f
}

// rotates runs the four steps on f's secret with r and checks the key was
// rotated: a new key in AWSCURRENT, and the old one kept for its grace.
func (f *fixture) rotates(r *rotation.Rotator) {
	f.t.Helper()
	token := f.enableRotation()
	for _, s := range []string{rotation.StepCreate, rotation.StepSet, rotation.StepTest, rotation.StepFinish} {
		if err := step(r, f.secret, token, s); err != nil {
			f.t.Fatalf("%s: %v", s, err)
		}
	}
	cur := f.current()
	if cur.AccessKeyID == "" || cur == f.old {
		f.t.Fatalf("AWSCURRENT holds %q, want a new key (the old one was %s)", cur.AccessKeyID, f.old.AccessKeyID)
	}
	if keys, want := f.keys(), sorted(cur.AccessKeyID, f.old.AccessKeyID); !slices.Equal(keys, want) {
		f.t.Fatalf("keys = %v, want the new %s and the previous %s in its grace", keys, cur.AccessKeyID, f.old.AccessKeyID)
	}
}

// refuses runs every step on f's secret, with rotation enabled, through a
// rotator (adjusted by adjust, if not nil) that records its calls. Each
// step must fail with an error containing want, without creating or
// deleting a key or putting or staging a secret version, and the user's
// keys and the secret's versions (and those of others) stay as they were.
// It returns the recorded calls.
func (f *fixture) refuses(want string, adjust func(*rotation.Rotator), others ...*fixture) *awstest.Recorder {
	f.t.Helper()
	token := f.enableRotation()
	before := f.snapshot()
	var otherBefore []snapshot
	for _, o := range others {
		otherBefore = append(otherBefore, o.snapshot())
	}
	cfg := config(f.t, f.url)
	calls := &awstest.Recorder{}
	calls.Attach(&cfg)
	r := rotator(f.t, cfg, f.url, time.Second)
	if adjust != nil {
		adjust(r)
	}
	for _, s := range []string{rotation.StepCreate, rotation.StepSet, rotation.StepTest, rotation.StepFinish} {
		err := step(r, f.secret, token, s)
		if err == nil || !strings.Contains(err.Error(), want) {
			f.t.Errorf("%s: err = %v, want a refusal mentioning %q", s, err, want)
		} else if s == rotation.StepCreate {
			f.t.Logf("%s: %v", s, err)
		}
	}
	for _, op := range []string{"CreateAccessKey", "DeleteAccessKey", "PutSecretValue", "UpdateSecretVersionStage"} {
		if n := calls.Count(op); n != 0 {
			f.t.Errorf("%s called %d times: %v", op, n, calls.Calls())
		}
	}
	if w := calls.Writes(); len(w) != 0 {
		f.t.Errorf("writes: %v", w)
	}
	f.unchanged(before)
	for i, o := range others {
		o.unchanged(otherBefore[i])
	}
	return calls
}

// noIAM fails the test if calls hold an IAM call: a secret that is not
// keyvend's is refused before its user is even looked at.
func noIAM(t *testing.T, calls *awstest.Recorder) {
	t.Helper()
	var iamCalls []awstest.Call
	for _, c := range calls.Calls() {
		if c.Service == "IAM" {
			iamCalls = append(iamCalls, c)
		}
	}
	if len(iamCalls) != 0 {
		t.Errorf("IAM calls for a secret that is not keyvend's: %v", iamCalls)
	}
}

// Keys of the KMS tests. moto does not check that a key exists; it
// reports the KmsKeyId a secret was created with as given, and none for
// the account's aws/secretsmanager key, as AWS does.
const (
	keyvendKeyID  = "1234abcd-12ab-34cd-56ef-1234567890ab"
	keyvendKeyARN = "arn:aws:kms:us-east-1:123456789012:key/" + keyvendKeyID
	otherKeyARN   = "arn:aws:kms:us-east-1:123456789012:key/0b1e5f9c-7d2a-4e1b-9c3d-5a6b7c8d9e0f"
)

// TestHandMadeKeyvendSecretRotates: a user and secret made by hand exactly
// as keyvend makes them rotate; the refusals below each change one thing
// of this.
func TestHandMadeKeyvendSecretRotates(t *testing.T) {
	f := handMade(t, nil)
	f.rotates(f.rotator())
}

// TestRefusesWhatKeyvendDidNotMake: a secret or user that differs from
// what keyvend makes in one respect is refused by every step, which
// creates, deletes, puts and stages nothing.
func TestRefusesWhatKeyvendDidNotMake(t *testing.T) {
	t.Run("secret under another name", func(t *testing.T) {
		f := handMade(t, func(m *made) { m.secretName = "other/" + m.user })
		noIAM(t, f.refuses("is named", nil))
	})
	t.Run("keyvend's secret of one user tagged for another", func(t *testing.T) {
		bob := handMade(t, nil)
		alice := handMade(t, func(m *made) {
			m.secretTags = []smtypes.Tag{{Key: aws.String(provision.TagManagedBy), Value: aws.String("keyvend")}, {Key: aws.String(provision.TagUser), Value: &bob.user}}
		})
		noIAM(t, alice.refuses("is named", nil, bob))
	})
	t.Run("user tag not an IAM user name", func(t *testing.T) {
		f := handMade(t, func(m *made) {
			m.secretName = "keyvend/users/" + m.user + "/x"
			m.secretTags = []smtypes.Tag{{Key: aws.String(provision.TagManagedBy), Value: aws.String("keyvend")}, {Key: aws.String(provision.TagUser), Value: aws.String(m.user + "/x")}}
		})
		noIAM(t, f.refuses("not a valid IAM user name", nil))
	})
	t.Run("secret with another KMS key", func(t *testing.T) {
		f := handMade(t, func(m *made) { m.kmsKeyID = otherKeyARN })
		noIAM(t, f.refuses("KMS key", nil))
	})
	t.Run("secret with another KMS key than keyvend's", func(t *testing.T) {
		f := handMade(t, func(m *made) { m.kmsKeyID = otherKeyARN })
		noIAM(t, f.refuses("KMS key", func(r *rotation.Rotator) { r.KMSKeyID = keyvendKeyARN }))
	})
	t.Run("secret with the default key when keyvend has its own", func(t *testing.T) {
		f := handMade(t, nil)
		noIAM(t, f.refuses("KMS key", func(r *rotation.Rotator) { r.KMSKeyID = keyvendKeyID }))
	})
	t.Run("secret with a key ARN when keyvend is configured with an alias", func(t *testing.T) {
		// The alias may name that key, but only KMS could say: refused.
		f := handMade(t, func(m *made) { m.kmsKeyID = keyvendKeyARN })
		noIAM(t, f.refuses("KMS key", func(r *rotation.Rotator) { r.KMSKeyID = "alias/keyvend" }))
	})
	t.Run("user outside keyvend's path", func(t *testing.T) {
		f := handMade(t, func(m *made) { m.userPath = "/other/" })
		f.refuses("path", nil)
	})
	t.Run("user without the managed-by tag", func(t *testing.T) {
		f := handMade(t, func(m *made) { m.userTags = nil })
		f.refuses(provision.TagManagedBy, nil)
	})
	t.Run("user managed by someone else", func(t *testing.T) {
		f := handMade(t, func(m *made) {
			m.userTags = []iamtypes.Tag{{Key: aws.String(provision.TagManagedBy), Value: aws.String("someone-else")}}
		})
		f.refuses(provision.TagManagedBy, nil)
	})
	t.Run("user with another boundary", func(t *testing.T) {
		f := handMade(t, func(m *made) { m.boundary = "arn:aws:iam::123456789012:policy/other-boundary" })
		f.refuses("boundary", nil)
	})
	t.Run("user without a boundary", func(t *testing.T) {
		f := handMade(t, func(m *made) { m.boundary = "" })
		f.refuses("boundary", nil)
	})
	t.Run("rotator configured without a boundary", func(t *testing.T) {
		f := handMade(t, nil)
		noIAM(t, f.refuses("boundary", func(r *rotation.Rotator) { r.BoundaryARN = "" }))
	})
}

// TestKMSKeyForms: keyvend's key is recognised across its forms — the key
// ARN for the bare key id and back — and an alias when it is exactly the
// configured one.
func TestKMSKeyForms(t *testing.T) {
	for _, c := range []struct{ name, secret, configured string }{
		{"key ARN, configured as the key id", keyvendKeyARN, keyvendKeyID},
		{"key id, configured as the key ARN", keyvendKeyID, keyvendKeyARN},
		{"key ARN, configured as the key ARN", keyvendKeyARN, keyvendKeyARN},
		{"alias, configured as the alias", "alias/keyvend", "alias/keyvend"},
	} {
		t.Run(c.name, func(t *testing.T) {
			f := handMade(t, func(m *made) { m.kmsKeyID = c.secret })
			r := f.rotator()
			r.KMSKeyID = c.configured
			f.rotates(r)
		})
	}
}

// TestLogsNameRefusalsAndNoSecret: the JSON log of a rotation and of a
// refused step holds the refusal, with the secret, and never a secret
// access key.
func TestLogsNameRefusalsAndNoSecret(t *testing.T) {
	var logs awstest.SyncBuffer
	f := handMade(t, nil)
	r := f.rotator()
	r.Log = slog.New(slog.NewJSONHandler(&logs, nil))
	f.rotates(r)
	rotated := f.current()

	other := handMade(t, func(m *made) { m.boundary = "" })
	token := other.enableRotation()
	if err := step(r, other.secret, token, rotation.StepCreate); err == nil {
		t.Fatal("createSecret accepted a user without keyvend's boundary")
	}

	var refusals int
	for _, line := range strings.Split(strings.TrimSpace(logs.String()), "\n") {
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("log line is not JSON: %q", line)
		}
		if rec["level"] == "WARN" && strings.Contains(fmt.Sprint(rec["msg"]), "not verified") {
			refusals++
			if rec["secret"] != other.secret || !strings.Contains(fmt.Sprint(rec["error"]), "permissions boundary") {
				t.Errorf("refusal logged as %v, want the secret %s and the boundary named", rec, other.secret)
			}
		}
	}
	if refusals != 1 {
		t.Errorf("%d refusals logged, want 1:\n%s", refusals, logs.String())
	}
	for _, c := range []provision.Credential{f.old, rotated, other.old} {
		if strings.Contains(logs.String(), c.SecretAccessKey) {
			t.Errorf("the log holds the secret access key of %s", c.AccessKeyID)
		}
	}
}

// TestRotationHoldsTheUsersLease: the steps that change keys hold the
// user's lease in keyvend's state table. While a keyvend request holds it
// (a delete, say), createSecret refuses and changes nothing — Secrets
// Manager retries it — and once the lease is free the rotation runs and
// records the new key, with a history entry, releasing the lease.
func TestRotationHoldsTheUsersLease(t *testing.T) {
	f := vend(t)
	token := f.enableRotation()
	r := f.rotator()
	store := awstest.Table(t, config(t, f.url))
	if _, err := store.Lease(bg, f.user, "a-keyvend-request", time.Minute, state.LeaseOpts{}); err != nil {
		t.Fatal(err)
	}
	before := f.snapshot()
	err := step(r, f.secret, token, rotation.StepCreate)
	if err == nil || !strings.Contains(err.Error(), "being changed by another keyvend operation") {
		t.Fatalf("createSecret under another holder's lease: %v, want a refusal", err)
	}
	f.unchanged(before)
	if err := store.Release(bg, f.user, "a-keyvend-request"); err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{rotation.StepCreate, rotation.StepSet, rotation.StepTest, rotation.StepFinish} {
		if err := step(r, f.secret, token, s); err != nil {
			t.Fatalf("%s: %v", s, err)
		}
	}
	cur := f.current()
	rec, err := store.Get(bg, f.user)
	if err != nil {
		t.Fatal(err)
	}
	if rec.KeyID != cur.AccessKeyID || cur.AccessKeyID == f.old.AccessKeyID || rec.LeaseHolder != "" {
		t.Errorf("record: key %s, lease %q; want the rotated key %s, released", rec.KeyID, rec.LeaseHolder, cur.AccessKeyID)
	}
	h, err := store.History(bg, f.user, 1, "")
	if err != nil || len(h.Entries) != 1 || h.Entries[0].Action != "rotate" || h.Entries[0].Principal != rotation.Principal || h.Entries[0].KeyID != cur.AccessKeyID {
		t.Errorf("last history entry %+v (%v), want the rotation's", h, err)
	}
}

func sorted(ids ...string) []string {
	out := slices.Clone(ids)
	slices.Sort(out)
	return out
}

// TestFinishSecretWithoutGraceDeletesThePreviousKey: with NoGrace the old
// key goes at finishSecret, and the record names no previous key.
func TestFinishSecretWithoutGraceDeletesThePreviousKey(t *testing.T) {
	f := vend(t)
	token := f.enableRotation()
	r := f.rotator()
	r.Grace = provision.NoGrace
	for _, s := range []string{rotation.StepCreate, rotation.StepSet, rotation.StepTest, rotation.StepFinish} {
		if err := step(r, f.secret, token, s); err != nil {
			t.Fatalf("%s: %v", s, err)
		}
	}
	cur := f.current()
	if keys := f.keys(); !slices.Equal(keys, []string{cur.AccessKeyID}) || cur.AccessKeyID == f.old.AccessKeyID {
		t.Errorf("keys = %v, want only the new key %s", keys, cur.AccessKeyID)
	}
	if rec, err := r.Store.Get(bg, f.user); err != nil || rec.PrevKeyID != "" || rec.KeyID != cur.AccessKeyID {
		t.Errorf("record %+v, %v: want key %s and no previous key", rec, err, cur.AccessKeyID)
	}
}

// TestKeyvendReaperDeletesTheRotationsPreviousKey: the previous key the
// rotation function kept is keyvend's reaper's once its grace is over.
func TestKeyvendReaperDeletesTheRotationsPreviousKey(t *testing.T) {
	f := vend(t)
	token := f.enableRotation()
	r := f.rotator()
	r.Grace = time.Minute
	for _, s := range []string{rotation.StepCreate, rotation.StepSet, rotation.StepTest, rotation.StepFinish} {
		if err := step(r, f.secret, token, s); err != nil {
			t.Fatalf("%s: %v", s, err)
		}
	}
	cur := f.current()
	if keys := f.keys(); len(keys) != 2 {
		t.Fatalf("keys after finishSecret %v, want the new and the previous", keys)
	}
	clock := time.Now().Add(2 * time.Minute)
	reaper := provisiontest.New(t, provisiontest.Endpoint(f.url), provisiontest.Instrument(boundaries.Attach),
		provisiontest.Settings(func(s *provision.Settings) { s.Store = r.Store; s.Now = func() time.Time { return clock } })).Service
	rep, err := reaper.Reap(bg)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(rep.PreviousKeysDeleted, provision.KeyOfUser{User: f.user, AccessKeyID: f.old.AccessKeyID}) {
		t.Errorf("reaper deleted previous keys %v, want %s's %s", rep.PreviousKeysDeleted, f.user, f.old.AccessKeyID)
	}
	if keys := f.keys(); !slices.Equal(keys, []string{cur.AccessKeyID}) {
		t.Errorf("keys after the reaper %v, want only %s", keys, cur.AccessKeyID)
	}
}
