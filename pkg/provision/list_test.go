package provision_test

import (
	"encoding/base64"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	iamtypes "github.com/aws/aws-sdk-go-v2/service/iam/types"

	"github.com/keyvend/keyvend/pkg/awstest"
	"github.com/keyvend/keyvend/pkg/caller"
	"github.com/keyvend/keyvend/pkg/policy"
	"github.com/keyvend/keyvend/pkg/provision"
)

const listRequesters = 5

func listRequester(i int) string { return fmt.Sprintf("arn:aws:iam::123456789012:user/req-%d", i) }

func listBucket(i int) string { return fmt.Sprintf("bk-%d.example.com", i) }

const (
	auditorARN = "arn:aws:iam::123456789012:user/auditor"
	narrowARN  = "arn:aws:iam::123456789012:user/narrow"
)

// listRules: the requesters vend on *.example.com; the auditor may list
// all of those users; narrow may list only read-only users of bk-1.
var listRules = func() string {
	var ps []string
	for i := range listRequesters {
		ps = append(ps, `"`+listRequester(i)+`"`)
	}
	return `{"rules":[
 {"principals":[` + strings.Join(ps, ",") + `],"buckets":["*.example.com"],"access":` + allAccess + `},
 {"principals":["` + auditorARN + `"],"buckets":["*.example.com"],"access":` + allAccess + `,"actions":["list"]},
 {"principals":["` + narrowARN + `"],"buckets":["bk-1.example.com"],"access":["read-only"],"actions":["list"]}
]}`
}()

// listedUser is what a summary of a managed user must say.
type listedUser struct {
	requester string
	groups    []string // sorted
	keys      []string // sorted
	expires   *time.Time
}

// listAll follows Next until it is empty and returns the summaries by
// user, failing on a user listed twice, and the page sizes.
func listAll(t *testing.T, svc *provision.Service, in provision.ListInput) (map[string]provision.UserSummary, []int) {
	t.Helper()
	got := map[string]provision.UserSummary{}
	var pages []int
	for {
		res, err := svc.List(ctx(), in)
		if err != nil {
			t.Fatalf("list %+v: %v", in, err)
		}
		pages = append(pages, len(res.Users))
		for _, u := range res.Users {
			if _, dup := got[u.User]; dup {
				t.Errorf("user %s listed twice", u.User)
			}
			got[u.User] = u
		}
		if res.Next == "" {
			return got, pages
		}
		if len(pages) > 50 {
			t.Fatal("more than 50 pages")
		}
		in.Next = res.Next
	}
}

func names[V any](m map[string]V) []string {
	out := []string{}
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func TestList(t *testing.T) {
	srv := awstest.Dedicated(t)
	e := newEnvOn(t, srv.URL, listRules)
	model := map[string]*listedUser{}

	// 5 users through Create, one per requester, one of them expiring.
	for i := range listRequesters {
		name := fmt.Sprintf("lc-%d", i)
		in := provision.CreateInput{
			Principal: who(listRequester(i)), RequestID: "req-" + name,
			Request: provision.CreateRequest{User: name, Reason: "list test", Grants: []policy.Grant{
				{Bucket: listBucket(i), Access: policy.ReadOnly},
			}},
		}
		if i == 2 {
			in.Request.ExpiresIn = "24h"
		}
		res, err := e.svc.Create(ctx(), in)
		if err != nil {
			t.Fatal(err)
		}
		model[name] = &listedUser{requester: listRequester(i), groups: []string{policy.GroupName(in.Request.Grants[0])}, keys: []string{res.AccessKeyID}, expires: res.ExpiresAt}
		if i == 2 && res.ExpiresAt == nil {
			t.Fatal("no expiry on the expiring user")
		}
	}

	// 60 more made directly, in parallel, as keyvend would have: requester
	// i%5, read-only on bk-(i%7), every 4th also read-write on
	// bk-((i+3)%7), every 5th expiring, two of three with a key.
	for b := range 7 {
		for _, a := range []policy.Access{policy.ReadOnly, policy.ReadWrite} {
			mustGroup(t, e.iam, policy.GroupName(policy.Grant{Bucket: listBucket(b), Access: a}), "/keyvend/")
		}
	}
	expiry := time.Now().Add(48 * time.Hour).UTC().Truncate(time.Second)
	var mu sync.Mutex
	var wg sync.WaitGroup
	sem := make(chan struct{}, 16)
	for i := range 60 {
		name := fmt.Sprintf("ls-%02d", i)
		u := &listedUser{requester: listRequester(i % listRequesters), keys: []string{}}
		grants := []policy.Grant{{Bucket: listBucket(i % 7), Access: policy.ReadOnly}}
		if i%4 == 0 {
			grants = append(grants, policy.Grant{Bucket: listBucket((i + 3) % 7), Access: policy.ReadWrite})
		}
		u.groups = groupNames(grants)
		var extra []iamtypes.Tag
		if i%5 == 0 {
			u.expires = &expiry
			extra = append(extra, expiryTag(expiry))
		}
		model[name] = u
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			// Not t.Fatal: this is not the test's goroutine.
			if _, err := e.iam.CreateUser(ctx(), &iam.CreateUserInput{UserName: &name, Path: aws.String("/keyvend/"), Tags: managedTags(u.requester, extra...)}); err != nil {
				t.Errorf("create user %s: %v", name, err)
				return
			}
			for _, g := range u.groups {
				if _, err := e.iam.AddUserToGroup(ctx(), &iam.AddUserToGroupInput{UserName: &name, GroupName: aws.String(g)}); err != nil {
					t.Errorf("add %s to %s: %v", name, g, err)
				}
			}
			if i%3 != 0 {
				out, err := e.iam.CreateAccessKey(ctx(), &iam.CreateAccessKeyInput{UserName: &name})
				if err != nil {
					t.Errorf("create key for %s: %v", name, err)
					return
				}
				mu.Lock()
				u.keys = []string{aws.ToString(out.AccessKey.AccessKeyId)}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}

	// Two users keyvend does not manage, with everything else a managed
	// user of req-0 on bk-1 would have.
	unmanagedIn, outside := "lu-no-tag", "lu-outside"
	mustCreateUser(t, e.iam, unmanagedIn, "/keyvend/", managedTags(listRequester(0))[1:])
	mustCreateUser(t, e.iam, outside, "/", managedTags(listRequester(0)))
	for _, n := range []string{unmanagedIn, outside} {
		mustJoin(t, e.iam, n, policy.GroupName(policy.Grant{Bucket: listBucket(1), Access: policy.ReadOnly}))
		mustCreateKey(t, e.iam, n)
	}
	if len(model) != 65 {
		t.Fatalf("model has %d users", len(model))
	}
	// The 60 hand-made users are what a deployment vended before the state
	// table: keyvend reindex records them (and only keyvend's: not the
	// untagged one, not the one outside the path). Their summaries come
	// from the table: the key is the one in the user's secret (none here).
	rep, err := e.svc.Reindex(ctx())
	if err != nil || len(rep.Errors) > 0 {
		t.Fatalf("reindex: %v %+v", err, rep.Errors)
	}
	if len(rep.Adopted) != 60 {
		t.Fatalf("reindex adopted %d users, want the 60 made by hand", len(rep.Adopted))
	}
	for n, u := range model {
		if strings.HasPrefix(n, "ls-") {
			u.keys = []string{}
		}
	}

	paged := e.svc
	wantNames := func(keep func(n string, u *listedUser) bool) []string {
		out := []string{}
		for n, u := range model {
			if keep(n, u) {
				out = append(out, n)
			}
		}
		sort.Strings(out)
		return out
	}
	all := wantNames(func(string, *listedUser) bool { return true })

	t.Run("pages of 20 hold every managed user once", func(t *testing.T) {
		start := time.Now()
		got, pages := listAll(t, paged, provision.ListInput{Principal: who(auditorARN), Limit: 20})
		// 65 recorded users in pages of 20.
		if !slices.Equal(pages, []int{20, 20, 20, 5}) {
			t.Errorf("page sizes %v, want [20 20 20 5] (65 recorded users in pages of 20)", pages)
		}
		if n := names(got); !slices.Equal(n, all) {
			t.Errorf("listed %d users, want the %d managed ones:\ngot  %v\nwant %v", len(n), len(all), n, all)
		}
		for n, s := range got {
			u := model[n]
			if u == nil {
				continue
			}
			var groups []string
			for _, g := range s.Grants {
				groups = append(groups, policy.GroupName(g))
			}
			if !slices.Equal(sortedCopy(groups), u.groups) {
				t.Errorf("%s: grants %v, want groups %v", n, s.Grants, u.groups)
			}
			if s.Requester != u.requester || s.Reason == "" || s.CreatedAt.IsZero() || !strings.Contains(s.UserARN, ":user/keyvend/"+n) {
				t.Errorf("%s: summary %+v", n, s)
			}
			var keys []string
			for _, k := range s.AccessKeys {
				keys = append(keys, k.AccessKeyID)
				if k.AgeSeconds < 0 || k.Status != "Active" || k.CreatedAt.IsZero() || k.CreatedAt.After(time.Now()) {
					t.Errorf("%s: key %+v", n, k)
				}
				if max := int64(time.Since(start)/time.Second) + 120; k.AgeSeconds > max {
					t.Errorf("%s: key age %ds, the test began %ds ago", n, k.AgeSeconds, max-120)
				}
			}
			if !slices.Equal(sortedCopy(keys), sortedCopy(u.keys)) {
				t.Errorf("%s: keys %v, want %v", n, keys, u.keys)
			}
			switch {
			case u.expires == nil && s.ExpiresAt != nil:
				t.Errorf("%s: expires %s, want no expiry", n, s.ExpiresAt)
			case u.expires != nil && (s.ExpiresAt == nil || !s.ExpiresAt.Equal(*u.expires)):
				t.Errorf("%s: expires %v, want %s", n, s.ExpiresAt, u.expires)
			}
		}
	})

	t.Run("filter by bucket", func(t *testing.T) {
		got, _ := listAll(t, paged, provision.ListInput{Principal: who(auditorARN), Bucket: listBucket(2), Limit: 20})
		want := wantNames(func(_ string, u *listedUser) bool {
			return slices.ContainsFunc(u.groups, func(g string) bool { return strings.HasSuffix(g, "_"+listBucket(2)) })
		})
		if n := names(got); !slices.Equal(n, want) || len(want) < 10 {
			t.Errorf("bucket %s: got %v, want %v", listBucket(2), n, want)
		}
	})

	t.Run("filter by requester", func(t *testing.T) {
		got, _ := listAll(t, paged, provision.ListInput{Principal: who(auditorARN), Requester: listRequester(3), Limit: 20})
		want := wantNames(func(_ string, u *listedUser) bool { return u.requester == listRequester(3) })
		if n := names(got); !slices.Equal(n, want) || len(want) != 13 {
			t.Errorf("requester %s: got %v, want %v", listRequester(3), n, want)
		}
	})

	t.Run("a requester sees only its own users, in pages of the default size", func(t *testing.T) {
		e.resetCounters()
		got, pages := listAll(t, paged, provision.ListInput{Principal: who(listRequester(1))})
		want := wantNames(func(_ string, u *listedUser) bool { return u.requester == listRequester(1) })
		if n := names(got); !slices.Equal(n, want) || len(want) != 13 {
			t.Errorf("req-1 sees %v, want %v", n, want)
		}
		// Limit 0 is the default page size (the HTTP API turns an explicit
		// limit=0 into an invalid -1): the 65 recorded users in two pages of
		// 50 and 15, of which req-1 sees its own. One query per page, and
		// IAM is not asked at all.
		if len(pages) != 2 {
			t.Errorf("%d pages (%v), want 2", len(pages), pages)
		}
		if n := e.calls.Count("Query"); n != len(pages) {
			t.Errorf("%d queries for %d pages, want one per page", n, len(pages))
		}
		for _, c := range e.calls.Calls() {
			if c.Service != "DynamoDB" {
				t.Errorf("listing called %s", c)
			}
		}
	})

	t.Run("a list rule covers only the users whose every grant it allows", func(t *testing.T) {
		got, _ := listAll(t, e.svc, provision.ListInput{Principal: who(narrowARN), Limit: 100})
		want := wantNames(func(_ string, u *listedUser) bool {
			return slices.Equal(u.groups, []string{"keyvend_read-only_" + listBucket(1)})
		})
		if n := names(got); !slices.Equal(n, want) || len(want) < 5 {
			t.Errorf("narrow sees %v, want %v", n, want)
		}
		res, err := paged.List(ctx(), provision.ListInput{Principal: caller.Principal{}, Limit: 20})
		if err != nil || len(res.Users) != 0 || res.Next == "" {
			t.Errorf("anonymous: %v, %v; want an empty first page", res, err)
		}
	})

	t.Run("a token is bound to the query it was issued for", func(t *testing.T) {
		first, err := e.svc.List(ctx(), provision.ListInput{Principal: who(auditorARN), Bucket: listBucket(1), Limit: 3})
		if err != nil || first.Next == "" {
			t.Fatalf("first page: %v, %+v", err, first)
		}
		// the same query goes on
		if _, err := e.svc.List(ctx(), provision.ListInput{Principal: who(auditorARN), Bucket: listBucket(1), Limit: 3, Next: first.Next}); err != nil {
			t.Fatalf("next page of the same query: %v", err)
		}
		// another bucket, requester or page size is another query
		for _, in := range []provision.ListInput{
			{Bucket: listBucket(2), Limit: 3},
			{Bucket: listBucket(1), Limit: 4},
			{Bucket: listBucket(1), Limit: 3, Requester: listRequester(1)},
			{Limit: 3},
		} {
			in.Principal, in.Next = who(auditorARN), first.Next
			e.resetCounters()
			_, err := e.svc.List(ctx(), in)
			if pe := wantKind(t, err, provision.KindInvalid); len(pe.Fields) != 1 || pe.Fields[0].Field != "next" {
				t.Errorf("list %+v with another query's token: %+v", in, pe.Fields)
			}
			if c := e.calls.Calls(); len(c) != 0 {
				t.Errorf("list %+v made calls %v", in, c)
			}
		}
	})

	t.Run("invalid queries make no calls", func(t *testing.T) {
		enc := base64.RawURLEncoding.EncodeToString
		for _, in := range []provision.ListInput{
			// shaped like keyvend's tokens, but not issued for any query
			{Next: enc([]byte(`{"m":"x","s":1}`))},
			{Next: enc([]byte(`{"m":"x","s":1,"f":"0000000000000000"}`))},
			{Next: enc([]byte(`{"m":"x","f":"0000000000000000","extra":1}`))},
			{Next: "garbage!"},
			{Next: enc([]byte("v2:after:ls-10"))},
			{Next: enc([]byte("v1:"))},
			{Limit: -1},
			{Limit: provision.MaxListLimit + 1},
			{Bucket: "Not_A_Bucket"},
		} {
			in.Principal = who(auditorARN)
			e.resetCounters()
			_, err := e.svc.List(ctx(), in)
			if provision.KindOf(err) != provision.KindInvalid {
				t.Errorf("list %+v: %v, want KindInvalid", in, err)
			}
			if c := e.calls.Calls(); len(c) != 0 {
				t.Errorf("list %+v made calls %v", in, c)
			}
		}
	})
}
