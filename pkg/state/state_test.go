package state_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/keyvend/keyvend/pkg/awstest"
	"github.com/keyvend/keyvend/pkg/policy"
	"github.com/keyvend/keyvend/pkg/state"
)

func TestMain(m *testing.M) { awstest.Main(m) }

func ctx() context.Context { return context.Background() }

// newStore is a store on a fresh table of the package's moto.
func newStore(t *testing.T) (*state.Store, *dynamodb.Client) {
	t.Helper()
	cfg := awstest.Config(t, awstest.Shared(t).URL)
	db := dynamodb.NewFromConfig(cfg)
	table := awstest.Name("state")
	if err := state.CreateTable(ctx(), db, table); err != nil {
		t.Fatal(err)
	}
	s, err := state.New(db, table)
	if err != nil {
		t.Fatal(err)
	}
	return s, db
}

func grant(b string) policy.Grant { return policy.Grant{Bucket: b, Access: policy.ReadWrite} }

func newRecord(name string, grants ...policy.Grant) state.Record {
	return state.Record{Name: name, Phase: state.Creating, Grants: grants, Requester: "arn:aws:iam::1:user/alice", Intact: true, CreatedAt: time.Now()}
}

// TestClaimIsOncePerName: one claim per name, case-insensitively, as IAM
// names are unique.
func TestClaimIsOncePerName(t *testing.T) {
	s, _ := newStore(t)
	if _, err := s.Claim(ctx(), newRecord("Alice", grant("a.example.com")), "req-1", time.Minute); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"Alice", "alice", "ALICE"} {
		if _, err := s.Claim(ctx(), newRecord(name, grant("a.example.com")), "req-2", time.Minute); !errors.Is(err, state.ErrExists) {
			t.Errorf("second claim of %s: %v, want ErrExists", name, err)
		}
	}
	r, err := s.Get(ctx(), "alice")
	if err != nil || r.Name != "Alice" || r.Version != 1 || r.LeaseHolder != "req-1" || r.Phase != state.Creating {
		t.Errorf("record %+v, %v", r, err)
	}
}

// TestLease: a live lease is exclusive; its holder may take it again; a
// stale one is taken over by exactly one of two takers; release is only
// the holder's.
func TestLease(t *testing.T) {
	s, _ := newStore(t)
	clock := time.Now()
	s.SetClock(func() time.Time { return clock })
	if _, err := s.Claim(ctx(), newRecord("bob", grant("b.example.com")), "a", time.Minute); err != nil {
		t.Fatal(err)
	}
	if r, err := s.Lease(ctx(), "bob", "b", time.Minute, state.LeaseOpts{}); !errors.Is(err, state.ErrBusy) || r == nil || r.LeaseHolder != "a" {
		t.Errorf("live lease taken by another: %+v, %v", r, err)
	}
	if _, err := s.Lease(ctx(), "bob", "a", time.Minute, state.LeaseOpts{}); err != nil {
		t.Errorf("the holder's own lease: %v", err)
	}
	if err := s.Release(ctx(), "bob", "b"); !errors.Is(err, state.ErrLeaseLost) {
		t.Errorf("release by a non-holder: %v, want ErrLeaseLost", err)
	}
	// a's lease goes stale: of two takers, exactly one gets it.
	clock = clock.Add(2 * time.Minute)
	var wins, busy int
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, who := range []string{"c", "d", "e", "f"} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := s.Lease(ctx(), "bob", who, time.Minute, state.LeaseOpts{})
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				wins++
			case errors.Is(err, state.ErrBusy):
				busy++
			default:
				t.Errorf("%s: %v", who, err)
			}
		}()
	}
	wg.Wait()
	if wins != 1 || busy != 3 {
		t.Errorf("stale lease: %d took it, %d busy; want exactly one", wins, busy)
	}
	if _, err := s.Lease(ctx(), "nobody", "a", time.Minute, state.LeaseOpts{}); !errors.Is(err, state.ErrNotFound) {
		t.Errorf("lease of no record: %v", err)
	}
}

// TestLeaseConditions: the version (If-Match) and the phase are checked in
// the same write; a delete marks the user Deleting as it leases it.
func TestLeaseConditions(t *testing.T) {
	s, _ := newStore(t)
	r, err := s.Claim(ctx(), newRecord("carol", grant("c.example.com")), "a", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	r2, err := s.Commit(ctx(), state.Change{Holder: "a", Prev: r, Next: func() state.Record { n := *r; n.Phase = state.Ready; return n }()})
	if err != nil || r2.Version != 2 || r2.LeaseHolder != "" {
		t.Fatalf("commit: %+v, %v", r2, err)
	}
	if _, err := s.Lease(ctx(), "carol", "b", time.Minute, state.LeaseOpts{Version: 1}); !errors.Is(err, state.ErrVersion) {
		t.Errorf("lease at version 1: %v, want ErrVersion", err)
	}
	if _, err := s.Lease(ctx(), "carol", "b", time.Minute, state.LeaseOpts{Phases: []state.Phase{state.Creating}}); !errors.Is(err, state.ErrPhase) {
		t.Errorf("lease of a ready user as creating: %v, want ErrPhase", err)
	}
	got, err := s.Lease(ctx(), "carol", "b", time.Minute, state.LeaseOpts{Version: 2, Phases: []state.Phase{state.Ready}, SetPhase: state.Deleting})
	if err != nil || got.Phase != state.Deleting || got.LeaseHolder != "b" || got.Version != 2 {
		t.Errorf("lease for delete: %+v, %v", got, err)
	}
}

// TestCommitNeedsTheLease: a change is written only by the lease's holder
// at the version it leased; one who lost its lease (stale, taken over)
// writes nothing.
func TestCommitNeedsTheLease(t *testing.T) {
	s, _ := newStore(t)
	clock := time.Now()
	s.SetClock(func() time.Time { return clock })
	r, err := s.Claim(ctx(), newRecord("dave", grant("d1.example.com")), "a", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	clock = clock.Add(2 * time.Minute) // a's lease is stale
	if _, err := s.Lease(ctx(), "dave", "b", time.Minute, state.LeaseOpts{}); err != nil {
		t.Fatal(err)
	}
	next := *r
	next.Phase, next.Grants = state.Ready, []policy.Grant{grant("d2.example.com")}
	if _, err := s.Commit(ctx(), state.Change{Holder: "a", Prev: r, Next: next}); !errors.Is(err, state.ErrLeaseLost) {
		t.Errorf("commit after the lease was taken over: %v, want ErrLeaseLost", err)
	}
	got, _ := s.Get(ctx(), "dave")
	if got.Phase != state.Creating || got.Grants[0].Bucket != "d1.example.com" || got.LeaseHolder != "b" {
		t.Errorf("the lost commit wrote: %+v", got)
	}
	if err := s.Remove(ctx(), "a", r, nil); !errors.Is(err, state.ErrLeaseLost) {
		t.Errorf("remove after the lease was taken over: %v", err)
	}
}

// TestListAndIndexes: listing by bucket, by requester and in all reads one
// page per query; the per-bucket summaries follow the grants; pages are
// stable under deletes; tokens are bound to their query and cannot be
// forged.
func TestListAndIndexes(t *testing.T) {
	s, _ := newStore(t)
	var names []string
	for i := range 12 {
		name := fmt.Sprintf("u%02d", i)
		names = append(names, name)
		r := newRecord(name, grant(fmt.Sprintf("b%d.example.com", i%3)))
		if i%4 == 0 {
			r.Requester = "arn:aws:iam::1:user/bob"
		}
		claimed, err := s.Claim(ctx(), r, "w", time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		next := *claimed
		next.Phase = state.Ready
		if _, err := s.Commit(ctx(), state.Change{Holder: "w", Prev: claimed, Next: next}); err != nil {
			t.Fatal(err)
		}
	}
	all := func(q state.Query) []string {
		var got []string
		for {
			p, err := s.List(ctx(), q)
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range p.Records {
				got = append(got, r.Name)
			}
			if p.Next == "" {
				return got
			}
			q.Next = p.Next
		}
	}
	if got := all(state.Query{Limit: 5}); strings.Join(got, ",") != strings.Join(names, ",") {
		t.Errorf("all: %v", got)
	}
	if got := all(state.Query{Bucket: "b1.example.com", Limit: 2}); strings.Join(got, ",") != "u01,u04,u07,u10" {
		t.Errorf("by bucket: %v", got)
	}
	if got := all(state.Query{Requester: "arn:aws:iam::1:user/bob", Limit: 2}); strings.Join(got, ",") != "u00,u04,u08" {
		t.Errorf("by requester: %v", got)
	}

	// A grant moved to another bucket moves the user's summary.
	r, _ := s.Lease(ctx(), "u01", "m", time.Minute, state.LeaseOpts{})
	moved := *r
	moved.Grants = []policy.Grant{grant("b2.example.com")}
	if _, err := s.Commit(ctx(), state.Change{Holder: "m", Prev: r, Next: moved}); err != nil {
		t.Fatal(err)
	}
	if got := all(state.Query{Bucket: "b1.example.com", Limit: 10}); strings.Join(got, ",") != "u04,u07,u10" {
		t.Errorf("b1 after the move: %v", got)
	}
	// A summary carries the record's phase and version as committed.
	p, err := s.List(ctx(), state.Query{Bucket: "b2.example.com", Limit: 1})
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Records) != 1 || p.Records[0].Name != "u01" || p.Records[0].Version != 3 || p.Records[0].Phase != state.Ready {
		t.Errorf("b2's first summary: %+v, want u01 ready at version 3", p.Records[0])
	}

	// Stable under deletes: delete the next page's first user between pages.
	p1, err := s.List(ctx(), state.Query{Limit: 4})
	if err != nil {
		t.Fatal(err)
	}
	victim, _ := s.Lease(ctx(), "u04", "del", time.Minute, state.LeaseOpts{})
	if err := s.Remove(ctx(), "del", victim, nil); err != nil {
		t.Fatal(err)
	}
	p2, err := s.List(ctx(), state.Query{Limit: 4, Next: p1.Next})
	if err != nil || len(p2.Records) == 0 || p2.Records[0].Name != "u05" {
		t.Errorf("the page after a delete starts at %v, %v; want u05 (none skipped)", p2, err)
	}

	// Tokens: another query's, altered, or made up are refused.
	for what, q := range map[string]state.Query{
		"another filter": {Limit: 4, Bucket: "b0.example.com", Next: p1.Next},
		"another limit":  {Limit: 5, Next: p1.Next},
		"altered":        {Limit: 4, Next: strings.Replace(p1.Next, p1.Next[3:4], string(rune(p1.Next[3]^1)), 1)},
		"made up":        {Limit: 4, Next: "eyJxIjoibGlzdCJ9.AAAA"},
		"no seal":        {Limit: 4, Next: "garbage"},
	} {
		if _, err := s.List(ctx(), q); !errors.Is(err, state.ErrToken) {
			t.Errorf("%s token: %v, want ErrToken", what, err)
		}
	}
}

// TestDueReadsWhatIsDue: the expiry index answers the users expiring by a
// time, and only those — and a record left creating (or deleting) by a
// request that died, StaleAfter past its last write.
func TestDueReadsWhatIsDue(t *testing.T) {
	s, _ := newStore(t)
	base := time.Now().UTC().Truncate(time.Second)
	for i := range 7 {
		r := newRecord(fmt.Sprintf("e%d", i), grant("e.example.com"))
		r.Phase = state.Ready
		if i < 5 {
			at := base.Add(time.Duration(i) * time.Hour)
			r.ExpiresAt = &at
		}
		if i == 6 {
			r.Phase = state.Creating // due StaleAfter (15 min) from now, before base+2h
		}
		if _, err := s.Claim(ctx(), r, "w", time.Minute); err != nil {
			t.Fatal(err)
		}
	}
	due, err := s.Due(ctx(), base.Add(2*time.Hour), 100)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range due {
		got = append(got, r.Name)
	}
	sort.Strings(got)
	if strings.Join(got, ",") != "e0,e1,e2,e6" {
		t.Errorf("due = %v, want e0,e1,e2 (expired) and e6 (creating, stale)", got)
	}
}

// TestHistory: entries newest first, paged, with the retention set on a
// deleted user's entries.
func TestHistory(t *testing.T) {
	s, db := newStore(t)
	at := time.Now()
	for i := range 5 {
		if err := s.Append(ctx(), state.History{User: "hank", Action: fmt.Sprintf("step%d", i), RequestID: fmt.Sprint(i), At: at.Add(time.Duration(i) * time.Second), Result: "ok"}); err != nil {
			t.Fatal(err)
		}
	}
	var got []string
	next := ""
	for {
		p, err := s.History(ctx(), "hank", 2, next)
		if err != nil {
			t.Fatal(err)
		}
		for _, h := range p.Entries {
			got = append(got, h.Action)
		}
		if next = p.Next; next == "" {
			break
		}
	}
	if strings.Join(got, ",") != "step4,step3,step2,step1,step0" {
		t.Errorf("history = %v", got)
	}
	if _, err := s.History(ctx(), "someone-else", 2, func() string { p, _ := s.History(ctx(), "hank", 2, ""); return p.Next }()); !errors.Is(err, state.ErrToken) {
		t.Errorf("another user's history token: %v", err)
	}
	if err := s.ExpireHistory(ctx(), "hank", 400*24*time.Hour); err != nil {
		t.Fatal(err)
	}
	out, err := db.Query(ctx(), &dynamodb.QueryInput{TableName: aws.String(s.Table()),
		KeyConditionExpression:    aws.String("pk = :pk"),
		ExpressionAttributeValues: map[string]types.AttributeValue{":pk": &types.AttributeValueMemberS{Value: "USER#hank"}}})
	if err != nil || len(out.Items) != 5 {
		t.Fatalf("history items: %v, %v", out, err)
	}
	want := time.Now().Add(400 * 24 * time.Hour).Unix()
	for _, it := range out.Items {
		n, ok := it[state.TTLAttribute].(*types.AttributeValueMemberN)
		if !ok {
			t.Fatalf("entry %v has no ttl", it["sk"])
		}
		if got, _ := strconv.ParseInt(n.Value, 10, 64); got < want-60 || got > want+60 {
			t.Errorf("ttl %d, want about %d (400 days from now)", got, want)
		}
	}
}

// TestLeaseToDeletingComesDue: a lease that moves a record to deleting
// (or creating) puts it in the expiry index StaleAfter later, so a holder
// that dies there is found by the reaper — a ready record that never
// expires is otherwise not in the index at all.
func TestLeaseToDeletingComesDue(t *testing.T) {
	s, _ := newStore(t)
	r := newRecord("del-due", grant("d.example.com"))
	r.Phase = state.Ready
	if _, err := s.Claim(ctx(), r, "w", time.Minute); err != nil {
		t.Fatal(err)
	}
	if err := s.Release(ctx(), "del-due", "w"); err != nil {
		t.Fatal(err)
	}
	later := time.Now().Add(state.StaleAfter + time.Minute)
	due := func() bool {
		recs, err := s.Due(ctx(), later, 100)
		if err != nil {
			t.Fatal(err)
		}
		return slices.ContainsFunc(recs, func(x *state.Record) bool { return x.Name == "del-due" })
	}
	if due() {
		t.Fatal("a ready record that never expires is due")
	}
	if _, err := s.Lease(ctx(), "del-due", "deleter", time.Minute, state.LeaseOpts{SetPhase: state.Deleting}); err != nil {
		t.Fatal(err)
	}
	if !due() {
		t.Fatal("a record left deleting is never due: a delete that dies there is never finished")
	}
}

// TestDueIncludesPreviousKeyGrace: a record keeping a rotation's previous
// key comes due when that key's grace ends, earlier than its expiry (or
// with none), and the previous key survives a read back.
func TestDueIncludesPreviousKeyGrace(t *testing.T) {
	s, _ := newStore(t)
	base := time.Now().UTC().Truncate(time.Second)
	later := base.Add(48 * time.Hour)
	for i, tc := range []struct {
		expires *time.Time
		grace   time.Duration // 0: no previous key
	}{{nil, time.Hour}, {&later, time.Hour}, {nil, 0}, {&later, 3 * time.Hour}} {
		r := newRecord(fmt.Sprintf("p%d", i), grant("p.example.com"))
		r.Phase, r.ExpiresAt = state.Ready, tc.expires
		if tc.grace > 0 {
			r.PrevKeyID, r.PrevKeyDeletesAt = "AKIAPREV", base.Add(tc.grace)
		}
		if _, err := s.Claim(ctx(), r, "w", time.Minute); err != nil {
			t.Fatal(err)
		}
	}
	due, err := s.Due(ctx(), base.Add(2*time.Hour), 100)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range due {
		got = append(got, r.Name)
		if r.PrevKeyID != "AKIAPREV" || !r.PrevKeyDeletesAt.Equal(base.Add(time.Hour)) {
			t.Errorf("%s read back with previous key %q due %v", r.Name, r.PrevKeyID, r.PrevKeyDeletesAt)
		}
	}
	sort.Strings(got)
	if strings.Join(got, ",") != "p0,p1" {
		t.Errorf("due = %v, want p0,p1 (previous key's grace over)", got)
	}
}
