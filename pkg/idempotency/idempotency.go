// Package idempotency keeps idempotency keys in keyvend's state table: a
// caller that sends the same key with the same request again, within the
// retention (24 h), gets the stored answer instead of a second action.
//
// One item per principal and key (pk IDEM#<hash of both>, sk IDEM, as
// pkg/state lays the table out). Begin claims the key with a conditional
// write that holds a short lease; the holder acts, then Finish stores its
// answer (only while it still holds the claim) or Abandon deletes the
// claim so that a retry acts again. A claim whose lease went stale — its
// holder died — is taken over atomically by the next Begin of the same
// request. The item carries the table's TTL attribute; DynamoDB deletes
// expired items up to days late, so expiry is also checked on every read.
//
// Nothing secret is stored: only the headers in StoredHeaders, and
// keyvend's answers never carry a secret access key.
package idempotency

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
)

// DynamoDB is the part of the DynamoDB API the store calls
// (*dynamodb.Client).
type DynamoDB interface {
	GetItem(context.Context, *dynamodb.GetItemInput, ...func(*dynamodb.Options)) (*dynamodb.GetItemOutput, error)
	PutItem(context.Context, *dynamodb.PutItemInput, ...func(*dynamodb.Options)) (*dynamodb.PutItemOutput, error)
	UpdateItem(context.Context, *dynamodb.UpdateItemInput, ...func(*dynamodb.Options)) (*dynamodb.UpdateItemOutput, error)
	DeleteItem(context.Context, *dynamodb.DeleteItemInput, ...func(*dynamodb.Options)) (*dynamodb.DeleteItemOutput, error)
}

const (
	// DefaultLease is how long a claim holds a key before it counts as
	// abandoned (its holder presumed dead). It must outlast any request:
	// the API function times out after 28 s.
	DefaultLease = 2 * time.Minute
	// Retention is how long a key's answer is kept, and the key bound to
	// its request.
	Retention = 24 * time.Hour
	// MaxKeyLength bounds a key (CheckKey).
	MaxKeyLength = 255
	// MaxAnswerBytes bounds a stored answer's body (a DynamoDB item is at
	// most 400 KB); Finish refuses a larger one.
	MaxAnswerBytes = 256 << 10
)

// StoredHeaders are the answer headers Finish keeps: what a replay needs
// to be the same answer. Anything else — Set-Cookie, Authorization, the
// request id, Retry-After — is dropped.
var StoredHeaders = []string{"Content-Type", "Location", "Cache-Control", "X-Content-Type-Options", "Allow", "Etag"}

// Errors.
var (
	// ErrLost: the caller no longer holds the claim (its lease went stale
	// and another request took the key over, or the item is gone).
	ErrLost = errors.New("idempotency: the claim on the key was lost")
	// ErrTooLarge: the answer is larger than MaxAnswerBytes.
	ErrTooLarge = errors.New("idempotency: the answer is too large to store")
)

// Outcome is what Begin found.
type Outcome int

// The outcomes of Begin.
const (
	// Proceed: the caller holds the key; it acts, then calls Finish or Abandon.
	Proceed Outcome = iota + 1
	// Replay: the key's answer is stored (Claim.Answer); do not act.
	Replay
	// InProgress: another request holds the key and its lease is live.
	InProgress
	// Mismatch: the key was used with a different request (fingerprint).
	Mismatch
)

func (o Outcome) String() string {
	switch o {
	case Proceed:
		return "proceed"
	case Replay:
		return "replay"
	case InProgress:
		return "in progress"
	case Mismatch:
		return "mismatch"
	}
	return "outcome(" + strconv.Itoa(int(o)) + ")"
}

// Answer is a stored answer.
type Answer struct {
	Status int
	Header http.Header
	Body   []byte
	// Delivered is set by MarkDelivered: the answer reached its recipient
	// (the chat worker's posted message).
	Delivered bool
}

// Claim is Begin's result.
type Claim struct {
	Outcome Outcome
	// Answer is the stored answer (Replay).
	Answer *Answer
	// Until is when the holder's lease ends (InProgress).
	Until time.Time

	pk     string
	holder string
}

// Store keeps idempotency keys in a table laid out as pkg/state's.
type Store struct {
	db    DynamoDB
	table string
	lease time.Duration
	now   func() time.Time
}

// New returns a store on table.
func New(db DynamoDB, table string) (*Store, error) {
	if db == nil || strings.TrimSpace(table) == "" {
		return nil, errors.New("idempotency: a table is required (KEYVEND_TABLE)")
	}
	return &Store{db: db, table: table, lease: DefaultLease, now: time.Now}, nil
}

// SetClock replaces the store's clock (tests that age leases and keys).
func (s *Store) SetClock(now func() time.Time) { s.now = now }

// CheckKey reports whether key is a valid idempotency key: 1 to
// MaxKeyLength printable ASCII characters (space to tilde).
func CheckKey(key string) error {
	if key == "" || len(key) > MaxKeyLength {
		return fmt.Errorf("an idempotency key is 1 to %d characters", MaxKeyLength)
	}
	for i := 0; i < len(key); i++ {
		if key[i] < 0x20 || key[i] > 0x7e {
			return errors.New("an idempotency key is printable ASCII only")
		}
	}
	return nil
}

// Item attributes.
const (
	sk          = "IDEM"
	pending     = "pending"
	done        = "done"
	ttlAttr     = "ttl" // pkg/state.TTLAttribute
	attrState   = "idem_state"
	attrFP      = "fingerprint"
	attrHolder  = "holder"
	attrUntil   = "lease_until" // Unix milliseconds
	attrStatus  = "status"
	attrHeaders = "headers"
	attrBody    = "body"
	attrDeliv   = "delivered"
)

// itemPK is the key of principal's key: a hash of both, so a key is
// stored whatever characters it holds, and is per principal.
func itemPK(principal, key string) string {
	h := sha256.New()
	var n [8]byte
	binary.BigEndian.PutUint64(n[:], uint64(len(principal)))
	h.Write(n[:])
	h.Write([]byte(principal))
	h.Write([]byte(key))
	return "IDEM#" + hex.EncodeToString(h.Sum(nil))
}

func hashFP(fingerprint []byte) string {
	sum := sha256.Sum256(fingerprint)
	return hex.EncodeToString(sum[:])
}

func token() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// Begin claims principal's key for the request whose fingerprint is
// given (the request as sent, less what may change between its retries).
// Proceed: the caller holds the key and must Finish or Abandon the claim.
// Replay: the answer is in the claim. InProgress: another request holds
// the key. Mismatch: the key was used for another request within the
// retention. A claim whose lease went stale is taken over (Proceed) by exactly
// one of its takers.
func (s *Store) Begin(ctx context.Context, principal, key string, fingerprint []byte) (*Claim, error) {
	if principal == "" {
		return nil, errors.New("idempotency: no principal")
	}
	if err := CheckKey(key); err != nil {
		return nil, fmt.Errorf("idempotency: %w", err)
	}
	pk, fp := itemPK(principal, key), hashFP(fingerprint)
	var last *item
	for attempt := 0; attempt < 4; attempt++ {
		now := s.now()
		holder := token()
		_, err := s.db.PutItem(ctx, &dynamodb.PutItemInput{
			TableName: &s.table,
			Item: map[string]types.AttributeValue{
				"pk": str(pk), "sk": str(sk), "principal": str(principal), "idem_key": str(key),
				attrFP: str(fp), attrState: str(pending), attrHolder: str(holder),
				attrUntil: num(now.Add(s.lease).UnixMilli()), ttlAttr: num(now.Add(Retention).Unix()),
				"created_at": str(now.UTC().Format(time.RFC3339Nano)),
			},
			ConditionExpression: aws.String("attribute_not_exists(pk) OR #ttl < :now_s OR (#st = :pending AND #until < :now_ms AND #fp = :fp)"),
			ExpressionAttributeNames: map[string]string{
				"#ttl": ttlAttr, "#st": attrState, "#until": attrUntil, "#fp": attrFP,
			},
			ExpressionAttributeValues: map[string]types.AttributeValue{
				":now_s": num(now.Unix()), ":now_ms": num(now.UnixMilli()), ":pending": str(pending), ":fp": str(fp),
			},
		})
		if err == nil {
			return &Claim{Outcome: Proceed, pk: pk, holder: holder}, nil
		}
		if !conditionFailed(err) {
			return nil, fmt.Errorf("idempotency: claim the key: %w", err)
		}
		it, err := s.get(ctx, pk)
		if err != nil {
			return nil, err
		}
		now = s.now()
		switch {
		case it == nil || it.expired(now):
			continue // gone (abandoned) or expired since the write: try again
		case it.fp != fp:
			return &Claim{Outcome: Mismatch, pk: pk}, nil
		case it.state == done:
			return &Claim{Outcome: Replay, Answer: it.answer, pk: pk}, nil
		case now.Before(it.until):
			return &Claim{Outcome: InProgress, Until: it.until, pk: pk}, nil
		}
		last = it // stale, and another taker may be on it: try again
	}
	until := s.now()
	if last != nil {
		until = last.until
	}
	return &Claim{Outcome: InProgress, Until: until, pk: pk}, nil
}

// Finish stores a's answer under c's key for the retention, if c still
// holds the key (else ErrLost). Only StoredHeaders of a's are kept. An
// answer larger than MaxAnswerBytes is ErrTooLarge and nothing is written:
// the caller should Abandon.
func (s *Store) Finish(ctx context.Context, c *Claim, a Answer) error {
	if c == nil || c.Outcome != Proceed {
		return errors.New("idempotency: Finish of a claim not held")
	}
	if len(a.Body) > MaxAnswerBytes {
		return ErrTooLarge
	}
	if a.Status < 100 || a.Status > 599 {
		return fmt.Errorf("idempotency: status %d is not an HTTP status", a.Status)
	}
	headers, err := json.Marshal(keep(a.Header))
	if err != nil {
		return fmt.Errorf("idempotency: encode the answer's headers: %w", err)
	}
	now := s.now()
	update := "SET #st = :done, #status = :status, #headers = :headers, #ttl = :ttl, finished_at = :at REMOVE #until"
	names := map[string]string{"#st": attrState, "#status": attrStatus, "#headers": attrHeaders, "#ttl": ttlAttr, "#until": attrUntil, "#holder": attrHolder}
	values := map[string]types.AttributeValue{
		":done": str(done), ":pending": str(pending), ":me": str(c.holder),
		":status": num(int64(a.Status)), ":headers": str(string(headers)),
		":ttl": num(now.Add(Retention).Unix()), ":at": str(now.UTC().Format(time.RFC3339Nano)),
	}
	if len(a.Body) > 0 {
		update = "SET #st = :done, #status = :status, #headers = :headers, #body = :body, #ttl = :ttl, finished_at = :at REMOVE #until"
		names["#body"] = attrBody
		values[":body"] = &types.AttributeValueMemberB{Value: a.Body}
	}
	_, err = s.db.UpdateItem(ctx, &dynamodb.UpdateItemInput{
		TableName: &s.table, Key: itemKey(c.pk),
		UpdateExpression:          aws.String(update),
		ConditionExpression:       aws.String("#holder = :me AND #st = :pending"),
		ExpressionAttributeNames:  names,
		ExpressionAttributeValues: values,
	})
	switch {
	case conditionFailed(err):
		return ErrLost
	case err != nil:
		return fmt.Errorf("idempotency: store the answer: %w", err)
	}
	return nil
}

// Abandon deletes c's claim, if c still holds it (else ErrLost): the next
// request with the key acts again.
func (s *Store) Abandon(ctx context.Context, c *Claim) error {
	if c == nil || c.Outcome != Proceed {
		return errors.New("idempotency: Abandon of a claim not held")
	}
	_, err := s.db.DeleteItem(ctx, &dynamodb.DeleteItemInput{
		TableName: &s.table, Key: itemKey(c.pk),
		ConditionExpression:       aws.String("#holder = :me AND #st = :pending"),
		ExpressionAttributeNames:  map[string]string{"#holder": attrHolder, "#st": attrState},
		ExpressionAttributeValues: map[string]types.AttributeValue{":me": str(c.holder), ":pending": str(pending)},
	})
	switch {
	case conditionFailed(err):
		return ErrLost
	case err != nil:
		return fmt.Errorf("idempotency: abandon the key: %w", err)
	}
	return nil
}

// MarkDelivered records that the answer stored under c's key (one this
// claim finished, or replayed) reached its recipient: a later Replay has
// Answer.Delivered. ErrLost if no answer is stored.
func (s *Store) MarkDelivered(ctx context.Context, c *Claim) error {
	if c == nil || c.pk == "" {
		return errors.New("idempotency: MarkDelivered without a claim")
	}
	_, err := s.db.UpdateItem(ctx, &dynamodb.UpdateItemInput{
		TableName: &s.table, Key: itemKey(c.pk),
		UpdateExpression:          aws.String("SET #deliv = :true"),
		ConditionExpression:       aws.String("#st = :done"),
		ExpressionAttributeNames:  map[string]string{"#deliv": attrDeliv, "#st": attrState},
		ExpressionAttributeValues: map[string]types.AttributeValue{":true": &types.AttributeValueMemberBOOL{Value: true}, ":done": str(done)},
	})
	switch {
	case conditionFailed(err):
		return ErrLost
	case err != nil:
		return fmt.Errorf("idempotency: record the delivery: %w", err)
	}
	return nil
}

// item is a key's item as read.
type item struct {
	fp, state string
	until     time.Time
	ttl       int64 // Unix seconds
	answer    *Answer
}

func (it *item) expired(now time.Time) bool { return it.ttl != 0 && it.ttl < now.Unix() }

func (s *Store) get(ctx context.Context, pk string) (*item, error) {
	out, err := s.db.GetItem(ctx, &dynamodb.GetItemInput{TableName: &s.table, Key: itemKey(pk), ConsistentRead: aws.Bool(true)})
	if err != nil {
		return nil, fmt.Errorf("idempotency: read the key: %w", err)
	}
	if len(out.Item) == 0 {
		return nil, nil
	}
	m := out.Item
	it := &item{fp: getS(m, attrFP), state: getS(m, attrState), ttl: getN(m, ttlAttr)}
	if ms := getN(m, attrUntil); ms != 0 {
		it.until = time.UnixMilli(ms)
	}
	if it.state == done {
		a := &Answer{Status: int(getN(m, attrStatus)), Header: http.Header{}}
		if h := getS(m, attrHeaders); h != "" {
			if err := json.Unmarshal([]byte(h), &a.Header); err != nil {
				return nil, fmt.Errorf("idempotency: decode the stored headers: %w", err)
			}
		}
		if b, ok := m[attrBody].(*types.AttributeValueMemberB); ok {
			a.Body = b.Value
		}
		if d, ok := m[attrDeliv].(*types.AttributeValueMemberBOOL); ok {
			a.Delivered = d.Value
		}
		it.answer = a
	}
	return it, nil
}

// keep is h with only StoredHeaders.
func keep(h http.Header) http.Header {
	out := http.Header{}
	for _, name := range StoredHeaders {
		if v := h.Values(name); len(v) > 0 {
			out[http.CanonicalHeaderKey(name)] = append([]string(nil), v...)
		}
	}
	return out
}

func itemKey(pk string) map[string]types.AttributeValue {
	return map[string]types.AttributeValue{"pk": str(pk), "sk": str(sk)}
}

func str(s string) types.AttributeValue { return &types.AttributeValueMemberS{Value: s} }

func num(n int64) types.AttributeValue {
	return &types.AttributeValueMemberN{Value: strconv.FormatInt(n, 10)}
}

func getS(m map[string]types.AttributeValue, k string) string {
	if v, ok := m[k].(*types.AttributeValueMemberS); ok {
		return v.Value
	}
	return ""
}

func getN(m map[string]types.AttributeValue, k string) int64 {
	if v, ok := m[k].(*types.AttributeValueMemberN); ok {
		n, _ := strconv.ParseInt(v.Value, 10, 64)
		return n
	}
	return 0
}

func conditionFailed(err error) bool {
	var ccf *types.ConditionalCheckFailedException
	return errors.As(err, &ccf)
}
