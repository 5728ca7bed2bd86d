package state

import (
	"fmt"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/feature/dynamodb/attributevalue"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/keyvend/keyvend/pkg/policy"
)

// recordItem is a Record as stored, with the keys of its indexes.
type recordItem struct {
	PK string `dynamodbav:"pk"`
	SK string `dynamodbav:"sk"`

	NamePK      string `dynamodbav:"name_pk,omitempty"` // by-name
	NameSK      string `dynamodbav:"name_sk,omitempty"`
	RequesterPK string `dynamodbav:"req_pk,omitempty"` // by-requester
	ExpiryPK    string `dynamodbav:"exp_pk,omitempty"` // by-expiry, only when it expires
	ExpirySK    string `dynamodbav:"exp_sk,omitempty"`

	Name        string         `dynamodbav:"name"`
	UserARN     string         `dynamodbav:"user_arn,omitempty"`
	Phase       Phase          `dynamodbav:"phase"`
	Version     int64          `dynamodbav:"version"`
	Grants      []policy.Grant `dynamodbav:"grants"`
	GrantMode   string         `dynamodbav:"grant_mode,omitempty"`
	Intact      bool           `dynamodbav:"intact"`
	Requester   string         `dynamodbav:"requester"`
	Reason      string         `dynamodbav:"reason,omitempty"`
	RequestID   string         `dynamodbav:"request_id,omitempty"`
	CreatedAt   string         `dynamodbav:"created_at"`
	ExpiresAt   string         `dynamodbav:"expires_at,omitempty"`
	KeyID       string         `dynamodbav:"key_id,omitempty"`
	KeyAt       string         `dynamodbav:"key_at,omitempty"`
	UpdatedAt   string         `dynamodbav:"updated_at"`
	PrevKeyID   string         `dynamodbav:"prev_key_id,omitempty"`
	PrevKeyDel  string         `dynamodbav:"prev_key_deletes_at,omitempty"`
	LeaseHolder string         `dynamodbav:"lease_holder,omitempty"`
	LeaseUntil  int64          `dynamodbav:"lease_until,omitempty"` // Unix milliseconds
}

// bucketItem is a user's summary under one bucket it holds a grant on:
// listing by bucket is one query. Commit rewrites it with the record, so
// its phase and version are the record's as of its last commit.
type bucketItem struct {
	PK        string         `dynamodbav:"pk"`
	SK        string         `dynamodbav:"sk"`
	Name      string         `dynamodbav:"name"`
	Phase     Phase          `dynamodbav:"phase,omitempty"`
	Version   int64          `dynamodbav:"version,omitempty"`
	UserARN   string         `dynamodbav:"user_arn,omitempty"`
	Requester string         `dynamodbav:"requester"`
	Grants    []policy.Grant `dynamodbav:"grants"`
	Intact    bool           `dynamodbav:"intact"`
	Reason    string         `dynamodbav:"reason,omitempty"`
	CreatedAt string         `dynamodbav:"created_at"`
	ExpiresAt string         `dynamodbav:"expires_at,omitempty"`
	KeyID     string         `dynamodbav:"key_id,omitempty"`
	KeyAt     string         `dynamodbav:"key_at,omitempty"`
}

// historyItem is a History entry as stored.
type historyItem struct {
	PK  string `dynamodbav:"pk"`
	SK  string `dynamodbav:"sk"`
	TTL int64  `dynamodbav:"ttl,omitempty"`
	History
}

func timeString(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339Nano)
}

func parseTime(s string) time.Time {
	t, _ := time.Parse(time.RFC3339Nano, s)
	return t
}

func (r *Record) item() recordItem {
	it := recordItem{
		PK: userPK(r.Name), SK: recordSK,
		NamePK: namePK, NameSK: strings.ToLower(r.Name),
		Name: r.Name, UserARN: r.UserARN, Phase: r.Phase, Version: r.Version, Grants: r.Grants, GrantMode: r.GrantMode, Intact: r.Intact,
		Requester: r.Requester, Reason: r.Reason, RequestID: r.RequestID,
		CreatedAt: timeString(r.CreatedAt), KeyID: r.KeyID, KeyAt: timeString(r.KeyAt), UpdatedAt: timeString(r.UpdatedAt),
		LeaseHolder: r.LeaseHolder,
	}
	if r.PrevKeyID != "" {
		it.PrevKeyID, it.PrevKeyDel = r.PrevKeyID, timeString(r.PrevKeyDeletesAt)
	}
	if it.Grants == nil {
		it.Grants = []policy.Grant{}
	}
	if r.Requester != "" {
		it.RequesterPK = requesterP + r.Requester
	}
	if r.ExpiresAt != nil {
		it.ExpiresAt = timeString(*r.ExpiresAt)
	}
	if due := r.Due(); due != nil {
		it.ExpiryPK, it.ExpirySK = expiryPK, due.UTC().Format(time.RFC3339)+"#"+strings.ToLower(r.Name)
	}
	if !r.LeaseUntil.IsZero() {
		it.LeaseUntil = r.LeaseUntil.UnixMilli()
	}
	return it
}

func (it recordItem) record() *Record {
	r := &Record{
		Name: it.Name, UserARN: it.UserARN, Phase: it.Phase, Version: it.Version, Grants: it.Grants, GrantMode: it.GrantMode, Intact: it.Intact,
		Requester: it.Requester, Reason: it.Reason, RequestID: it.RequestID, CreatedAt: parseTime(it.CreatedAt),
		KeyID: it.KeyID, KeyAt: parseTime(it.KeyAt), UpdatedAt: parseTime(it.UpdatedAt), LeaseHolder: it.LeaseHolder,
		PrevKeyID: it.PrevKeyID, PrevKeyDeletesAt: parseTime(it.PrevKeyDel),
	}
	if it.ExpiresAt != "" {
		t := parseTime(it.ExpiresAt)
		r.ExpiresAt = &t
	}
	if it.LeaseUntil != 0 {
		r.LeaseUntil = time.UnixMilli(it.LeaseUntil)
	}
	return r
}

func (r *Record) bucketItems() []bucketItem {
	seen := map[string]bool{}
	var out []bucketItem
	for _, g := range r.Grants {
		if seen[g.Bucket] {
			continue
		}
		seen[g.Bucket] = true
		it := bucketItem{PK: bucketPK(g.Bucket), SK: bucketSK(r.Name), Name: r.Name, Phase: r.Phase, Version: r.Version, UserARN: r.UserARN, Requester: r.Requester, Grants: r.Grants,
			Intact: r.Intact, Reason: r.Reason, CreatedAt: timeString(r.CreatedAt), KeyID: r.KeyID, KeyAt: timeString(r.KeyAt)}
		if r.ExpiresAt != nil {
			it.ExpiresAt = timeString(*r.ExpiresAt)
		}
		out = append(out, it)
	}
	return out
}

func (it bucketItem) record() *Record {
	r := &Record{Name: it.Name, UserARN: it.UserARN, Phase: it.Phase, Version: it.Version, Grants: it.Grants, Intact: it.Intact, Requester: it.Requester, Reason: it.Reason,
		CreatedAt: parseTime(it.CreatedAt), KeyID: it.KeyID, KeyAt: parseTime(it.KeyAt)}
	if r.Phase == "" {
		r.Phase = Ready // a summary written before it carried the phase
	}
	if it.ExpiresAt != "" {
		t := parseTime(it.ExpiresAt)
		r.ExpiresAt = &t
	}
	return r
}

func marshal(v any) (map[string]types.AttributeValue, error) {
	m, err := attributevalue.MarshalMap(v)
	if err != nil {
		return nil, fmt.Errorf("state: encode item: %w", err)
	}
	return m, nil
}

func key(pk, sk string) map[string]types.AttributeValue {
	return map[string]types.AttributeValue{"pk": &types.AttributeValueMemberS{Value: pk}, "sk": &types.AttributeValueMemberS{Value: sk}}
}

func str(s string) types.AttributeValue { return &types.AttributeValueMemberS{Value: s} }

func num(n int64) types.AttributeValue { return &types.AttributeValueMemberN{Value: fmt.Sprint(n)} }
