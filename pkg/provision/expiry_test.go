package provision_test

import (
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/iam"

	"github.com/keyvend/keyvend/pkg/awstest"
	"github.com/keyvend/keyvend/pkg/policy"
	"github.com/keyvend/keyvend/pkg/provision"
)

// expiryRules: alice vends on *.example.com freely, on *.capped.test for at
// most 24h, and on *.strict.test only with an expiry (at most 720h).
const expiryRules = `{"rules":[
 {"principals":["` + testCaller + `"],"buckets":["*.example.com"],"access":` + allAccess + `},
 {"principals":["` + testCaller + `"],"buckets":["*.capped.test"],"access":` + allAccess + `,"max_ttl":"24h"},
 {"principals":["` + testCaller + `"],"buckets":["*.strict.test"],"access":` + allAccess + `,"max_ttl":"720h","require_expiry":true}
]}`

// expiryEnv is a service on the shared moto whose clock stands still at
// now, three hours ahead of the real one (so that "past" by the service's
// clock is still future by the real one).
func expiryEnv(t *testing.T) (*env, time.Time) {
	now := time.Now().UTC().Add(3*time.Hour + 123*time.Millisecond)
	return newEnvOn(t, "", expiryRules, func(s *provision.Settings) { s.Now = func() time.Time { return now } }), now
}

// expiresTag returns the user's keyvend:expires-at tag, or "".
func expiresTag(t *testing.T, e *env, user string) string {
	t.Helper()
	out, err := e.iam.ListUserTags(ctx(), &iam.ListUserTagsInput{UserName: &user})
	if err != nil {
		t.Fatal(err)
	}
	for _, tg := range out.Tags {
		if aws.ToString(tg.Key) == provision.TagExpiresAt {
			return aws.ToString(tg.Value)
		}
	}
	return ""
}

func TestExpiryIsStoredInTheTag(t *testing.T) {
	e, now := expiryEnv(t)
	zone := time.FixedZone("UTC+5", 5*3600)
	for _, tc := range []struct {
		name   string
		bucket string
		in     string
		at     string
		want   time.Time
		capped bool
	}{
		{"expires_in", ".example.com", "48h", "", now.Add(48 * time.Hour), false},
		{"expires_at in another zone", ".example.com", "", rfc(now.Add(36*time.Hour + 500*time.Millisecond).In(zone)), now.Add(36*time.Hour + 500*time.Millisecond), false},
		{"expires_in within max_ttl", ".capped.test", "12h", "", now.Add(12 * time.Hour), false},
		{"expires_in over max_ttl", ".capped.test", "72h", "", now.Add(24 * time.Hour), true},
		{"expires_at over max_ttl", ".capped.test", "", rfc(now.Add(100 * time.Hour)), now.Add(24 * time.Hour), true},
		{"required expiry given", ".strict.test", "1h30m", "", now.Add(90 * time.Minute), false},
		{"required expiry over its max_ttl", ".strict.test", "8760h", "", now.Add(720 * time.Hour), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			user := awstest.Name("exp")
			in := input(user, rw(awstest.Name("b")+tc.bucket))
			in.Request.ExpiresIn, in.Request.ExpiresAt = tc.in, tc.at
			res, err := e.svc.Create(ctx(), in)
			if err != nil {
				t.Fatal(err)
			}
			want := tc.want.UTC().Truncate(time.Second)
			if got := expiresTag(t, e, user); got != want.Format(time.RFC3339) {
				t.Errorf("tag %s = %q, want %q", provision.TagExpiresAt, got, want.Format(time.RFC3339))
			}
			if res.ExpiresAt == nil || !res.ExpiresAt.Equal(want) || res.ExpiryCapped != tc.capped {
				t.Errorf("result expires %v capped %v, want %s capped %v", res.ExpiresAt, res.ExpiryCapped, want, tc.capped)
			}
			d, err := e.svc.Describe(ctx(), who(testCaller), user)
			if err != nil {
				t.Fatal(err)
			}
			if d.ExpiresAt == nil || !d.ExpiresAt.Equal(want) {
				t.Errorf("describe expires %v, want %s", d.ExpiresAt, want)
			}
		})
	}

	t.Run("no expiry asked, none required", func(t *testing.T) {
		user := awstest.Name("exp")
		res, err := e.svc.Create(ctx(), input(user, rw(awstest.Name("b")+".example.com")))
		if err != nil {
			t.Fatal(err)
		}
		if got := expiresTag(t, e, user); got != "" || res.ExpiresAt != nil || res.ExpiryCapped {
			t.Errorf("tag %q, result %v capped %v; want no expiry", got, res.ExpiresAt, res.ExpiryCapped)
		}
	})

	t.Run("no expiry asked under a max_ttl rule gets the cap", func(t *testing.T) {
		user := awstest.Name("exp")
		res, err := e.svc.Create(ctx(), input(user, rw(awstest.Name("b")+".capped.test")))
		if err != nil {
			t.Fatal(err)
		}
		want := now.Add(24 * time.Hour).Truncate(time.Second)
		if got := expiresTag(t, e, user); got != want.Format(time.RFC3339) || !res.ExpiryCapped {
			t.Errorf("tag %q capped %v, want %s capped", got, res.ExpiryCapped, want.Format(time.RFC3339))
		}
	})

	t.Run("the strictest grant sets the cap", func(t *testing.T) {
		user := awstest.Name("exp")
		in := input(user, rw(awstest.Name("b")+".example.com"), rw(awstest.Name("b")+".capped.test"))
		in.Request.ExpiresIn = "48h"
		res, err := e.svc.Create(ctx(), in)
		if err != nil {
			t.Fatal(err)
		}
		want := now.Add(24 * time.Hour).Truncate(time.Second)
		if got := expiresTag(t, e, user); got != want.Format(time.RFC3339) || !res.ExpiryCapped {
			t.Errorf("tag %q capped %v, want %s capped", got, res.ExpiryCapped, want.Format(time.RFC3339))
		}
	})
}

func rfc(t time.Time) string { return t.Format(time.RFC3339Nano) }

func TestExpiryRequestsRefusedBeforeAnyCall(t *testing.T) {
	e, now := expiryEnv(t)
	for _, tc := range []struct {
		name   string
		grants []policy.Grant
		in     string
		at     string
		field  string
	}{
		{"required but missing", []policy.Grant{rw(awstest.Name("b") + ".strict.test")}, "", "", "expires_in"},
		{"required by one of the grants", []policy.Grant{rw(awstest.Name("b") + ".example.com"), rw(awstest.Name("b") + ".strict.test")}, "", "", "expires_in"},
		{"both expires_in and expires_at", []policy.Grant{rw(awstest.Name("b") + ".example.com")}, "1h", rfc(now.Add(time.Hour)), "expires_in"},
		{"expires_at past by the service clock", []policy.Grant{rw(awstest.Name("b") + ".example.com")}, "", rfc(now.Add(-time.Minute)), "expires_at"},
		{"expires_at past by any clock", []policy.Grant{rw(awstest.Name("b") + ".example.com")}, "", rfc(time.Now().Add(-time.Hour)), "expires_at"},
		{"expires_at now", []policy.Grant{rw(awstest.Name("b") + ".example.com")}, "", rfc(now), "expires_at"},
		{"negative expires_in", []policy.Grant{rw(awstest.Name("b") + ".example.com")}, "-1h", "", "expires_in"},
		{"expires_in not a duration", []policy.Grant{rw(awstest.Name("b") + ".example.com")}, "tomorrow", "", "expires_in"},
		{"expires_at not RFC 3339", []policy.Grant{rw(awstest.Name("b") + ".example.com")}, "", "tomorrow", "expires_at"},
		{"expires_in over ten years", []policy.Grant{rw(awstest.Name("b") + ".example.com")}, "87601h", "", "expires_in"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			user := awstest.Name("exp")
			in := input(user, tc.grants...)
			in.Request.ExpiresIn, in.Request.ExpiresAt = tc.in, tc.at
			e.resetCounters()
			_, err := e.svc.Create(ctx(), in)
			wantKind(t, err, provision.KindInvalid)
			var pe *provision.Error
			if !errors.As(err, &pe) || !slices.ContainsFunc(pe.Fields, func(f policy.FieldError) bool { return f.Field == tc.field }) {
				t.Errorf("error %v does not name field %s", err, tc.field)
			}
			if c := e.calls.Calls(); len(c) != 0 {
				t.Errorf("refused request made calls %v", c)
			}
		})
	}
}
