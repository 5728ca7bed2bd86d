package provision

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/keyvend/keyvend/pkg/authz"
	"github.com/keyvend/keyvend/pkg/caller"
	"github.com/keyvend/keyvend/pkg/policy"
	"github.com/keyvend/keyvend/pkg/state"
)

// List limits.
const (
	DefaultListLimit = 50
	MaxListLimit     = 100
)

// ListInput filters and pages the managed users.
type ListInput struct {
	Principal caller.Principal
	// Bucket keeps users with a grant on this bucket.
	Bucket string
	// Requester keeps users this principal requested.
	Requester string
	// Limit is the page size before filtering (DefaultListLimit).
	Limit int
	// Next is the opaque token of the previous page.
	Next string
	// ExpiringBefore keeps users whose expiry is before it.
	ExpiringBefore *time.Time
}

// ListResult is one page. A page may hold fewer users than Limit (the
// caller's visibility and expiring_before apply to the page read); Next
// is empty on the last page.
type ListResult struct {
	Users []UserSummary `json:"users"`
	Next  string        `json:"next,omitempty"`
}

// UserSummary is a managed user in a listing.
type UserSummary struct {
	User      string         `json:"user"`
	UserARN   string         `json:"user_arn"`
	Requester string         `json:"requester"`
	Reason    string         `json:"reason"`
	CreatedAt time.Time      `json:"created_at"`
	ExpiresAt *time.Time     `json:"expires_at,omitempty"`
	Grants    []policy.Grant `json:"grants"`
	// AccessKeys is the key in the user's secret, as the table records it.
	AccessKeys []KeyAge `json:"access_keys"`
	// State is the user's phase: creating, ready or deleting.
	State string `json:"state"`
	// Version is the user's record version (its ETag).
	Version int64 `json:"version"`
}

// KeyAge is an access key id with its status and age.
type KeyAge struct {
	AccessKeyID string    `json:"access_key_id"`
	Status      string    `json:"status"`
	CreatedAt   time.Time `json:"created_at"`
	AgeSeconds  int64     `json:"age_seconds"`
}

// List returns one page of the managed users the caller may see — the
// ones it requested, and those a rule with the list action covers — from
// the state table, one query per page whatever the number of users
// (state.Store.List): by bucket (its per-bucket index), by requester, or
// all, in name order. ExpiringBefore keeps users whose expiry is before
// it. Page tokens are opaque, sealed, and bound to the query (bucket,
// requester, limit): a changed or foreign token is KindInvalid.
func (s *Service) List(ctx context.Context, in ListInput) (*ListResult, error) {
	var fields []policy.FieldError
	if in.Limit == 0 {
		in.Limit = DefaultListLimit
	}
	if in.Limit < 1 || in.Limit > MaxListLimit {
		fields = append(fields, policy.FieldError{Field: "limit", Detail: fmt.Sprintf("must be 1 to %d", MaxListLimit)})
	}
	if in.Bucket != "" {
		if msg := policy.CheckBucketName(in.Bucket); msg != "" {
			fields = append(fields, policy.FieldError{Field: "bucket", Detail: msg})
		}
	}
	if len(fields) > 0 {
		return nil, invalid("the query is not valid", fields...)
	}
	page, err := s.store.List(ctx, state.Query{Bucket: in.Bucket, Requester: in.Requester, Limit: in.Limit, Next: in.Next})
	switch {
	case errors.Is(err, state.ErrToken):
		return nil, invalid("the query is not valid", policy.FieldError{Field: "next",
			Detail: "not a token from a previous page of this query: give the same bucket, requester and limit as the page it came from"})
	case err != nil:
		return nil, wrapf(err, "list users")
	}
	res := &ListResult{Users: []UserSummary{}, Next: page.Next}
	now := s.cfg.Now()
	for _, r := range page.Records {
		if in.ExpiringBefore != nil && (r.ExpiresAt == nil || !r.ExpiresAt.Before(*in.ExpiringBefore)) {
			continue
		}
		if !s.mayListRecord(in.Principal, r) {
			continue
		}
		sum := UserSummary{
			User: r.Name, UserARN: r.UserARN, Requester: r.Requester, Reason: r.Reason, State: string(r.Phase), Version: r.Version,
			CreatedAt: r.CreatedAt, ExpiresAt: r.ExpiresAt, Grants: r.Grants, AccessKeys: []KeyAge{},
		}
		if sum.Grants == nil {
			sum.Grants = []policy.Grant{}
		}
		if r.KeyID != "" {
			sum.AccessKeys = append(sum.AccessKeys, KeyAge{AccessKeyID: r.KeyID, Status: "Active", CreatedAt: r.KeyAt, AgeSeconds: int64(now.Sub(r.KeyAt) / time.Second)})
		}
		res.Users = append(res.Users, sum)
	}
	return res, nil
}

// mayListRecord is mayList on a record: its requester, or a rule with the
// list action on every one of its (intact) grants.
func (s *Service) mayListRecord(p caller.Principal, r *state.Record) bool {
	if ownsRequester(p, r.Requester) {
		return true
	}
	return r.Intact && s.rules.DecideIn(p.Names(), p.Channel, authz.List, r.Grants) == nil
}
