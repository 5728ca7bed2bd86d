package main

import (
	"slices"
	"strings"
	"testing"
	"time"
)

func TestPercentileNearestRank(t *testing.T) {
	ds := []time.Duration{5, 1, 4, 2, 3, 10, 9, 8, 7, 6}
	for _, c := range []struct {
		p    float64
		want time.Duration
	}{{50, 5}, {95, 10}, {10, 1}, {100, 10}, {0, 1}} {
		if got := percentile(ds, c.p); got != c.want {
			t.Errorf("p%v = %v, want %v", c.p, got, c.want)
		}
	}
	if percentile(nil, 50) != 0 {
		t.Error("p50 of nothing")
	}
}

func TestCallCountExtra(t *testing.T) {
	c := callCount{Calls: sorted("GetUser ListAccessKeys ListAccessKeys CreateGroup"), Needed: sorted("GetUser ListAccessKeys CreateGroup DeleteGroup")}
	if got := c.Extra(); !slices.Equal(got, []string{"ListAccessKeys"}) {
		t.Errorf("extra = %v", got)
	}
	if got := c.Missing(); !slices.Equal(got, []string{"DeleteGroup"}) {
		t.Errorf("missing = %v", got)
	}
}

// TestReportExplainsMissedTargets renders a report from made-up figures:
// every table is there, met and missed targets are marked, and each miss
// is explained.
func TestReportExplainsMissedTargets(t *testing.T) {
	many := func(d time.Duration, n int) []time.Duration { return slices.Repeat([]time.Duration{d}, n) }
	r := &report{
		opts:    options{delay: 25 * time.Millisecond, warm: 5},
		machine: machine{Cores: 2, Go: "go1.26.8", OS: "linux/amd64"},
		started: time.Date(2026, 11, 27, 0, 0, 0, 0, time.UTC),
		latency: []*latencyRun{
			{Existing: many(90*time.Millisecond, 100), NewGroups: many(80*time.Millisecond, 20), Sequential: many(170*time.Millisecond, 100), Deprovision: many(100*time.Millisecond, 100)},
			{Existing: many(14*time.Millisecond, 100), NewGroups: many(5*time.Millisecond, 20), Sequential: many(14*time.Millisecond, 100), Deprovision: many(20*time.Millisecond, 100)},
		},
		calls: []callCount{{Op: "rotate", Calls: sorted("GetUser GetUser"), Needed: sorted("GetUser")}},
		cold: []coldResult{
			{Name: "empty", Runs: []coldRun{{ToFirstAnswer: 10 * time.Millisecond, Init: 2 * time.Millisecond}}, Warm: many(time.Millisecond, 5)},
			{Name: "api", Runs: []coldRun{{ToFirstAnswer: 20 * time.Millisecond, Init: 4 * time.Millisecond}}, Warm: many(time.Millisecond, 5)},
		},
		sizes:  []sizeResult{{Name: "empty", Bytes: 100}, {Name: "functions/api", Bytes: 150}},
		memory: &memResult{Provisions: 1000, PeakRSS: 20 << 20, RSS: 19 << 20},
	}
	md := r.markdown()
	for _, want := range []string{
		"## Provision and deprovision latency", "## AWS calls per operation", "## Cold start", "## Size", "## Memory", "## Gaps",
		"| provision: new user, new group | 20 | 80.0 ms |", "1.07 | ≤ 1.15: met",
		"moto's own time", "**Calls of rotate:** GetUser", "**Cold start:**", "≤ 2×: met", "≤ 64.00 MiB: met",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("report lacks %q:\n%s", want, md)
		}
	}
	if got := r.missed(); len(got) != 4 {
		t.Errorf("missed = %v, want existing-group provision, deprovision, rotate's calls, cold start", got)
	}
}
