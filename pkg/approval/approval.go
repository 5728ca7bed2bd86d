// Package approval keeps the requests that wait for other people's
// approval (rules with "approval", pkg/authz) in keyvend's state table:
// what was asked and by whom, what it needs, the decisions, and the
// answer once provisioned. Deciding is pkg/provision's (Service.Decide);
// this package stores, with conditional writes so that two decisions
// racing cannot both count on the same version, nor two approvals both
// execute.
//
// Items (state table keys pk, sk; see pkg/state):
//
//	pk                      sk           what
//	APPROVAL#<id>           APPROVAL     one request (doc: its JSON; status, version)
//	APPROVALKEY#<hash>      APPROVALKEY  the pending request of one requester for one fingerprint
//
// A pending request is in the sparse by-expiry index under exp_pk
// APPROVALS (sorted by expiry: the approvers' queue and the sweep of
// expired requests) and always in the by-requester index under req_pk
// APPROVALREQ#<requester> (the requester's own list). Neither partition is
// one the users' queries read.
package approval

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/keyvend/keyvend/pkg/authz"
	"github.com/keyvend/keyvend/pkg/policy"
	"github.com/keyvend/keyvend/pkg/state"
)

// Status is where a request is.
type Status string

// The statuses: pending until decided or expired; approved while the
// provision runs, then provisioned or failed (Answer says what it
// answered); denied; expired.
const (
	Pending     Status = "pending"
	Approved    Status = "approved"
	Provisioned Status = "provisioned"
	Failed      Status = "failed"
	Denied      Status = "denied"
	Expired     Status = "expired"
)

// Statuses lists them.
var Statuses = []Status{Pending, Approved, Provisioned, Failed, Denied, Expired}

// Valid reports whether s is a known status.
func (s Status) Valid() bool {
	for _, k := range Statuses {
		if s == k {
			return true
		}
	}
	return false
}

// Kind is what a request asks.
type Kind string

// The kinds.
const (
	Create       Kind = "create"        // POST /v1/users
	UpdateGrants Kind = "update-grants" // PUT /v1/users/{name}/grants
)

// Request is one request waiting for (or past) approval. Never a secret.
type Request struct {
	ID     string `json:"id"`
	Kind   Kind   `json:"kind"`
	Status Status `json:"status"`
	User   string `json:"user"`
	// Who asked: the principal as rules match it, the requester exactly
	// as authenticated (an assumed-role session), and what else rules
	// matched it by; it is provisioned as them.
	Principal string   `json:"principal"`
	Requester string   `json:"requester"`
	Groups    []string `json:"groups,omitempty"`
	Channel   string   `json:"channel,omitempty"`
	// What: the grants asked, and the request exactly as it was made (a
	// create's body; a change of grants' body with its If-Match).
	Grants []policy.Grant    `json:"grants"`
	Body   json.RawMessage   `json:"request"`
	Reason string            `json:"reason,omitempty"`
	Needs  []authz.GrantNeed `json:"needs"`
	// RequestID is the API request that asked.
	RequestID string     `json:"request_id"`
	CreatedAt time.Time  `json:"created_at"`
	ExpiresAt time.Time  `json:"expires_at"`
	Decisions []Decision `json:"decisions"`
	// Answer is what provisioning answered once approved.
	Answer *Answer `json:"answer,omitempty"`
	// Version is bumped by every write (the conditional writes' check).
	Version int64 `json:"version"`

	Fingerprint string `json:"-"`
}

// Decision is one approver's word.
type Decision struct {
	Decision  string    `json:"decision"` // approve or deny
	Principal string    `json:"principal"`
	Requester string    `json:"requester"`       // exactly as authenticated
	Names     []string  `json:"names,omitempty"` // what rules matched the approver by, when deciding
	Reason    string    `json:"reason,omitempty"`
	RequestID string    `json:"request_id"`
	At        time.Time `json:"at"`
}

// Answer is what provisioning answered: the HTTP status and body the
// requester would have had.
type Answer struct {
	Status int             `json:"status"`
	Body   json.RawMessage `json:"body"`
}

// Errors of the store.
var (
	ErrNotFound = errors.New("approval: no such request")
	// ErrChanged: the request is not at the version the writer read.
	ErrChanged = errors.New("approval: the request changed")
)

// DuplicateError: the requester has a pending request with the same
// fingerprint.
type DuplicateError struct{ ID string }

func (e *DuplicateError) Error() string { return "approval: an identical request is pending: " + e.ID }

// NewID returns a new request id.
func NewID() string {
	var b [10]byte
	_, _ = rand.Read(b[:])
	return "apr-" + hex.EncodeToString(b[:])
}

var idPattern = regexp.MustCompile(`^apr-[0-9a-f]{20}$`)

// ValidID reports whether id is one NewID could have made.
func ValidID(id string) bool { return idPattern.MatchString(id) }

// Fingerprint identifies what a request asks, for the same requester:
// two pending requests with the same one are one.
func Fingerprint(kind Kind, user string, body any) string {
	b, _ := json.Marshal(body)
	h := sha256.Sum256([]byte(string(kind) + "\x00" + user + "\x00" + string(b)))
	return hex.EncodeToString(h[:])
}

const (
	requestSK  = "APPROVAL"
	keySK      = "APPROVALKEY"
	queuePK    = "APPROVALS"
	requesterP = "APPROVALREQ#"
)

func requestPK(id string) string { return "APPROVAL#" + id }

func dedupPK(requester, fingerprint string) string {
	h := sha256.Sum256([]byte(requester + "\x00" + fingerprint))
	return "APPROVALKEY#" + hex.EncodeToString(h[:])
}

// Store reads and writes requests in the state table.
type Store struct {
	db    state.DynamoDB
	table string
}

// New returns a Store on the state table.
func New(db state.DynamoDB, table string) *Store { return &Store{db: db, table: table} }

func s(v string) types.AttributeValue { return &types.AttributeValueMemberS{Value: v} }

func n(v int64) types.AttributeValue { return &types.AttributeValueMemberN{Value: fmt.Sprint(v)} }

func (st *Store) item(r *Request) (map[string]types.AttributeValue, error) {
	if r.Decisions == nil {
		r.Decisions = []Decision{}
	}
	doc, err := json.Marshal(r)
	if err != nil {
		return nil, fmt.Errorf("approval: encode request %s: %w", r.ID, err)
	}
	it := map[string]types.AttributeValue{
		"pk": s(requestPK(r.ID)), "sk": s(requestSK),
		"status": s(string(r.Status)), "version": n(r.Version), "doc": s(string(doc)),
		"fingerprint": s(r.Fingerprint),
		"req_pk":      s(requesterP + r.Requester), "name_sk": s(r.CreatedAt.UTC().Format(time.RFC3339Nano) + "#" + r.ID),
	}
	if r.Status == Pending {
		it["exp_pk"], it["exp_sk"] = s(queuePK), s(r.ExpiresAt.UTC().Format(time.RFC3339)+"#"+r.ID)
	}
	return it, nil
}

func decode(it map[string]types.AttributeValue) (*Request, error) {
	doc, ok := it["doc"].(*types.AttributeValueMemberS)
	if !ok {
		return nil, errors.New("approval: a request item without its document")
	}
	var r Request
	if err := json.Unmarshal([]byte(doc.Value), &r); err != nil {
		return nil, fmt.Errorf("approval: decode a request: %w", err)
	}
	if fp, ok := it["fingerprint"].(*types.AttributeValueMemberS); ok {
		r.Fingerprint = fp.Value
	}
	return &r, nil
}

func conditionFailed(err error) bool {
	var ccf *types.ConditionalCheckFailedException
	var tc *types.TransactionCanceledException
	return errors.As(err, &ccf) || errors.As(err, &tc)
}

// Submit stores r, a new pending request at version 1, unless its
// requester has a pending request with the same fingerprint: then a
// *DuplicateError names that one.
func (st *Store) Submit(ctx context.Context, r *Request) error {
	r.Status, r.Version = Pending, 1
	it, err := st.item(r)
	if err != nil {
		return err
	}
	dk := dedupPK(r.Requester, r.Fingerprint)
	_, err = st.db.TransactWriteItems(ctx, &dynamodb.TransactWriteItemsInput{TransactItems: []types.TransactWriteItem{
		{Put: &types.Put{TableName: &st.table, Item: it, ConditionExpression: aws.String("attribute_not_exists(pk)")}},
		{Put: &types.Put{TableName: &st.table, Item: map[string]types.AttributeValue{"pk": s(dk), "sk": s(keySK), "id": s(r.ID)}, ConditionExpression: aws.String("attribute_not_exists(pk)")}},
	}})
	if err == nil {
		return nil
	}
	if !conditionFailed(err) {
		return fmt.Errorf("approval: store request %s: %w", r.ID, err)
	}
	out, gerr := st.db.GetItem(ctx, &dynamodb.GetItemInput{TableName: &st.table, Key: map[string]types.AttributeValue{"pk": s(dk), "sk": s(keySK)}, ConsistentRead: aws.Bool(true)})
	if gerr != nil {
		return fmt.Errorf("approval: read the pending twin of request %s: %w", r.ID, gerr)
	}
	if id, ok := out.Item["id"].(*types.AttributeValueMemberS); ok {
		return &DuplicateError{ID: id.Value}
	}
	return ErrChanged // the twin closed between the writes: retry
}

// Get reads request id (strongly consistent).
func (st *Store) Get(ctx context.Context, id string) (*Request, error) {
	if !ValidID(id) {
		return nil, ErrNotFound
	}
	out, err := st.db.GetItem(ctx, &dynamodb.GetItemInput{TableName: &st.table, Key: map[string]types.AttributeValue{"pk": s(requestPK(id)), "sk": s(requestSK)}, ConsistentRead: aws.Bool(true)})
	if err != nil {
		return nil, fmt.Errorf("approval: read request %s: %w", id, err)
	}
	if len(out.Item) == 0 {
		return nil, ErrNotFound
	}
	return decode(out.Item)
}

// Update writes r, which was read at version r.Version, at the next
// version; ErrChanged if someone wrote it since. A request leaving
// pending also leaves the queue and frees its fingerprint, in the same
// write.
func (st *Store) Update(ctx context.Context, r *Request) error {
	was := r.Version
	r.Version++
	it, err := st.item(r)
	if err != nil {
		r.Version = was
		return err
	}
	items := []types.TransactWriteItem{{Put: &types.Put{
		TableName: &st.table, Item: it,
		ConditionExpression:       aws.String("version = :v"),
		ExpressionAttributeValues: map[string]types.AttributeValue{":v": n(was)},
	}}}
	if r.Status != Pending {
		items = append(items, types.TransactWriteItem{Delete: &types.Delete{
			TableName: &st.table, Key: map[string]types.AttributeValue{"pk": s(dedupPK(r.Requester, r.Fingerprint)), "sk": s(keySK)},
			ConditionExpression:       aws.String("attribute_not_exists(pk) OR id = :id"),
			ExpressionAttributeValues: map[string]types.AttributeValue{":id": s(r.ID)},
		}})
	}
	_, err = st.db.TransactWriteItems(ctx, &dynamodb.TransactWriteItemsInput{TransactItems: items})
	if err != nil {
		r.Version = was
		if conditionFailed(err) {
			return ErrChanged
		}
		return fmt.Errorf("approval: write request %s: %w", r.ID, err)
	}
	return nil
}

// MaxList bounds how many requests one listing reads.
const MaxList = 100

// Pending lists up to limit pending requests, soonest to expire first
// (those past their expiry included: the caller expires them).
func (st *Store) Pending(ctx context.Context, limit int) ([]*Request, error) {
	return st.query(ctx, state.IndexByExpiry, "exp_pk", queuePK, limit, true)
}

// ByRequester lists up to limit of requester's requests, newest first.
func (st *Store) ByRequester(ctx context.Context, requester string, limit int) ([]*Request, error) {
	return st.query(ctx, state.IndexByRequester, "req_pk", requesterP+requester, limit, false)
}

func (st *Store) query(ctx context.Context, index, attr, value string, limit int, forward bool) ([]*Request, error) {
	out, err := st.db.Query(ctx, &dynamodb.QueryInput{
		TableName: &st.table, IndexName: aws.String(index),
		KeyConditionExpression:    aws.String("#k = :v"),
		ExpressionAttributeNames:  map[string]string{"#k": attr},
		ExpressionAttributeValues: map[string]types.AttributeValue{":v": s(value)},
		ScanIndexForward:          aws.Bool(forward),
		Limit:                     aws.Int32(int32(limit)),
	})
	if err != nil {
		return nil, fmt.Errorf("approval: list requests: %w", err)
	}
	var rs []*Request
	for _, it := range out.Items {
		r, err := decode(it)
		if err != nil {
			return nil, err
		}
		rs = append(rs, r)
	}
	return rs, nil
}
