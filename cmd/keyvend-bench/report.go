package main

import (
	"fmt"
	"runtime"
	"sort"
	"strings"
	"time"

	"github.com/keyvend/keyvend/pkg/grants"
	"github.com/keyvend/keyvend/pkg/httpapi"
)

func numCPU() int       { return runtime.NumCPU() }
func goVersion() string { return runtime.Version() }
func hostOS() string    { return runtime.GOOS + "/" + runtime.GOARCH }

// Targets (the issue that asked for make bench).
const (
	latencyTarget = 1.15     // p50 / (the round trips of the dependency limit)
	roundTrips    = 4        // the dependency limit of provision and deprovision: iamRounds, then the state table's write
	iamRounds     = 3        // of which IAM and Secrets Manager
	coldTarget    = 1.5      // cold start / the empty handler's
	sizeTarget    = 2.0      // arm64 bootstrap / the empty handler's
	memTarget     = 64 << 20 // peak RSS of keyvend serve
)

type report struct {
	opts    options
	machine machine
	started time.Time
	elapsed time.Duration

	latency []*latencyRun // [0]: with the delay, [1]: without
	// delayLate is how much longer than the delay the proxy held a request,
	// on average: lateness of timers and scheduling on this machine.
	delayLate time.Duration
	calls     []callCount
	rounds    []roundsResult
	seeding   []seedStep
	lists     []listRow
	reap      *reapResult
	cold      []coldResult // [0]: the empty handler
	sizes     []sizeResult // [0]: the empty handler
	memory    *memResult
	slack     *slackResult
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d)/float64(time.Millisecond)) }

func ratio(a, b time.Duration) float64 {
	if b == 0 {
		return 0
	}
	return float64(a) / float64(b)
}

func mark(ok bool) string {
	if ok {
		return "met"
	}
	return "**missed**"
}

// rowKind is what a latency row is measured against.
type rowKind int

const (
	targetRow    rowKind = iota // an operation, against the 3-round-trip target
	referenceRow                // the same flow one call at a time
	infoRow                     // shown with no target; its critical path says why
)

// latencyRow is one flow of a latency table.
type latencyRow struct {
	mode       grants.Mode
	name       string
	withDelay  []time.Duration
	noDelay    []time.Duration
	kind       rowKind
	floorCalls string
}

func (row latencyRow) hasTarget() bool { return row.kind == targetRow }

// label is the row's name with its grant mode, as Gaps lists it.
func (row latencyRow) label() string { return fmt.Sprintf("%s (grant mode %s)", row.name, row.mode) }

func (r *report) latencyRows() []latencyRow {
	if len(r.latency) < 2 {
		return nil
	}
	d, z := r.latency[0], r.latency[1]
	const deleteReads = "UpdateItem (lease) ‖ GetUser ‖ list keys, groups, policies ‖ GetUserPolicy ‖ DescribeSecret"
	const removed = " → TransactWriteItems (record removed)"
	return []latencyRow{
		{grants.Policy, "provision: new user", d.Policy, z.Policy, targetRow,
			"CreateUser ‖ PutItem (claim) → CreateAccessKey ‖ PutUserPolicy → CreateSecret → TransactWriteItems (commit)"},
		{grants.Policy, "reference: the same provision one call at a time", d.PolicySequential, z.PolicySequential, referenceRow,
			"4 calls in a row, no state table: CreateUser, CreateAccessKey, PutUserPolicy, CreateSecret"},
		{grants.Policy, "deprovision", d.PolicyDeprovision, z.PolicyDeprovision, targetRow,
			deleteReads + " → delete keys and the user policy, schedule the secret's deletion → DeleteUser" + removed},
		{grants.Group, "provision: new user, existing group", d.Existing, z.Existing, targetRow,
			"CreateUser ‖ PutItem (claim) ‖ GetGroup → CreateAccessKey ‖ PutGroupPolicy → CreateSecret ‖ AddUserToGroup → TransactWriteItems (commit)"},
		{grants.Group, "provision: new user, new group", d.NewGroups, z.NewGroups, targetRow,
			"CreateUser ‖ PutItem (claim) ‖ GetGroup → CreateAccessKey ‖ CreateGroup → CreateSecret ‖ AddUserToGroup ‖ PutGroupPolicy → TransactWriteItems (commit)"},
		{grants.Group, "reference: the existing-group provision one call at a time", d.Sequential, z.Sequential, referenceRow,
			"6 calls in a row, no state table: GetGroup, PutGroupPolicy, CreateUser, AddUserToGroup, CreateAccessKey, CreateSecret"},
		{grants.Group, "deprovision: its group keeps members", d.Deprovision, z.Deprovision, targetRow,
			deleteReads + " → delete keys, leave groups, schedule the secret's deletion → DeleteUser ‖ GetGroup (members left: kept)" + removed},
		{grants.Group, "deprovision: its group's last member", d.LastMember, z.LastMember, infoRow,
			deleteReads + " → delete keys, leave groups, schedule the secret's deletion → DeleteUser ‖ GetGroup → DeleteGroupPolicy → DeleteGroup" + removed + ": cleanup of the group left empty, 2 round trips after DeleteUser's, which the answer waits for"},
	}
}

// rowsOf are the latency rows of one grant mode.
func rowsOf(rows []latencyRow, mode grants.Mode) []latencyRow {
	var out []latencyRow
	for _, row := range rows {
		if row.mode == mode {
			out = append(out, row)
		}
	}
	return out
}

func (r *report) floor() time.Duration { return roundTrips * r.opts.delay }

// latencyMissed reports whether row has a target and missed it.
func (r *report) latencyMissed(row latencyRow) bool {
	return row.hasTarget() && ratio(percentile(row.withDelay, 50), r.floor()) > latencyTarget
}

// callsOf are the counted operations of one grant mode.
func (r *report) callsOf(mode grants.Mode) []callCount {
	var out []callCount
	for _, c := range r.calls {
		if c.Mode == mode {
			out = append(out, c)
		}
	}
	return out
}

// provisionCalls are the counted provisions of a new user in mode, fewest
// calls first.
func (r *report) provisionCalls(mode grants.Mode) []callCount {
	var out []callCount
	for _, c := range r.callsOf(mode) {
		if c.Provision {
			out = append(out, c)
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return len(out[i].Calls) < len(out[j].Calls) })
	return out
}

// fewerInPolicy reports whether every provision in grant mode policy makes
// fewer calls than any in grant mode group; ok is false unless both modes
// were counted.
func (r *report) fewerInPolicy() (fewer, ok bool) {
	p, g := r.provisionCalls(grants.Policy), r.provisionCalls(grants.Group)
	if len(p) == 0 || len(g) == 0 {
		return false, false
	}
	return len(p[len(p)-1].Calls) < len(g[0].Calls), true
}

func modeTitle(mode grants.Mode) string {
	if mode == grants.Policy {
		return "Grant mode policy (the default)"
	}
	return "Grant mode group"
}

// missed lists the targets not met, one line each.
func (r *report) missed() []string {
	var out []string
	for _, row := range r.latencyRows() {
		if r.latencyMissed(row) {
			out = append(out, row.label())
		}
	}
	for _, c := range r.calls {
		if len(c.Extra()) > 0 {
			out = append(out, fmt.Sprintf("calls of %s (grant mode %s)", c.Op, c.Mode))
		}
		if len(c.Missing()) > 0 {
			out = append(out, fmt.Sprintf("the needed list of %s (grant mode %s)", c.Op, c.Mode))
		}
	}
	if fewer, ok := r.fewerInPolicy(); ok && !fewer {
		out = append(out, "calls per provision: grant mode policy not below grant mode group")
	}
	out = append(out, r.roundsMissed()...)
	if len(r.cold) > 1 && ratio(percentile(r.cold[1].firstAnswers(), 50), percentile(r.cold[0].firstAnswers(), 50)) > coldTarget {
		out = append(out, "cold start")
	}
	for _, s := range r.sizes[min(1, len(r.sizes)):] {
		if float64(s.Bytes) > sizeTarget*float64(r.sizes[0].Bytes) {
			out = append(out, "size of "+s.Name)
		}
	}
	if r.memory != nil && r.memory.PeakRSS > memTarget {
		out = append(out, "memory")
	}
	if r.slack != nil && percentile(r.slack.acks, 99) > slackAckTarget {
		out = append(out, "Slack ack")
	}
	return out
}

func (r *report) markdown() string {
	var b strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	m := r.machine
	p("# keyvend benchmarks\n\n")
	p("Written by `make bench` (`cmd/keyvend-bench`); run it again to check any figure. Measured %s on %d cores (%s), %s, %s, moto %s; the bench took %s. ",
		r.started.UTC().Format("2006-01-02 15:04 UTC"), m.Cores, orUnknown(m.CPU), m.Go, m.OS, orUnknown(m.Moto), r.elapsed.Round(time.Second))
	p("Each target is shown beside its figure; a missed target is explained under [Gaps](#gaps). The machine is shared with other work, so absolute figures move between runs; the ratios that carry the targets compare flows measured in the same run, interleaved.\n\n")

	if rows := r.latencyRows(); rows != nil {
		p("## Provision and deprovision latency\n\n")
		p("Through the real `http.Handler` (`app.Service`, production SDK settings), in each grant mode, against moto behind a loopback proxy (`awstest.Proxy`) that adds **%s to every AWS call**, the state table's (DynamoDB) included. One request at a time. The dependency limit of both operations is %d round trips in both grant modes: %d of IAM and Secrets Manager, with the state table's first write beside the first of them (provision: the claim beside `CreateUser`; deprovision: the lease beside the inventory), and one state-table write after them (provision: the commit, once the key is in its secret — committing earlier let a delete in between; deprovision: the record removed once the user is gone) — %s; the target is p50 / %s ≤ %.2f. The state table is emptied between flows (unmeasured): moto copies the whole table for every item of a transaction, so a growing table would slow each commit. ",
			ms(r.opts.delay), roundTrips, iamRounds, ms(r.floor()), ms(r.floor()), latencyTarget)
		p("The same flows with **0 ms added**, interleaved with them request by request (and the two grant modes with each other), show what moto (one request at a time, a few ms per call) and keyvend itself add to every figure; *net* is (p50 − p50 at 0 ms) / %s, the part of p50 that the added round trips explain.\n\n", ms(r.floor()))
		for _, mode := range grantModes {
			p("### %s\n\n", modeTitle(mode))
			p("| flow | samples | p50 | p95 | p50 / %s | target | p50 at 0 ms added | net | critical path |\n|---|---|---|---|---|---|---|---|---|\n", ms(r.floor()))
			for _, row := range rowsOf(rows, mode) {
				p50, p95, p50z := percentile(row.withDelay, 50), percentile(row.withDelay, 95), percentile(row.noDelay, 50)
				target := "reference"
				switch row.kind {
				case targetRow:
					target = fmt.Sprintf("≤ %.2f: %s", latencyTarget, mark(ratio(p50, r.floor()) <= latencyTarget))
				case infoRow:
					target = "information"
				}
				p("| %s | %d | %s | %s | %.2f | %s | %s | %.2f | %s |\n", row.name, len(row.withDelay), ms(p50), ms(p95), ratio(p50, r.floor()), target, ms(p50z), ratio(p50-p50z, r.floor()), row.floorCalls)
			}
			p("\n")
		}
		p("The proxy held each delayed call %s longer than %s on average (timers and scheduling on this machine): %s over %d round trips, part of *net*.\n\n", ms(r.delayLate), ms(r.opts.delay), ms(roundTrips*r.delayLate), roundTrips)
		var parts []string
		for _, mode := range grantModes {
			// the mode's first provision row against its reference
			var saga, seq time.Duration
			for _, row := range rowsOf(rows, mode) {
				switch {
				case row.kind == referenceRow:
					seq = percentile(row.withDelay, 50)
				case row.kind == targetRow && saga == 0:
					saga = percentile(row.withDelay, 50)
				}
			}
			parts = append(parts, fmt.Sprintf("grant mode %s %s vs %s p50 (%.2f×)", mode, ms(saga), ms(seq), ratio(seq, saga)))
		}
		p("keyvend's saga against the same flow one call at a time: %s. ", strings.Join(parts, "; "))
		p("Grant mode group: users are deprovisioned as the run goes, so the shared group keeps a handful of members: moto ignores `GetGroup`'s `MaxItems` and answers with every member, taking longer the more there are; IAM does not. ")
		p("A deprovision that leaves a grant group empty deletes the group before answering (`grants.DropEmpty`: is it empty, its policy, the group — one after another, after `DeleteUser`'s round), 2 round trips more than the operation itself needs; the last row measures it and carries no target: it is cleanup against IAM's quota of groups, which grant mode policy does not have.\n\n")
	}

	if len(r.calls) > 0 {
		p("## AWS calls per operation\n\n")
		p("Counted by SDK middleware (`awstest.Recorder`) on the services' clients, one operation at a time, in each grant mode; the state table's calls (DynamoDB: the claim, lease, commit and record reads of `pkg/state`) are counted with IAM's and Secrets Manager's, and *per service* splits them. *Needed* is what the operation cannot do without (see the notes in `cmd/keyvend-bench/calls.go`); *cleanup* is what grant mode group does beyond that on purpose: deleting a grant group the operation left empty (is it empty, its policy, the group), so groups do not pile up against IAM's quota. Target: no call beyond needed and cleanup.\n\n")
		for _, mode := range grantModes {
			cs := r.callsOf(mode)
			if len(cs) == 0 {
				continue
			}
			p("### %s\n\n", modeTitle(mode))
			p("| operation | calls | needed | cleanup | beyond needed | target | the calls | per service |\n|---|---|---|---|---|---|---|---|\n")
			for _, c := range cs {
				extra := "none"
				if e := c.Extra(); len(e) > 0 {
					extra = strings.Join(countedOps(e), ", ")
				}
				if m := c.Missing(); len(m) > 0 {
					extra += "; needed but not made: " + strings.Join(countedOps(m), ", ")
				}
				cleanup := "none"
				if len(c.Cleanup) > 0 {
					cleanup = fmt.Sprintf("%d: %s", len(c.Cleanup), strings.Join(countedOps(c.Cleanup), ", "))
				}
				p("| %s | %d | %d | %s | %s | %s | %s | %s |\n", c.Op, len(c.Calls), len(c.Needed), cleanup, extra, mark(len(c.Extra()) == 0), strings.Join(countedOps(c.Calls), ", "), servicesLine(c.PerService))
			}
			p("\n")
		}
		if fewer, ok := r.fewerInPolicy(); ok {
			var parts []string
			for _, mode := range grantModes {
				var ns []string
				for _, c := range r.provisionCalls(mode) {
					ns = append(ns, fmt.Sprintf("%d (%s)", len(c.Calls), c.Op))
				}
				parts = append(parts, fmt.Sprintf("grant mode %s %s", mode, strings.Join(ns, ", ")))
			}
			p("**Calls per provision** of a new user: %s. Target: fewer in grant mode policy than in grant mode group (%d < %d): %s.\n\n",
				strings.Join(parts, "; "), len(r.provisionCalls(grants.Policy)[len(r.provisionCalls(grants.Policy))-1].Calls), len(r.provisionCalls(grants.Group)[0].Calls), mark(fewer))
		}
	}

	r.stateSections(p)

	if len(r.cold) > 1 {
		empty := r.cold[0]
		p("## Cold start\n\n")
		p("`functions/api` and an empty aws-lambda-go handler (`cmd/keyvend-bench/emptyfn`), built for this machine with `make build`'s flags, each launched %d times under the Lambda runtime interface emulator (aws-lambda-rie), interleaved. *Launch → first answer* runs from starting the emulator to the first invocation's answer (the emulator starts the function on that invocation); *init* is the function's own initialisation as the emulator reports it (`INIT REPORT`). Warm: p50 of %d more invocations after a launch. Target: launch → first answer ≤ %.1f× the empty handler's (median).\n\n",
			len(empty.Runs), r.opts.warm, coldTarget)
		p("| function | launch → first answer (median) | × empty | target | init (median) | init × empty | warm invoke p50 |\n|---|---|---|---|---|---|---|\n")
		emptyFirst, emptyInit := percentile(empty.firstAnswers(), 50), percentile(empty.inits(), 50)
		for i, c := range r.cold {
			first := percentile(c.firstAnswers(), 50)
			target := "baseline"
			if i == 1 {
				target = fmt.Sprintf("≤ %.1f: %s", coldTarget, mark(ratio(first, emptyFirst) <= coldTarget))
			} else if i > 1 {
				target = "information"
			}
			init := percentile(c.inits(), 50)
			p("| %s | %s | %.2f | %s | %s | %.2f | %s |\n", c.Name, ms(first), ratio(first, emptyFirst), target, ms(init), ratio(init, emptyInit), ms(percentile(c.Warm, 50)))
		}
		api := r.cold[1]
		p("\nMost of *launch → first answer* is the emulator's own start, the same for both. The function's init is larger mainly by Go package initialisation before `main`, measured once with `GODEBUG=inittrace=1`: %s for functions/api against %s for the empty handler, the largest being %s (%s) — the SDK clients' tables; `main` itself (configuration, clients, rules) makes no AWS call before the first request. ",
			ms(api.PackageInit), ms(empty.PackageInit), api.TopPackage, ms(api.TopPackageInit))
		p("The last row's first invocation also makes the function's first AWS call (to moto on loopback): SDK client set-up, endpoint resolution and signing on first use.\n\n")
	}

	if len(r.sizes) > 1 {
		p("## Size\n\n")
		p("`linux/arm64` bootstraps built as `make build` builds them (`-tags lambda.norpc -trimpath -ldflags='-s -w'`, CGO off). Target: ≤ %.0f× the empty handler.\n\n", sizeTarget)
		p("| bootstrap | size | × empty | target | AWS SDK services linked | CDK packages linked |\n|---|---|---|---|---|---|\n")
		base := r.sizes[0].Bytes
		for i, s := range r.sizes {
			target := "baseline"
			if i > 0 {
				target = fmt.Sprintf("≤ %.0f×: %s", sizeTarget, mark(float64(s.Bytes) <= sizeTarget*float64(base)))
			}
			services := "none"
			if len(s.Services) > 0 {
				services = strings.Join(s.Services, ", ")
			}
			p("| %s | %s (%d bytes) | %.2f | %s | %s | %d |\n", s.Name, mib(s.Bytes), s.Bytes, float64(s.Bytes)/float64(base), target, services, s.CDK)
		}
		p("\nkeyvend calls iam, secretsmanager and sts (the readiness check and the rotation function's testSecret). sso, ssooidc and signin come with the SDK's `config` package, which links every credential provider; `awsclient.Load` keeps `config.LoadDefaultConfig` for the whole default chain (environment, the container credential endpoint, shared files for `keyvend serve --aws`). No CDK package is linked: `infra/` is its own Go module.\n\n")
	}

	if r.slack != nil {
		p("## Slack ack\n\n")
		p("The Slack endpoint (`chatops.Endpoint`, built by `app.Serve`) answering %d signed `/keyvend provision` commands in process: signature and replay check, parsing, the rules' precheck and `SendMessage` to a real SQS queue in moto — everything Slack waits for (its limit: 3 s). A Lambda cold start adds the Slack function's init to the first request only (see Cold start for the API function's). Target: p99 ≤ %s.\n\n", len(r.slack.acks), ms(slackAckTarget))
		p("| commands | p50 | p99 | target | a bare `SendMessage` to moto, timed alongside: p50 / p99 |\n|---|---|---|---|---|\n")
		p99 := percentile(r.slack.acks, 99)
		p("| %d | %s | %s | ≤ %s: %s | %s / %s |\n\n", len(r.slack.acks), ms(percentile(r.slack.acks, 50)), ms(p99), ms(slackAckTarget), mark(p99 <= slackAckTarget), ms(percentile(r.slack.sends, 50)), ms(percentile(r.slack.sends, 99)))
	}

	if r.memory != nil {
		p("## Memory\n\n")
		p("`keyvend serve` (embedded moto, `rules/demo.json`) after %d sequential provisions over HTTP on loopback (%s in all), its peak resident set (`VmHWM` in /proc) — moto is another process and not counted. Not more provisions: moto copies the whole state table for every item of a transaction, so each provision's commit takes longer the more users the table holds (300 took 97 s on this machine). Target: ≤ %s.\n\n", r.memory.Provisions, r.memory.Elapsed.Round(time.Second), mib(memTarget))
		p("| provisions | peak RSS | RSS at the end | target |\n|---|---|---|---|\n")
		p("| %d | %s | %s | ≤ %s: %s |\n\n", r.memory.Provisions, mib(r.memory.PeakRSS), mib(r.memory.RSS), mib(memTarget), mark(r.memory.PeakRSS <= memTarget))
	}

	p("## Gaps\n\n")
	if missed := r.missed(); len(missed) == 0 {
		p("Every target was met.\n")
	} else {
		p("Missed: %s.\n\n", strings.Join(missed, "; "))
		r.explain(&b)
	}
	return b.String()
}

// explain writes why each missed target was missed, from the figures.
func (r *report) explain(b *strings.Builder) {
	p := func(format string, args ...any) { fmt.Fprintf(b, format, args...) }
	rows := r.latencyRows()
	latencyMissed := false
	for _, row := range rows {
		latencyMissed = latencyMissed || r.latencyMissed(row)
	}
	if latencyMissed {
		var refs []string
		var refCalls int
		var refTime time.Duration
		for _, row := range rows {
			if row.kind == referenceRow {
				n := 4
				if row.mode == grants.Group {
					n = 6
				}
				z := percentile(row.noDelay, 50)
				refs = append(refs, fmt.Sprintf("the %d-call reference of grant mode %s takes %s", n, row.mode, ms(z)))
				refCalls, refTime = refCalls+n, refTime+z
			}
		}
		p("- **Latency: moto's own time.** Every p50 is the added round trips plus what the 0 ms run measures: ")
		var parts []string
		for _, row := range rows {
			if !row.hasTarget() {
				continue
			}
			p50, z := percentile(row.withDelay, 50), percentile(row.noDelay, 50)
			parts = append(parts, fmt.Sprintf("%s %s = %s + %s (net %.2f)", row.label(), ms(p50), ms(p50-z), ms(z), ratio(p50-z, r.floor())))
		}
		p("%s. ", strings.Join(parts, "; "))
		perCall := time.Duration(0)
		if refCalls > 0 {
			perCall = refTime / time.Duration(refCalls)
		}
		// Whether the figures bear out "net of moto, 3 round trips": every
		// operation's net within the target.
		var over []string
		for _, row := range rows {
			if net := ratio(percentile(row.withDelay, 50)-percentile(row.noDelay, 50), r.floor()); row.hasTarget() && net > latencyTarget {
				over = append(over, fmt.Sprintf("%s (net %.2f)", row.label(), net))
			}
		}
		p("moto serves one request at a time, about %s per call here (with no delay, %s), so calls that keyvend sends together queue at moto, and its time adds to each round trip instead of overlapping. ",
			ms(perCall), strings.Join(refs, ", "))
		if len(over) == 0 {
			p("Net of it, each operation costs its %d round trips (the net column, target ≤ %.2f; it includes the proxy's own lateness, %s per call here). ", roundTrips, latencyTarget, ms(r.delayLate))
		} else {
			p("Net of it, each operation costs its %d round trips (the net column, target ≤ %.2f; it includes the proxy's own lateness, %s per call here) except %s: moto's share does not explain all of that here — a busy machine (compare p95) or more on the critical path than the table says; run again on a quiet machine. ",
				roundTrips, latencyTarget, ms(r.delayLate), strings.Join(over, ", "))
		}
		p("AWS serves the calls of one round in parallel, so there the cost per round trip is the network's and the service's own time per call. Not reducible from keyvend: the critical path already is the dependency limit, and the calls beside it are the ones the operation needs (see the calls tables).\n")
	}
	for _, c := range r.calls {
		if e := c.Extra(); len(e) > 0 {
			p("- **Calls of %s (grant mode %s):** %s beyond what it needs.", c.Op, c.Mode, strings.Join(countedOps(e), ", "))
			if c.Note != "" {
				p(" %s", c.Note)
			}
			p("\n")
		}
		if m := c.Missing(); len(m) > 0 {
			p("- **The needed list of %s (grant mode %s) is stale:** %s needed but not made; `cmd/keyvend-bench/calls.go` must say what the operation needs now.\n", c.Op, c.Mode, strings.Join(countedOps(m), ", "))
		}
	}
	r.stateExplain(p)
	if fewer, ok := r.fewerInPolicy(); ok && !fewer {
		p("- **Calls per provision:** grant mode policy makes no fewer calls than grant mode group (see the calls tables).\n")
	}
	if len(r.cold) > 1 {
		empty, api := r.cold[0], r.cold[1]
		e1, a1 := percentile(empty.firstAnswers(), 50), percentile(api.firstAnswers(), 50)
		if ratio(a1, e1) > coldTarget {
			ai, ei := percentile(api.inits(), 50), percentile(empty.inits(), 50)
			aw, ew := percentile(api.Warm, 50), percentile(empty.Warm, 50)
			p("- **Cold start:** launch → first answer %s vs %s (%.2f×). Of the %s between them, the function's init accounts for %s (%s vs %s: Go package initialisation of the SDK clients, %s vs %s) and answering — the %d-byte OpenAPI document through the API Gateway adapter, against \"ok\" — for about %s (warm p50 %s vs %s); the rest is noise on a shared machine: the middle half of the launches spans %s–%s for the API function and %s–%s for the empty one. The SDK clients' package init is fixed cost of linking them; `main` does no AWS call and no work the first request does not need.\n",
				ms(a1), ms(e1), ratio(a1, e1), ms(a1-e1), ms(ai-ei), ms(ai), ms(ei), ms(api.PackageInit), ms(empty.PackageInit), openAPIBytes, ms(aw-ew), ms(aw), ms(ew),
				ms(percentile(api.firstAnswers(), 25)), ms(percentile(api.firstAnswers(), 75)), ms(percentile(empty.firstAnswers(), 25)), ms(percentile(empty.firstAnswers(), 75)))
		}
	}
	for _, s := range r.sizes[min(1, len(r.sizes)):] {
		if float64(s.Bytes) > sizeTarget*float64(r.sizes[0].Bytes) {
			p("- **Size of %s:** %s vs %s: the IAM, Secrets Manager and STS clients and the SDK's credential chain are most of it.\n", s.Name, mib(s.Bytes), mib(r.sizes[0].Bytes))
		}
	}
	if r.slack != nil && percentile(r.slack.acks, 99) > slackAckTarget {
		p("- **Slack ack:** p99 %s, of which a bare `SendMessage` to moto takes %s at p99 (p50 %s of %s): the queue call to moto's single-threaded server, not keyvend's own work, is what the tail is made of (SQS itself is not measured here).\n",
			ms(percentile(r.slack.acks, 99)), ms(percentile(r.slack.sends, 99)), ms(percentile(r.slack.sends, 50)), ms(percentile(r.slack.acks, 50)))
	}
	if r.memory != nil && r.memory.PeakRSS > memTarget {
		p("- **Memory:** peak %s after %d provisions.\n", mib(r.memory.PeakRSS), r.memory.Provisions)
	}
}

// countedOps renders sorted operation names as "Name ×n".
func countedOps(ops []string) []string {
	counts := map[string]int{}
	for _, o := range ops {
		counts[o]++
	}
	names := make([]string, 0, len(counts))
	for n := range counts {
		names = append(names, n)
	}
	sort.Strings(names)
	out := make([]string, len(names))
	for i, n := range names {
		out[i] = n
		if counts[n] > 1 {
			out[i] = fmt.Sprintf("%s ×%d", n, counts[n])
		}
	}
	return out
}

// openAPIBytes is the size of the document GET /v1/openapi.json answers.
var openAPIBytes = len(httpapi.OpenAPI)

func orUnknown(s string) string {
	if s == "" {
		return "unknown"
	}
	return s
}
