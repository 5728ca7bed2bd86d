package provision_test

// PUT grants applies the expiry rules a create would, for the new grants.

import (
	"testing"
	"time"

	"github.com/keyvend/keyvend/pkg/awstest"
	"github.com/keyvend/keyvend/pkg/grants"
	"github.com/keyvend/keyvend/pkg/policy"
	"github.com/keyvend/keyvend/pkg/provision"
)

// TestUpdateAppliesTheExpiryRules: PUT grants decides the user's expiry
// with require_expiry and max_ttl of the rules covering the NEW grants,
// as a create does (expiryRules: *.capped.test at most 24h, *.strict.test
// only with an expiry, at most 720h). Without a lifetime in the update,
// what is left of the current expiry is what is decided on: none where
// one is required is refused (KindInvalid on expires_in, nothing
// changed); a max_ttl sets or caps it (tag keyvend:expires-at,
// expiry_capped); one already shorter is kept. A lifetime in the update
// is validated (refused before any call) and applied, capped too.
//
// Old code (d068f18): UpdateInput had no Lifetime and UpdateGrants never
// looked at expiry. The cases without a lifetime, ported there and run,
// fail: "none asked for" is accepted (and on *.capped.test no expiry is
// set), "longer current expiry" keeps 72h; the ones with a lifetime do
// not compile there. "shorter current expiry kept" passes there (nothing
// ever changed the expiry) and is here as the other side of the cap.
func TestUpdateAppliesTheExpiryRules(t *testing.T) {
	bothModes(t, func(t *testing.T, mode grants.Mode) {
		now := time.Now().UTC().Add(3*time.Hour + 123*time.Millisecond)
		e := newEnvOn(t, "", expiryRules, grantMode(mode), func(s *provision.Settings) { s.Now = func() time.Time { return now } })
		at := func(d time.Duration) string { return now.Add(d).UTC().Truncate(time.Second).Format(time.RFC3339) }

		for _, tc := range []struct {
			name      string
			createdIn string // the user's expires_in at create ("" none)
			to        string // the new grant's bucket suffix
			lifetime  provision.Lifetime
			// the outcome: an invalid field, or the expires-at tag ("" none;
			// "kept" the one it had) and expiry_capped
			field    string
			noCalls  bool
			wantTag  string
			capped   bool
			keptFrom bool
		}{
			{name: "require_expiry, none asked for", to: ".strict.test", field: "expires_in"},
			{name: "require_expiry, lifetime given", to: ".strict.test", lifetime: provision.Lifetime{ExpiresIn: "48h"}, wantTag: at(48 * time.Hour)},
			{name: "require_expiry, current expiry", createdIn: "100h", to: ".strict.test", keptFrom: true},
			{name: "max_ttl, none asked for", to: ".capped.test", wantTag: at(24 * time.Hour), capped: true},
			{name: "max_ttl, longer expires_in", to: ".capped.test", lifetime: provision.Lifetime{ExpiresIn: "72h"}, wantTag: at(24 * time.Hour), capped: true},
			{name: "max_ttl, later expires_at", to: ".capped.test", lifetime: provision.Lifetime{ExpiresAt: rfc(now.Add(48 * time.Hour))}, wantTag: at(24 * time.Hour), capped: true},
			{name: "max_ttl, shorter expires_in", to: ".capped.test", lifetime: provision.Lifetime{ExpiresIn: "2h"}, wantTag: at(2 * time.Hour)},
			{name: "max_ttl, shorter current expiry kept", createdIn: "3h", to: ".capped.test", keptFrom: true},
			{name: "max_ttl, longer current expiry capped", createdIn: "72h", to: ".capped.test", wantTag: at(24 * time.Hour), capped: true},
			{name: "lifetime given, no rule limits it", createdIn: "72h", to: ".example.com", lifetime: provision.Lifetime{ExpiresIn: "5h"}, wantTag: at(5 * time.Hour)},
			{name: "invalid expires_in", to: ".capped.test", lifetime: provision.Lifetime{ExpiresIn: "soon"}, field: "expires_in", noCalls: true},
			{name: "expires_at in the past", to: ".capped.test", lifetime: provision.Lifetime{ExpiresAt: rfc(now.Add(-time.Hour))}, field: "expires_at", noCalls: true},
			{name: "both given", to: ".capped.test", lifetime: provision.Lifetime{ExpiresIn: "1h", ExpiresAt: rfc(now.Add(time.Hour))}, field: "expires_in", noCalls: true},
		} {
			t.Run(tc.name, func(t *testing.T) {
				had := rw(semBucket("exp"))
				in := input(awstest.Name("exp"), had)
				in.Request.ExpiresIn = tc.createdIn
				if _, err := e.svc.Create(ctx(), in); err != nil {
					t.Fatal(err)
				}
				user := in.Request.User
				tagBefore := expiresTag(t, e, user)
				stateBefore := fenceIAMState(t, e, user)
				next := policy.Grant{Bucket: awstest.Name("exp") + tc.to, Access: policy.ReadOnly}

				e.resetCounters()
				up := updInput(testCaller, user, []policy.Grant{next})
				up.Lifetime = tc.lifetime
				d, err := e.svc.UpdateGrants(ctx(), up)
				if tc.field != "" {
					pe := wantKind(t, err, provision.KindInvalid)
					if len(pe.Fields) != 1 || pe.Fields[0].Field != tc.field {
						t.Errorf("field errors %+v, want one on %s", pe.Fields, tc.field)
					}
					if w := e.calls.Writes(); len(w) != 0 {
						t.Errorf("refused update wrote: %s", opsLine(w))
					}
					if c := e.calls.Calls(); tc.noCalls && len(c) != 0 {
						t.Errorf("invalid update made calls: %s", opsLine(c))
					}
					if got := fenceIAMState(t, e, user); got != stateBefore {
						t.Errorf("refused update changed the user:\n%s\nwas\n%s", got, stateBefore)
					}
					e.assertGrants(t, user, had)
					return
				}
				if err != nil {
					t.Fatal(err)
				}
				want := tc.wantTag
				if tc.keptFrom {
					if tagBefore == "" {
						t.Fatal("user created without an expiry")
					}
					want = tagBefore
				}
				if got := expiresTag(t, e, user); got != want {
					t.Errorf("expires-at tag %q, want %q", got, want)
				}
				if d.ExpiresAt == nil || d.ExpiresAt.UTC().Format(time.RFC3339) != want || d.ExpiryCapped != tc.capped {
					t.Errorf("answer expires_at %v capped %v, want %s capped %v", d.ExpiresAt, d.ExpiryCapped, want, tc.capped)
				}
				e.assertGrants(t, user, next)
			})
		}
	})
}
