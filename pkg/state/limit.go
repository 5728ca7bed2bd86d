package state

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
)

// A requester's guard (item LIMIT#<requester> / LIMIT) serializes the
// creates that a rule's max_users limits: a create counts the requester's
// users, then claims its name in one transaction with the guard's version
// bumped, on condition that the version is still the one read before
// counting. Of two creates that counted the same users, one claim fails
// (ErrGuard) and counts again. The guard also lists the names of the users
// claimed under it, read consistently: the by-requester index is
// eventually consistent in DynamoDB, so a user claimed a moment ago might
// not be in it yet.

const limitPK = "LIMIT#"

// Guard is a requester's guard as read.
type Guard struct {
	Requester string
	Version   int64    // 0: no guard item yet
	Names     []string // users claimed under it (some may be gone since)
}

// ErrGuard: another create by the same requester claimed a user between
// this one's count and its claim; count again.
var ErrGuard = errors.New("state: the requester's users changed while they were counted")

// ReadGuard reads requester's guard (consistently).
func (s *Store) ReadGuard(ctx context.Context, requester string) (*Guard, error) {
	out, err := s.db.GetItem(ctx, &dynamodb.GetItemInput{TableName: &s.table, Key: key(limitPK+requester, "LIMIT"), ConsistentRead: aws.Bool(true)})
	if err != nil {
		return nil, fmt.Errorf("state: read the limit guard of %s: %w", requester, err)
	}
	g := &Guard{Requester: requester}
	if v, ok := out.Item["version"].(*types.AttributeValueMemberN); ok {
		if g.Version, err = strconv.ParseInt(v.Value, 10, 64); err != nil {
			return nil, fmt.Errorf("state: the limit guard of %s: version %q", requester, v.Value)
		}
	}
	if ns, ok := out.Item["names"].(*types.AttributeValueMemberSS); ok {
		g.Names = ns.Value
	}
	return g, nil
}

// Requested returns every record of requester, by the by-requester index
// (all pages).
func (s *Store) Requested(ctx context.Context, requester string) ([]*Record, error) {
	var out []*Record
	q := Query{Requester: requester, Limit: 100}
	for {
		page, err := s.List(ctx, q)
		if err != nil {
			return nil, err
		}
		out = append(out, page.Records...)
		if page.Next == "" {
			return out, nil
		}
		q.Next = page.Next
	}
}

// ClaimGuarded is Claim under g: in one transaction it writes r as a new
// record leased to holder and moves g to its next version holding names
// (the users still claimed under it, r's among them), on condition that no
// record of r's name exists (else ErrExists) and g is still at the version
// read (else ErrGuard).
func (s *Store) ClaimGuarded(ctx context.Context, r Record, holder string, ttl time.Duration, g *Guard, names []string) (*Record, error) {
	now := s.now()
	r.Version, r.LeaseHolder, r.LeaseUntil, r.UpdatedAt = 1, holder, now.Add(ttl), now
	it, err := marshal(r.item())
	if err != nil {
		return nil, err
	}
	cond, values := "attribute_not_exists(pk)", map[string]types.AttributeValue{
		":next": num(g.Version + 1), ":names": &types.AttributeValueMemberSS{Value: names},
	}
	if g.Version != 0 {
		cond = "version = :v"
		values[":v"] = num(g.Version)
	}
	var tok [16]byte
	_, _ = rand.Read(tok[:])
	_, err = s.db.TransactWriteItems(ctx, &dynamodb.TransactWriteItemsInput{ClientRequestToken: aws.String(hex.EncodeToString(tok[:])), TransactItems: []types.TransactWriteItem{
		{Put: &types.Put{TableName: &s.table, Item: it, ConditionExpression: aws.String("attribute_not_exists(pk)")}},
		{Update: &types.Update{
			TableName: &s.table, Key: key(limitPK+g.Requester, "LIMIT"),
			UpdateExpression:          aws.String("SET version = :next, #names = :names"),
			ExpressionAttributeNames:  map[string]string{"#names": "names"},
			ConditionExpression:       aws.String(cond),
			ExpressionAttributeValues: values,
		}},
	}})
	var tce *types.TransactionCanceledException
	if errors.As(err, &tce) {
		reasons := tce.CancellationReasons
		switch {
		case len(reasons) > 0 && aws.ToString(reasons[0].Code) == "ConditionalCheckFailed":
			return nil, ErrExists
		case len(reasons) > 1 && aws.ToString(reasons[1].Code) == "ConditionalCheckFailed":
			return nil, ErrGuard
		}
		for _, re := range reasons {
			if aws.ToString(re.Code) == "TransactionConflict" {
				return nil, ErrGuard // another transaction on the guard in flight
			}
		}
	}
	if err != nil {
		return nil, fmt.Errorf("state: claim %s: %w", r.Name, err)
	}
	return &r, nil
}
