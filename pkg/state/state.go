// Package state is keyvend's own state: one DynamoDB table holding, per
// vended user, its record (phase, version, grants, requester, expiry, the
// key in its secret) with the user's lease, its history, and the indexes
// that make listing and reaping cost what they return; plus idempotency
// keys and a little metadata. IAM and Secrets Manager stay the source of
// truth for credentials: the table is the source of truth for keyvend's
// workflow, and an index that can always be rebuilt from IAM.
//
// The layout (one table, string keys pk and sk):
//
//	pk                    sk                     what
//	USER#<lower name>     USER                   the user's record (Record), with its lease
//	USER#<lower name>     HIST#<time>#<request>  one history entry (History)
//	BUCKET#<bucket>       USER#<lower name>      the user's summary, per bucket it holds a grant on
//	DELETED               <lower name>           a user deleted whose history awaits its retention (Deleted)
//	IDEM#<hash>           IDEM                   an idempotency key (pkg/idempotency)
//	META                  <name>                 metadata: the page-token key, the reconciliation's checkpoint
//	LIMIT#<requester>     LIMIT                  the requester's guard for max_users (limit.go)
//
// Global secondary indexes, sparse: by-name (every record, by name),
// by-requester (records by requester, then name), by-expiry (records that
// expire, by expiry). TTL attribute: ttl (epoch seconds), on history of
// deleted users and on idempotency keys.
//
// Names are keyed lowercased: IAM user names are unique case-insensitively,
// so Alice and alice are one record and one lease.
package state

import (
	"context"
	"errors"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb"

	"github.com/keyvend/keyvend/pkg/policy"
)

// DynamoDB is the part of the DynamoDB API the store calls.
type DynamoDB interface {
	GetItem(context.Context, *dynamodb.GetItemInput, ...func(*dynamodb.Options)) (*dynamodb.GetItemOutput, error)
	PutItem(context.Context, *dynamodb.PutItemInput, ...func(*dynamodb.Options)) (*dynamodb.PutItemOutput, error)
	UpdateItem(context.Context, *dynamodb.UpdateItemInput, ...func(*dynamodb.Options)) (*dynamodb.UpdateItemOutput, error)
	DeleteItem(context.Context, *dynamodb.DeleteItemInput, ...func(*dynamodb.Options)) (*dynamodb.DeleteItemOutput, error)
	Query(context.Context, *dynamodb.QueryInput, ...func(*dynamodb.Options)) (*dynamodb.QueryOutput, error)
	Scan(context.Context, *dynamodb.ScanInput, ...func(*dynamodb.Options)) (*dynamodb.ScanOutput, error)
	TransactWriteItems(context.Context, *dynamodb.TransactWriteItemsInput, ...func(*dynamodb.Options)) (*dynamodb.TransactWriteItemsOutput, error)
	BatchWriteItem(context.Context, *dynamodb.BatchWriteItemInput, ...func(*dynamodb.Options)) (*dynamodb.BatchWriteItemOutput, error)
}

// Index names (the CDK stack creates them; CreateTable too).
const (
	IndexByName      = "by-name"
	IndexByRequester = "by-requester"
	IndexByExpiry    = "by-expiry"
	// TTLAttribute holds an item's expiry in epoch seconds.
	TTLAttribute = "ttl"
)

// Phase is where a user is in its life.
type Phase string

// The phases. A user is created (creating → ready) and deleted (ready →
// deleting → gone); a record in creating or deleting whose lease has gone
// stale belongs to a request that died, and is finished or rolled back by
// whoever takes the lease over.
const (
	Creating Phase = "creating"
	Ready    Phase = "ready"
	Deleting Phase = "deleting"
)

// Record is what keyvend knows of one vended user.
type Record struct {
	Name      string         // exactly as IAM has it
	UserARN   string         //
	Phase     Phase          //
	Version   int64          // bumped by every committed change: the user's ETag
	Grants    []policy.Grant //
	GrantMode string         // how the grants reach IAM (grants.Mode)
	Intact    bool           // the grants are exactly as keyvend wrote them (reconciliation clears it)
	Requester string         // exactly as authenticated
	Reason    string         //
	RequestID string         // of the request that created it
	CreatedAt time.Time      //
	ExpiresAt *time.Time     // nil: never
	KeyID     string         // the access key in its secret
	KeyAt     time.Time      // when that key was created
	UpdatedAt time.Time      //

	// The key a rotation replaced, kept active for a grace period so
	// clients still holding it keep working, and when it is due for
	// deletion (by the reaper, or by the next rotation). Empty: none.
	PrevKeyID        string
	PrevKeyDeletesAt time.Time

	// The lease: who holds the user (a request, the reaper, a rotation),
	// and until when. A lease past its time is stale: its holder is
	// presumed dead and anyone may take the lease over.
	LeaseHolder string
	LeaseUntil  time.Time

	// Was is the phase the record was in before Lease moved it (SetPhase);
	// not stored.
	Was Phase
}

// StaleAfter is how long a record may stay in creating or deleting before
// the reaper finishes it (the request that left it there died): far longer
// than any lease.
const StaleAfter = 15 * time.Minute

// Due is when the reaper must look at r: its expiry, when its previous
// key's grace ends, or, for a record left in creating or deleting,
// StaleAfter past its last write, whichever comes first; nil for a ready
// user that never expires and keeps no previous key.
func (r *Record) Due() *time.Time {
	due := r.ExpiresAt
	if r.PrevKeyID != "" {
		at := r.PrevKeyDeletesAt
		if due == nil || at.Before(*due) {
			due = &at
		}
	}
	if r.Phase != Ready {
		stale := r.UpdatedAt.Add(StaleAfter)
		if due == nil || stale.Before(*due) {
			due = &stale
		}
	}
	return due
}

// Leased reports whether holder holds r's lease at now.
func (r *Record) Leased(holder string, now time.Time) bool {
	return r.LeaseHolder == holder && now.Before(r.LeaseUntil)
}

// Busy reports whether someone holds r's lease at now.
func (r *Record) Busy(now time.Time) bool {
	return r.LeaseHolder != "" && now.Before(r.LeaseUntil)
}

// History is one entry of a user's history: a change, who made it, and
// what it did. Never a secret.
type History struct {
	User      string         `json:"user"`
	Action    string         `json:"action"`
	Principal string         `json:"principal"`           // as rules match it
	Requester string         `json:"requester,omitempty"` // exactly as authenticated (an assumed-role session)
	RequestID string         `json:"request_id"`
	Inputs    map[string]any `json:"inputs,omitempty"` // what the request asked (reason, expiry, force, …)
	Result    string         `json:"result"`           // ok, or what went wrong
	At        time.Time      `json:"at"`
	Before    []policy.Grant `json:"grants_before,omitempty"`
	After     []policy.Grant `json:"grants_after,omitempty"`
	KeyID     string         `json:"access_key_id,omitempty"` // the key the change made (never its secret)
	// A rotation's previous key, kept active until PreviousKeyDeletesAt.
	PreviousKeyID        string     `json:"previous_access_key_id,omitempty"`
	PreviousKeyDeletesAt *time.Time `json:"previous_key_deletes_at,omitempty"`
}

// Errors of the store.
var (
	// ErrExists: a record of that name exists (Claim).
	ErrExists = errors.New("state: the user has a record")
	// ErrNotFound: no record of that name.
	ErrNotFound = errors.New("state: no record of the user")
	// ErrBusy: someone else holds the user's lease.
	ErrBusy = errors.New("state: the user is leased to another request")
	// ErrVersion: the record is not at the version the caller expects.
	ErrVersion = errors.New("state: the user's record changed")
	// ErrPhase: the record is not in a phase the operation acts on.
	ErrPhase = errors.New("state: the user is not in a phase for this")
	// ErrLeaseLost: the caller no longer holds the lease it wrote under
	// (it went stale and was taken over).
	ErrLeaseLost = errors.New("state: the lease was lost")
)

// Store reads and writes the table.
type Store struct {
	db    DynamoDB
	table string
	// now is the lease clock: the real time (leases are between real
	// processes), even when the service decides expiries on another clock.
	now func() time.Time

	mu       sync.Mutex
	tokenKey []byte // the page-token key, once read
}

// New returns a Store on table.
func New(db DynamoDB, table string) (*Store, error) {
	if strings.TrimSpace(table) == "" {
		return nil, errors.New("state: a table name is required (KEYVEND_TABLE)")
	}
	return &Store{db: db, table: table, now: time.Now}, nil
}

// DB is the DynamoDB client the store writes with: other item kinds of
// the table (pkg/approval) share it.
func (s *Store) DB() DynamoDB { return s.db }

// Table is the table's name.
func (s *Store) Table() string { return s.table }

// SetClock replaces the lease clock (tests that age leases).
func (s *Store) SetClock(now func() time.Time) { s.now = now }

// Now is the store's lease clock.
func (s *Store) Now() time.Time { return s.now() }

func userPK(name string) string     { return "USER#" + strings.ToLower(name) }
func bucketPK(bucket string) string { return "BUCKET#" + bucket }
func bucketSK(name string) string   { return "USER#" + strings.ToLower(name) }

const (
	recordSK   = "USER"
	historySK  = "HIST#"
	metaPK     = "META"
	namePK     = "USERS"   // by-name: every record
	expiryPK   = "EXPIRES" // by-expiry: records that expire
	requesterP = "REQ#"    // by-requester: REQ#<requester>
	deletedPK  = "DELETED" // users deleted, until their history has its retention
)
