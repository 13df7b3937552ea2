package reconcile

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"

	"hookctl.dev/hookctl"
	"hookctl.dev/hookctl/registry"
)

// openStore opens a real registry in a temporary directory.
func openStore(t testing.TB) *registry.Store {
	t.Helper()
	s, err := registry.Open(t.TempDir(), registry.Options{Profiles: map[string]string{"default": "bot@localhost"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func listAll(t testing.TB, r hookctl.Registry) []hookctl.Hook {
	t.Helper()
	hs, _, err := r.List(context.Background(), "")
	if err != nil {
		t.Fatal(err)
	}
	return hs
}

// racingRegistry makes a concurrent change (a hand-made hook) just before
// the first batch reaches the registry, so that batch is stale.
type racingRegistry struct {
	hookctl.Registry
	raced   atomic.Bool
	applies atomic.Int32
}

func (r *racingRegistry) Apply(ctx context.Context, b hookctl.Batch) (uint64, error) {
	r.applies.Add(1)
	if r.raced.CompareAndSwap(false, true) {
		if _, err := r.Registry.Create(ctx, hk("by-hand", "/bin/true", "")); err != nil {
			return 0, err
		}
	}
	return r.Registry.Apply(ctx, b)
}

func TestApplyRetriesStale(t *testing.T) {
	ctx := context.Background()
	store := openStore(t)
	reg := &racingRegistry{Registry: store}
	desired := []hookctl.Hook{hk("a", "/bin/true", "blog"), hk("b", "/bin/true", "blog")}

	res, err := Apply(ctx, reg, desired, ApplyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if res.Attempts != 2 || reg.applies.Load() != 2 || !res.Applied {
		t.Errorf("attempts = %d, applies = %d, applied = %v; want 2, 2, true", res.Attempts, reg.applies.Load(), res.Applied)
	}
	got := listAll(t, store)
	if len(got) != 3 {
		t.Fatalf("registry holds %d hooks, want 3 (2 desired + 1 by hand): %v", len(got), got)
	}
	if c := res.Plan.Counts(); c.Create != 2 || c.LeftAlone != 1 {
		t.Errorf("final plan counts = %+v, want 2 create and the hand-made hook left alone", c)
	}
	if _, rev, _ := store.List(ctx, ""); rev != res.Revision {
		t.Errorf("result revision %d, registry at %d", res.Revision, rev)
	}
}

func TestApplyGivesUpWhenAlwaysStale(t *testing.T) {
	store := openStore(t)
	reg := &alwaysStale{Registry: store}
	_, err := Apply(context.Background(), reg, []hookctl.Hook{hk("a", "/bin/true", "blog")}, ApplyOptions{Attempts: 3})
	if !errors.Is(err, hookctl.ErrStale) {
		t.Fatalf("err = %v, want ErrStale", err)
	}
	if reg.n != 3 {
		t.Errorf("%d attempts, want 3", reg.n)
	}
}

type alwaysStale struct {
	hookctl.Registry
	n int
}

func (r *alwaysStale) Apply(ctx context.Context, b hookctl.Batch) (uint64, error) {
	r.n++
	b.Revision-- // as if someone always got there first
	return r.Registry.Apply(ctx, b)
}

func TestApplyTwiceIsNoop(t *testing.T) {
	ctx := context.Background()
	store := openStore(t)
	desired, err := NormalizeServices([]hookctl.Hook{
		hk("a", "/bin/true", "blog"),
		with(hk("pep", "/bin/true", "blog"), func(h *hookctl.Hook) { h.Service = "" }),
		with(hk("tmp", "/bin/true", "blog"), func(h *hookctl.Hook) { h.Persistent = false }),
	}, map[string]string{"default": "bot@localhost"})
	if err != nil {
		t.Fatal(err)
	}
	first, err := Apply(ctx, store, desired, ApplyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if c := first.Plan.Counts(); c.Create != 3 || !first.Applied {
		t.Fatalf("first apply: %+v applied=%v", c, first.Applied)
	}
	second, err := Apply(ctx, store, desired, ApplyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !second.Plan.InSync() || second.Applied || second.Revision != first.Revision {
		t.Errorf("second apply: counts %+v applied=%v revision %d→%d; want in sync, nothing sent, same revision",
			second.Plan.Counts(), second.Applied, first.Revision, second.Revision)
	}
}

func TestApplyUpdatesDeletesAndAdopts(t *testing.T) {
	ctx := context.Background()
	store := openStore(t)
	if _, err := Apply(ctx, store, []hookctl.Hook{hk("a", "/bin/true", "blog"), hk("b", "/bin/true", "blog")}, ApplyOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := store.Create(ctx, hk("hand", "/bin/true", "")); err != nil {
		t.Fatal(err)
	}
	desired := []hookctl.Hook{
		with(hk("a", "/bin/true", "blog"), func(h *hookctl.Hook) { h.Filter = "true"; h.Source = "new.yaml:4" }),
		hk("hand", "/bin/true", "blog"),
	}
	// Without --adopt: the hand-made hook is a conflict and is not sent.
	res, err := Apply(ctx, store, desired, ApplyOptions{Options: Options{Sets: []string{"blog"}}})
	if err != nil {
		t.Fatal(err)
	}
	if c := res.Plan.Counts(); c.Update != 1 || c.Delete != 1 || c.Conflict != 1 {
		t.Fatalf("counts %+v, want 1 update, 1 delete, 1 conflict", c)
	}
	got := map[string]hookctl.Hook{}
	for _, h := range listAll(t, store) {
		got[h.Node] = h
	}
	if _, ok := got["b"]; ok {
		t.Error("b not deleted")
	}
	if got["a"].Filter != "true" || got["a"].Source != "new.yaml:4" {
		t.Errorf("a not updated (filter %q, source %q)", got["a"].Filter, got["a"].Source)
	}
	if got["hand"].Owner != "" {
		t.Errorf("hand-made hook taken over without --adopt: owner %q", got["hand"].Owner)
	}
	// With --adopt it becomes the set's.
	res, err = Apply(ctx, store, desired, ApplyOptions{Options: Options{Sets: []string{"blog"}, Adopt: true}})
	if err != nil {
		t.Fatal(err)
	}
	if c := res.Plan.Counts(); c.Update != 1 || c.Conflict != 0 {
		t.Fatalf("adopt counts %+v", c)
	}
	for _, h := range listAll(t, store) {
		if h.Node == "hand" && h.Owner != "blog" {
			t.Errorf("adopted hook owner %q, want blog", h.Owner)
		}
	}
}

func TestApplyRefusesEmptySet(t *testing.T) {
	ctx := context.Background()
	store := openStore(t)
	if _, err := Apply(ctx, store, []hookctl.Hook{hk("a", "/bin/true", "blog"), hk("n", "/bin/true", "news")}, ApplyOptions{}); err != nil {
		t.Fatal(err)
	}
	// The blog file now declares its set but no hooks (truncated file).
	opts := ApplyOptions{Options: Options{Sets: []string{"blog", "news"}}}
	desired := []hookctl.Hook{hk("n", "/bin/true", "news")}
	_, err := Apply(ctx, store, desired, opts)
	if !errors.Is(err, ErrEmptySet) || !errors.Is(err, hookctl.ErrInvalid) {
		t.Fatalf("err = %v, want ErrEmptySet", err)
	}
	if n := len(listAll(t, store)); n != 2 {
		t.Fatalf("registry changed after refusal: %d hooks", n)
	}
	opts.AllowEmpty = true
	res, err := Apply(ctx, store, desired, opts)
	if err != nil {
		t.Fatal(err)
	}
	if c := res.Plan.Counts(); c.Delete != 1 {
		t.Errorf("counts %+v, want 1 delete", c)
	}
	if n := len(listAll(t, store)); n != 1 {
		t.Errorf("registry holds %d hooks, want 1", n)
	}
}

func TestApplyDryRunSendsNothing(t *testing.T) {
	store := openStore(t)
	res, err := Apply(context.Background(), store, []hookctl.Hook{hk("a", "/bin/true", "blog")}, ApplyOptions{DryRun: true})
	if err != nil {
		t.Fatal(err)
	}
	if res.Applied || res.Plan.Counts().Create != 1 || len(listAll(t, store)) != 0 {
		t.Errorf("dry run applied=%v counts=%+v", res.Applied, res.Plan.Counts())
	}
}

// TestNormalizeServicesRefusesDuplicates: a hook with service omitted and
// the same hook with the profile's own JID written out are one hook; the
// second declaration must not vanish without a word.
func TestNormalizeServicesRefusesDuplicates(t *testing.T) {
	a := with(hk("a", "/bin/true", "blog"), func(h *hookctl.Hook) { h.Service = ""; h.Source = "h.yaml:3" })
	b := with(hk("a", "/bin/true", "blog"), func(h *hookctl.Hook) { h.Service = "Bot@LocalHost"; h.Source = "h.yaml:7" })
	_, err := NormalizeServices([]hookctl.Hook{a, b}, map[string]string{"default": "bot@localhost"})
	if !errors.Is(err, hookctl.ErrInvalid) || !strings.Contains(err.Error(), "h.yaml:7: the same hook as h.yaml:3") {
		t.Fatalf("NormalizeServices = %v, want both places named", err)
	}
}
