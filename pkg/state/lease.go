package state

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/feature/dynamodb/attributevalue"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
)

// Get returns the record of name, or ErrNotFound.
func (s *Store) Get(ctx context.Context, name string) (*Record, error) {
	out, err := s.db.GetItem(ctx, &dynamodb.GetItemInput{TableName: &s.table, Key: key(userPK(name), recordSK), ConsistentRead: aws.Bool(true)})
	if err != nil {
		return nil, fmt.Errorf("state: read the record of %s: %w", name, err)
	}
	if len(out.Item) == 0 {
		return nil, ErrNotFound
	}
	var it recordItem
	if err := attributevalue.UnmarshalMap(out.Item, &it); err != nil {
		return nil, fmt.Errorf("state: decode the record of %s: %w", name, err)
	}
	return it.record(), nil
}

// Claim writes r as a new record (version 1), leased to holder for ttl,
// if no record of its name exists; else ErrExists. It is the claim on a
// name across processes, and the write-ahead entry of a create: a record
// left in Creating by a request that died is found by whoever comes next.
func (s *Store) Claim(ctx context.Context, r Record, holder string, ttl time.Duration) (*Record, error) {
	now := s.now()
	r.Version, r.LeaseHolder, r.LeaseUntil, r.UpdatedAt = 1, holder, now.Add(ttl), now
	it, err := marshal(r.item())
	if err != nil {
		return nil, err
	}
	_, err = s.db.PutItem(ctx, &dynamodb.PutItemInput{TableName: &s.table, Item: it, ConditionExpression: aws.String("attribute_not_exists(pk)")})
	switch {
	case conditionFailed(err):
		return nil, ErrExists
	case err != nil:
		return nil, fmt.Errorf("state: claim %s: %w", r.Name, err)
	}
	return &r, nil
}

// LeaseOpts narrows when Lease may take the lease.
type LeaseOpts struct {
	// Version, when not 0, must be the record's version (If-Match).
	Version int64
	// Phases the record must be in (any, when empty).
	Phases []Phase
	// SetPhase, when not empty, moves the record to that phase with the
	// lease (a delete marks the user Deleting as it takes it).
	SetPhase Phase
}

// Lease takes name's lease for holder until ttl from now — if nobody holds
// it, its lease is stale, or holder holds it already — in one conditional
// write: taking over a stale lease is atomic (two takers of the same stale
// lease: one wins, the other's condition fails). It returns the record as
// leased. Failures say why: ErrNotFound, ErrBusy (with the record), ErrVersion,
// ErrPhase.
func (s *Store) Lease(ctx context.Context, name, holder string, ttl time.Duration, o LeaseOpts) (*Record, error) {
	now := s.now()
	values := map[string]types.AttributeValue{":me": str(holder), ":until": num(now.Add(ttl).UnixMilli()), ":now": num(now.UnixMilli())}
	cond := "attribute_exists(pk) AND (attribute_not_exists(lease_holder) OR lease_until < :now OR lease_holder = :me)"
	if o.Version != 0 {
		cond += " AND version = :v"
		values[":v"] = num(o.Version)
	}
	if len(o.Phases) > 0 {
		var in []string
		for i, p := range o.Phases {
			k := fmt.Sprintf(":p%d", i)
			in = append(in, k)
			values[k] = str(string(p))
		}
		cond += " AND phase IN (" + strings.Join(in, ", ") + ")"
	}
	update := "SET lease_holder = :me, lease_until = :until"
	if o.SetPhase != "" && o.SetPhase != Ready {
		// A record moved to creating or deleting comes due StaleAfter from
		// now: the expiry index finds it if its holder dies. (Record.Due
		// would take an earlier expiry; a holder that dies finishing an
		// expired user is found StaleAfter later, which is soon enough.)
		update += ", phase = :phase, exp_pk = :epk, exp_sk = :esk"
		values[":phase"] = str(string(o.SetPhase))
		values[":epk"] = str(expiryPK)
		values[":esk"] = str(now.Add(StaleAfter).UTC().Format(time.RFC3339) + "#" + strings.ToLower(name))
	} else if o.SetPhase != "" {
		update += ", phase = :phase"
		values[":phase"] = str(string(o.SetPhase))
	}
	out, err := s.db.UpdateItem(ctx, &dynamodb.UpdateItemInput{
		TableName: &s.table, Key: key(userPK(name), recordSK),
		UpdateExpression: aws.String(update), ConditionExpression: aws.String(cond),
		ExpressionAttributeValues: values, ReturnValues: types.ReturnValueAllOld,
	})
	if conditionFailed(err) {
		return s.whyNotLeased(ctx, name, holder, o)
	}
	if err != nil {
		return nil, fmt.Errorf("state: lease %s: %w", name, err)
	}
	var it recordItem
	if err := attributevalue.UnmarshalMap(out.Attributes, &it); err != nil {
		return nil, fmt.Errorf("state: decode the record of %s: %w", name, err)
	}
	r := it.record()
	r.Was, r.LeaseHolder, r.LeaseUntil = r.Phase, holder, time.UnixMilli(now.Add(ttl).UnixMilli())
	if o.SetPhase != "" {
		r.Phase = o.SetPhase
	}
	return r, nil
}

// whyNotLeased reads the record to tell the caller why Lease's condition
// failed. The record it returns (with ErrBusy, ErrVersion, ErrPhase) is
// for the answer only: the caller does not hold it.
func (s *Store) whyNotLeased(ctx context.Context, name, holder string, o LeaseOpts) (*Record, error) {
	r, err := s.Get(ctx, name)
	if err != nil {
		return nil, err
	}
	switch {
	case r.Busy(s.now()) && r.LeaseHolder != holder:
		return r, ErrBusy
	case o.Version != 0 && r.Version != o.Version:
		return r, ErrVersion
	case len(o.Phases) > 0:
		return r, ErrPhase
	}
	return r, ErrBusy // it changed between the write and the read: as busy, try again
}

// Abort gives up holder's lease on name and puts the record back in phase
// (a delete that took the lease, marking the user Deleting, and was then
// refused).
func (s *Store) Abort(ctx context.Context, name, holder string, phase Phase) error {
	_, err := s.db.UpdateItem(ctx, &dynamodb.UpdateItemInput{
		TableName: &s.table, Key: key(userPK(name), recordSK),
		UpdateExpression:          aws.String("SET phase = :phase REMOVE lease_holder, lease_until"),
		ConditionExpression:       aws.String("lease_holder = :me"),
		ExpressionAttributeValues: map[string]types.AttributeValue{":me": str(holder), ":phase": str(string(phase))},
	})
	switch {
	case conditionFailed(err):
		return ErrLeaseLost
	case err != nil:
		return fmt.Errorf("state: give back %s: %w", name, err)
	}
	return nil
}

// Release gives up holder's lease on name; a lease holder no longer holds
// is left alone (ErrLeaseLost).
func (s *Store) Release(ctx context.Context, name, holder string) error {
	_, err := s.db.UpdateItem(ctx, &dynamodb.UpdateItemInput{
		TableName: &s.table, Key: key(userPK(name), recordSK),
		UpdateExpression:          aws.String("REMOVE lease_holder, lease_until"),
		ConditionExpression:       aws.String("lease_holder = :me"),
		ExpressionAttributeValues: map[string]types.AttributeValue{":me": str(holder)},
	})
	switch {
	case conditionFailed(err):
		return ErrLeaseLost
	case err != nil:
		return fmt.Errorf("state: release %s: %w", name, err)
	}
	return nil
}

// Change is a committed change of one user: the record as it is now, as
// it was (for the index items to remove), and its history entry.
type Change struct {
	Holder string
	Prev   *Record // the record as leased (its version is checked)
	Next   Record  // the record after the change (version bumped by Commit)
	Entry  *History
	// Keep keeps the lease (a change in the middle of an operation).
	Keep bool
	// KeepUntil, with Keep, is the lease's new expiry (zero: unchanged).
	KeepUntil time.Time
}

// Commit writes a change in one transaction — the record (its version
// bumped, the lease released unless Keep), its per-bucket summaries (those
// of buckets it no longer holds deleted), its history entry — only if the
// holder still holds the lease and the record is at Prev's version; else
// ErrLeaseLost and nothing is written.
func (s *Store) Commit(ctx context.Context, c Change) (*Record, error) {
	next := c.Next
	now := s.now()
	next.Version, next.UpdatedAt = c.Prev.Version+1, now
	next.LeaseHolder, next.LeaseUntil = "", time.Time{}
	if c.Keep {
		next.LeaseHolder, next.LeaseUntil = c.Holder, c.Prev.LeaseUntil
		if !c.KeepUntil.IsZero() {
			next.LeaseUntil = c.KeepUntil
		}
	}
	rec, err := marshal(next.item())
	if err != nil {
		return nil, err
	}
	items := []types.TransactWriteItem{{Put: &types.Put{
		TableName: &s.table, Item: rec,
		ConditionExpression:       aws.String("lease_holder = :me AND version = :v"),
		ExpressionAttributeValues: map[string]types.AttributeValue{":me": str(c.Holder), ":v": num(c.Prev.Version)},
	}}}
	more, err := s.indexWrites(c.Prev, &next)
	if err != nil {
		return nil, err
	}
	items = append(items, more...)
	if c.Entry != nil {
		h, err := s.historyPut(*c.Entry, 0)
		if err != nil {
			return nil, err
		}
		items = append(items, h)
	}
	if err := s.transact(ctx, next.Name, items); err != nil {
		return nil, err
	}
	return &next, nil
}

// Remove deletes name's record and its per-bucket summaries, appends its
// last history entry and marks the user deleted (Deleted: its history
// then gets its retention), in one transaction, only if holder holds the
// lease (else ErrLeaseLost).
func (s *Store) Remove(ctx context.Context, holder string, prev *Record, entry *History) error {
	items := []types.TransactWriteItem{{Delete: &types.Delete{
		TableName: &s.table, Key: key(userPK(prev.Name), recordSK),
		ConditionExpression:       aws.String("lease_holder = :me"),
		ExpressionAttributeValues: map[string]types.AttributeValue{":me": str(holder)},
	}}, {Put: &types.Put{TableName: &s.table, Item: map[string]types.AttributeValue{
		"pk": str(deletedPK), "sk": str(strings.ToLower(prev.Name)), "name": str(prev.Name), "at": str(timeString(s.now())),
	}}}}
	more, err := s.indexWrites(prev, nil)
	if err != nil {
		return err
	}
	items = append(items, more...)
	if entry != nil {
		h, err := s.historyPut(*entry, 0)
		if err != nil {
			return err
		}
		items = append(items, h)
	}
	return s.transact(ctx, prev.Name, items)
}

// indexWrites are the per-bucket summary writes that take prev's index to
// next's (nil: removed): puts for every bucket next holds (the summary
// changed with the record), deletes for the buckets only prev held.
func (s *Store) indexWrites(prev, next *Record) ([]types.TransactWriteItem, error) {
	var out []types.TransactWriteItem
	keep := map[string]bool{}
	if next != nil {
		for _, b := range next.bucketItems() {
			keep[b.PK] = true
			it, err := marshal(b)
			if err != nil {
				return nil, err
			}
			out = append(out, types.TransactWriteItem{Put: &types.Put{TableName: &s.table, Item: it}})
		}
	}
	if prev != nil {
		for _, b := range prev.bucketItems() {
			if !keep[b.PK] {
				out = append(out, types.TransactWriteItem{Delete: &types.Delete{TableName: &s.table, Key: key(b.PK, b.SK)}})
			}
		}
	}
	return out, nil
}

// transactAttempts bounds transact's own retries of a transaction that
// failed with a server error.
const transactAttempts = 4

// transact writes items in one transaction. It carries a client request
// token, which makes DynamoDB apply it at most once for ten minutes
// whatever the retries, so a server error (500) is retried here as well
// as by the SDK: moto fails a transaction with a 500 when another request
// changes the table while it snapshots it (its copy.deepcopy raises
// "dictionary changed size during iteration"), before writing anything.
func (s *Store) transact(ctx context.Context, name string, items []types.TransactWriteItem) error {
	var tok [16]byte
	_, _ = rand.Read(tok[:])
	token := hex.EncodeToString(tok[:])
	var err error
	for attempt := 1; ; attempt++ {
		_, err = s.db.TransactWriteItems(ctx, &dynamodb.TransactWriteItemsInput{TransactItems: items, ClientRequestToken: &token})
		var re *awshttp.ResponseError
		if attempt >= transactAttempts || !errors.As(err, &re) || re.HTTPStatusCode() < 500 {
			break
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("state: write the change of %s: %w", name, ctx.Err())
		case <-time.After(time.Duration(attempt*attempt) * 20 * time.Millisecond):
		}
	}
	var tce *types.TransactionCanceledException
	if errors.As(err, &tce) {
		for _, r := range tce.CancellationReasons {
			if aws.ToString(r.Code) == "ConditionalCheckFailed" {
				return ErrLeaseLost
			}
		}
	}
	if err != nil {
		return fmt.Errorf("state: write the change of %s: %w", name, err)
	}
	return nil
}

func conditionFailed(err error) bool {
	var ccf *types.ConditionalCheckFailedException
	return errors.As(err, &ccf)
}
