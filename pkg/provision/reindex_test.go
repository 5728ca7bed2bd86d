package provision_test

import (
	"slices"
	"testing"
	"time"

	"github.com/keyvend/keyvend/pkg/awstest"
	"github.com/keyvend/keyvend/pkg/policy"
	"github.com/keyvend/keyvend/pkg/provision"
)

// TestReindex: after upgrading a deployment that vended users before the
// state table, Reindex records every keyvend user the table lacks, as IAM
// and Secrets Manager hold it, writing nothing there; users keyvend
// recorded and users that are not keyvend's are left alone; a second run
// adopts nothing. The reaper then treats what it recorded as it treats
// any legacy user: a half-made user (no secret) is deprovisioned once old,
// and a user whose secret holds a deleted key is restocked, not removed.
func TestReindex(t *testing.T) {
	srv := awstest.Dedicated(t)
	clock := &settableClock{}
	e := serialEnv(t, newEnvOn(t, srv.URL, testRules, func(s *provision.Settings) { s.Now = clock.Now }))
	store := tableOf(t, e)
	grant := rw("reindex.example.com")

	legacy := map[string]string{} // complete users made by hand: user → key
	for range 3 {
		u, k := handMade(t, e, "reidx", grant)
		legacy[u] = k
	}
	dead, deadKey := handMade(t, e, "reidx-dead", grant)
	deleteKey(t, e, dead, deadKey)
	halfMade := awstest.Name("reidx-half")
	mustCreateUser(t, e.iam, halfMade, "/keyvend/", managedTags(testCaller))
	e.grant(t, halfMade, grant)
	recorded, recordedKey := vended(t, e, grant)
	before := recordOf(t, store, recorded)
	untagged := awstest.Name("reidx-untagged")
	mustCreateUser(t, e.iam, untagged, "/keyvend/", managedTags(testCaller)[1:])
	outside := awstest.Name("reidx-outside")
	mustCreateUser(t, e.iam, outside, "/", managedTags(testCaller))

	e.resetCounters()
	rep, err := e.svc.Reindex(ctx())
	if err != nil {
		t.Fatal(err)
	}
	adopted := []string{dead, halfMade}
	for u := range legacy {
		adopted = append(adopted, u)
	}
	wantReport(t, rep, reapReport{checked: 6, adopted: adopted})
	if !rep.Reconciled.Users {
		t.Error("reindex did not walk every user")
	}
	if w := e.calls.Writes(); len(w) != 0 {
		t.Errorf("reindex wrote %v in IAM or Secrets Manager", w)
	}
	for u, k := range legacy {
		rec := wantReadyRecord(t, store, u, k)
		if rec != nil && (rec.Requester != testCaller || !slices.Equal(rec.Grants, []policy.Grant{grant}) || rec.UserARN == "") {
			t.Errorf("record of %s: requester %q grants %v arn %q", u, rec.Requester, rec.Grants, rec.UserARN)
		}
		wantHistory(t, store, u, "adopt")
	}
	for _, u := range []string{dead, halfMade} {
		if rec := recordOf(t, store, u); rec == nil || rec.Busy(time.Now()) {
			t.Errorf("record of %s: %+v, want one, not held", u, rec)
		}
	}
	if after := recordOf(t, store, recorded); after == nil || after.Version != before.Version || after.KeyID != recordedKey {
		t.Errorf("record of %s, which had one, changed: %+v", recorded, after)
	}
	for _, u := range []string{untagged, outside} {
		if rec := recordOf(t, store, u); rec != nil {
			t.Errorf("%s, not keyvend's, was recorded", u)
		}
	}

	e.resetCounters()
	rep, err = e.svc.Reindex(ctx())
	if err != nil {
		t.Fatal(err)
	}
	wantReport(t, rep, reapReport{checked: 6})
	if w := e.calls.Writes(); len(w) != 0 {
		t.Errorf("second reindex wrote %v", w)
	}

	clock.Set(time.Now().Add(2 * time.Hour))
	rep, err = e.svc.Reap(ctx())
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Errors) != 0 || !slices.Equal(rep.HalfMadeDeleted, []string{halfMade}) || !slices.Equal(rep.Repaired, []string{dead}) {
		t.Errorf("reap after reindex: half-made deleted %v, repaired %v, errors %v; want [%s], [%s], none", rep.HalfMadeDeleted, rep.Repaired, rep.Errors, halfMade, dead)
	}
	if e.UserExists(t, halfMade) {
		t.Errorf("half-made %s still exists", halfMade)
	}
	keys := e.Keys(t, dead)
	if len(keys) != 1 || e.MustCredential(t, dead).AccessKeyID != keys[0] {
		t.Fatalf("%s: keys %v, want one new key in its secret", dead, keys)
	}
	wantReadyRecord(t, store, dead, keys[0])
	for u, k := range legacy {
		if got := e.Keys(t, u); !slices.Equal(got, []string{k}) {
			t.Errorf("keys of %s = %v, want %s", u, got, k)
		}
	}
}
