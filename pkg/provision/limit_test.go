package provision_test

import (
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"

	"github.com/keyvend/keyvend/pkg/awstest"
	"github.com/keyvend/keyvend/pkg/caller"
	"github.com/keyvend/keyvend/pkg/policy"
	"github.com/keyvend/keyvend/pkg/provision"
	"github.com/keyvend/keyvend/pkg/provisiontest"
)

// limitRules: every limiter-* principal may hold 2 users on
// *.lim.example.com (rules[0]) and any number on *.free.example.com
// (rules[1]).
const limitRules = `{"rules":[
	{"principals":["limiter-*"],"buckets":["*.lim.example.com"],"access":["read-write"],"max_users":2},
	{"principals":["limiter-*"],"buckets":["*.free.example.com"],"access":["read-write"]}]}`

// limiter is a requester of its own (tests share a table across -count
// runs: a fresh requester starts with no users).
func limiter() caller.Principal {
	id := awstest.Name("limiter")
	return caller.Principal{ID: id, Raw: id}
}

// as is input(user, grants...) made by p.
func as(p caller.Principal, user string, grants ...policy.Grant) provision.CreateInput {
	in := input(user, grants...)
	in.Principal = p
	return in
}

func TestMaxUsers(t *testing.T) {
	e := newEnvOn(t, "", limitRules)
	me := limiter()
	lim := func(user string) string { return user + ".lim.example.com" }
	u1, u2, u3 := awstest.Name("lim1"), awstest.Name("lim2"), awstest.Name("lim3")
	for _, u := range []string{u1, u2} {
		if _, err := e.svc.Create(ctx(), as(me, u, rw(lim(u)))); err != nil {
			t.Fatalf("create %s: %v", u, err)
		}
	}
	// A user under the unlimited rule does not count.
	free := awstest.Name("free")
	if _, err := e.svc.Create(ctx(), as(me, free, rw(free+".free.example.com"))); err != nil {
		t.Fatalf("create under the unlimited rule: %v", err)
	}

	_, err := e.svc.Create(ctx(), as(me, u3, rw(lim(u3))))
	pe := wantKind(t, err, provision.KindLimit)
	if want := me.ID + " holds 2 users under rules[0] (max_users 2)"; !strings.Contains(pe.Detail, want) {
		t.Errorf("detail = %q, want it to say %q", pe.Detail, want)
	}
	if e.UserExists(t, u3) {
		t.Error("a create refused for its limit made the IAM user")
	}
	if _, ok := e.Record(t, u3); ok {
		t.Error("a create refused for its limit left a record")
	}

	// A retry of a create already done is its answer, not a refusal.
	res, err := e.svc.Create(ctx(), as(me, u2, rw(lim(u2))))
	if err != nil || res.Created {
		t.Fatalf("replay of %s at the limit: %+v, %v; want the same user (200)", u2, res, err)
	}

	// Another requester has its own count.
	other := as(limiter(), awstest.Name("oth"), rw(lim(awstest.Name("oth"))))
	if _, err := e.svc.Create(ctx(), other); err != nil {
		t.Fatalf("another requester: %v", err)
	}

	// Grants needing the limited rule and another one: refused (such a
	// user would count under no rule).
	split := awstest.Name("split")
	_, err = e.svc.Create(ctx(), as(me, split, rw(lim(split)), rw(split+".free.example.com")))
	if pe := wantKind(t, err, provision.KindForbidden); !strings.Contains(pe.Detail, "rules[0] has max_users") {
		t.Errorf("split detail = %q", pe.Detail)
	}

	// A deleted user frees its slot.
	if err := e.svc.Delete(ctx(), provision.DeleteInput{Principal: me, RequestID: "del-" + u1, User: u1}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.Create(ctx(), as(me, u3, rw(lim(u3)))); err != nil {
		t.Fatalf("create after a delete freed a slot: %v", err)
	}
	_, err = e.svc.Create(ctx(), as(me, awstest.Name("lim4"), rw(lim(awstest.Name("lim4")))))
	wantKind(t, err, provision.KindLimit)
}

// TestMaxUsersExpiredUserFreesASlot: a user past its expiry, not reaped
// yet, is not live.
func TestMaxUsersExpiredUserFreesASlot(t *testing.T) {
	rules := `{"rules":[{"principals":["limiter-*"],"buckets":["*.lim.example.com"],"access":["read-write"],"max_users":1}]}`
	me := limiter()
	clock := &settableClock{}
	e := newEnvOn(t, "", rules, func(s *provision.Settings) { s.Now = clock.Now })
	u1, u2 := awstest.Name("exp1"), awstest.Name("exp2")
	in := as(me, u1, rw(u1+".lim.example.com"))
	in.Request.ExpiresIn = "1h"
	if _, err := e.svc.Create(ctx(), in); err != nil {
		t.Fatal(err)
	}
	_, err := e.svc.Create(ctx(), as(me, u2, rw(u2+".lim.example.com")))
	wantKind(t, err, provision.KindLimit)
	clock.Set(time.Now().Add(2 * time.Hour))
	if _, err := e.svc.Create(ctx(), as(me, u2, rw(u2+".lim.example.com"))); err != nil {
		t.Fatalf("create once the other user expired: %v", err)
	}
}

// TestRaceMaxUsers: two services (two Lambda instances) each create a
// user for one requester holding max_users-1 users, both counting before
// either claims (a barrier at the claim's TransactWriteItems): exactly one
// succeeds, the other is refused for the limit, and only one IAM user is
// made.
func TestRaceMaxUsers(t *testing.T) {
	rules := `{"rules":[{"principals":["limiter-*"],"buckets":["*.lim.example.com"],"access":["read-write"],"max_users":2}]}`
	me := limiter()
	barrier := awstest.Barrier("TransactWriteItems", 2)
	a := build(t, "", rules, nil)
	first := awstest.Name("race0")
	if _, err := a.svc.Create(ctx(), as(me, first, rw(first+".lim.example.com"))); err != nil {
		t.Fatal(err)
	}
	svcA := a.Another(t, provisiontest.Instrument(func(c *aws.Config) { barrier.Attach(c) }))
	svcB := a.Another(t, provisiontest.Instrument(func(c *aws.Config) { barrier.Attach(c) }))
	ua, ub := awstest.Name("racea"), awstest.Name("raceb")
	errA := async(func() error { _, err := svcA.Create(ctx(), as(me, ua, rw(ua+".lim.example.com"))); return err })
	errB := async(func() error { _, err := svcB.Create(ctx(), as(me, ub, rw(ub+".lim.example.com"))); return err })
	ea, eb := <-errA, <-errB
	var won, lost string
	switch {
	case ea == nil && eb != nil:
		won, lost = ua, ub
		wantKind(t, eb, provision.KindLimit)
	case eb == nil && ea != nil:
		won, lost = ub, ua
		wantKind(t, ea, provision.KindLimit)
	default:
		t.Fatalf("a: %v, b: %v; want exactly one created and one refused for the limit", ea, eb)
	}
	if !a.UserExists(t, won) || a.UserExists(t, lost) {
		t.Errorf("IAM users: %s %v, %s %v; want only the winner's", won, a.UserExists(t, won), lost, a.UserExists(t, lost))
	}
	if _, ok := a.Record(t, lost); ok {
		t.Errorf("the refused create left a record of %s", lost)
	}
}
