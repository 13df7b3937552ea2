package reconcile

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"hookctl.dev/hookctl"
	"hookctl.dev/hookctl/registry"
	"hookctl.dev/hookctl/spec"
)

// nodesOf returns the nodes of n hooks of set: prefix-0 … prefix-(n-1).
func setHooks(set, prefix string, n int) []hookctl.Hook {
	out := make([]hookctl.Hook, n)
	for i := range out {
		out[i] = hk(fmt.Sprintf("%s-%02d", prefix, i), "/x", set)
	}
	return out
}

func refusedSets(p Changeset) map[string]string {
	out := map[string]string{}
	for _, sp := range p.SetPlans {
		if sp.Err != nil {
			out[sp.Set] = sp.Err.Error()
		}
	}
	return out
}

func batchNodes(b hookctl.Batch) (create, update, del []string) {
	for _, h := range b.Create {
		create = append(create, h.Node)
	}
	for _, h := range b.Update {
		update = append(update, h.Node)
	}
	for _, k := range b.Delete {
		del = append(del, k.Node)
	}
	return
}

func TestPlanGuardsPerSet(t *testing.T) {
	blog := setHooks("blog", "b", 4)
	news := setHooks("news", "n", 4)
	live := slices.Concat(blog, news)

	t.Run("empty set refused only when it would delete", func(t *testing.T) {
		desired := blog
		p := Plan(desired, live, 7, Options{Sets: []string{"blog", "news"}})
		if got := refusedSets(p); len(got) != 1 || !strings.Contains(got["news"], "set news declares no hooks but the registry holds 4") {
			t.Fatalf("refused %v", got)
		}
		if !errors.Is(p.Err(), ErrEmptySet) {
			t.Errorf("Err = %v, want ErrEmptySet", p.Err())
		}
		if b := p.Batch(); !b.Empty() {
			t.Errorf("batch %+v, want nothing of news", b)
		}
		p = Plan(desired, live, 7, Options{Sets: []string{"blog", "news"}, NoPrune: true})
		if p.Err() != nil {
			t.Errorf("--prune=false on an empty set: %v, want allowed (nothing deleted)", p.Err())
		}
		p = Plan(desired, live, 7, Options{Sets: []string{"blog", "news"}, Guards: Guards{AllowEmpty: true}})
		if _, _, del := batchNodes(p.Batch()); len(del) != 4 || p.Err() != nil {
			t.Errorf("--allow-empty: delete %v, err %v", del, p.Err())
		}
	})

	t.Run("mass delete refused for that set only, the other applied", func(t *testing.T) {
		desired := slices.Concat(blog[:1], news, []hookctl.Hook{hk("n-new", "/x", "news")})
		p := Plan(desired, live, 7, Options{})
		got := refusedSets(p)
		if len(got) != 1 || !strings.Contains(got["blog"], "set blog would lose 3 of its 4 hooks (more than 50%)") ||
			!errors.Is(p.Err(), ErrMassDelete) {
			t.Fatalf("refused %v, err %v", got, p.Err())
		}
		create, update, del := batchNodes(p.Batch())
		if !slices.Equal(create, []string{"n-new"}) || update != nil || del != nil {
			t.Errorf("batch create %v update %v delete %v, want only news's create", create, update, del)
		}
		// Half is not more than half; a share of 0.8 lets 3 of 4 go.
		if p := Plan(slices.Concat(blog[:2], news), live, 7, Options{}); p.Err() != nil {
			t.Errorf("2 of 4: %v", p.Err())
		}
		if p := Plan(desired, live, 7, Options{Guards: Guards{MassDeleteShare: 0.8}}); p.Err() != nil {
			t.Errorf("share 0.8: %v", p.Err())
		}
		if p := Plan(desired, live, 7, Options{Guards: Guards{AllowMassDelete: true}}); p.Err() != nil {
			t.Errorf("--allow-mass-delete: %v", p.Err())
		}
	})

	t.Run("replacing hooks is not losing them", func(t *testing.T) {
		desired := slices.Concat(setHooks("blog", "other", 4), news)
		if p := Plan(desired, live, 7, Options{}); p.Err() != nil {
			t.Errorf("4 replaced: %v", p.Err())
		}
	})
}

// inv is an inventory record of set by source holding hooks' keys.
func inv(set, source string, hooks ...hookctl.Hook) hookctl.SetRecord {
	r := hookctl.SetRecord{Set: set, Source: source, Revision: "r1", Members: []hookctl.Key{}}
	for _, h := range hooks {
		r.Members = append(r.Members, h.Key)
	}
	return r
}

func TestPlanInventory(t *testing.T) {
	blog := setHooks("blog", "b", 2)
	gone := setHooks("gone", "g", 3)
	other := setHooks("other", "o", 1)
	live := slices.Concat(blog, gone, other)
	records := []hookctl.SetRecord{inv("blog", "src", blog...), inv("gone", "src", gone...), inv("other", "elsewhere", other...)}
	base := Options{Sets: []string{"blog"}, Source: "src", SourceRevision: "r2", Inventory: records}

	t.Run("a set gone from the files is pruned, guarded, and forgotten", func(t *testing.T) {
		p := Plan(blog, live, 7, base)
		var del []string
		for _, e := range p.Entries {
			if e.Action == ActionDelete {
				del = append(del, e.Key.Node+" "+e.Reason)
			}
		}
		want := []string{"g-00 set no longer in the files", "g-01 set no longer in the files", "g-02 set no longer in the files"}
		if !slices.Equal(del, want) {
			t.Errorf("deletes %q, want %q", del, want)
		}
		if got := refusedSets(p); !strings.Contains(got["gone"], "set gone is no longer in the files but the registry holds 3 of its hooks") {
			t.Errorf("refused %v", got)
		}
		opts := base
		opts.AllowEmpty = true
		p = Plan(blog, live, 7, opts)
		b := p.Batch()
		if _, _, d := batchNodes(b); len(d) != 3 {
			t.Errorf("deleted %v", d)
		}
		// blog does not change: its record (and revision) stays.
		want2 := &hookctl.InventoryChange{Forget: []string{"gone"}}
		if diff := cmp.Diff(want2, b.Inventory); diff != "" {
			t.Errorf("inventory change (-want +got):\n%s", diff)
		}
		// Another source's set is left alone and kept in the inventory.
		for _, e := range p.Entries {
			if e.Key.Node == "o-00" && (e.Action != ActionLeftAlone || e.Reason != "owned by set other") {
				t.Errorf("other source's hook: %+v", e)
			}
		}
	})

	t.Run("a set another source manages is refused, naming both", func(t *testing.T) {
		opts := base
		opts.Sets = []string{"blog", "other"}
		desired := slices.Concat(blog, []hookctl.Hook{hk("o-00", "/x", "other"), hk("o-new", "/x", "other")})
		opts.AllowEmpty = true
		p := Plan(desired, live, 7, opts)
		got := refusedSets(p)["other"]
		if !strings.Contains(got, "set other is declared by source src but managed by source elsewhere") || !errors.Is(p.Err(), ErrClaimed) {
			t.Fatalf("refusal %q", got)
		}
		create, _, _ := batchNodes(p.Batch())
		if slices.Contains(create, "o-new") {
			t.Errorf("claimed set's create sent: %v", create)
		}
		for _, r := range p.Batch().Inventory.Put {
			if r.Set == "other" {
				t.Errorf("claimed set's record rewritten: %+v", r)
			}
		}
	})

	t.Run("a hand edit of an owned key is drift the files win; a key never owned is a conflict", func(t *testing.T) {
		handEdited := with(blog[0], func(h *hookctl.Hook) { h.Owner = ""; h.Timeout = 99e9 })
		neverOwned := hk("fresh", "/x", "")
		desired := slices.Concat(blog, []hookctl.Hook{hk("fresh", "/x", "blog")})
		p := Plan(desired, slices.Concat([]hookctl.Hook{handEdited, blog[1], neverOwned}, gone), 7, base)
		got := rows(p)
		want := []row{
			{Action: ActionUpdate, Node: "b-00", Changes: []string{"owner:  -> blog", "timeout: 1m39s -> "}, Reason: "made by hand on a key of set blog: the files win"},
			{Action: ActionUnchanged, Node: "b-01"},
			{Action: ActionConflict, Node: "fresh", Reason: "made by hand (use --adopt to take it over)"},
		}
		if diff := cmp.Diff(want, got[:3]); diff != "" {
			t.Errorf("plan (-want +got):\n%s", diff)
		}
	})

	t.Run("a set renamed in the same files moves its hooks", func(t *testing.T) {
		renamed := []hookctl.Hook{hk("b-00", "/x", "blog2"), hk("b-01", "/x", "blog2")}
		opts := base
		opts.Sets = []string{"blog2"}
		opts.Inventory = []hookctl.SetRecord{inv("blog", "src", blog...)}
		p := Plan(renamed, blog, 7, opts)
		if p.Err() != nil {
			t.Fatal(p.Err())
		}
		for _, e := range p.Entries {
			if e.Action != ActionUpdate || len(e.Changes) != 1 || e.Changes[0].Field != "owner" {
				t.Errorf("entry %+v, want an update of the owner", e)
			}
		}
		b := p.Batch()
		if len(b.Update) != 2 || len(b.Delete) != 0 || len(b.Create) != 0 {
			t.Errorf("batch %+v", b)
		}
		want := &hookctl.InventoryChange{Put: []hookctl.SetRecord{{Set: "blog2", Source: "src", Revision: "r2", Members: inv("", "", blog...).Members}}, Forget: []string{"blog"}}
		if diff := cmp.Diff(want, b.Inventory); diff != "" {
			t.Errorf("inventory change (-want +got):\n%s", diff)
		}
	})

	t.Run("no change, no inventory write", func(t *testing.T) {
		opts := base
		opts.SourceRevision = "r1"
		opts.Inventory = []hookctl.SetRecord{inv("blog", "src", blog...)}
		if p := Plan(blog, blog, 7, opts); p.Inventory != nil || !p.Batch().Empty() {
			t.Errorf("inventory %+v", p.Inventory)
		}
	})
}

// TestApplyWritesInventoryWithBatch: the records reach the real registry
// in the batch's transaction, and a second source's claim is refused
// while its other sets are applied.
func TestApplyWritesInventoryWithBatch(t *testing.T) {
	ctx := context.Background()
	store := openStore(t)
	a := []hookctl.Hook{hk("a1", "/bin/true", "a"), hk("a2", "/bin/true", "a")}
	res, err := Apply(ctx, store, a, ApplyOptions{Options: Options{Sets: []string{"a"}, Source: "one", SourceRevision: "c1"}})
	if err != nil || !res.Applied {
		t.Fatalf("apply: %+v %v", res, err)
	}
	recs, rev, err := store.Inventory(ctx)
	if err != nil || rev != res.Revision || len(recs) != 1 || recs[0].Source != "one" || recs[0].Revision != "c1" || len(recs[0].Members) != 2 || recs[0].Applied.IsZero() {
		t.Fatalf("inventory %+v rev %d (want %d) %v", recs, rev, res.Revision, err)
	}
	b := []hookctl.Hook{hk("b1", "/bin/true", "b"), hk("a3", "/bin/true", "a")}
	res, err = Apply(ctx, store, b, ApplyOptions{Options: Options{Sets: []string{"a", "b"}, Source: "two", SourceRevision: "c9"}})
	if !errors.Is(err, ErrClaimed) || err != res.Refused || !res.Applied {
		t.Fatalf("second source: applied %v, err %v", res.Applied, err)
	}
	nodes := []string{}
	for _, h := range listAll(t, store) {
		nodes = append(nodes, h.Node+"/"+h.Owner)
	}
	if want := []string{"a1/a", "a2/a", "b1/b"}; !slices.Equal(nodes, want) {
		t.Errorf("registry %v, want %v", nodes, want)
	}
	recs, _, _ = store.Inventory(ctx)
	if len(recs) != 2 || recs[0].Source != "one" || recs[1].Set != "b" || recs[1].Source != "two" {
		t.Errorf("inventory %+v", recs)
	}
}

// pickyRegistry refuses, as the backend does for a missing script, every
// batch that creates a hook on a node starting with "bad".
type pickyRegistry struct {
	*registry.Store
	batches int
}

func (r *pickyRegistry) Apply(ctx context.Context, b hookctl.Batch) (uint64, error) {
	r.batches++
	for _, h := range b.Create {
		if strings.HasPrefix(h.Node, "bad") {
			return 0, fmt.Errorf("%w: exec %s: no such file", hookctl.ErrInvalid, h.Node)
		}
	}
	return r.Store.Apply(ctx, b)
}

// TestApplyOneSetRefusedByTheBackend: a batch the backend refuses because
// of one set's hook is sent again set by set: the other sets are applied,
// that set is refused with the backend's reason.
func TestApplyOneSetRefusedByTheBackend(t *testing.T) {
	ctx := context.Background()
	reg := &pickyRegistry{Store: openStore(t)}
	desired := []hookctl.Hook{hk("a1", "/bin/true", "alpha"), hk("bad-1", "/bin/true", "beta"), hk("b2", "/bin/true", "beta"), hk("c1", "/bin/true", "gamma")}
	res, err := Apply(ctx, reg, desired, ApplyOptions{Options: Options{Source: "src", SourceRevision: "r1"}})
	if err == nil || err != res.Refused || !res.Applied {
		t.Fatalf("Apply: applied %v, err %v", res.Applied, err)
	}
	if got := refusedSets(res.Plan); len(got) != 1 || got["beta"] != "set beta: the backend refused its changes: invalid: exec bad-1: no such file" {
		t.Errorf("refused %v", got)
	}
	if s := res.Plan.Sent(); s.Create != 2 {
		t.Errorf("sent %+v, want the 2 creates of alpha and gamma", s)
	}
	var nodes []string
	for _, h := range listAll(t, reg) {
		nodes = append(nodes, h.Node)
	}
	if !slices.Equal(nodes, []string{"a1", "c1"}) || reg.batches != 4 {
		t.Errorf("registry %v after %d batches, want [a1 c1] after 4 (1 whole, 3 per set)", nodes, reg.batches)
	}
	recs, _, _ := reg.Inventory(ctx)
	if len(recs) != 2 || recs[0].Set != "alpha" || recs[1].Set != "gamma" {
		t.Errorf("inventory %+v, want alpha and gamma only", recs)
	}
}

// TestPartialLoaderGivesUpWhenUnsure: the whole last good set stays when
// the sets cannot be told apart safely.
func TestPartialLoaderGivesUpWhenUnsure(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "blog.yaml"), hooksYAML("blog", "a"))
	last, err := SpecLoader([]string{dir}, false)(ctx)
	if err != nil {
		t.Fatal(err)
	}
	partial := PartialLoader([]string{dir}, false)
	try := func(name, content string) bool {
		t.Helper()
		writeFile(t, filepath.Join(dir, name), content)
		defer os.Remove(filepath.Join(dir, name))
		_, err := SpecLoader([]string{dir}, false)(ctx)
		if err == nil {
			t.Fatalf("%s: loads", name)
		}
		_, _, ok := partial(ctx, err, &last)
		return ok
	}
	if !try("news.yaml", "version: 1\nset: blog\nhooks: [{nod: x}]\n") {
		t.Error("an invalid file of a known set: not held")
	}
	if try("new.yaml", "version: 1\nset: fresh\nhooks: [{nod: x}]\n") {
		t.Error("an invalid file of a new set: held, want the whole last good set")
	}
	if try("junk.yaml", "{{{") {
		t.Error("an invalid file without a set: held, want the whole last good set")
	}
	if _, _, ok := partial(ctx, errors.New("x"), &last); ok {
		t.Error("an error that is not diagnostics: held")
	}
	if _, _, ok := partial(ctx, spec.Diagnostics{{File: filepath.Join(dir, "blog.yaml"), Message: "x"}}, nil); ok {
		t.Error("no last good set: held")
	}
}

// TestApplyWithoutInventory: a registry that keeps no inventory (an older
// backend answers 404) is planned as before, by the declared sets alone.
func TestApplyWithoutInventory(t *testing.T) {
	ctx := context.Background()
	reg := &racingRegistry{Registry: openStore(t)}
	reg.raced.Store(true) // no concurrent writer here
	res, err := Apply(ctx, reg, []hookctl.Hook{hk("a", "/bin/true", "blog")}, ApplyOptions{Options: Options{Source: "src"}})
	if err != nil || !res.Applied || res.Plan.Inventory != nil {
		t.Fatalf("Apply: %+v, %v", res, err)
	}
}
