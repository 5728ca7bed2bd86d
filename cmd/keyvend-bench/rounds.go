package main

import (
	"context"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"time"

	"github.com/keyvend/keyvend/pkg/grants"
)

// roundsOp is one operation of the round-trips benchmark, with the
// critical path the code is written to have: IAM and Secrets Manager
// round trips, and the state table's.
type roundsOp struct {
	name string
	// iam is the IAM and Secrets Manager round trips on the critical path.
	iam int
	// lease is the state-table round trips before the last write: the
	// lease taken first (0 when it goes beside the first IAM round, as a
	// create's claim and a delete's lease do). At most 1.
	lease int
	// commit is the state-table write at the end (1), 0 for the reference.
	commit    int
	reference bool
	expect    string // the path as the code orders it
}

// roundsOps are the operations measured, in order, in grant mode policy.
var roundsOps = []roundsOp{
	{name: "provision: new user", iam: 3, lease: 0, commit: 1,
		expect: "CreateUser ‖ PutItem (claim) → CreateAccessKey ‖ PutUserPolicy → CreateSecret → TransactWriteItems (commit)"},
	{name: "reference: the same provision one call at a time", iam: 4, reference: true,
		expect: "CreateUser → CreateAccessKey → PutUserPolicy → CreateSecret (no state table)"},
	{name: "rotate", iam: 4, lease: 1, commit: 1,
		expect: "UpdateItem (lease) → GetUser ‖ GetUserPolicy ‖ ListGroupsForUser ‖ ListAccessKeys ‖ GetSecretValue ‖ DescribeSecret ‖ GetResourcePolicy → CreateAccessKey → PutSecretValue → TransactWriteItems (commit) → DeleteAccessKey (the old key)"},
	{name: "update grants (add one)", iam: 3, lease: 1, commit: 1,
		expect: "UpdateItem (lease) → GetUser ‖ GetUserPolicy ‖ ListGroupsForUser ‖ ListAccessKeys ‖ GetSecretValue → PutUserPolicy → TagUser → TransactWriteItems (commit)"},
	{name: "deprovision", iam: 3, lease: 0, commit: 1,
		expect: "UpdateItem (lease) ‖ GetUser ‖ list keys, groups, policies ‖ GetUserPolicy ‖ DescribeSecret → DeleteAccessKey ‖ DeleteUserPolicy ‖ DeleteSecret → DeleteUser → TransactWriteItems (record removed)"},
}

// roundsSample is one measured operation: how long it took and its
// critical path.
type roundsSample struct {
	took time.Duration
	path []timedCall
	all  []timedCall
}

// roundsResult is one operation's samples.
type roundsResult struct {
	roundsOp
	samples []roundsSample
}

func (r roundsResult) durations() []time.Duration {
	out := make([]time.Duration, len(r.samples))
	for i, s := range r.samples {
		out[i] = s.took
	}
	return out
}

// pathCounts splits a critical path: IAM and Secrets Manager round trips,
// state-table round trips before its last call, and whether the path
// ends with a state-table write (the commit).
func pathCounts(path []timedCall) (iam, lease, commit int) {
	for i, c := range path {
		switch {
		case c.Service != svcDynamo:
			iam++
		case i == len(path)-1 || c.Operation == commitCall:
			commit++
		default:
			lease++
		}
	}
	return iam, lease, commit
}

// typical is the shape of critical path most samples took — its round
// trips of IAM and Secrets Manager, lease and commit — with the first
// sample's path of that shape, and how many samples took it. (Calls sent
// together make equally long paths through different calls of a round:
// the shape, not the calls, is what repeats.)
func (r roundsResult) typical() (path []timedCall, n int) {
	type shape struct{ length, iam, lease, commit int }
	count := map[shape]int{}
	first := map[shape][]timedCall{}
	var order []shape
	for _, s := range r.samples {
		iam, lease, commit := pathCounts(s.path)
		k := shape{len(s.path), iam, lease, commit}
		if count[k] == 0 {
			first[k] = s.path
			order = append(order, k)
		}
		count[k]++
	}
	best := -1
	for i, k := range order {
		if best < 0 || count[k] > count[order[best]] {
			best = i
		}
	}
	if best < 0 {
		return nil, 0
	}
	return first[order[best]], count[order[best]]
}

// perServiceLast is the calls per service of the last sample (every
// sample makes the same calls; a retry would show here as one more).
func (r roundsResult) perServiceLast() map[string]int {
	if len(r.samples) == 0 {
		return nil
	}
	return perService(r.samples[len(r.samples)-1].all)
}

// tableCalls lists the last sample's state-table calls ("none").
func (r roundsResult) tableCalls() string {
	if len(r.samples) == 0 {
		return "none"
	}
	var ops []string
	for _, c := range r.samples[len(r.samples)-1].all {
		if c.Service == svcDynamo {
			ops = append(ops, c.Operation)
		}
	}
	if len(ops) == 0 {
		return "none"
	}
	sort.Strings(ops)
	return strings.Join(countedOps(ops), ", ")
}

// met reports whether the typical critical path is within the expected
// one: no more IAM and Secrets Manager round trips, the lease adding at
// most the round trip expected (≤ 1), one write at the end.
func (r roundsResult) met() bool {
	path, _ := r.typical()
	iam, lease, commit := pathCounts(path)
	return iam <= r.iam && lease <= r.lease && commit <= r.commit
}

// measureRounds runs, n times, in grant mode policy with delay added to
// every AWS call (the state table's included): a provision, the reference
// provision one call at a time, a rotation, an update adding a grant and
// the deprovision, each timed and its critical path read from the calls'
// start and end (timeline). The state table is emptied after each round
// (unmeasured; see stack.emptyTable).
func measureRounds(ctx context.Context, st *stack, delay time.Duration, n int, progress func(string)) ([]roundsResult, error) {
	if err := st.reset(ctx); err != nil {
		return nil, err
	}
	const mode = grants.Policy
	res := make([]roundsResult, len(roundsOps))
	for i, op := range roundsOps {
		res[i].roundsOp = op
	}
	bucket, other := "rounds.example.com", "rounds2.example.com"
	both := fmt.Sprintf(`{"grants":[{"bucket":%q,"access":"read-write","prefix":""},{"bucket":%q,"access":"read-only","prefix":""}]}`, bucket, other)
	// Warm up the connections, without delay.
	st.proxy.SetDelay(0)
	if code, body := st.do(ctx, mode, http.MethodPost, "/v1/users", createBody("rounds-warm", bucket)); code != http.StatusCreated {
		return nil, must("warm-up provision", code, body, http.StatusCreated)
	}
	for i := range n {
		user, seqUser := fmt.Sprintf("rounds-%03d", i), fmt.Sprintf("roundsseq-%03d", i)
		st.proxy.SetDelay(delay)
		steps := []func() error{
			func() error {
				code, body := st.do(ctx, mode, http.MethodPost, "/v1/users", createBody(user, bucket))
				return must("provision "+user, code, body, http.StatusCreated)
			},
			func() error { return sequentialProvision(ctx, st, mode, seqUser, bucket) },
			func() error {
				code, body := st.do(ctx, mode, http.MethodPost, "/v1/users/"+user+"/rotate", "")
				return must("rotate "+user, code, body, http.StatusOK)
			},
			func() error {
				code, body := st.do(ctx, mode, http.MethodPut, "/v1/users/"+user+"/grants", both)
				return must("update "+user, code, body, http.StatusOK)
			},
			func() error {
				code, body := st.do(ctx, mode, http.MethodDelete, "/v1/users/"+user, "")
				return must("deprovision "+user, code, body, http.StatusNoContent)
			},
		}
		for j, step := range steps {
			st.timeline.Start()
			start := time.Now()
			err := step()
			took := time.Since(start)
			calls := st.timeline.Stop()
			if err != nil {
				return nil, err
			}
			res[j].samples = append(res[j].samples, roundsSample{took: took, path: criticalPath(calls), all: calls})
		}
		st.proxy.SetDelay(0)
		if code, body := st.do(ctx, mode, http.MethodDelete, "/v1/users/"+seqUser, ""); code != http.StatusNoContent {
			return nil, must("remove "+seqUser, code, body, http.StatusNoContent)
		}
		if err := st.emptyTable(ctx); err != nil {
			return nil, err
		}
		if (i+1)%10 == 0 {
			progress(fmt.Sprintf("round trips: %d/%d rounds of provision, reference, rotate, update and deprovision", i+1, n))
		}
	}
	return res, nil
}
