package state_test

import (
	"errors"
	"testing"
	"time"

	"github.com/keyvend/keyvend/pkg/state"
)

func TestClaimGuarded(t *testing.T) {
	s, _ := newStore(t)
	g, err := s.ReadGuard(ctx(), "alice")
	if err != nil || g.Version != 0 || len(g.Names) != 0 {
		t.Fatalf("a guard never written: %+v, %v", g, err)
	}
	a := newRecord("a", grant("b1"))
	a.Requester = "alice"
	if _, err := s.ClaimGuarded(ctx(), a, "h1", time.Minute, g, []string{"a"}); err != nil {
		t.Fatal(err)
	}
	// A second claim counted on the same (now stale) guard: ErrGuard, nothing written.
	b := newRecord("b", grant("b1"))
	b.Requester = "alice"
	if _, err := s.ClaimGuarded(ctx(), b, "h2", time.Minute, g, []string{"a", "b"}); !errors.Is(err, state.ErrGuard) {
		t.Fatalf("claim on a stale guard: %v, want ErrGuard", err)
	}
	if _, err := s.Get(ctx(), "b"); !errors.Is(err, state.ErrNotFound) {
		t.Errorf("the refused claim wrote its record: %v", err)
	}
	g2, err := s.ReadGuard(ctx(), "alice")
	if err != nil || g2.Version != 1 || len(g2.Names) != 1 || g2.Names[0] != "a" {
		t.Fatalf("guard after one claim: %+v, %v", g2, err)
	}
	// A claim of a name that has a record: ErrExists, the guard unchanged.
	if _, err := s.ClaimGuarded(ctx(), a, "h3", time.Minute, g2, []string{"a"}); !errors.Is(err, state.ErrExists) {
		t.Fatalf("claim of a recorded name: %v, want ErrExists", err)
	}
	if _, err := s.ClaimGuarded(ctx(), b, "h2", time.Minute, g2, []string{"a", "b"}); err != nil {
		t.Fatal(err)
	}
	recs, err := s.Requested(ctx(), "alice")
	if err != nil || len(recs) != 2 {
		t.Fatalf("Requested = %d records, %v; want 2", len(recs), err)
	}
}
