package main

import (
	"fmt"
	"sort"
	"strings"
	"time"
)

// The state table's sections (issue 10): round trips per operation,
// listing and the reaper at thousands of users.

// listTarget: the p50 per page at the largest N against the smallest
// (constant in N); calls per page must not grow at all.
const listTarget = 1.5

// reapPerDueTarget bounds the due part's calls per due user (its
// deprovision: lease, inventory, deletes, the record removed) plus the
// one query: proportional to the users due, not to N.
const reapPerDueTarget = 15

func (r *report) roundsMissed() []string {
	var out []string
	for _, rr := range r.rounds {
		if !rr.reference && !rr.met() {
			out = append(out, "round trips of "+rr.name)
		}
	}
	if ok, have := r.listConstant(); have && !ok.calls {
		out = append(out, "list: calls per page grow with N")
	} else if have && !ok.time {
		out = append(out, "list: p50 per page grows with N")
	}
	if rp := r.reap; rp != nil && len(rp.Parts) > 0 {
		if len(rp.Parts[0].Calls) > reapPerDueTarget*rp.Due+1 {
			out = append(out, "reaper: calls of what is due")
		}
	}
	return out
}

// listOK says whether listing is constant in N: its calls per page, and
// its p50 per page (within listTarget of the smallest N's).
type listOK struct{ calls, time bool }

// listConstant compares each listing's pages at the largest N with the
// smallest; have is false with fewer than two sizes.
func (r *report) listConstant() (ok listOK, have bool) {
	ok = listOK{true, true}
	first, last, _ := r.listEnds()
	for q, f := range first {
		l := last[q]
		if l.N == f.N {
			continue
		}
		have = true
		if l.maxCalls() > f.maxCalls() {
			ok.calls = false
		}
		if ratio(percentile(l.Times, 50), percentile(f.Times, 50)) > listTarget {
			ok.time = false
		}
	}
	return ok, have
}

// stateSections writes the round-trip, list and reaper sections.
func (r *report) stateSections(p func(string, ...any)) {
	if len(r.rounds) > 0 {
		n := len(r.rounds[0].samples)
		p("## Round trips per operation, with the state table\n\n")
		p("Through the real `http.Handler` in grant mode policy (the default), against moto behind the proxy adding **%s to every AWS call** — the state table's (DynamoDB) too — one request at a time, each operation %d times (the state table emptied between rounds, unmeasured). ", ms(r.opts.delay), n)
		p("The critical path is measured, not assumed: SDK middleware (`cmd/keyvend-bench/timeline.go`) records when each call starts and ends, and the path is the longest chain of calls each of which started after the one before it ended; of equally long chains, the one with the fewest state-table calls (a table write that overlaps an IAM call is beside it). ")
		p("*Lease* counts the state-table round trips on the path before its last table write (a lease taken first; a create's claim and a delete's lease go beside the first IAM round and count 0), *commit* the write at the end. Target: IAM and Secrets Manager round trips no more than the code's path below (provision: still 3), the lease adding at most one round trip, one table write at the end.\n\n")
		p("| operation | samples | p50 | round trips on the critical path | IAM + Secrets Manager | lease | commit | target | calls per service | state-table calls | the critical path measured (samples with its shape) |\n|---|---|---|---|---|---|---|---|---|---|---|\n")
		for _, rr := range r.rounds {
			path, k := rr.typical()
			iam, lease, commit := pathCounts(path)
			target := "reference"
			if !rr.reference {
				target = fmt.Sprintf("≤ %d + %d + %d: %s", rr.iam, rr.lease, rr.commit, mark(rr.met()))
			}
			p("| %s | %d | %s | %d | %d | %d | %d | %s | %s | %s | %s (%d of %d) |\n", rr.name, len(rr.samples), ms(percentile(rr.durations(), 50)), len(path), iam, lease, commit, target,
				servicesLine(rr.perServiceLast()), rr.tableCalls(), pathString(path), k, len(rr.samples))
		}
		p("\nThe paths as the code orders them (‖: sent together):\n\n")
		for _, rr := range r.rounds {
			p("- %s: %s\n", rr.name, rr.expect)
		}
		var prov, ref *roundsResult
		for i := range r.rounds {
			switch r.rounds[i].name {
			case roundsOps[0].name:
				prov = &r.rounds[i]
			case roundsOps[1].name:
				ref = &r.rounds[i]
			}
		}
		if prov != nil && ref != nil {
			pp, _ := prov.typical()
			rp, _ := ref.typical()
			iam, _, commit := pathCounts(pp)
			p("\nProvision: %d IAM and Secrets Manager round trips, as the reference's %d calls one at a time take %d; the claim (`PutItem`) goes beside `CreateUser`, and the commit (`TransactWriteItems`) is %d round trip after `CreateSecret` — it waits for the key to be in its secret, since committing earlier let a delete come in between. p50 %s against the reference's %s; calls %s against %s. ",
				iam, len(rp), len(rp), commit, ms(percentile(prov.durations(), 50)), ms(percentile(ref.durations(), 50)), servicesLine(prov.perServiceLast()), servicesLine(ref.perServiceLast()))
			p("Each p50 also holds moto's own time for every call (it serves one request at a time: the latency section's 0 ms figures measure it), and a provision sends 6 calls, a transaction among them, against the reference's 4. Every call is delayed alike here; in AWS, DynamoDB in the function's region answers in a few milliseconds while IAM (a global service) and Secrets Manager take tens, so the table's round trip costs less there than here.\n\n")
		}
	}

	if len(r.lists) > 0 {
		lists := append([]listRow(nil), r.lists...)
		sort.SliceStable(lists, func(i, j int) bool { return lists[i].N < lists[j].N })
		p("## Listing at thousands of users\n\n")
		p("`provision.Service.List` (what `GET /v1/users` calls) as the bench's caller (a rule with the list action on every bucket), %d pages of %d users of each listing at each N — all users (index by-name), by bucket (its per-bucket summaries), by requester (index by-requester) — a listing that ends starting over; 0 ms added, so the times are moto's own and keyvend's. Each page's calls counted and timed by SDK middleware. ", listPages, listLimit)
		p("The N records were seeded through `pkg/state` (`Store.Claim`, then `Store.Commit` ready: the record and its per-bucket summary), one grant each over %d buckets and %d requesters, crossed, so each bucket and each requester has N / %d users and every page is full at every N; no IAM user behind them: listing reads only the table. (Seeding writes each transaction's items as single conditional writes: moto copies the whole table for every item of a transaction, which would take hours at these sizes; every measured operation makes keyvend's own transactions.) ",
			seedBuckets, seedRequesters, seedBuckets)
		if n := r.reapN(); n > 0 {
			p("At N = %d the table is the reaper's (below): %d of its records were made by `Create`. ", n, r.reapMade())
		}
		p("Target: calls per page constant in N; p50 per page at the largest N within %.1f× the smallest's.\n\n", listTarget)
		p("| N | listing | pages | calls per page | users per page | p50 per page | p95 per page | p50 of the page's calls (moto) | p50 of the rest (keyvend) |\n|---|---|---|---|---|---|---|---|---|\n")
		for _, l := range lists {
			p("| %d | %s | %d | %s | %.0f | %s | %s | %s | %s |\n", l.N, l.Query, len(l.Times), l.callsPerPage(), l.meanUsers(), ms(percentile(l.Times, 50)), ms(percentile(l.Times, 95)),
				ms(percentile(l.CallTimes, 50)), ms(percentile(l.ownTimes(), 50)))
		}
		if ok, have := r.listConstant(); have {
			p("\nCalls per page constant in N: %s. p50 per page constant in N (≤ %.1f× from the smallest N to the largest): %s.", mark(ok.calls), listTarget, mark(ok.time))
		}
		var parts []string
		for _, s := range r.seeding {
			parts = append(parts, fmt.Sprintf("to %d records, %d in %s (%.0f records/s)", s.N, s.Added, s.Took.Round(time.Second), float64(s.Added)/s.Took.Seconds()))
		}
		if rp := r.reap; rp != nil && r.reapN() > 0 {
			seeded := rp.N - rp.Due - rp.Live
			parts = append(parts, fmt.Sprintf("to %d records (the reaper's table), %d in %s (%.0f records/s) after %d made by `Create` in %s", rp.N, seeded, rp.Seeding.Round(time.Second), float64(seeded)/rp.Seeding.Seconds(), rp.Due+rp.Live, rp.Setup.Round(time.Second)))
		}
		if len(parts) > 0 {
			p(" Seeding, %d at a time: %s.", seedWorkers, strings.Join(parts, "; "))
		}
		p("\n\n")
	}

	if rp := r.reap; rp != nil && len(rp.Parts) == 3 {
		rep := rp.Report
		p("## Reaper at thousands of users\n\n")
		p("One `provision.Service.Reap` run at N = %d records, %d of them due, with the deployed settings (ReapBatch 500, ReconcileSlice %d), on a clock 2 h ahead (`Settings.Now`), 0 ms added. The %d due users and %d more were made by `Create` (IAM users, keys, secrets, records; the due ones with `expires_in` 1 h) in %s; the other %d records were seeded through `pkg/state` as for listing (no IAM user behind them) in %s. ",
			rp.N, rp.Due, rp.Slice, rp.Due, rp.Live, rp.Setup.Round(time.Second), rp.N-rp.Due-rp.Live, rp.Seeding.Round(time.Second))
		p("Its calls are split by the table calls that begin each part: the reconciliation begins by reading its IAM-user walk's checkpoint, the history retention by querying the users deleted. The run reported %d due, %d deleted as expired, %d IAM users checked, %d errors.\n\n", rep.Due, len(rep.Expired), rep.Checked, len(rep.Errors))
		p("| part | what it does | calls | per service | the calls | time | TransactWriteItems: p50 each | target |\n|---|---|---|---|---|---|---|---|\n")
		reads := []string{
			fmt.Sprintf("one query of the expiry index (`Store.Due`), then each of the %d due users deprovisioned, 4 at a time", rp.Due),
			fmt.Sprintf("a slice of each walk: up to %d IAM users under the path, %d records, %d secrets, each from its checkpoint", rp.Slice, rp.Slice, rp.Slice),
			"the users deleted (one query), their history entries given their retention",
		}
		for i, part := range rp.Parts {
			ops := make([]string, len(part.Calls))
			for j, c := range part.Calls {
				ops[j] = c.Operation
			}
			target := "information"
			switch i {
			case 0:
				target = fmt.Sprintf("≤ 1 + %d per due user: %s (%.1f per due user)", reapPerDueTarget, mark(len(part.Calls) <= reapPerDueTarget*rp.Due+1), float64(len(part.Calls)-1)/float64(max(rp.Due, 1)))
			case 1:
				target = fmt.Sprintf("bounded by the slice (%d), not N", rp.Slice)
			}
			tx := "none"
			if len(part.Transacts) > 0 {
				tx = fmt.Sprintf("%s (%d)", ms(percentile(part.Transacts, 50)), len(part.Transacts))
			}
			p("| %s | %s | %d | %s | %s | %s | %s | %s |\n", part.Name, reads[i], len(part.Calls), servicesLine(perService(part.Calls)), strings.Join(countedOps(sortedStrings(ops)), ", "), ms(part.Took), tx, target)
		}
		p("\nWhat is due costs one query whatever N, then its users' deprovisioning; the reconciliation reads a slice of %d of each walk per run and resumes from its checkpoint next run, so its cost is bounded by the slice (here %d IAM users checked), not by N: at N = %d a full pass takes about %d runs. ", rp.Slice, rep.Checked, rp.N, (rp.N+rp.Slice-1)/rp.Slice)
		p("The time of what is due is mostly moto's: it copies the whole table (about %d items here) for every item of a transaction, and each deprovision ends with one (the record, its summary, the deleted marker, the history entry); DynamoDB's transactions cost what they write.\n\n", 2*rp.N)
	}
}

func sortedStrings(s []string) []string {
	out := append([]string(nil), s...)
	sort.Strings(out)
	return out
}

// reapN is the reaper's N when listing was timed on its table, else 0.
func (r *report) reapN() int {
	if r.reap == nil {
		return 0
	}
	for _, l := range r.lists {
		if l.N == r.reap.N {
			return r.reap.N
		}
	}
	return 0
}

// reapMade is how many records of the reaper's table Create made.
func (r *report) reapMade() int {
	if r.reap == nil {
		return 0
	}
	return r.reap.Due + r.reap.Live
}

// stateExplain writes why each missed target of the state table's
// sections was missed, from the figures.
func (r *report) stateExplain(p func(string, ...any)) {
	for _, rr := range r.rounds {
		if rr.reference || rr.met() {
			continue
		}
		path, k := rr.typical()
		iam, lease, commit := pathCounts(path)
		p("- **Round trips of %s:** %d of %d samples took a path of %d IAM and Secrets Manager round trips, %d of the lease and %d at the end (%s), against at most %d, %d and %d as the code orders it (%s). Another sample shape is a retry (moto fails a transaction that races another write with a 500, which `pkg/state` retries) or a busy machine; run again.\n",
			rr.name, k, len(rr.samples), iam, lease, commit, pathString(path), rr.iam, rr.lease, rr.commit, rr.expect)
	}
	if ok, have := r.listConstant(); have && (!ok.calls || !ok.time) {
		first, last, order := r.listEnds()
		var moto, own []string
		for _, q := range order {
			f, l := first[q], last[q]
			moto = append(moto, fmt.Sprintf("%s %s at N = %d, %s at N = %d", q, ms(percentile(f.CallTimes, 50)), f.N, ms(percentile(l.CallTimes, 50)), l.N))
			own = append(own, fmt.Sprintf("%s %s and %s", q, ms(percentile(f.ownTimes(), 50)), ms(percentile(l.ownTimes(), 50))))
		}
		if !ok.calls {
			p("- **List: calls per page grow with N** (see the table): a listing must cost one query per page.\n")
		}
		if !ok.time {
			p("- **List: p50 per page grows with N on moto, not in keyvend.** Every page makes the same single `Query` at every N and returns the same %d users; the growth is that call's time in moto (%s), while keyvend's own time per page, the page less its calls, stays flat (%s). moto answers a query by going over every item of the table and then sorting and paging (`Table.query` in moto/dynamodb/models/table.py loops over `self.all_items()`, for an index too), so on moto a page costs what the table holds; DynamoDB reads only the page's items from the index's key range (`Limit`), so there a page costs the same at any N.\n",
				listLimit, strings.Join(moto, "; "), strings.Join(own, "; "))
		}
	}
	if rp := r.reap; rp != nil && len(rp.Parts) > 0 && len(rp.Parts[0].Calls) > reapPerDueTarget*rp.Due+1 {
		p("- **Reaper: calls of what is due:** %d for %d due users, more than one query and %d per user's deprovision.\n", len(rp.Parts[0].Calls), rp.Due, reapPerDueTarget)
	}
}

// listEnds is each listing's row at the smallest N and at the largest,
// and the listings in the order first measured.
func (r *report) listEnds() (first, last map[string]listRow, order []string) {
	first, last = map[string]listRow{}, map[string]listRow{}
	for _, l := range r.lists {
		f, seen := first[l.Query]
		if !seen {
			order = append(order, l.Query)
		}
		if !seen || l.N < f.N {
			first[l.Query] = l
		}
		if !seen || l.N > last[l.Query].N {
			last[l.Query] = l
		}
	}
	return first, last, order
}
