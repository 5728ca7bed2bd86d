package provision

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	iamtypes "github.com/aws/aws-sdk-go-v2/service/iam/types"

	"github.com/keyvend/keyvend/pkg/caller"
	"github.com/keyvend/keyvend/pkg/policy"
)

// List limits.
const (
	DefaultListLimit = 50
	MaxListLimit     = 100
	listConcurrency  = 8
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
}

// ListResult is one page. A page may hold fewer users than Limit (filters
// apply after paging); Next is empty on the last page.
type ListResult struct {
	Users []UserSummary `json:"users"`
	Next  string        `json:"next,omitempty"`
}

// UserSummary is a managed user in a listing.
type UserSummary struct {
	User       string         `json:"user"`
	UserARN    string         `json:"user_arn"`
	Requester  string         `json:"requester"`
	Reason     string         `json:"reason"`
	CreatedAt  time.Time      `json:"created_at"`
	ExpiresAt  *time.Time     `json:"expires_at,omitempty"`
	Grants     []policy.Grant `json:"grants"`
	AccessKeys []KeyAge       `json:"access_keys"`
}

// KeyAge is an access key id with its status and age.
type KeyAge struct {
	AccessKeyID string    `json:"access_key_id"`
	Status      string    `json:"status"`
	CreatedAt   time.Time `json:"created_at"`
	AgeSeconds  int64     `json:"age_seconds"`
}

// pageToken is where the next page starts: IAM's marker, and how many
// users of the page IAM answers from there were already returned (IAM
// itself never answers more than asked, but an endpoint that ignores
// MaxItems, like moto, does; keyvend pages such answers itself). F binds
// it to the query it was issued for: another query's token is refused.
type pageToken struct {
	Marker string `json:"m,omitempty"`
	Skip   int    `json:"s,omitempty"`
	F      string `json:"f"`
}

// queryBinding identifies a query's filters and page size.
func (in ListInput) queryBinding() string {
	sum := sha256.Sum256([]byte(fmt.Sprintf("%q %q %d", in.Bucket, in.Requester, in.Limit)))
	return hex.EncodeToString(sum[:8])
}

func (t pageToken) encode() string {
	b, _ := json.Marshal(t)
	return base64.RawURLEncoding.EncodeToString(b)
}

func decodeToken(tok string, in ListInput) (pageToken, error) {
	var t pageToken
	b, err := base64.RawURLEncoding.DecodeString(tok)
	if err == nil {
		dec := json.NewDecoder(bytes.NewReader(b))
		dec.DisallowUnknownFields()
		err = dec.Decode(&t)
	}
	switch {
	case err != nil || t.Skip < 0 || (t.Marker == "" && t.Skip == 0) || t.F == "":
		return pageToken{}, fmt.Errorf("not a token from a previous page")
	case t.F != in.queryBinding():
		return pageToken{}, fmt.Errorf("a token from a page of another query: give the same bucket, requester and limit as the page it came from")
	}
	return t, nil
}

// List returns one page of the managed users the caller may see: the ones
// it requested, and those a rule with the list action covers.
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
	var tok pageToken
	if in.Next != "" {
		t, err := decodeToken(in.Next, in)
		if err != nil {
			fields = append(fields, policy.FieldError{Field: "next", Detail: err.Error()})
		}
		tok = t
	}
	if len(fields) > 0 {
		return nil, &Error{Kind: KindInvalid, Detail: "the query is not valid", Fields: fields}
	}
	in2 := &iam.ListUsersInput{PathPrefix: &s.cfg.UserPath, MaxItems: aws.Int32(int32(in.Limit))}
	if tok.Marker != "" {
		in2.Marker = &tok.Marker
	}
	page, err := s.iam.ListUsers(ctx, in2)
	switch {
	case tok.Marker != "" && isCode(err, "InvalidInput", "ValidationError"):
		return nil, invalid("the query is not valid", policy.FieldError{Field: "next", Detail: "not a token from a previous page"})
	case err != nil:
		return nil, wrapf(err, "list users under %s", s.cfg.UserPath)
	}
	res := &ListResult{Users: []UserSummary{}}
	users := page.Users[min(tok.Skip, len(page.Users)):]
	switch {
	case len(users) > in.Limit:
		users = users[:in.Limit]
		res.Next = pageToken{Marker: tok.Marker, Skip: tok.Skip + in.Limit, F: in.queryBinding()}.encode()
	case page.IsTruncated:
		res.Next = pageToken{Marker: aws.ToString(page.Marker), F: in.queryBinding()}.encode()
	}
	summaries := make([]*UserSummary, len(users))
	errs := make([]error, len(users))
	sem := make(chan struct{}, listConcurrency)
	var wg sync.WaitGroup
	for i, u := range users {
		if aws.ToString(u.Path) != s.cfg.UserPath { // moto ignores PathPrefix for some calls; never trust it
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			summaries[i], errs[i] = s.summarize(ctx, in, u)
		}()
	}
	wg.Wait()
	for i, sum := range summaries {
		if errs[i] != nil {
			return nil, errs[i]
		}
		if sum != nil {
			res.Users = append(res.Users, *sum)
		}
	}
	return res, nil
}

// summarize reads one listed user; nil when it is filtered out, not
// managed, gone, or not visible to the caller.
func (s *Service) summarize(ctx context.Context, in ListInput, u iamtypes.User) (*UserSummary, error) {
	name := aws.ToString(u.UserName)
	var (
		wg         sync.WaitGroup
		tags       []iamtypes.Tag
		st         *userState
		tErr, sErr error
	)
	wg.Add(2)
	go func() {
		defer wg.Done()
		p := iam.NewListUserTagsPaginator(s.iam, &iam.ListUserTagsInput{UserName: &name})
		for p.HasMorePages() {
			page, err := p.NextPage(ctx)
			if err != nil {
				tErr = err
				return
			}
			tags = append(tags, page.Tags...)
		}
	}()
	go func() {
		defer wg.Done()
		st, sErr = s.readUserState(ctx, name, iamState)
	}()
	wg.Wait()
	if isCode(tErr, codeNoSuchEntity) || isCode(sErr, codeNoSuchEntity) {
		return nil, nil // deleted while listing
	}
	if tErr != nil {
		return nil, wrapf(tErr, "list tags of user %s", name)
	}
	if sErr != nil {
		return nil, sErr
	}
	u.Tags = tags
	if !s.managedUser(&u) {
		return nil, nil
	}
	requester := requesterOf(&u)
	if in.Requester != "" && requester != in.Requester {
		return nil, nil
	}
	if in.Bucket != "" && !hasBucket(st.held.Grants, in.Bucket) {
		return nil, nil
	}
	if !s.mayList(in.Principal, &u, st.held) {
		return nil, nil
	}
	now := s.cfg.Now()
	sum := &UserSummary{
		User: name, UserARN: aws.ToString(u.Arn), Requester: requester, Reason: userTag(&u, TagReason),
		CreatedAt: aws.ToTime(u.CreateDate), ExpiresAt: expiryOf(tags), Grants: st.held.Grants, AccessKeys: []KeyAge{},
	}
	if sum.Grants == nil {
		sum.Grants = []policy.Grant{}
	}
	for _, k := range st.keys {
		created := aws.ToTime(k.CreateDate)
		sum.AccessKeys = append(sum.AccessKeys, KeyAge{
			AccessKeyID: aws.ToString(k.AccessKeyId), Status: string(k.Status),
			CreatedAt: created, AgeSeconds: int64(now.Sub(created) / time.Second),
		})
	}
	return sum, nil
}

func hasBucket(grants []policy.Grant, bucket string) bool {
	for _, g := range grants {
		if g.Bucket == bucket {
			return true
		}
	}
	return false
}
