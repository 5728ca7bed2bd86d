package main

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/keyvend/keyvend/pkg/provision"
)

// at makes a call of service:op from a to b (in ms after t0).
func at(service, op string, a, b int) timedCall {
	t0 := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	return timedCall{Service: service, Operation: op, Start: t0.Add(time.Duration(a) * time.Millisecond), End: t0.Add(time.Duration(b) * time.Millisecond)}
}

// provisionCalls are a provision's calls as the code sends them: the claim
// beside CreateUser, the key beside the policy, the secret, the commit.
func provisionCalls() []timedCall {
	return []timedCall{
		at(svcIAM, "CreateUser", 0, 30), at(svcDynamo, "PutItem", 1, 29),
		at(svcIAM, "CreateAccessKey", 31, 60), at(svcIAM, "PutUserPolicy", 31, 62),
		at(svcSecrets, "CreateSecret", 63, 90),
		at(svcDynamo, "TransactWriteItems", 91, 120),
	}
}

// TestCriticalPath: the path is the longest chain of calls each started
// after the one before ended; a table write beside an IAM call of the same
// round is not on it.
func TestCriticalPath(t *testing.T) {
	path := criticalPath(provisionCalls())
	if got, want := pathString(path), "CreateUser → PutUserPolicy → CreateSecret → TransactWriteItems"; got != want {
		t.Errorf("path = %q, want %q", got, want)
	}
	if iam, lease, commit := pathCounts(path); iam != 3 || lease != 0 || commit != 1 {
		t.Errorf("counts = %d, %d, %d; want 3 IAM, no lease, 1 commit", iam, lease, commit)
	}
	// A rotation: the lease first, the commit before the old key's deletion.
	rotate := []timedCall{
		at(svcDynamo, "UpdateItem", 0, 10),
		at(svcIAM, "GetUser", 11, 40), at(svcSecrets, "DescribeSecret", 11, 45), at(svcIAM, "ListAccessKeys", 12, 41),
		at(svcIAM, "CreateAccessKey", 46, 70), at(svcSecrets, "PutSecretValue", 71, 90),
		at(svcDynamo, "TransactWriteItems", 91, 100), at(svcIAM, "DeleteAccessKey", 101, 120),
	}
	path = criticalPath(rotate)
	if iam, lease, commit := pathCounts(path); len(path) != 6 || iam != 4 || lease != 1 || commit != 1 {
		t.Errorf("rotate path %q: %d IAM, %d lease, %d commit", pathString(path), iam, lease, commit)
	}
	if criticalPath(nil) != nil {
		t.Error("a path of no calls")
	}
}

// TestRoundsTypical: the typical path is the shape most samples took, and
// a path beyond the code's is a missed target.
func TestRoundsTypical(t *testing.T) {
	op := roundsOps[0]
	ok := roundsSample{took: 100 * time.Millisecond, path: criticalPath(provisionCalls())}
	// a retried commit: one more table round trip
	retried := append(provisionCalls(), at(svcDynamo, "TransactWriteItems", 121, 140))
	bad := roundsSample{took: 140 * time.Millisecond, path: criticalPath(retried)}
	r := roundsResult{roundsOp: op, samples: []roundsSample{ok, bad, ok}}
	if path, n := r.typical(); n != 2 || len(path) != 4 {
		t.Errorf("typical = %q (%d of 3)", pathString(path), n)
	}
	if !r.met() {
		t.Error("2 of 3 samples on the code's path: met")
	}
	r.samples = []roundsSample{bad, bad, ok}
	if r.met() {
		t.Error("most samples with 2 commits: missed")
	}
}

// TestSplitReap: a reaper run's calls split at the reconciliation's first
// checkpoint read and the query of the users deleted.
func TestSplitReap(t *testing.T) {
	calls := []timedCall{
		at(svcDynamo, "Query", 0, 5), at(svcDynamo, "UpdateItem", 6, 8), at(svcIAM, "DeleteUser", 9, 12), at(svcDynamo, "TransactWriteItems", 13, 40),
		at(svcDynamo, "GetItem", 41, 42), at(svcIAM, "ListUsers", 43, 50), at(svcDynamo, "PutItem", 51, 52),
		at(svcDynamo, "Query", 53, 54), at(svcDynamo, "DeleteItem", 55, 56),
	}
	calls[4].Key, calls[7].Key = "META CHECKPOINT#iam-users", "DELETED"
	parts := splitReap(calls, calls[0].Start, calls[8].End)
	var got []int
	for _, p := range parts {
		got = append(got, len(p.Calls))
	}
	if !slices.Equal(got, []int{4, 3, 2}) {
		t.Fatalf("parts of %v calls, want 4, 3, 2", got)
	}
	if parts[0].Took != 41*time.Millisecond || len(parts[0].Transacts) != 1 || parts[0].Transacts[0] != 27*time.Millisecond {
		t.Errorf("due part: took %v, transactions %v", parts[0].Took, parts[0].Transacts)
	}
}

func TestListCallsPerPage(t *testing.T) {
	l := listRow{Calls: [][]string{{"Query"}, {"Query"}}}
	if got := l.callsPerPage(); got != "1 (Query)" {
		t.Errorf("callsPerPage = %q", got)
	}
	l.Calls = append(l.Calls, []string{"GetItem", "Query"})
	if got := l.callsPerPage(); got != "1 (Query) on 2 pages; 2 (GetItem, Query) on 1 pages" {
		t.Errorf("callsPerPage = %q", got)
	}
	if l.maxCalls() != 2 {
		t.Errorf("maxCalls = %d", l.maxCalls())
	}
}

func TestParseSizes(t *testing.T) {
	if got, err := parseSizes("100, 1000,5000"); err != nil || !slices.Equal(got, []int{100, 1000, 5000}) {
		t.Errorf("parseSizes = %v, %v", got, err)
	}
	for _, bad := range []string{"", "100,100", "1000,100", "x", "0"} {
		if _, err := parseSizes(bad); err == nil {
			t.Errorf("parseSizes(%q) accepted", bad)
		}
	}
}

// stateReport is a report of made-up figures for the state table's
// sections: round trips on the code's paths, listing whose calls stay one
// query per page but whose moto time grows with N, a reaper run.
func stateReport() *report {
	r := &report{opts: options{delay: 25 * time.Millisecond}, started: time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)}
	for _, op := range roundsOps {
		var calls []timedCall
		if op.reference {
			calls = []timedCall{at(svcIAM, "CreateUser", 0, 25), at(svcIAM, "CreateAccessKey", 26, 50), at(svcIAM, "PutUserPolicy", 51, 75), at(svcSecrets, "CreateSecret", 76, 100)}
		} else {
			calls = provisionCalls()
		}
		s := roundsSample{took: 120 * time.Millisecond, path: criticalPath(calls), all: calls}
		r.rounds = append(r.rounds, roundsResult{roundsOp: op, samples: []roundsSample{s, s}})
	}
	row := func(n int, q string, query, own time.Duration) listRow {
		l := listRow{N: n, Query: q}
		for range 4 {
			l.Times, l.CallTimes = append(l.Times, query+own), append(l.CallTimes, query)
			l.Calls, l.Users = append(l.Calls, []string{"Query"}), append(l.Users, listLimit)
		}
		return l
	}
	r.lists = []listRow{row(100, "all users", 50*time.Millisecond, time.Millisecond), row(5000, "all users", 400*time.Millisecond, time.Millisecond)}
	r.seeding = []seedStep{{N: 100, Added: 100, Took: 2 * time.Second}}
	due := []timedCall{at(svcDynamo, "Query", 0, 1)}
	for range 3 {
		due = append(due, at(svcDynamo, "UpdateItem", 1, 2), at(svcIAM, "GetUser", 2, 3), at(svcIAM, "DeleteUser", 3, 4), at(svcDynamo, "TransactWriteItems", 4, 900))
	}
	r.reap = &reapResult{N: 5000, Due: 3, Live: 100, Slice: 100, Setup: 10 * time.Second, Seeding: time.Minute, Took: 2 * time.Second,
		Report: &provision.ReapReport{Due: 3, Expired: []string{"a", "b", "c"}, Checked: 100},
		Parts: []reapPart{
			{Name: "due", Calls: due, Took: time.Second, Transacts: []time.Duration{896 * time.Millisecond}},
			{Name: "reconciliation", Calls: []timedCall{at(svcIAM, "ListUsers", 0, 1)}, Took: time.Second},
			{Name: "history", Calls: []timedCall{at(svcDynamo, "Query", 0, 1)}, Took: time.Millisecond},
		}}
	return r
}

// TestReportStateSections renders the state table's sections from
// made-up figures: round trips per operation with their targets, listing
// per N with a miss explained as moto's, the reaper's parts.
func TestReportStateSections(t *testing.T) {
	r := stateReport()
	md := r.markdown()
	for _, want := range []string{
		"## Round trips per operation, with the state table",
		"| provision: new user | 2 | 120.0 ms | 4 | 3 | 0 | 1 | ≤ 3 + 0 + 1: met | IAM 3, Secrets Manager 1, DynamoDB 2 | PutItem, TransactWriteItems | CreateUser → PutUserPolicy → CreateSecret → TransactWriteItems (2 of 2) |",
		"| reference: the same provision one call at a time | 2 | 120.0 ms | 4 | 4 | 0 | 0 | reference | IAM 3, Secrets Manager 1 | none |",
		"Provision: 3 IAM and Secrets Manager round trips, as the reference's 4 calls one at a time take 4",
		"## Listing at thousands of users",
		"| 100 | all users | 4 | 1 (Query) | 20 | 51.0 ms | 51.0 ms | 50.0 ms | 1.0 ms |",
		"| 5000 | all users | 4 | 1 (Query) | 20 | 401.0 ms | 401.0 ms | 400.0 ms | 1.0 ms |",
		"Calls per page constant in N: met. p50 per page constant in N (≤ 1.5× from the smallest N to the largest): **missed**.",
		"- **List: p50 per page grows with N on moto, not in keyvend.**", "all users 50.0 ms at N = 100, 400.0 ms at N = 5000", "all users 1.0 ms and 1.0 ms",
		"## Reaper at thousands of users",
		"| due | one query of the expiry index (`Store.Due`), then each of the 3 due users deprovisioned, 4 at a time | 13 | IAM 6, DynamoDB 7 |",
		"896.0 ms (1) | ≤ 1 + 15 per due user: met (4.0 per due user) |",
		"| reconciliation |", "bounded by the slice (100), not N |",
		"at N = 5000 a full pass takes about 50 runs",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("report lacks %q:\n%s", want, md)
		}
	}
	if got, want := r.missed(), []string{"list: p50 per page grows with N"}; !slices.Equal(got, want) {
		t.Errorf("missed = %q, want %q", got, want)
	}
	// A rotation whose path has two leases, and a due part beyond its
	// bound, are missed and explained.
	rot := &r.rounds[2]
	extra := append(provisionCalls()[:0:0], at(svcDynamo, "UpdateItem", 0, 10), at(svcDynamo, "UpdateItem", 11, 20))
	for _, c := range provisionCalls() {
		c.Start, c.End = c.Start.Add(21*time.Millisecond), c.End.Add(21*time.Millisecond)
		extra = append(extra, c)
	}
	rot.samples = []roundsSample{{took: time.Second, path: criticalPath(extra), all: extra}}
	r.reap.Due = 0
	md = r.markdown()
	for _, want := range []string{"≤ 4 + 1 + 1: **missed**", "- **Round trips of rotate:** 1 of 1 samples took a path of 3 IAM and Secrets Manager round trips, 2 of the lease",
		"- **Reaper: calls of what is due:** 13 for 0 due users"} {
		if !strings.Contains(md, want) {
			t.Errorf("report lacks %q:\n%s", want, md)
		}
	}
}
