package idempotency_test

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/keyvend/keyvend/pkg/awstest"
	"github.com/keyvend/keyvend/pkg/idempotency"
	"github.com/keyvend/keyvend/pkg/state"
)

func TestMain(m *testing.M) { awstest.Main(m) }

func ctx() context.Context { return context.Background() }

const (
	alice = "arn:aws:iam::123456789012:user/alice"
	bob   = "arn:aws:iam::123456789012:user/bob"
)

// newStore is a store on a fresh state table (state.CreateTable) of the
// package's moto, with a clock the test moves.
func newStore(t *testing.T) (*idempotency.Store, *dynamodb.Client, string, *clock) {
	t.Helper()
	db := dynamodb.NewFromConfig(awstest.Config(t, awstest.Shared(t).URL))
	table := awstest.Name("idem")
	if err := state.CreateTable(ctx(), db, table); err != nil {
		t.Fatal(err)
	}
	s, err := idempotency.New(db, table)
	if err != nil {
		t.Fatal(err)
	}
	c := &clock{t: time.Now()}
	s.SetClock(c.now)
	return s, db, table, c
}

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func begin(t *testing.T, s *idempotency.Store, principal, key, fp string, want idempotency.Outcome) *idempotency.Claim {
	t.Helper()
	c, err := s.Begin(ctx(), principal, key, []byte(fp))
	if err != nil {
		t.Fatalf("Begin(%s, %s): %v", principal, key, err)
	}
	if c.Outcome != want {
		t.Fatalf("Begin(%s, %s) = %v, want %v", principal, key, c.Outcome, want)
	}
	return c
}

// items are the table's items (a scan: the test tables are tiny).
func items(t *testing.T, db *dynamodb.Client, table string) []map[string]types.AttributeValue {
	t.Helper()
	out, err := db.Scan(ctx(), &dynamodb.ScanInput{TableName: aws.String(table)})
	if err != nil {
		t.Fatal(err)
	}
	return out.Items
}

// TestFinishThenReplay: a finished key answers the same request with the
// stored answer — status, the headers that make the answer, body — for
// 24 h (the table's TTL attribute says so), and never with a header that
// could carry a credential.
func TestFinishThenReplay(t *testing.T) {
	s, db, table, clk := newStore(t)
	c := begin(t, s, alice, "key-1", "POST /v1/users {}", idempotency.Proceed)
	h := http.Header{}
	h.Set("Content-Type", "application/json")
	h.Set("Location", "/v1/users/site-deployer")
	h.Set("Set-Cookie", "session=secret")
	h.Set("Authorization", "Bearer secret")
	h.Set("X-Request-Id", "req-1")
	h.Set("Retry-After", "5")
	body := []byte(`{"user":"site-deployer"}`)
	if err := s.Finish(ctx(), c, idempotency.Answer{Status: 201, Header: h, Body: body}); err != nil {
		t.Fatal(err)
	}
	r := begin(t, s, alice, "key-1", "POST /v1/users {}", idempotency.Replay)
	if r.Answer.Status != 201 || string(r.Answer.Body) != string(body) || r.Answer.Delivered {
		t.Errorf("replayed answer %d %s delivered=%v", r.Answer.Status, r.Answer.Body, r.Answer.Delivered)
	}
	if r.Answer.Header.Get("Content-Type") != "application/json" || r.Answer.Header.Get("Location") != "/v1/users/site-deployer" {
		t.Errorf("replayed headers %v", r.Answer.Header)
	}
	for _, name := range []string{"Set-Cookie", "Authorization", "X-Request-Id", "Retry-After"} {
		if v := r.Answer.Header.Values(name); len(v) > 0 {
			t.Errorf("stored header %s: %q", name, v)
		}
	}

	// The item: under IDEM#, with the table's TTL ≈ 24 h from now, and
	// no secret anywhere in it.
	all := items(t, db, table)
	if len(all) != 1 {
		t.Fatalf("%d items, want 1", len(all))
	}
	it := all[0]
	if pk := it["pk"].(*types.AttributeValueMemberS).Value; !strings.HasPrefix(pk, "IDEM#") || strings.Contains(pk, "key-1") || it["sk"].(*types.AttributeValueMemberS).Value != "IDEM" {
		t.Errorf("item key %v %v", it["pk"], it["sk"])
	}
	ttlV, ok := it[state.TTLAttribute].(*types.AttributeValueMemberN)
	if !ok {
		t.Fatalf("no %s attribute: %v", state.TTLAttribute, it)
	}
	ttl, _ := strconv.ParseInt(ttlV.Value, 10, 64)
	if want := clk.now().Add(idempotency.Retention).Unix(); ttl < want-5 || ttl > want+5 {
		t.Errorf("ttl %d, want about %d (24 h from now)", ttl, want)
	}
	for name, v := range it {
		if s, ok := v.(*types.AttributeValueMemberS); ok && strings.Contains(s.Value, "secret") {
			t.Errorf("attribute %s holds %q", name, s.Value)
		}
	}

	// After the retention the key is free again, even before DynamoDB's
	// TTL deletes the item (moto never does), and even for another request.
	clk.add(idempotency.Retention + time.Minute)
	begin(t, s, alice, "key-1", "POST /v1/users {\"other\":1}", idempotency.Proceed)
}

// TestMismatch: a key used for one request is refused for another, while
// it is held and once its answer is stored.
func TestMismatch(t *testing.T) {
	s, _, _, _ := newStore(t)
	c := begin(t, s, alice, "k", "rotate site-deployer", idempotency.Proceed)
	begin(t, s, alice, "k", "rotate assets-uploader", idempotency.Mismatch)
	if err := s.Finish(ctx(), c, idempotency.Answer{Status: 200, Body: []byte("{}")}); err != nil {
		t.Fatal(err)
	}
	begin(t, s, alice, "k", "rotate assets-uploader", idempotency.Mismatch)
	begin(t, s, alice, "k", "rotate site-deployer", idempotency.Replay)
}

// TestKeysArePerPrincipal: another principal's key of the same name is
// another key.
func TestKeysArePerPrincipal(t *testing.T) {
	s, _, _, _ := newStore(t)
	c := begin(t, s, alice, "same", "A", idempotency.Proceed)
	if err := s.Finish(ctx(), c, idempotency.Answer{Status: 201, Body: []byte("alice's")}); err != nil {
		t.Fatal(err)
	}
	begin(t, s, bob, "same", "B", idempotency.Proceed)
	// A principal is not confused with another whose name ends the same
	// way as the first's name and key joined.
	begin(t, s, alice+"s", "ame", "A", idempotency.Proceed)
}

// TestConcurrentBegins: of many simultaneous Begins of one key, exactly
// one proceeds; the others see it in progress until it finishes, then
// the answer.
func TestConcurrentBegins(t *testing.T) {
	s, _, _, _ := newStore(t)
	const n = 8
	claims := make([]*idempotency.Claim, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := s.Begin(ctx(), alice, "race", []byte("same request"))
			if err != nil {
				t.Error(err)
				return
			}
			claims[i] = c
		}()
	}
	wg.Wait()
	var won *idempotency.Claim
	count := map[idempotency.Outcome]int{}
	for _, c := range claims {
		if c == nil {
			t.FailNow()
		}
		count[c.Outcome]++
		if c.Outcome == idempotency.Proceed {
			won = c
		}
		if c.Outcome == idempotency.InProgress && !c.Until.After(time.Now()) {
			t.Errorf("in progress until %v: not a live lease", c.Until)
		}
	}
	if count[idempotency.Proceed] != 1 || count[idempotency.InProgress] != n-1 {
		t.Fatalf("outcomes %v, want exactly one proceed and %d in progress", count, n-1)
	}
	if err := s.Finish(ctx(), won, idempotency.Answer{Status: 200}); err != nil {
		t.Fatal(err)
	}
	r := begin(t, s, alice, "race", "same request", idempotency.Replay)
	if r.Answer.Status != 200 || len(r.Answer.Body) != 0 {
		t.Errorf("answer %+v", r.Answer)
	}
}

// TestStaleTakeover: a claim whose lease went stale is taken over by
// exactly one of several takers; the first holder, back late, can no
// longer store or abandon; a stale claim of another request is still a
// mismatch.
func TestStaleTakeover(t *testing.T) {
	s, _, _, clk := newStore(t)
	first := begin(t, s, alice, "k", "req", idempotency.Proceed)
	begin(t, s, alice, "k", "req", idempotency.InProgress)
	clk.add(idempotency.DefaultLease + time.Second)
	begin(t, s, alice, "k", "another req", idempotency.Mismatch)

	const n = 5
	claims := make([]*idempotency.Claim, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := s.Begin(ctx(), alice, "k", []byte("req"))
			if err != nil {
				t.Error(err)
				return
			}
			claims[i] = c
		}()
	}
	wg.Wait()
	var second *idempotency.Claim
	for _, c := range claims {
		if c == nil {
			t.FailNow()
		}
		switch c.Outcome {
		case idempotency.Proceed:
			if second != nil {
				t.Fatal("two takers took the stale claim over")
			}
			second = c
		case idempotency.InProgress:
		default:
			t.Errorf("taker: %v", c.Outcome)
		}
	}
	if second == nil {
		t.Fatal("nobody took the stale claim over")
	}
	if err := s.Finish(ctx(), first, idempotency.Answer{Status: 201}); !errors.Is(err, idempotency.ErrLost) {
		t.Errorf("Finish by the stale holder: %v, want ErrLost", err)
	}
	if err := s.Abandon(ctx(), first); !errors.Is(err, idempotency.ErrLost) {
		t.Errorf("Abandon by the stale holder: %v, want ErrLost", err)
	}
	if err := s.Finish(ctx(), second, idempotency.Answer{Status: 201, Body: []byte("second")}); err != nil {
		t.Fatal(err)
	}
	if r := begin(t, s, alice, "k", "req", idempotency.Replay); string(r.Answer.Body) != "second" {
		t.Errorf("answer %s", r.Answer.Body)
	}
}

// TestAbandon: an abandoned key acts again; a finished one cannot be
// abandoned.
func TestAbandon(t *testing.T) {
	s, _, _, _ := newStore(t)
	c := begin(t, s, alice, "k", "req", idempotency.Proceed)
	if err := s.Abandon(ctx(), c); err != nil {
		t.Fatal(err)
	}
	c = begin(t, s, alice, "k", "req", idempotency.Proceed)
	if err := s.Finish(ctx(), c, idempotency.Answer{Status: 204}); err != nil {
		t.Fatal(err)
	}
	if err := s.Abandon(ctx(), c); !errors.Is(err, idempotency.ErrLost) {
		t.Errorf("Abandon after Finish: %v, want ErrLost", err)
	}
	begin(t, s, alice, "k", "req", idempotency.Replay)
}

// TestTooLarge: an answer too large for an item is refused, and the
// claim can still be abandoned.
func TestTooLarge(t *testing.T) {
	s, _, _, _ := newStore(t)
	c := begin(t, s, alice, "k", "req", idempotency.Proceed)
	if err := s.Finish(ctx(), c, idempotency.Answer{Status: 200, Body: make([]byte, idempotency.MaxAnswerBytes+1)}); !errors.Is(err, idempotency.ErrTooLarge) {
		t.Errorf("Finish of a large answer: %v", err)
	}
	if err := s.Abandon(ctx(), c); err != nil {
		t.Fatal(err)
	}
}

// TestMarkDelivered: the delivery of a stored answer is recorded, for
// whoever replays it next.
func TestMarkDelivered(t *testing.T) {
	s, _, _, _ := newStore(t)
	c := begin(t, s, alice, "k", "req", idempotency.Proceed)
	if err := s.MarkDelivered(ctx(), c); !errors.Is(err, idempotency.ErrLost) {
		t.Errorf("MarkDelivered before Finish: %v, want ErrLost", err)
	}
	if err := s.Finish(ctx(), c, idempotency.Answer{Status: 200, Body: []byte("msg")}); err != nil {
		t.Fatal(err)
	}
	r := begin(t, s, alice, "k", "req", idempotency.Replay)
	if r.Answer.Delivered {
		t.Error("delivered before MarkDelivered")
	}
	if err := s.MarkDelivered(ctx(), r); err != nil {
		t.Fatal(err)
	}
	if r := begin(t, s, alice, "k", "req", idempotency.Replay); !r.Answer.Delivered || string(r.Answer.Body) != "msg" {
		t.Errorf("after MarkDelivered: %+v", r.Answer)
	}
}

func TestCheckKey(t *testing.T) {
	for _, k := range []string{"a", "0b6f1a52-5d3c-4d0c-9c55-3c1f8b3f9e21", strings.Repeat("x", 255), "with space", "~!@#$%^&*()"} {
		if err := idempotency.CheckKey(k); err != nil {
			t.Errorf("CheckKey(%q): %v", k, err)
		}
	}
	for _, k := range []string{"", strings.Repeat("x", 256), "tab\there", "new\nline", "del\x7f", "é", "nul\x00"} {
		if err := idempotency.CheckKey(k); err == nil {
			t.Errorf("CheckKey(%q) accepted it", k)
		}
	}
}
