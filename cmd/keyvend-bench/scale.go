package main

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb"

	"github.com/keyvend/keyvend/pkg/caller"
	"github.com/keyvend/keyvend/pkg/grants"
	"github.com/keyvend/keyvend/pkg/policy"
	"github.com/keyvend/keyvend/pkg/provision"
	"github.com/keyvend/keyvend/pkg/state"
)

// Seeded records: their grants spread over seedBuckets buckets, their
// requesters over seedRequesters principals, crossed (record i: bucket
// i mod 5, requester i/5 mod 5), so at N = 100 each bucket and each
// requester has 20 users: a full page (listLimit) at every N. Every
// bucket is one the bench's caller may list (*.example.com).
const (
	seedBuckets    = 5
	seedRequesters = 5
	seedWorkers    = 8
)

func seedBucket(i int) string { return fmt.Sprintf("team-%d.example.com", i%seedBuckets) }
func seedRequester(i int) string {
	return fmt.Sprintf("arn:aws:iam::123456789012:user/requester-%d", (i/seedBuckets)%seedRequesters)
}

// seedDB is the state table's client for seeding: a transaction
// (TransactWriteItems) is written as one conditional write per item, in
// order. moto copies the whole table for every item of a transaction, so
// seeding thousands of records by real transactions would take hours; the
// items and conditions pkg/state writes are the same. Only seeding uses
// it: every measured operation runs keyvend's own transactions.
type seedDB struct{ *dynamodb.Client }

func (d seedDB) TransactWriteItems(ctx context.Context, in *dynamodb.TransactWriteItemsInput, _ ...func(*dynamodb.Options)) (*dynamodb.TransactWriteItemsOutput, error) {
	for _, it := range in.TransactItems {
		var err error
		switch {
		case it.Put != nil:
			p := it.Put
			_, err = d.PutItem(ctx, &dynamodb.PutItemInput{TableName: p.TableName, Item: p.Item, ConditionExpression: p.ConditionExpression,
				ExpressionAttributeNames: p.ExpressionAttributeNames, ExpressionAttributeValues: p.ExpressionAttributeValues})
		case it.Delete != nil:
			x := it.Delete
			_, err = d.DeleteItem(ctx, &dynamodb.DeleteItemInput{TableName: x.TableName, Key: x.Key, ConditionExpression: x.ConditionExpression,
				ExpressionAttributeNames: x.ExpressionAttributeNames, ExpressionAttributeValues: x.ExpressionAttributeValues})
		case it.Update != nil:
			u := it.Update
			_, err = d.UpdateItem(ctx, &dynamodb.UpdateItemInput{TableName: u.TableName, Key: u.Key, UpdateExpression: u.UpdateExpression,
				ConditionExpression: u.ConditionExpression, ExpressionAttributeNames: u.ExpressionAttributeNames, ExpressionAttributeValues: u.ExpressionAttributeValues})
		}
		if err != nil {
			return nil, err
		}
	}
	return &dynamodb.TransactWriteItemsOutput{}, nil
}

var _ state.DynamoDB = seedDB{}

// seed writes the records from..to-1 (seed-00000, …) through pkg/state:
// each claimed (Store.Claim: the record, leased) and committed ready
// (Store.Commit: the record, its per-bucket summary, the lease released),
// as a create leaves a user, with one grant, its bucket and requester
// spread (seedBucket, seedRequester), no expiry, and no history entry.
// seedWorkers at a time.
func seed(ctx context.Context, st *stack, from, to int) error {
	store, err := state.New(seedDB{dynamodb.NewFromConfig(st.plain)}, benchTable)
	if err != nil {
		return err
	}
	next := atomic.Int64{}
	next.Store(int64(from))
	var wg sync.WaitGroup
	errs := make(chan error, seedWorkers)
	for range seedWorkers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= to || ctx.Err() != nil {
					return
				}
				if err := seedOne(ctx, store, i); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		return err
	}
	return ctx.Err()
}

func seedOne(ctx context.Context, store *state.Store, i int) error {
	name := fmt.Sprintf("seed-%05d", i)
	now := time.Now().UTC()
	r := state.Record{
		Name: name, UserARN: "arn:aws:iam::123456789012:user/keyvend/" + name, Phase: state.Creating,
		Grants: []policy.Grant{{Bucket: seedBucket(i), Access: policy.ReadWrite}}, GrantMode: string(grants.Policy), Intact: true,
		Requester: seedRequester(i), Reason: "bench seed", RequestID: "seed-" + name, CreatedAt: now,
	}
	holder := "bench/seed/" + name
	claimed, err := store.Claim(ctx, r, holder, time.Minute)
	if err != nil {
		return fmt.Errorf("seed %s: %w", name, err)
	}
	next := *claimed
	next.Phase, next.KeyID, next.KeyAt = state.Ready, fmt.Sprintf("AKIASEED%012d", i), now
	if _, err := store.Commit(ctx, state.Change{Holder: holder, Prev: claimed, Next: next}); err != nil {
		return fmt.Errorf("seed %s: %w", name, err)
	}
	return nil
}

// seedStep is how long seeding took to bring the table to N records.
type seedStep struct {
	N     int
	Added int
	Took  time.Duration
}

// listQuery is one kind of listing.
type listQuery struct {
	name              string
	bucket, requester string
}

var listQueries = []listQuery{
	{name: "all users"},
	{name: "by bucket", bucket: seedBucket(0)},
	{name: "by requester", requester: seedRequester(0)},
}

// listRow is the pages of one listing at one N.
type listRow struct {
	N     int
	Query string
	// per page: its time, its calls (operation names), the users on it,
	// and the time its calls took (moto's share)
	Times     []time.Duration
	Calls     [][]string
	Users     []int
	CallTimes []time.Duration
}

// callsPerPage renders the calls of the pages: "1 (Query)" when every
// page made the same calls, else each distinct set with its pages.
func (l listRow) callsPerPage() string {
	count := map[string]int{}
	var order []string
	for _, c := range l.Calls {
		k := strings.Join(countedOps(c), ", ")
		if count[k] == 0 {
			order = append(order, k)
		}
		count[k]++
	}
	var parts []string
	for _, k := range order {
		n := 0
		for _, c := range l.Calls {
			if strings.Join(countedOps(c), ", ") == k {
				n = len(c)
				break
			}
		}
		s := fmt.Sprintf("%d (%s)", n, k)
		if len(order) > 1 {
			s += fmt.Sprintf(" on %d pages", count[k])
		}
		parts = append(parts, s)
	}
	return strings.Join(parts, "; ")
}

// maxCalls is the most calls any page made.
func (l listRow) maxCalls() int {
	m := 0
	for _, c := range l.Calls {
		m = max(m, len(c))
	}
	return m
}

// ownTimes is each page's time less its calls': keyvend's own.
func (l listRow) ownTimes() []time.Duration {
	out := make([]time.Duration, len(l.Times))
	for i := range l.Times {
		out[i] = l.Times[i] - l.CallTimes[i]
	}
	return out
}

func (l listRow) meanUsers() float64 {
	if len(l.Users) == 0 {
		return 0
	}
	sum := 0
	for _, u := range l.Users {
		sum += u
	}
	return float64(sum) / float64(len(l.Users))
}

// listPages is how many pages of each listing are timed at each N;
// listLimit is their size: 20, so that every listing fills its pages at
// N = 100 too (20 users per bucket and per requester), and pages compare
// across N.
const (
	listPages = 20
	listLimit = 20
)

// measureList times listPages pages of each listing (all, by bucket, by
// requester) through provision.Service.List, at 0 ms added, each page's
// calls counted and timed; a listing that ends starts over.
func measureList(ctx context.Context, st *stack, n int) ([]listRow, error) {
	st.proxy.SetDelay(0)
	svc, err := st.newService(grants.Policy)
	if err != nil {
		return nil, err
	}
	p := caller.Principal{ID: benchCaller, Raw: benchCaller}
	// The first page a Store seals reads the page-token key (GetItem,
	// once per process): not a per-page cost.
	if _, err := svc.List(ctx, provision.ListInput{Principal: p}); err != nil {
		return nil, fmt.Errorf("list: %w", err)
	}
	var rows []listRow
	for _, q := range listQueries {
		row := listRow{N: n, Query: q.name}
		next := ""
		for range listPages {
			st.timeline.Start()
			start := time.Now()
			page, err := svc.List(ctx, provision.ListInput{Principal: p, Bucket: q.bucket, Requester: q.requester, Limit: listLimit, Next: next})
			took := time.Since(start)
			calls := st.timeline.Stop()
			if err != nil {
				return nil, fmt.Errorf("list %s at N=%d: %w", q.name, n, err)
			}
			ops := make([]string, len(calls))
			var inCalls time.Duration
			for i, c := range calls {
				ops[i] = c.Operation
				inCalls += c.End.Sub(c.Start)
			}
			row.Times, row.Calls, row.Users = append(row.Times, took), append(row.Calls, ops), append(row.Users, len(page.Users))
			row.CallTimes = append(row.CallTimes, inCalls)
			next = page.Next
		}
		rows = append(rows, row)
	}
	return rows, nil
}

// reapPart is one part of a reaper run: its calls and time.
type reapPart struct {
	Name  string
	Calls []timedCall
	Took  time.Duration
	// Transacts are the durations of its TransactWriteItems calls.
	Transacts []time.Duration
}

// reapResult is one reaper run at N records with some due.
type reapResult struct {
	N, Due, Live, Slice int
	Setup               time.Duration // creating the real users
	Seeding             time.Duration
	Took                time.Duration
	Parts               []reapPart
	Report              *provision.ReapReport
}

// Reaper scenario: live real users that the reconciliation's slice walks
// (IAM users, records and secrets), due real users past their expiry.
const reapLive = 100

// measureReap builds the reaper's table — reapLive users and due users
// with an expiry of 1 h made by Create (real IAM users, keys, secrets,
// records), then seeded records up to n — and runs Reap once, on a clock
// 2 h ahead, with the deployed settings (ReapBatch 500, ReconcileSlice
// 100), 0 ms added. Its calls are split into its parts by the state-table
// calls that start them: the reconciliation starts by reading the IAM
// users walk's checkpoint, the history retention by querying the users
// deleted. With list, the listings are timed on that table first (at N =
// n; measureList).
func measureReap(ctx context.Context, st *stack, n, due int, list bool, progress func(string)) (*reapResult, []listRow, error) {
	res, rows, err := reapAt(ctx, st, n, due, list, progress)
	if err != nil {
		return nil, nil, fmt.Errorf("reaper at N = %d: %w", n, err)
	}
	return res, rows, nil
}

func reapAt(ctx context.Context, st *stack, n, due int, list bool, progress func(string)) (*reapResult, []listRow, error) {
	if n < reapLive+due {
		return nil, nil, fmt.Errorf("N must be at least %d", reapLive+due)
	}
	if err := st.reset(ctx); err != nil {
		return nil, nil, err
	}
	st.proxy.SetDelay(0)
	res := &reapResult{N: n, Due: due, Live: reapLive}
	svc, err := st.newService(grants.Policy)
	if err != nil {
		return nil, nil, err
	}
	p := caller.Principal{ID: benchCaller, Raw: benchCaller}
	start := time.Now()
	var inputs []provision.CreateInput
	for i := range reapLive {
		inputs = append(inputs, provision.CreateInput{Principal: p, RequestID: fmt.Sprintf("live-%03d", i),
			Request: provision.CreateRequest{User: fmt.Sprintf("live-%03d", i), Grants: []policy.Grant{{Bucket: seedBucket(i), Access: policy.ReadWrite}}, Reason: "bench reaper"}})
	}
	for i := range due {
		inputs = append(inputs, provision.CreateInput{Principal: p, RequestID: fmt.Sprintf("due-%02d", i),
			Request: provision.CreateRequest{User: fmt.Sprintf("due-%02d", i), Grants: []policy.Grant{{Bucket: seedBucket(i), Access: policy.ReadWrite}}, Reason: "bench reaper", ExpiresIn: "1h"}})
	}
	errs := make([]error, len(inputs))
	each(inputs, 4, func(i int, in provision.CreateInput) { _, errs[i] = svc.Create(ctx, in) })
	for _, err := range errs {
		if err != nil {
			return nil, nil, fmt.Errorf("set-up: %w", err)
		}
	}
	res.Setup = time.Since(start)
	progress(fmt.Sprintf("reaper: %d users made by Create (%d expiring in 1 h) in %s; seeding the table to %d records", len(inputs), due, res.Setup.Round(time.Second), n))
	start = time.Now()
	if err := seed(ctx, st, 0, n-len(inputs)); err != nil {
		return nil, nil, err
	}
	res.Seeding = time.Since(start)
	progress(fmt.Sprintf("reaper: %d records seeded in %s", n-len(inputs), res.Seeding.Round(time.Second)))
	var rows []listRow
	if list {
		progress(fmt.Sprintf("list: timing pages at N = %d", n))
		if rows, err = measureList(ctx, st, n); err != nil {
			return nil, nil, err
		}
	}
	progress(fmt.Sprintf("reaper: reaping %d due at N = %d", due, n))
	later := func() time.Time { return time.Now().Add(2 * time.Hour) }
	reaper, err := st.newService(grants.Policy, func(s *provision.Settings) { s.Now = later })
	if err != nil {
		return nil, nil, err
	}
	st.timeline.Start()
	begin := time.Now()
	rep, err := reaper.Reap(ctx)
	end := time.Now()
	calls := st.timeline.Stop()
	res.Took, res.Report = end.Sub(begin), rep
	if err != nil {
		return nil, nil, fmt.Errorf("reap: %w", err)
	}
	if len(rep.Errors) > 0 || len(rep.Expired) != due {
		return nil, nil, fmt.Errorf("reap: %d of %d due users deleted, errors %v", len(rep.Expired), due, rep.Errors)
	}
	res.Slice = 100 // provision.Settings' default, as deployed (app.Service sets none)
	res.Parts = splitReap(calls, begin, end)
	progress(fmt.Sprintf("reaper: %d due deleted in %s", due, res.Took.Round(time.Second)))
	return res, rows, nil
}

// splitReap splits a reaper run's calls (by start) into its parts: what
// is due (from the start), the reconciliation (from the IAM users walk's
// checkpoint read), the history retention (from the query of the users
// deleted).
func splitReap(calls []timedCall, begin, end time.Time) []reapPart {
	recon, hist := len(calls), len(calls)
	for i, c := range calls {
		if recon == len(calls) && c.Operation == "GetItem" && c.Key == "META CHECKPOINT#iam-users" {
			recon = i
		}
		if i >= recon && c.Operation == "Query" && c.Key == "DELETED" {
			hist = i
			break
		}
	}
	at := func(i int) time.Time {
		if i < len(calls) {
			return calls[i].Start
		}
		return end
	}
	parts := []reapPart{
		{Name: "due", Calls: calls[:recon], Took: at(recon).Sub(begin)},
		{Name: "reconciliation", Calls: calls[recon:hist], Took: at(hist).Sub(at(recon))},
		{Name: "history", Calls: calls[hist:], Took: end.Sub(at(hist))},
	}
	for i := range parts {
		for _, c := range parts[i].Calls {
			if c.Operation == commitCall {
				parts[i].Transacts = append(parts[i].Transacts, c.End.Sub(c.Start))
			}
		}
	}
	return parts
}

// each runs f on every item, n at a time.
func each[T any](items []T, n int, f func(int, T)) {
	sem := make(chan struct{}, n)
	var wg sync.WaitGroup
	for i, it := range items {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			f(i, it)
		}()
	}
	wg.Wait()
}

// measureLists seeds the table to each N in turn and times the listings
// at each.
func measureLists(ctx context.Context, st *stack, sizes []int, progress func(string)) ([]seedStep, []listRow, error) {
	if err := st.reset(ctx); err != nil {
		return nil, nil, err
	}
	st.proxy.SetDelay(0)
	var steps []seedStep
	var rows []listRow
	have := 0
	for _, n := range sizes {
		start := time.Now()
		if err := seed(ctx, st, have, n); err != nil {
			return nil, nil, err
		}
		steps = append(steps, seedStep{N: n, Added: n - have, Took: time.Since(start)})
		have = n
		progress(fmt.Sprintf("list: seeded to %d records (%d in %s); timing pages", n, steps[len(steps)-1].Added, steps[len(steps)-1].Took.Round(time.Second)))
		r, err := measureList(ctx, st, n)
		if err != nil {
			return nil, nil, err
		}
		rows = append(rows, r...)
	}
	return steps, rows, nil
}
