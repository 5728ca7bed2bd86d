package state

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/feature/dynamodb/attributevalue"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
)

// Query selects records for a listing.
type Query struct {
	Bucket    string // users with a grant on this bucket
	Requester string // users this principal requested (exactly)
	Limit     int    // page size
	Next      string // the previous page's token
}

// Page is one page of records, in name order. Next is "" on the last page.
type Page struct {
	Records []*Record
	Next    string
}

// ErrToken means a page token keyvend did not issue, or issued for
// another query.
var ErrToken = errors.New("not a token keyvend issued for this query")

// List returns one page of records by one query whatever the number of
// users: by bucket (its per-bucket summaries), else by requester (the
// by-requester index), else every record (by-name). Filters that the
// query does not key on apply to the page it read, so a page may be short.
// Paging follows the index's keys, so a user deleted between pages never
// makes another one be skipped.
func (s *Store) List(ctx context.Context, q Query) (*Page, error) {
	in := &dynamodb.QueryInput{TableName: &s.table, Limit: aws.Int32(int32(q.Limit))}
	switch {
	case q.Bucket != "":
		in.KeyConditionExpression = aws.String("pk = :pk")
		in.ExpressionAttributeValues = map[string]types.AttributeValue{":pk": str(bucketPK(q.Bucket))}
	case q.Requester != "":
		in.IndexName = aws.String(IndexByRequester)
		in.KeyConditionExpression = aws.String("req_pk = :pk")
		in.ExpressionAttributeValues = map[string]types.AttributeValue{":pk": str(requesterP + q.Requester)}
	default:
		in.IndexName = aws.String(IndexByName)
		in.KeyConditionExpression = aws.String("name_pk = :pk")
		in.ExpressionAttributeValues = map[string]types.AttributeValue{":pk": str(namePK)}
	}
	binding := fmt.Sprintf("list %q %q %d", q.Bucket, q.Requester, q.Limit)
	if q.Next != "" {
		start, err := s.openToken(ctx, q.Next, binding)
		if err != nil {
			return nil, err
		}
		in.ExclusiveStartKey = start
	}
	out, err := s.db.Query(ctx, in)
	if err != nil {
		return nil, fmt.Errorf("state: list users: %w", err)
	}
	page := &Page{Records: []*Record{}}
	for _, raw := range out.Items {
		var r *Record
		if q.Bucket != "" {
			var it bucketItem
			if err := attributevalue.UnmarshalMap(raw, &it); err != nil {
				return nil, fmt.Errorf("state: decode a listed user: %w", err)
			}
			r = it.record()
		} else {
			var it recordItem
			if err := attributevalue.UnmarshalMap(raw, &it); err != nil {
				return nil, fmt.Errorf("state: decode a listed user: %w", err)
			}
			r = it.record()
		}
		if q.Requester != "" && r.Requester != q.Requester {
			continue
		}
		page.Records = append(page.Records, r)
	}
	if len(out.LastEvaluatedKey) > 0 {
		if page.Next, err = s.sealToken(ctx, out.LastEvaluatedKey, binding); err != nil {
			return nil, err
		}
	}
	return page, nil
}

// Due returns up to limit records whose expiry is at or before at, by the
// by-expiry index: the reaper reads what is due, not every user.
func (s *Store) Due(ctx context.Context, at time.Time, limit int) ([]*Record, error) {
	var out []*Record
	var start map[string]types.AttributeValue
	for len(out) < limit {
		page, err := s.db.Query(ctx, &dynamodb.QueryInput{
			TableName: &s.table, IndexName: aws.String(IndexByExpiry),
			KeyConditionExpression: aws.String("exp_pk = :pk AND exp_sk <= :at"),
			ExpressionAttributeValues: map[string]types.AttributeValue{
				":pk": str(expiryPK), ":at": str(at.UTC().Format(time.RFC3339) + "#\uffff"),
			},
			Limit:             aws.Int32(int32(limit - len(out))),
			ExclusiveStartKey: start,
		})
		if err != nil {
			return nil, fmt.Errorf("state: read the users due: %w", err)
		}
		for _, raw := range page.Items {
			var it recordItem
			if err := attributevalue.UnmarshalMap(raw, &it); err != nil {
				return nil, fmt.Errorf("state: decode a user due: %w", err)
			}
			out = append(out, it.record())
		}
		if len(page.LastEvaluatedKey) == 0 {
			break
		}
		start = page.LastEvaluatedKey
	}
	return out, nil
}

// Page tokens are the index's LastEvaluatedKey and the query they belong
// to, sealed with an HMAC-SHA256 under a key kept in the table (META
// TOKENKEY, made once at random by whichever instance needs it first), so
// every instance can open every instance's tokens and nobody can forge or
// alter one, or use it for another query.

type token struct {
	Binding string            `json:"q"`
	Key     map[string]string `json:"k"`
}

func (s *Store) sealToken(ctx context.Context, lek map[string]types.AttributeValue, binding string) (string, error) {
	key, err := s.pageKey(ctx)
	if err != nil {
		return "", err
	}
	t := token{Binding: binding, Key: map[string]string{}}
	for k, v := range lek {
		sv, ok := v.(*types.AttributeValueMemberS)
		if !ok {
			return "", fmt.Errorf("state: page key %s is not a string", k)
		}
		t.Key[k] = sv.Value
	}
	body, _ := json.Marshal(t)
	mac := hmac.New(sha256.New, key)
	mac.Write(body)
	return base64.RawURLEncoding.EncodeToString(body) + "." + base64.RawURLEncoding.EncodeToString(mac.Sum(nil)), nil
}

func (s *Store) openToken(ctx context.Context, tok, binding string) (map[string]types.AttributeValue, error) {
	key, err := s.pageKey(ctx)
	if err != nil {
		return nil, err
	}
	var bodyPart, macPart string
	for i := len(tok) - 1; i >= 0; i-- {
		if tok[i] == '.' {
			bodyPart, macPart = tok[:i], tok[i+1:]
			break
		}
	}
	body, err1 := base64.RawURLEncoding.DecodeString(bodyPart)
	sum, err2 := base64.RawURLEncoding.DecodeString(macPart)
	if err1 != nil || err2 != nil || bodyPart == "" {
		return nil, ErrToken
	}
	mac := hmac.New(sha256.New, key)
	mac.Write(body)
	if !hmac.Equal(sum, mac.Sum(nil)) {
		return nil, ErrToken
	}
	var t token
	if err := json.Unmarshal(body, &t); err != nil || t.Binding != binding || len(t.Key) == 0 {
		return nil, ErrToken
	}
	out := map[string]types.AttributeValue{}
	for k, v := range t.Key {
		out[k] = str(v)
	}
	return out, nil
}

// pageKey returns the page-token key, making it on first use.
func (s *Store) pageKey(ctx context.Context) ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.tokenKey != nil {
		return s.tokenKey, nil
	}
	read := func() ([]byte, error) {
		out, err := s.db.GetItem(ctx, &dynamodb.GetItemInput{TableName: &s.table, Key: key(metaPK, "TOKENKEY"), ConsistentRead: aws.Bool(true)})
		if err != nil {
			return nil, fmt.Errorf("state: read the page-token key: %w", err)
		}
		if b, ok := out.Item["key"].(*types.AttributeValueMemberB); ok && len(b.Value) >= 32 {
			return b.Value, nil
		}
		return nil, nil
	}
	k, err := read()
	if err != nil {
		return nil, err
	}
	if k == nil {
		fresh := make([]byte, 32)
		if _, err := rand.Read(fresh); err != nil {
			return nil, err
		}
		_, err := s.db.PutItem(ctx, &dynamodb.PutItemInput{TableName: &s.table,
			Item:                map[string]types.AttributeValue{"pk": str(metaPK), "sk": str("TOKENKEY"), "key": &types.AttributeValueMemberB{Value: fresh}},
			ConditionExpression: aws.String("attribute_not_exists(pk)")})
		if err != nil && !conditionFailed(err) {
			return nil, fmt.Errorf("state: make the page-token key: %w", err)
		}
		if k, err = read(); err != nil || k == nil { // ours, or the instance's that was first
			return nil, fmt.Errorf("state: the page-token key: %v", err)
		}
	}
	s.tokenKey = k
	return k, nil
}
