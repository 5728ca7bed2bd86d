package provision_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keyvend/keyvend/pkg/approval"
	"github.com/keyvend/keyvend/pkg/awstest"
	"github.com/keyvend/keyvend/pkg/caller"
	"github.com/keyvend/keyvend/pkg/policy"
	"github.com/keyvend/keyvend/pkg/provision"
	"github.com/keyvend/keyvend/pkg/state"
)

const (
	acct          = "arn:aws:iam::123456789012:"
	approvalRules = `{"rules":[
		{"principals":["` + acct + `user/*","` + acct + `role/dev"],"buckets":["*.example.com"],"access":["read-only"]},
		{"principals":["` + acct + `user/*","` + acct + `role/dev"],"buckets":["prod.example.com"],"access":["full"],
		 "approval":{"approvers":["` + acct + `user/alice","` + acct + `user/bob","` + acct + `role/dev"],"expires_in":"1h"}},
		{"principals":["` + acct + `role/dev"],"buckets":["person.example.com"],"access":["full"],
		 "approval":{"approvers":["` + acct + `role/dev","` + acct + `user/bob"],"distinct":"person"}}
	]}`
)

var (
	apAlice = caller.Principal{ID: acct + "user/alice"}
	apBob   = caller.Principal{ID: acct + "user/bob"}
	apCarol = caller.Principal{ID: acct + "user/carol"} // may vend, approves nothing
	apDev1  = caller.Principal{ID: acct + "role/dev", Session: "arn:aws:sts::123456789012:assumed-role/dev/s1"}
	apDev2  = caller.Principal{ID: acct + "role/dev", Session: "arn:aws:sts::123456789012:assumed-role/dev/s2"}

	prodFull = policy.Grant{Bucket: "prod.example.com", Access: "full"}
	prodRO   = policy.Grant{Bucket: "prod.example.com", Access: "read-only"}
)

// clock is a settable service clock.
type apClock struct {
	mu sync.Mutex
	at time.Time
}

func (c *apClock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.at }

func (c *apClock) advance(d time.Duration) { c.mu.Lock(); c.at = c.at.Add(d); c.mu.Unlock() }

// approvalEnv is a service where apAlice acts and another, on the same
// state table, where the approvers act: two people, two processes.
type approvalEnv struct {
	*env
	other *provision.Service
	clock *apClock
}

func newApprovalEnv(t *testing.T) *approvalEnv {
	t.Helper()
	c := &apClock{at: time.Now().UTC()}
	e := newEnvOn(t, "", approvalRules, func(s *provision.Settings) { s.Now = c.now })
	return &approvalEnv{env: e, other: e.service(t, approvalRules, func(s *provision.Settings) { s.Now = c.now }), clock: c}
}

func createReq(user string, gs ...policy.Grant) provision.CreateRequest {
	return provision.CreateRequest{User: user, Grants: gs, Reason: "needs prod"}
}

// pendingOf asserts err is *provision.Pending and returns its request.
func pendingOf(t *testing.T, err error) *provision.Pending {
	t.Helper()
	var p *provision.Pending
	if !errors.As(err, &p) {
		t.Fatalf("want *provision.Pending, got %v", err)
	}
	return p
}

func apHistory(t *testing.T, st *state.Store, user string) []state.History {
	t.Helper()
	page, err := st.History(context.Background(), user, 50, "")
	if err != nil {
		t.Fatal(err)
	}
	return page.Entries
}

func entryOf(entries []state.History, action string) *state.History {
	for i := range entries {
		if entries[i].Action == action {
			return &entries[i]
		}
	}
	return nil
}

func TestApprovalRequestApprovedByAnother(t *testing.T) {
	e := newApprovalEnv(t)
	ctx := context.Background()
	user := awstest.Name("apr-flow")

	_, err := e.svc.Create(ctx, provision.CreateInput{Principal: apAlice, RequestID: "req-1", Request: createReq(user, prodRO, prodFull)})
	p := pendingOf(t, err)
	r := p.Request
	if p.Existing || r.Status != approval.Pending || r.Requester != apAlice.ID || r.Kind != approval.Create || len(r.Needs) != 1 || r.Needs[0].Grant != prodFull {
		t.Fatalf("pending request = %+v", r)
	}
	if !r.ExpiresAt.Equal(r.CreatedAt.Add(time.Hour)) {
		t.Errorf("expires at %s, want created + 1h (the rule's expires_in)", r.ExpiresAt)
	}
	if e.UserExists(t, user) {
		t.Fatal("a pending request provisioned the user")
	}

	// Nobody but the requester and the approvers sees it.
	if _, err := e.other.GetRequest(ctx, apCarol, r.ID); provision.KindOf(err) != provision.KindNotFound {
		t.Errorf("apCarol GetRequest: %v, want not-found", err)
	}
	if got, err := e.other.GetRequest(ctx, apBob, r.ID); err != nil || got.ID != r.ID {
		t.Fatalf("apBob GetRequest: %v", err)
	}
	// The requester may not approve it, nor may someone who is not an approver.
	_, err = e.svc.Decide(ctx, provision.DecideInput{Principal: apAlice, RequestID: "req-2", ID: r.ID, Approve: true})
	wantKind(t, err, provision.KindForbidden)
	_, err = e.other.Decide(ctx, provision.DecideInput{Principal: apCarol, RequestID: "req-3", ID: r.ID, Approve: true})
	wantKind(t, err, provision.KindNotFound)
	if got, _ := e.svc.GetRequest(ctx, apAlice, r.ID); got.Status != approval.Pending || len(got.Decisions) != 0 {
		t.Fatalf("refused decisions changed the request: %+v", got)
	}

	got, err := e.other.Decide(ctx, provision.DecideInput{Principal: apBob, RequestID: "req-4", ID: r.ID, Approve: true, Reason: "ticket 42"})
	if err != nil {
		t.Fatal(err)
	}
	if got.Status != approval.Provisioned || got.Answer == nil || got.Answer.Status != 201 {
		t.Fatalf("after approval: status %s answer %+v", got.Status, got.Answer)
	}
	if strings.Contains(string(got.Answer.Body), "SecretAccessKey") || !strings.Contains(string(got.Answer.Body), `"access_key_id"`) {
		t.Errorf("answer body %s: want the create's answer, without a secret", got.Answer.Body)
	}
	if !e.UserExists(t, user) || len(e.Keys(t, user)) != 1 {
		t.Fatalf("approved: user %s not provisioned with one key", user)
	}
	e.assertGrants(t, user, prodRO, prodFull)
	rec, ok := e.Record(t, user)
	if !ok || rec.Requester != apAlice.ID {
		t.Fatalf("record %+v: want apAlice as the requester", rec)
	}
	h := apHistory(t, e.store, user)
	for _, want := range []struct{ action, principal string }{
		{"approval-request", apAlice.ID}, {"approval-approve", apBob.ID}, {"create", apAlice.ID},
	} {
		en := entryOf(h, want.action)
		if en == nil || en.Principal != want.principal {
			t.Errorf("history %s entry %+v: want principal %s", want.action, en, want.principal)
		}
	}
	if c := entryOf(h, "create"); c != nil {
		by, _ := c.Inputs["approved_by"].([]any)
		if len(by) != 1 || by[0] != apBob.ID || c.Inputs["approval_request"] != r.ID {
			t.Errorf("create entry inputs %v: want approved_by apBob and the request", c.Inputs)
		}
	}
	// A decision on a closed request is a conflict, and changes nothing.
	_, err = e.svc.Decide(ctx, provision.DecideInput{Principal: apDev1, RequestID: "req-5", ID: r.ID, Approve: true})
	wantKind(t, err, provision.KindConflict)
}

func TestApprovalDenied(t *testing.T) {
	e := newApprovalEnv(t)
	ctx := context.Background()
	user := awstest.Name("apr-deny")
	_, err := e.svc.Create(ctx, provision.CreateInput{Principal: apAlice, RequestID: "r1", Request: createReq(user, prodFull)})
	r := pendingOf(t, err).Request

	_, err = e.other.Decide(ctx, provision.DecideInput{Principal: apBob, RequestID: "r2", ID: r.ID})
	wantKind(t, err, provision.KindInvalid) // a denial says why
	got, err := e.other.Decide(ctx, provision.DecideInput{Principal: apBob, RequestID: "r3", ID: r.ID, Reason: "not this week"})
	if err != nil || got.Status != approval.Denied {
		t.Fatalf("deny: %v, %+v", err, got)
	}
	if e.UserExists(t, user) {
		t.Fatal("a denied request was provisioned")
	}
	_, err = e.svc.Decide(ctx, provision.DecideInput{Principal: apDev1, RequestID: "r4", ID: r.ID, Approve: true})
	wantKind(t, err, provision.KindConflict)
	if en := entryOf(apHistory(t, e.store, user), "approval-deny"); en == nil || en.Principal != apBob.ID || en.Inputs["reason"] != "not this week" {
		t.Errorf("deny entry %+v", en)
	}
	// Denied, the same request may be asked again: a new request.
	_, err = e.svc.Create(ctx, provision.CreateInput{Principal: apAlice, RequestID: "r5", Request: createReq(user, prodFull)})
	if again := pendingOf(t, err); again.Existing || again.Request.ID == r.ID {
		t.Errorf("asked again after a denial: %+v", again)
	}
}

func TestApprovalExpires(t *testing.T) {
	e := newApprovalEnv(t)
	ctx := context.Background()
	user := awstest.Name("apr-exp")
	_, err := e.svc.Create(ctx, provision.CreateInput{Principal: apAlice, RequestID: "r1", Request: createReq(user, prodFull)})
	r := pendingOf(t, err).Request

	e.clock.advance(time.Hour + time.Second)
	_, err = e.other.Decide(ctx, provision.DecideInput{Principal: apBob, RequestID: "r2", ID: r.ID, Approve: true})
	wantKind(t, err, provision.KindGone)
	if e.UserExists(t, user) {
		t.Fatal("an expired request was provisioned")
	}
	got, err := e.svc.GetRequest(ctx, apAlice, r.ID)
	if err != nil || got.Status != approval.Expired || len(got.Decisions) != 0 {
		t.Fatalf("after expiry: %v %+v", err, got)
	}
	if en := entryOf(apHistory(t, e.store, user), "approval-expire"); en == nil {
		t.Error("no approval-expire history entry")
	}
	// Expired, an identical request is a new one.
	_, err = e.svc.Create(ctx, provision.CreateInput{Principal: apAlice, RequestID: "r3", Request: createReq(user, prodFull)})
	if again := pendingOf(t, err); again.Existing || again.Request.ID == r.ID {
		t.Errorf("asked again after expiry: %+v", again)
	}
}

func TestApprovalExpiredByTheReaperSweep(t *testing.T) {
	e := newApprovalEnv(t)
	ctx := context.Background()
	user := awstest.Name("apr-sweep")
	_, err := e.svc.Create(ctx, provision.CreateInput{Principal: apAlice, RequestID: "r1", Request: createReq(user, prodFull)})
	r := pendingOf(t, err).Request
	if n, err := e.svc.ExpireRequests(ctx); err != nil || n != 0 {
		t.Fatalf("sweep before expiry: %d, %v", n, err)
	}
	e.clock.advance(2 * time.Hour)
	if _, err := e.other.Reap(ctx); err != nil { // the reaper's run sweeps the queue
		t.Fatal(err)
	}
	// Read straight from the table: a GetRequest would expire it itself.
	got, err := approval.New(e.store.DB(), e.store.Table()).Get(ctx, r.ID)
	if err != nil || got.Status != approval.Expired {
		t.Fatalf("after the reaper's run: %v, status %s", err, got.Status)
	}
	if en := entryOf(apHistory(t, e.store, user), "approval-expire"); en == nil || en.Principal != "keyvend" {
		t.Errorf("expire entry %+v", en)
	}
	if n, err := e.svc.ExpireRequests(ctx); err != nil || n != 0 {
		t.Errorf("a second sweep expired %d (%v), want 0", n, err)
	}
}

func TestApprovalIdenticalRequestNotDuplicated(t *testing.T) {
	e := newApprovalEnv(t)
	ctx := context.Background()
	user := awstest.Name("apr-dup")
	_, err := e.svc.Create(ctx, provision.CreateInput{Principal: apAlice, RequestID: "r1", Request: createReq(user, prodFull)})
	first := pendingOf(t, err)
	_, err = e.other.Create(ctx, provision.CreateInput{Principal: apAlice, RequestID: "r2", Request: createReq(user, prodFull)})
	second := pendingOf(t, err)
	if !second.Existing || second.Request.ID != first.Request.ID {
		t.Fatalf("identical request: %+v, want the first (%s)", second, first.Request.ID)
	}
	// Another requester asking the same is another request.
	_, err = e.svc.Create(ctx, provision.CreateInput{Principal: apCarol, RequestID: "r3", Request: createReq(user, prodFull)})
	if third := pendingOf(t, err); third.Existing || third.Request.ID == first.Request.ID {
		t.Fatalf("apCarol's request: %+v", third)
	}
	count := func(p caller.Principal, status approval.Status) int {
		l, err := e.svc.ListRequests(ctx, provision.ListRequestsInput{Principal: p, Status: status})
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, r := range l.Requests {
			if r.User == user {
				n++
			}
		}
		return n
	}
	if n := count(apAlice, ""); n != 2 { // her own, and apCarol's she may approve
		t.Errorf("apAlice lists %d requests for %s, want 2", n, user)
	}
	if n := count(apBob, approval.Pending); n != 2 {
		t.Errorf("apBob's queue has %d requests for %s, want 2", n, user)
	}
	if n := count(apCarol, approval.Pending); n != 1 { // her own only: she approves nothing
		t.Errorf("apCarol lists %d, want 1", n)
	}
	if n := count(apBob, approval.Denied); n != 0 {
		t.Errorf("apBob lists %d denied, want 0", n)
	}
	if _, err := e.svc.ListRequests(ctx, provision.ListRequestsInput{Principal: apBob, Status: "waiting"}); provision.KindOf(err) != provision.KindInvalid {
		t.Errorf("unknown status: %v, want invalid", err)
	}
}

func TestApprovalRacingApprovalsProvisionOnce(t *testing.T) {
	e := newApprovalEnv(t)
	ctx := context.Background()
	user := awstest.Name("apr-race")
	_, err := e.svc.Create(ctx, provision.CreateInput{Principal: apAlice, RequestID: "r1", Request: createReq(user, prodFull)})
	r := pendingOf(t, err).Request
	e.resetCounters()

	var wg sync.WaitGroup
	results := make([]error, 2)
	for i, d := range []struct {
		svc *provision.Service
		p   caller.Principal
	}{{e.svc, apBob}, {e.other, apDev1}} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, results[i] = d.svc.Decide(ctx, provision.DecideInput{Principal: d.p, RequestID: "race", ID: r.ID, Approve: true})
		}()
	}
	wg.Wait()
	ok, conflicts := 0, 0
	for _, err := range results {
		switch provision.KindOf(err) {
		case 0:
			if err == nil {
				ok++
			}
		case provision.KindConflict:
			conflicts++
		}
	}
	if ok != 1 || conflicts != 1 {
		t.Fatalf("racing approvals: %v; want one to provision, the other a conflict", results)
	}
	if n := e.calls.Count("CreateUser"); n != 1 {
		t.Errorf("CreateUser called %d times, want 1", n)
	}
	got, _ := e.svc.GetRequest(ctx, apAlice, r.ID)
	if got.Status != approval.Provisioned || len(got.Decisions) != 1 {
		t.Errorf("request %s with %d decisions", got.Status, len(got.Decisions))
	}
}

func TestApprovalDistinct(t *testing.T) {
	e := newApprovalEnv(t)
	ctx := context.Background()
	// Default: distinct principals as recorded — another session of the
	// requester's role is someone else.
	user := awstest.Name("apr-principal")
	_, err := e.svc.Create(ctx, provision.CreateInput{Principal: apDev1, RequestID: "r1", Request: createReq(user, prodFull)})
	r := pendingOf(t, err).Request
	_, err = e.svc.Decide(ctx, provision.DecideInput{Principal: apDev1, RequestID: "r2", ID: r.ID, Approve: true})
	wantKind(t, err, provision.KindForbidden)
	got, err := e.other.Decide(ctx, provision.DecideInput{Principal: apDev2, RequestID: "r3", ID: r.ID, Approve: true})
	if err != nil || got.Status != approval.Provisioned {
		t.Fatalf("apDev2 approving apDev1's: %v %+v", err, got)
	}
	// "distinct": "person": no session of the requester's role counts.
	user = awstest.Name("apr-person")
	_, err = e.svc.Create(ctx, provision.CreateInput{Principal: apDev1, RequestID: "r4", Request: createReq(user, policy.Grant{Bucket: "person.example.com", Access: "full"})})
	r = pendingOf(t, err).Request
	_, err = e.other.Decide(ctx, provision.DecideInput{Principal: apDev2, RequestID: "r5", ID: r.ID, Approve: true})
	wantKind(t, err, provision.KindForbidden)
	if got, _ := e.svc.GetRequest(ctx, apDev1, r.ID); got.Status != approval.Pending || len(got.Decisions) != 0 {
		t.Fatalf("a refused decision changed the request: %+v", got)
	}
	got, err = e.other.Decide(ctx, provision.DecideInput{Principal: apBob, RequestID: "r6", ID: r.ID, Approve: true})
	if err != nil || got.Status != approval.Provisioned {
		t.Fatalf("apBob approving: %v %+v", err, got)
	}
}

func TestApprovalUpdateGrants(t *testing.T) {
	e := newApprovalEnv(t)
	ctx := context.Background()
	user := awstest.Name("apr-put")
	res, err := e.svc.Create(ctx, provision.CreateInput{Principal: apAlice, RequestID: "r1", Request: createReq(user, prodRO)})
	if err != nil || !res.Created {
		t.Fatalf("read-only needs no approval: %v", err)
	}
	d, err := e.svc.Describe(ctx, apAlice, user)
	if err != nil {
		t.Fatal(err)
	}
	_, err = e.svc.UpdateGrants(ctx, provision.UpdateGrantsInput{Principal: apAlice, RequestID: "r2", User: user, Grants: []policy.Grant{prodRO, prodFull}, IfMatch: d.Version})
	r := pendingOf(t, err).Request
	if r.Kind != approval.UpdateGrants || len(r.Needs) != 1 || r.Needs[0].Grant != prodFull {
		t.Fatalf("pending update %+v", r)
	}
	e.assertGrants(t, user, prodRO)
	// Someone who may not change the user cannot even ask.
	_, err = e.svc.UpdateGrants(ctx, provision.UpdateGrantsInput{Principal: apCarol, RequestID: "r3", User: user, Grants: []policy.Grant{prodFull}})
	if provision.KindOf(err) != provision.KindNotFound && provision.KindOf(err) != provision.KindForbidden {
		t.Fatalf("apCarol's update: %v, want refused", err)
	}
	got, err := e.other.Decide(ctx, provision.DecideInput{Principal: apBob, RequestID: "r4", ID: r.ID, Approve: true})
	if err != nil || got.Status != approval.Provisioned || got.Answer.Status != 200 {
		t.Fatalf("approved update: %v %+v", err, got)
	}
	e.assertGrants(t, user, prodRO, prodFull)
	if en := entryOf(apHistory(t, e.store, user), "update"); en == nil || en.Principal != apAlice.ID || en.Inputs["approval_request"] != r.ID {
		t.Errorf("update entry %+v", en)
	}
	// Keeping a grant the user holds needs no approval again.
	_, err = e.svc.UpdateGrants(ctx, provision.UpdateGrantsInput{Principal: apAlice, RequestID: "r5", User: user, Grants: []policy.Grant{prodFull}})
	if err != nil {
		t.Fatalf("keeping an approved grant: %v", err)
	}
	e.assertGrants(t, user, prodFull)
}

// A create that needs approval for a name already taken is a conflict at
// once: it never waits, nor writes to the other user's history.
func TestApprovalNameTaken(t *testing.T) {
	e := newApprovalEnv(t)
	ctx := context.Background()
	user := awstest.Name("apr-taken")
	if _, err := e.svc.Create(ctx, provision.CreateInput{Principal: apAlice, RequestID: "r1", Request: createReq(user, prodRO)}); err != nil {
		t.Fatal(err)
	}
	_, err := e.other.Create(ctx, provision.CreateInput{Principal: apCarol, RequestID: "r2", Request: createReq(user, prodFull)})
	wantKind(t, err, provision.KindConflict)
	if en := entryOf(apHistory(t, e.store, user), "approval-request"); en != nil {
		t.Errorf("a refused request wrote %+v to the history of %s", en, user)
	}
	if l, _ := e.svc.ListRequests(ctx, provision.ListRequestsInput{Principal: apCarol}); len(l.Requests) != 0 {
		t.Errorf("carol has requests: %+v", l.Requests)
	}
}
