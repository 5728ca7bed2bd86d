// Command keyvend-bench measures keyvend against its physical limits and
// writes docs/benchmarks.md (`make bench`):
//
//   - provision and deprovision latency through the real http.Handler, in
//     grant mode policy (the default) and grant mode group, with a loopback
//     proxy adding a fixed delay to every AWS call, next to the same flow
//     done one call at a time and to the same run with no delay;
//   - the AWS calls of each operation, in each grant mode, per service;
//   - the round trips on each operation's critical path, measured from
//     the calls' start and end, the state table's apart from IAM's;
//   - listing pages and the reaper at thousands of users in the state
//     table (records seeded through pkg/state);
//   - cold start of functions/api under the Lambda runtime interface
//     emulator, next to an empty aws-lambda-go handler;
//   - the linux/arm64 size of every function, next to the empty handler;
//   - the Slack endpoint's answer (ack) latency, in process;
//   - the peak RSS of `keyvend serve` after many provisions.
//
// Every figure is printed with its target. The command fails only when it
// could not measure, never because a target was missed. It runs from the
// repository root, starts moto, the emulator and keyvend serve itself and
// stops every process it started.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

type options struct {
	out        string
	n          int
	newGroups  int
	delay      time.Duration
	coldRuns   int
	warm       int
	memN       int
	slackN     int
	roundsN    int
	listSizes  string
	reapN      int
	reapDue    int
	rie        string
	sections   string
	timeout    time.Duration
	writeDocs  bool
	commandDoc string
}

func main() {
	var o options
	flag.StringVar(&o.out, "out", "docs/benchmarks.md", "where to write the report")
	flag.IntVar(&o.n, "n", 100, "provisions (and deprovisions) per delay in each grant mode; in grant mode group, into an existing group")
	flag.IntVar(&o.newGroups, "new-groups", 20, "provisions with a new group, and their deprovisions, per delay (grant mode group)")
	flag.DurationVar(&o.delay, "delay", 25*time.Millisecond, "delay the proxy adds to every AWS call")
	flag.IntVar(&o.coldRuns, "cold-runs", 30, "launches of each function under the emulator")
	flag.IntVar(&o.warm, "warm", 50, "warm invocations of each function")
	// 200: moto copies the whole state table for every item of a
	// transaction, so each provision's commit is slower the more users
	// there are (300 took 97 s on 2 cores; 1000 would take most of an hour).
	flag.IntVar(&o.memN, "memory-provisions", 200, "sequential provisions before reading keyvend serve's peak RSS")
	flag.StringVar(&o.rie, "rie", "", "the aws-lambda-rie binary (make bench installs it)")
	flag.IntVar(&o.slackN, "slack-acks", 500, "signed Slack commands to time the endpoint's answer over")
	flag.IntVar(&o.roundsN, "rounds-n", 20, "times each operation runs for its critical path (grant mode policy)")
	flag.StringVar(&o.listSizes, "list-sizes", "100,1000,5000", "records in the state table at which listing pages are timed")
	flag.IntVar(&o.reapN, "reap-n", 5000, "records in the state table when the reaper runs")
	flag.IntVar(&o.reapDue, "reap-due", 10, "users due when the reaper runs")
	flag.StringVar(&o.sections, "sections", "latency,calls,rounds,list,reaper,coldstart,size,slack,memory", "what to measure; rounds,list,reaper are the state table's (\"state\" names the three)")
	flag.DurationVar(&o.timeout, "timeout", 25*time.Minute, "give up (and fail) after this long")
	flag.Parse()
	if err := run(o); err != nil {
		fmt.Fprintln(os.Stderr, "keyvend-bench: could not measure:", err)
		os.Exit(1)
	}
}

func run(o options) error {
	if _, err := os.Stat("functions"); err != nil {
		return fmt.Errorf("run from the repository root (no functions/ here)")
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	os.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	dir, err := os.MkdirTemp("", "keyvend-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	begin := time.Now()
	progress := func(msg string) {
		fmt.Fprintf(os.Stderr, "[%6.1fs] %s\n", time.Since(begin).Seconds(), msg)
	}
	want := map[string]bool{}
	for _, s := range strings.Split(o.sections, ",") {
		want[strings.TrimSpace(s)] = true
	}
	if want["state"] { // the state table's sections alone: -sections state
		want["rounds"], want["list"], want["reaper"] = true, true, true
	}
	rep := &report{opts: o, machine: describeMachine(), started: time.Now()}

	if want["latency"] || want["calls"] || want["rounds"] || want["list"] || want["reaper"] || want["coldstart"] {
		progress("start moto and the delaying proxy")
		st, err := newStack(ctx, dir)
		if err != nil {
			return err
		}
		defer st.close()
		if want["latency"] {
			progress(fmt.Sprintf("latency in both grant modes with %s and with 0 ms added to every AWS call, interleaved", o.delay))
			before := st.proxy.Stats()
			if rep.latency, err = measureLatency(ctx, st, []time.Duration{o.delay, 0}, o.n, o.newGroups, progress); err != nil {
				return err
			}
			after := st.proxy.Stats()
			if n := after.Delayed - before.Delayed; n > 0 {
				rep.delayLate = (after.Late - before.Late) / time.Duration(n)
			}
		}
		if want["calls"] {
			progress("AWS calls per operation")
			if rep.calls, err = countCalls(ctx, st); err != nil {
				return err
			}
		}
		if want["rounds"] {
			progress(fmt.Sprintf("round trips per operation with %s added to every AWS call", o.delay))
			if rep.rounds, err = measureRounds(ctx, st, o.delay, o.roundsN, progress); err != nil {
				return err
			}
		}
		// Listing at the reaper's N is timed on the reaper's table (seeded
		// once); the other sizes on a table of their own.
		var sizes []int
		if want["list"] {
			if sizes, err = parseSizes(o.listSizes); err != nil {
				return err
			}
		}
		listAtReap := want["reaper"] && slices.Contains(sizes, o.reapN)
		if want["list"] {
			if listAtReap {
				sizes = slices.DeleteFunc(sizes, func(n int) bool { return n == o.reapN })
			}
			if rep.seeding, rep.lists, err = measureLists(ctx, st, sizes, progress); err != nil {
				return err
			}
		}
		if want["reaper"] {
			var rows []listRow
			if rep.reap, rows, err = measureReap(ctx, st, o.reapN, o.reapDue, listAtReap, progress); err != nil {
				return err
			}
			rep.lists = append(rep.lists, rows...)
		}
		if want["coldstart"] {
			if o.rie == "" {
				return fmt.Errorf("cold start needs the runtime interface emulator: -rie PATH (make bench installs it)")
			}
			if o.rie, err = filepath.Abs(o.rie); err != nil {
				return err
			}
			if err := st.reset(ctx); err != nil {
				return err
			}
			if rep.cold, err = measureColdStart(ctx, o.rie, dir, st.moto.URL, o.coldRuns, o.warm, progress); err != nil {
				return err
			}
		}
	}
	if want["size"] {
		if rep.sizes, err = measureSizes(ctx, dir, progress); err != nil {
			return err
		}
	}
	if want["slack"] {
		if rep.slack, err = measureSlackAck(ctx, dir, o.slackN, progress); err != nil {
			return err
		}
	}
	if want["memory"] {
		if rep.memory, err = measureMemory(ctx, dir, o.memN, progress); err != nil {
			return err
		}
	}
	rep.elapsed = time.Since(begin)
	doc := rep.markdown()
	fmt.Print(doc)
	if o.out != "" {
		if err := os.MkdirAll(filepath.Dir(o.out), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(o.out, []byte(doc), 0o644); err != nil {
			return err
		}
		progress("wrote " + o.out)
	}
	if missed := rep.missed(); len(missed) > 0 {
		progress(fmt.Sprintf("%d target(s) missed — see \"Gaps\" in the report (not a failure)", len(missed)))
	}
	return nil
}

// machine is where the figures were measured.
type machine struct {
	Cores int
	CPU   string
	Go    string
	OS    string
	Moto  string
}

func describeMachine() machine {
	m := machine{Cores: numCPU(), Go: goVersion(), OS: hostOS()}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPU = strings.TrimSpace(v)
				break
			}
		}
	}
	if out, err := exec.Command("python3", "-c", "import moto; print(moto.__version__)").Output(); err == nil {
		m.Moto = strings.TrimSpace(string(out))
	}
	return m
}

// parseSizes reads a comma-separated list of record counts, ascending.
func parseSizes(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 || len(out) > 0 && n <= out[len(out)-1] {
			return nil, fmt.Errorf("-list-sizes %q: want ascending positive counts such as 100,1000,5000", s)
		}
		out = append(out, n)
	}
	return out, nil
}
