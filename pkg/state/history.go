package state

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/feature/dynamodb/attributevalue"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
)

// historySortKey orders a user's entries by time (RFC 3339 with
// nanoseconds, fixed width) and keeps two entries of one instant apart.
func historySortKey(h History) string {
	return historySK + h.At.UTC().Format("2006-01-02T15:04:05.000000000Z") + "#" + h.RequestID + "#" + h.Action
}

func (s *Store) historyPut(h History, ttl int64) (types.TransactWriteItem, error) {
	if h.At.IsZero() {
		h.At = s.now()
	}
	it, err := marshal(historyItem{PK: userPK(h.User), SK: historySortKey(h), TTL: ttl, History: h})
	if err != nil {
		return types.TransactWriteItem{}, err
	}
	return types.TransactWriteItem{Put: &types.Put{TableName: &s.table, Item: it}}, nil
}

// Append adds one entry to a user's history by itself (a change that
// commits no record: a refusal worth keeping, an approval, a reaper's
// step).
func (s *Store) Append(ctx context.Context, h History) error {
	if h.At.IsZero() {
		h.At = s.now()
	}
	it, err := marshal(historyItem{PK: userPK(h.User), SK: historySortKey(h), History: h})
	if err != nil {
		return err
	}
	if _, err := s.db.PutItem(ctx, &dynamodb.PutItemInput{TableName: &s.table, Item: it}); err != nil {
		return fmt.Errorf("state: append to the history of %s: %w", h.User, err)
	}
	return nil
}

// HistoryPage is one page of a user's history, newest first.
type HistoryPage struct {
	Entries []History
	Next    string // "" on the last page
}

// History returns up to limit entries of name's history, newest first,
// from the page token next ("" for the first page).
func (s *Store) History(ctx context.Context, name string, limit int, next string) (*HistoryPage, error) {
	in := &dynamodb.QueryInput{
		TableName:              &s.table,
		KeyConditionExpression: aws.String("pk = :pk AND begins_with(sk, :h)"),
		ExpressionAttributeValues: map[string]types.AttributeValue{
			":pk": str(userPK(name)), ":h": str(historySK),
		},
		ScanIndexForward: aws.Bool(false),
		Limit:            aws.Int32(int32(limit)),
	}
	binding := "history " + userPK(name)
	if next != "" {
		start, err := s.openToken(ctx, next, binding)
		if err != nil {
			return nil, err
		}
		in.ExclusiveStartKey = start
	}
	out, err := s.db.Query(ctx, in)
	if err != nil {
		return nil, fmt.Errorf("state: read the history of %s: %w", name, err)
	}
	page := &HistoryPage{Entries: []History{}}
	for _, raw := range out.Items {
		var it historyItem
		if err := attributevalue.UnmarshalMap(raw, &it); err != nil {
			return nil, fmt.Errorf("state: decode a history entry of %s: %w", name, err)
		}
		page.Entries = append(page.Entries, it.History)
	}
	if len(out.LastEvaluatedKey) > 0 {
		if page.Next, err = s.sealToken(ctx, out.LastEvaluatedKey, binding); err != nil {
			return nil, err
		}
	}
	return page, nil
}

// Deleted returns up to limit users deleted whose history has no
// retention yet (Remove marks them).
func (s *Store) Deleted(ctx context.Context, limit int) ([]string, error) {
	out, err := s.db.Query(ctx, &dynamodb.QueryInput{
		TableName: &s.table, KeyConditionExpression: aws.String("pk = :pk"),
		ExpressionAttributeValues: map[string]types.AttributeValue{":pk": str(deletedPK)},
		Limit:                     aws.Int32(int32(limit)),
	})
	if err != nil {
		return nil, fmt.Errorf("state: read the users deleted: %w", err)
	}
	var names []string
	for _, it := range out.Items {
		if n, ok := it["name"].(*types.AttributeValueMemberS); ok {
			names = append(names, n.Value)
		}
	}
	return names, nil
}

// ExpireHistory sets the TTL of every entry of name's history to retain
// from now: the history of a deleted user is kept that long, then DynamoDB
// deletes it. A live user's history is kept.
func (s *Store) ExpireHistory(ctx context.Context, name string, retain time.Duration) error {
	ttl := s.now().Add(retain).Unix()
	var start map[string]types.AttributeValue
	for {
		out, err := s.db.Query(ctx, &dynamodb.QueryInput{
			TableName:                 &s.table,
			KeyConditionExpression:    aws.String("pk = :pk AND begins_with(sk, :h)"),
			ExpressionAttributeValues: map[string]types.AttributeValue{":pk": str(userPK(name)), ":h": str(historySK)},
			ExclusiveStartKey:         start,
		})
		if err != nil {
			return fmt.Errorf("state: read the history of %s: %w", name, err)
		}
		for _, it := range out.Items {
			if _, err := s.db.UpdateItem(ctx, &dynamodb.UpdateItemInput{
				TableName: &s.table, Key: map[string]types.AttributeValue{"pk": it["pk"], "sk": it["sk"]},
				UpdateExpression:          aws.String("SET #ttl = :ttl"),
				ExpressionAttributeNames:  map[string]string{"#ttl": TTLAttribute},
				ExpressionAttributeValues: map[string]types.AttributeValue{":ttl": num(ttl)},
			}); err != nil {
				return fmt.Errorf("state: set the retention of the history of %s: %w", name, err)
			}
		}
		if len(out.LastEvaluatedKey) == 0 {
			break
		}
		start = out.LastEvaluatedKey
	}
	// Done: the user leaves the list of users deleted (Deleted).
	if _, err := s.db.DeleteItem(ctx, &dynamodb.DeleteItemInput{TableName: &s.table, Key: key(deletedPK, strings.ToLower(name))}); err != nil {
		return fmt.Errorf("state: mark the history of %s as retained: %w", name, err)
	}
	return nil
}

// Checkpoint is where the named walk of the reconciliation stopped (""
// for its start): it resumes there on its next run.
func (s *Store) Checkpoint(ctx context.Context, walk string) (string, error) {
	out, err := s.db.GetItem(ctx, &dynamodb.GetItemInput{TableName: &s.table, Key: key(metaPK, "CHECKPOINT#"+walk), ConsistentRead: aws.Bool(true)})
	if err != nil {
		return "", fmt.Errorf("state: read checkpoint %s: %w", walk, err)
	}
	if v, ok := out.Item["at"].(*types.AttributeValueMemberS); ok {
		return v.Value, nil
	}
	return "", nil
}

// SetCheckpoint records where the named walk stopped ("" starts it over).
func (s *Store) SetCheckpoint(ctx context.Context, walk, at string) error {
	_, err := s.db.PutItem(ctx, &dynamodb.PutItemInput{TableName: &s.table, Item: map[string]types.AttributeValue{
		"pk": str(metaPK), "sk": str("CHECKPOINT#" + walk), "at": str(at), "updated_at": str(timeString(s.now())),
	}})
	if err != nil {
		return fmt.Errorf("state: write checkpoint %s: %w", walk, err)
	}
	return nil
}
