package registry

import (
	"context"
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"

	"hookctl.dev/hookctl"
)

// TestInventoryWrittenWithBatch: records are committed in the batch's
// transaction (same revision), survive a restart, and a stale or invalid
// batch writes neither hooks nor records.
func TestInventoryWrittenWithBatch(t *testing.T) {
	ctx := context.Background()
	s, dir := newStore(t)
	h := hook("blog", hookctl.TypeExpr, "true", true)
	h.Owner = "blog"
	rec := hookctl.SetRecord{Set: "blog", Source: "git:repo//hooks", Revision: "c1", Members: []hookctl.Key{h.Key}}
	rev, err := s.Apply(ctx, hookctl.Batch{Revision: s.Revision(), Create: []hookctl.Hook{h},
		Inventory: &hookctl.InventoryChange{Put: []hookctl.SetRecord{rec}}})
	if err != nil {
		t.Fatal(err)
	}
	got, invRev, err := s.Inventory(ctx)
	if err != nil || invRev != rev || len(got) != 1 || got[0].Applied.IsZero() {
		t.Fatalf("Inventory = %+v, %d (want revision %d), %v", got, invRev, rev, err)
	}
	rec.Applied = got[0].Applied
	if diff := cmp.Diff([]hookctl.SetRecord{rec}, got); diff != "" {
		t.Errorf("records (-want +got):\n%s", diff)
	}

	// Stale: nothing written.
	other := rec
	other.Set, other.Members = "news", nil
	if _, err := s.Apply(ctx, hookctl.Batch{Revision: rev - 1, Inventory: &hookctl.InventoryChange{Put: []hookctl.SetRecord{other}}}); !errors.Is(err, hookctl.ErrStale) {
		t.Fatalf("stale batch: %v", err)
	}
	// Invalid record: refused, nothing written.
	bad := &hookctl.InventoryChange{Put: []hookctl.SetRecord{{Set: "x"}}}
	if _, err := s.Apply(ctx, hookctl.Batch{Revision: rev, Inventory: bad}); !errors.Is(err, hookctl.ErrInvalid) {
		t.Fatalf("record without source: %v", err)
	}
	// An inventory-only batch moves the revision.
	rev2, err := s.Apply(ctx, hookctl.Batch{Revision: rev, Inventory: &hookctl.InventoryChange{Put: []hookctl.SetRecord{other}}})
	if err != nil || rev2 != rev+1 {
		t.Fatalf("inventory-only batch: %d, %v", rev2, err)
	}

	s.Close()
	s = openStore(t, dir, Options{Profiles: testProfiles})
	got, _, err = s.Inventory(ctx)
	if err != nil || len(got) != 2 || got[0].Set != "blog" || got[1].Set != "news" {
		t.Fatalf("after reopen: %+v, %v", got, err)
	}
	if _, err := s.Apply(ctx, hookctl.Batch{Revision: s.Revision(), Inventory: &hookctl.InventoryChange{Forget: []string{"blog"}}}); err != nil {
		t.Fatal(err)
	}
	if got, _, _ = s.Inventory(ctx); len(got) != 1 || got[0].Set != "news" {
		t.Errorf("after forget: %+v", got)
	}
}
