package provision_test

// Rotation without breakage: the previous key stays active for the grace
// (Settings.RotationGrace), then the reaper deletes it, or the next
// rotation does first.

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	iamtypes "github.com/aws/aws-sdk-go-v2/service/iam/types"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"

	"github.com/keyvend/keyvend/pkg/awstest"
	"github.com/keyvend/keyvend/pkg/credential"
	"github.com/keyvend/keyvend/pkg/provision"
	"github.com/keyvend/keyvend/pkg/provisiontest"
	"github.com/keyvend/keyvend/pkg/state"
)

// TestRotateGraceReaperDeletesThePreviousKeyAfterItsGrace: after a rotate
// both keys exist and the old one is Active; reaper runs within the grace
// (also past HalfMadeAfter, when the reconciliation looks at the user's
// keys) leave it; the first run after the grace deletes it, records that
// in the history and takes the record off the expiry index.
func TestRotateGraceReaperDeletesThePreviousKeyAfterItsGrace(t *testing.T) {
	srv := awstest.Dedicated(t)
	clock := &settableClock{}
	e := newEnvOn(t, srv.URL, testRules, func(s *provision.Settings) { s.Now = clock.Now; s.RotationGrace = 2 * time.Hour })
	user := awstest.Name("grace")
	created := rotCreate(t, e, user)
	start := time.Now()
	res, err := rotRotate(e, user)
	if err != nil {
		t.Fatal(err)
	}
	old := created.AccessKeyID
	if res.PreviousAccessKeyID != old || res.PreviousKeyDeletesAt == nil || res.PreviousKeyDeleted {
		t.Fatalf("rotate answered previous %q deletes at %v deleted %v, want %s kept", res.PreviousAccessKeyID, res.PreviousKeyDeletesAt, res.PreviousKeyDeleted, old)
	}
	deletesAt := *res.PreviousKeyDeletesAt
	if d := deletesAt.Sub(start); d < 2*time.Hour-time.Second || d > 2*time.Hour+time.Minute {
		t.Errorf("previous key deletes %s after the rotation, want the configured 2h", d)
	}
	if got := e.Keys(t, user); !slices.Equal(got, sortedPair(old, res.AccessKeyID)) {
		t.Fatalf("keys after rotate %v, want the new %s and the previous %s", got, res.AccessKeyID, old)
	}
	if st := rotKeyStatus(t, e, user, old); st != iamtypes.StatusTypeActive {
		t.Errorf("previous key is %q, want Active", st)
	}
	hist := historyOf(t, e, user)
	if h := hist["rotate"]; h == nil || h.PreviousKeyID != old || h.PreviousKeyDeletesAt == nil || !h.PreviousKeyDeletesAt.Equal(deletesAt) {
		t.Errorf("rotate's history entry %+v, want previous key %s deleting at %v", h, old, deletesAt)
	}

	for _, at := range []time.Time{start.Add(20 * time.Minute), deletesAt.Add(-time.Second)} {
		clock.Set(at)
		rep, err := e.svc.Reap(ctx())
		if err != nil {
			t.Fatal(err)
		}
		if len(rep.PreviousKeysDeleted) != 0 || len(rep.StrayKeysDeleted) != 0 || len(rep.Errors) != 0 {
			t.Errorf("reaper at %v (grace until %v): %+v", at, deletesAt, rep)
		}
		if got := e.Keys(t, user); !slices.Equal(got, sortedPair(old, res.AccessKeyID)) {
			t.Fatalf("keys after a reaper run within the grace %v, want both", got)
		}
	}

	clock.Set(deletesAt)
	rep, err := e.svc.Reap(ctx())
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.PreviousKeysDeleted) != 1 || rep.PreviousKeysDeleted[0] != (provision.KeyOfUser{User: user, AccessKeyID: old}) || len(rep.Errors) != 0 {
		t.Errorf("reaper at the end of the grace: %+v, want %s's previous key %s deleted", rep, user, old)
	}
	if got := e.Keys(t, user); !slices.Equal(got, []string{res.AccessKeyID}) {
		t.Errorf("keys after the grace %v, want only %s", got, res.AccessKeyID)
	}
	rotAssertSettled(t, e, user)
	rec, _ := e.Record(t, user)
	if rec.PrevKeyID != "" || rec.KeyID != res.AccessKeyID || rec.Phase != state.Ready || rec.LeaseHolder != "" {
		t.Errorf("record after the grace %+v", rec)
	}
	if h := historyOf(t, e, user)["delete-previous-key"]; h == nil || h.PreviousKeyID != old || h.Principal != provision.ReaperPrincipal {
		t.Errorf("history entry of the deletion %+v", h)
	}
	// Off the expiry index: nothing is due any more.
	due, err := e.store.Due(ctx(), deletesAt.Add(24*time.Hour), 10)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range due {
		if r.Name == user {
			t.Errorf("%s still due after its previous key was deleted", user)
		}
	}
}

// historyOf is user's history, the newest entry of each action.
func historyOf(t *testing.T, e *env, user string) map[string]*state.History {
	t.Helper()
	page, err := e.store.History(ctx(), user, 50, "")
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]*state.History{}
	for i := range page.Entries {
		if h := &page.Entries[i]; out[h.Action] == nil {
			out[h.Action] = h
		}
	}
	return out
}

// TestRotateTwiceWithinTheGraceNeverMakesAThirdKey: a second rotate while
// the first one's previous key is in its grace deletes that key before it
// creates its own (IAM allows two), and keeps the first rotation's key for
// its grace.
func TestRotateTwiceWithinTheGraceNeverMakesAThirdKey(t *testing.T) {
	e := newEnv(t)
	user := awstest.Name("grace2")
	created := rotCreate(t, e, user)
	first, err := rotRotate(e, user)
	if err != nil {
		t.Fatal(err)
	}
	e.calls.Reset()
	second, err := rotRotate(e, user)
	if err != nil {
		t.Fatal(err)
	}
	var writes []string
	for _, c := range e.calls.Writes() {
		if c.Service == "IAM" {
			writes = append(writes, c.Operation)
			if in, ok := c.Input.(*iam.DeleteAccessKeyInput); ok && aws.ToString(in.AccessKeyId) != created.AccessKeyID {
				t.Errorf("second rotate deleted %s, want only the original key %s", aws.ToString(in.AccessKeyId), created.AccessKeyID)
			}
		}
	}
	if got := strings.Join(writes, " "); got != "DeleteAccessKey CreateAccessKey" {
		t.Errorf("second rotate's IAM writes: %s, want the key in its grace deleted before the new one is made", got)
	}
	if second.PreviousAccessKeyID != first.AccessKeyID || second.PreviousKeyDeletesAt == nil {
		t.Errorf("second rotate: previous %s deletes at %v, want %s in its grace", second.PreviousAccessKeyID, second.PreviousKeyDeletesAt, first.AccessKeyID)
	}
	if got := e.Keys(t, user); !slices.Equal(got, sortedPair(first.AccessKeyID, second.AccessKeyID)) {
		t.Errorf("keys %v, want %s and %s", got, first.AccessKeyID, second.AccessKeyID)
	}
	rotAssertSettled(t, e, user)
}

// TestRotateWithoutGraceDeletesThePreviousKeyAtOnce: NoGrace is the old
// behaviour.
func TestRotateWithoutGraceDeletesThePreviousKeyAtOnce(t *testing.T) {
	e := newEnv(t, func(s *provision.Settings) { s.RotationGrace = provision.NoGrace })
	user := awstest.Name("nograce")
	created := rotCreate(t, e, user)
	res, err := rotRotate(e, user)
	if err != nil {
		t.Fatal(err)
	}
	if res.PreviousAccessKeyID != created.AccessKeyID || !res.PreviousKeyDeleted || res.PreviousKeyDeletesAt != nil {
		t.Errorf("previous %s deleted %v deletes at %v, want %s deleted", res.PreviousAccessKeyID, res.PreviousKeyDeleted, res.PreviousKeyDeletesAt, created.AccessKeyID)
	}
	if got := e.Keys(t, user); !slices.Equal(got, []string{res.AccessKeyID}) {
		t.Errorf("keys %v, want only %s", got, res.AccessKeyID)
	}
	if rec, _ := e.Record(t, user); rec.PrevKeyID != "" {
		t.Errorf("record keeps previous key %s", rec.PrevKeyID)
	}
}

// TestDeleteDuringTheGraceDeletesBothKeys: the delete path removes the
// previous key too (moto would delete a user with keys; AWS refuses, so
// look before DeleteUser).
func TestDeleteDuringTheGraceDeletesBothKeys(t *testing.T) {
	e := newEnv(t)
	user := awstest.Name("gracedel")
	rotCreate(t, e, user)
	if _, err := rotRotate(e, user); err != nil {
		t.Fatal(err)
	}
	if n := len(e.Keys(t, user)); n != 2 {
		t.Fatalf("setup: %d keys, want 2", n)
	}
	e.faults.FailNth("DeleteUser", 1)
	if err := e.svc.Delete(ctx(), delInput(testCaller, user)); err == nil {
		t.Fatal("delete with DeleteUser failing succeeded")
	}
	if k := e.Keys(t, user); len(k) != 0 {
		t.Errorf("keys left before DeleteUser: %v", k)
	}
	e.faults.Clear()
	if err := e.svc.Delete(ctx(), delInput(testCaller, user)); err != nil {
		t.Fatal(err)
	}
	if e.UserExists(t, user) {
		t.Error("user still exists")
	}
}

// secretProvider is what `keyvend credentials` gives an SDK: the key read
// from the secret, expiring soon so the SDK reads it again.
type secretProvider struct {
	sm    *secretsmanager.Client
	name  string
	reads atomic.Int32
}

func (p *secretProvider) Retrieve(ctx context.Context) (aws.Credentials, error) {
	p.reads.Add(1)
	out, err := p.sm.GetSecretValue(ctx, &secretsmanager.GetSecretValueInput{SecretId: &p.name})
	if err != nil {
		return aws.Credentials{}, err
	}
	c, ok := credential.Parse(aws.ToString(out.SecretString))
	if !ok {
		return aws.Credentials{}, errors.New("the secret holds no key")
	}
	return aws.Credentials{AccessKeyID: c.AccessKeyID, SecretAccessKey: c.SecretAccessKey, CanExpire: true, Expires: time.Now().Add(15 * time.Minute)}, nil
}

// TestRotateKeepsALongLivedClientWorking: on a moto that enforces IAM, an
// S3 client built once on a provider that re-reads the secret (as the
// credential helper makes SDKs do) has cached the key when keyvend rotates
// it; its next calls, still signed with that key, keep working through the
// grace, and once its cache expires it reads the new key and goes on. When
// the reaper has deleted the old key, a client still holding it is refused
// — which is what every client got at once before the grace.
func TestRotateKeepsALongLivedClientWorking(t *testing.T) {
	srv := awstest.Dedicated(t)
	seed := awstest.Config(t, srv.URL)
	seedIAM := iam.NewFromConfig(seed)
	admin := awstest.Name("grace-admin")
	if _, err := seedIAM.CreateUser(ctx(), &iam.CreateUserInput{UserName: &admin}); err != nil {
		t.Fatal(err)
	}
	if _, err := seedIAM.PutUserPolicy(ctx(), &iam.PutUserPolicyInput{UserName: &admin, PolicyName: aws.String("admin"),
		PolicyDocument: aws.String(`{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"*","Resource":"*"}]}`)}); err != nil {
		t.Fatal(err)
	}
	ak, err := seedIAM.CreateAccessKey(ctx(), &iam.CreateAccessKeyInput{UserName: &admin})
	if err != nil {
		t.Fatal(err)
	}
	adminCfg := awstest.ConfigWithKeys(t, srv.URL, aws.ToString(ak.AccessKey.AccessKeyId), aws.ToString(ak.AccessKey.SecretAccessKey))
	bucket := awstest.Name("grace") + ".example.com"
	if _, err := s3.NewFromConfig(seed, pathStyle).CreateBucket(ctx(), &s3.CreateBucketInput{Bucket: &bucket}); err != nil {
		t.Fatal(err)
	}
	clock := &settableClock{}
	// keyvend's own clients sign with the admin's key: enforcement refuses any other.
	e := &env{calls: &awstest.Recorder{}, faults: &awstest.Faults{}}
	e.Env = provisiontest.New(t, provisiontest.Endpoint(srv.URL), provisiontest.Rules(testRules), provisiontest.ClientConfig(adminCfg),
		provisiontest.Settings(func(s *provision.Settings) { s.Now = clock.Now }))
	e.svc, e.iam, e.sm, e.store, e.url = e.Service, e.IAM, e.SM, e.Store, e.URL

	user := awstest.Name("grace-ll")
	created, err := e.svc.Create(ctx(), input(user, rw(bucket)))
	if err != nil {
		t.Fatal(err)
	}
	oldCred := e.MustCredential(t, user) // e.SM is refused once IAM is enforced
	if err := srv.EnforceIAM(ctx(), true); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.EnforceIAM(context.Background(), false) })
	if _, err := iam.NewFromConfig(seed).ListUsers(ctx(), &iam.ListUsersInput{}); err == nil {
		t.Fatal("moto accepted an unknown key with IAM enforced: the checks below would prove nothing")
	}

	prov := &secretProvider{sm: secretsmanager.NewFromConfig(adminCfg), name: e.SecretName(user)}
	cache := aws.NewCredentialsCache(prov)
	clientCfg := adminCfg.Copy()
	clientCfg.Credentials = cache
	client := s3.NewFromConfig(clientCfg, pathStyle)
	put := func(key string) error {
		_, err := client.PutObject(ctx(), &s3.PutObjectInput{Bucket: &bucket, Key: aws.String(key), Body: strings.NewReader("x")})
		return err
	}
	if err := put("before"); err != nil {
		t.Fatalf("the vended key cannot write its bucket: %v", err)
	}
	// The vended key is scoped: another bucket is refused.
	if _, err := client.ListObjectsV2(ctx(), &s3.ListObjectsV2Input{Bucket: aws.String("other.example.com")}); err == nil {
		t.Fatal("the vended key lists a bucket it was not granted: enforcement is off")
	}

	res, err := rotRotate(e, user)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if err := put("during-" + string(rune('a'+i))); err != nil {
			t.Fatalf("the long-lived client, still on the previous key, failed after the rotate: %v", err)
		}
	}
	if c, _ := cache.Retrieve(ctx()); c.AccessKeyID != created.AccessKeyID {
		t.Fatalf("the client signs with %s, want the cached previous key %s", c.AccessKeyID, created.AccessKeyID)
	}
	// Its credentials expire: it reads the secret again and goes on with the new key.
	cache.Invalidate()
	if err := put("after"); err != nil {
		t.Fatalf("the client, on the new key, failed: %v", err)
	}
	if c, _ := cache.Retrieve(ctx()); c.AccessKeyID != res.AccessKeyID || prov.reads.Load() != 2 {
		t.Fatalf("the client signs with %s after %d reads, want the new key %s after 2", c.AccessKeyID, prov.reads.Load(), res.AccessKeyID)
	}

	// After the grace the reaper deletes the old key: a client that still
	// holds it is refused, one that re-reads works.
	if err := srv.EnforceIAM(ctx(), false); err != nil {
		t.Fatal(err)
	}
	clock.Set(res.PreviousKeyDeletesAt.Add(time.Second))
	rep, err := e.svc.Reap(ctx())
	if err != nil || len(rep.PreviousKeysDeleted) != 1 {
		t.Fatalf("reap after the grace: %+v, %v", rep, err)
	}
	if err := srv.EnforceIAM(ctx(), true); err != nil {
		t.Fatal(err)
	}
	stale := s3.NewFromConfig(awstest.ConfigWithKeys(t, srv.URL, oldCred.AccessKeyID, oldCred.SecretAccessKey), pathStyle)
	if _, err := stale.PutObject(ctx(), &s3.PutObjectInput{Bucket: &bucket, Key: aws.String("stale"), Body: strings.NewReader("x")}); err == nil {
		t.Error("the previous key still works after the reaper deleted it")
	}
	if err := put("late"); err != nil {
		t.Errorf("the re-reading client failed after the old key was deleted: %v", err)
	}
}

func pathStyle(o *s3.Options) { o.UsePathStyle = true }
