package reconcile

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"hookctl.dev/hookctl"
)

func hk(node, arg, owner string) hookctl.Hook {
	return hookctl.Hook{
		Key:        hookctl.Key{Profile: "default", Service: "pubsub.localhost", Node: node, Type: hookctl.TypeExec, Arg: arg},
		Persistent: true,
		Owner:      owner,
		Source:     "hooks.yaml:1",
	}
}

func with(h hookctl.Hook, f func(*hookctl.Hook)) hookctl.Hook { f(&h); return h }

// row is an entry reduced to what the tests compare.
type row struct {
	Action  Action
	Node    string
	Changes []string
	Reason  string
}

func rows(p Changeset) []row {
	var out []row
	for _, e := range p.Entries {
		r := row{Action: e.Action, Node: e.Key.Node, Reason: e.Reason}
		for _, c := range e.Changes {
			r.Changes = append(r.Changes, fmt.Sprintf("%s: %s -> %s", c.Field, c.Old, c.New))
		}
		out = append(out, r)
	}
	return out
}

func TestPlan(t *testing.T) {
	a := hk("a", "/x", "blog")
	b := hk("b", "/x", "blog")
	c := hk("c", "/x", "blog")
	tests := []struct {
		name    string
		desired []hookctl.Hook
		live    []hookctl.Hook
		opts    Options
		want    []row
	}{
		{
			name:    "empty",
			desired: nil, live: nil,
			want: nil,
		},
		{
			name:    "create",
			desired: []hookctl.Hook{a},
			want:    []row{{Action: ActionCreate, Node: "a"}},
		},
		{
			name:    "unchanged ignores source and created",
			desired: []hookctl.Hook{a},
			live: []hookctl.Hook{with(a, func(h *hookctl.Hook) {
				h.Source = "old.yaml:9"
				h.Created = time.Unix(1, 0)
			})},
			want: []row{{Action: ActionUnchanged, Node: "a"}},
		},
		{
			name:    "delete own hook no longer desired",
			desired: []hookctl.Hook{a},
			live:    []hookctl.Hook{a, b},
			opts:    Options{Sets: []string{"blog"}},
			want:    []row{{Action: ActionUnchanged, Node: "a"}, {Action: ActionDelete, Node: "b"}},
		},
		{
			name:    "prune off leaves own hook",
			desired: []hookctl.Hook{a},
			live:    []hookctl.Hook{b},
			opts:    Options{Sets: []string{"blog"}, NoPrune: true},
			want: []row{{Action: ActionCreate, Node: "a"},
				{Action: ActionLeftAlone, Node: "b", Reason: "owned by set blog, pruning off"}},
		},
		{
			name:    "empty desired of a declared set deletes its hooks",
			desired: nil,
			live:    []hookctl.Hook{a},
			opts:    Options{Sets: []string{"blog"}},
			want:    []row{{Action: ActionDelete, Node: "a"}},
		},
		{
			name:    "sets default to the desired owners",
			desired: []hookctl.Hook{a},
			live:    []hookctl.Hook{b, with(c, func(h *hookctl.Hook) { h.Owner = "news" })},
			want: []row{{Action: ActionCreate, Node: "a"}, {Action: ActionDelete, Node: "b"},
				{Action: ActionLeftAlone, Node: "c", Reason: "owned by set news"}},
		},
		{
			name:    "other set and hand-made are left alone",
			desired: []hookctl.Hook{a},
			live:    []hookctl.Hook{with(b, func(h *hookctl.Hook) { h.Owner = "news" }), with(c, func(h *hookctl.Hook) { h.Owner = "" })},
			opts:    Options{Sets: []string{"blog"}},
			want: []row{{Action: ActionCreate, Node: "a"},
				{Action: ActionLeftAlone, Node: "b", Reason: "owned by set news"},
				{Action: ActionLeftAlone, Node: "c", Reason: "made by hand"}},
		},
		{
			name:    "prune unowned deletes hand-made on declared nodes only, never another set",
			desired: []hookctl.Hook{a},
			live: []hookctl.Hook{a, with(b, func(h *hookctl.Hook) { h.Owner = "news" }), with(c, func(h *hookctl.Hook) { h.Owner = "" }),
				with(a, func(h *hookctl.Hook) { h.Owner = ""; h.Arg = "/hand" }),
				with(a, func(h *hookctl.Hook) { h.Owner = ""; h.Profile = "other" })},
			opts: Options{Sets: []string{"blog"}, PruneUnowned: true},
			want: []row{{Action: ActionDelete, Node: "a"}, {Action: ActionUnchanged, Node: "a"},
				{Action: ActionLeftAlone, Node: "b", Reason: "owned by set news"},
				{Action: ActionLeftAlone, Node: "c", Reason: "made by hand, on a node the files do not declare"},
				{Action: ActionLeftAlone, Node: "a", Reason: "made by hand, on a node the files do not declare"}},
		},
		{
			name:    "hand-made with the desired key is a conflict",
			desired: []hookctl.Hook{a},
			live:    []hookctl.Hook{with(a, func(h *hookctl.Hook) { h.Owner = "" })},
			opts:    Options{Sets: []string{"blog"}},
			want:    []row{{Action: ActionConflict, Node: "a", Reason: "made by hand (use --adopt to take it over)"}},
		},
		{
			name:    "adopt takes over hand-made",
			desired: []hookctl.Hook{a},
			live:    []hookctl.Hook{with(a, func(h *hookctl.Hook) { h.Owner = "" })},
			opts:    Options{Sets: []string{"blog"}, Adopt: true},
			want:    []row{{Action: ActionUpdate, Node: "a", Changes: []string{"owner:  -> blog"}}},
		},
		{
			name:    "adopt does not take from another set",
			desired: []hookctl.Hook{a},
			live:    []hookctl.Hook{with(a, func(h *hookctl.Hook) { h.Owner = "news" })},
			opts:    Options{Sets: []string{"blog"}, Adopt: true},
			want:    []row{{Action: ActionConflict, Node: "a", Reason: "owned by set news"}},
		},
		{
			name:    "hook moving between two sets applied together is an update",
			desired: []hookctl.Hook{a},
			live:    []hookctl.Hook{with(a, func(h *hookctl.Hook) { h.Owner = "news" })},
			opts:    Options{Sets: []string{"blog", "news"}},
			want:    []row{{Action: ActionUpdate, Node: "a", Changes: []string{"owner: news -> blog"}}},
		},
		{
			name:    "stable order by key whatever the input order",
			desired: []hookctl.Hook{c, a},
			live:    []hookctl.Hook{b, hk("a", "/w", "blog")},
			want: []row{{Action: ActionDelete, Node: "a"}, {Action: ActionCreate, Node: "a"},
				{Action: ActionDelete, Node: "b"}, {Action: ActionCreate, Node: "c"}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Plan(tt.desired, tt.live, 7, tt.opts)
			if diff := cmp.Diff(tt.want, rows(got)); diff != "" {
				t.Errorf("plan (-want +got):\n%s", diff)
			}
			if got.Revision != 7 {
				t.Errorf("revision = %d, want 7", got.Revision)
			}
		})
	}
}

// TestPlanUpdateEachAttribute checks that a change of every declared
// attribute is an update naming that attribute, old → new.
func TestPlanUpdateEachAttribute(t *testing.T) {
	base := hk("a", "/x", "blog")
	tests := []struct {
		field string
		edit  func(*hookctl.Hook)
		want  string
	}{
		{"persistent", func(h *hookctl.Hook) { h.Persistent = false }, "persistent: true -> false"},
		{"name", func(h *hookctl.Hook) { h.Name = "n" }, "name:  -> n"},
		{"args", func(h *hookctl.Hook) { h.Args = []string{"-v"} }, `args:  -> ["-v"]`},
		{"headers", func(h *hookctl.Hook) { h.Headers = map[string]string{"A": "b"} }, `headers:  -> {"A":"b"}`},
		{"events", func(h *hookctl.Hook) { h.Events = []hookctl.EventKind{hookctl.EventPublish} }, "events: publish,retract -> publish"},
		{"filter", func(h *hookctl.Hook) { h.Filter = "true" }, "filter:  -> true"},
		{"timeout", func(h *hookctl.Hook) { h.Timeout = hookctl.Duration(time.Minute) }, "timeout:  -> 1m0s"},
		{"concurrency", func(h *hookctl.Hook) { h.Concurrency = 4 }, "concurrency: 1 -> 4"},
		{"catchup", func(h *hookctl.Hook) { h.Catchup = hookctl.CatchupAll }, "catchup: new -> all"},
	}
	for _, tt := range tests {
		t.Run(tt.field, func(t *testing.T) {
			desired := with(base, tt.edit)
			desired.Source = "new.yaml:3"
			live := with(base, func(h *hookctl.Hook) { h.Created = time.Unix(100, 0) })
			p := Plan([]hookctl.Hook{desired}, []hookctl.Hook{live}, 1, Options{})
			want := []row{{Action: ActionUpdate, Node: "a", Changes: []string{tt.want}}}
			if diff := cmp.Diff(want, rows(p)); diff != "" {
				t.Fatalf("plan (-want +got):\n%s", diff)
			}
			b := p.Batch()
			if len(b.Update) != 1 || len(b.Create)+len(b.Delete) != 0 {
				t.Fatalf("batch = %+v, want one update", b)
			}
			if b.Update[0].Source != "new.yaml:3" || !b.Update[0].Created.Equal(time.Unix(100, 0)) {
				t.Errorf("update sends source %q created %v, want the desired source and the live created time",
					b.Update[0].Source, b.Update[0].Created)
			}
		})
	}
}

func TestPlanDefaultsEqualExplicit(t *testing.T) {
	// Zero values mean the defaults: declaring them explicitly is no change.
	live := hk("a", "/x", "blog")
	desired := with(live, func(h *hookctl.Hook) {
		h.Events = []hookctl.EventKind{hookctl.EventRetract, hookctl.EventPublish}
		h.Concurrency = 1
		h.Args = []string{}
	})
	p := Plan([]hookctl.Hook{desired}, []hookctl.Hook{live}, 1, Options{})
	if !p.InSync() {
		t.Fatalf("plan not in sync: %+v", rows(p))
	}
}

func TestChangesetBatchCountsAndInSync(t *testing.T) {
	a, b, c := hk("a", "/x", "blog"), hk("b", "/x", "blog"), hk("c", "/x", "blog")
	hand := with(hk("d", "/x", ""), func(h *hookctl.Hook) {})
	desired := []hookctl.Hook{a, with(b, func(h *hookctl.Hook) { h.Name = "new" }), hk("d", "/x", "blog")}
	live := []hookctl.Hook{b, c, hand, with(hk("e", "/x", ""), func(h *hookctl.Hook) {})}
	p := Plan(desired, live, 42, Options{Sets: []string{"blog"}})
	want := Counts{Create: 1, Update: 1, Delete: 1, LeftAlone: 1, Conflict: 1}
	if diff := cmp.Diff(want, p.Counts()); diff != "" {
		t.Errorf("counts (-want +got):\n%s", diff)
	}
	if p.InSync() {
		t.Error("InSync = true for a plan with changes")
	}
	bt := p.Batch()
	if bt.Revision != 42 || len(bt.Create) != 1 || bt.Create[0].Node != "a" ||
		len(bt.Update) != 1 || bt.Update[0].Node != "b" ||
		len(bt.Delete) != 1 || bt.Delete[0].Node != "c" {
		t.Errorf("batch = %+v", bt)
	}
	if got, want := p.Summary(), "Plan: 1 to create, 1 to update, 1 to delete (1 left alone, 1 in conflict)."; got != want {
		t.Errorf("summary = %q, want %q", got, want)
	}

	// A conflict alone is not in sync (the desired hook is not in force)
	// but sends nothing.
	p = Plan([]hookctl.Hook{hk("d", "/x", "blog")}, []hookctl.Hook{hand}, 1, Options{})
	if p.InSync() || !p.Batch().Empty() {
		t.Errorf("conflict only: InSync=%v batch=%+v, want false and empty", p.InSync(), p.Batch())
	}
	p = Plan([]hookctl.Hook{a}, []hookctl.Hook{a, hand}, 1, Options{})
	if !p.InSync() || !p.Batch().Empty() {
		t.Errorf("unchanged + left alone: InSync=%v, want true", p.InSync())
	}
}

func TestPlanDoesNotModifyInputs(t *testing.T) {
	desired := []hookctl.Hook{hk("b", "/x", "blog"), hk("a", "/x", "blog")}
	live := []hookctl.Hook{hk("c", "/x", "blog")}
	d0, l0 := fmt.Sprint(desired), fmt.Sprint(live)
	Plan(desired, live, 1, Options{})
	if fmt.Sprint(desired) != d0 || fmt.Sprint(live) != l0 {
		t.Error("Plan modified its inputs")
	}
}

func TestNormalizeServices(t *testing.T) {
	in := []hookctl.Hook{
		hk("a", "/x", "blog"),
		with(hk("b", "/x", "blog"), func(h *hookctl.Hook) { h.Service = "" }),
		with(hk("c", "/x", "blog"), func(h *hookctl.Hook) { h.Service = ""; h.Profile = "other" }),
		with(hk("d", "/x", "blog"), func(h *hookctl.Hook) { h.Service = ""; h.Profile = "unknown" }),
		with(hk("e", "/x", "blog"), func(h *hookctl.Hook) { h.Service = " PubSub.Example.ORG " }),
	}
	out, err := NormalizeServices(in, map[string]string{"default": "bot@localhost", "other": "o@localhost/res"})
	if err != nil {
		t.Fatal(err)
	}
	got := []string{out[0].Service, out[1].Service, out[2].Service, out[3].Service, out[4].Service}
	want := []string{"pubsub.localhost", "bot@localhost", "o@localhost", "", "pubsub.example.org"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("services (-want +got):\n%s", diff)
	}
	if in[1].Service != "" {
		t.Error("NormalizeServices modified its input")
	}
}

func TestWriteText(t *testing.T) {
	desired := []hookctl.Hook{
		with(hk("a", "/usr/bin/x", "blog"), func(h *hookctl.Hook) { h.Source = "hooks.yaml:12" }),
		with(hk("b", "/usr/bin/x", "blog"), func(h *hookctl.Hook) {
			h.Source = "hooks.yaml:20"
			h.Timeout = hookctl.Duration(time.Minute)
		}),
	}
	live := []hookctl.Hook{
		with(hk("b", "/usr/bin/x", "blog"), func(h *hookctl.Hook) { h.Timeout = hookctl.Duration(30 * time.Second) }),
		hk("c", "/usr/bin/x", "blog"),
		hk("d", "/usr/bin/x", "news"),
	}
	p := Plan(desired, live, 3, Options{Sets: []string{"blog"}})
	var buf bytes.Buffer
	if err := p.WriteText(&buf, TextOptions{}); err != nil {
		t.Fatal(err)
	}
	want := `+ default pubsub.localhost a exec /usr/bin/x  (hooks.yaml:12)
~ default pubsub.localhost b exec /usr/bin/x  (hooks.yaml:20)
    timeout: 30s → 1m0s
- default pubsub.localhost c exec /usr/bin/x  (owned by set blog)
Plan: 1 to create, 1 to update, 1 to delete (1 left alone).
`
	if diff := cmp.Diff(want, buf.String()); diff != "" {
		t.Errorf("text (-want +got):\n%s", diff)
	}

	// LeftAlone lists hooks made by hand, not other sets' hooks.
	hand := hk("e", "/usr/bin/x", "")
	p = Plan(desired, append(live, hand), 3, Options{Sets: []string{"blog"}})
	buf.Reset()
	if err := p.WriteText(&buf, TextOptions{LeftAlone: true}); err != nil {
		t.Fatal(err)
	}
	if got := buf.String(); !strings.Contains(got, "= default pubsub.localhost e exec /usr/bin/x  (made by hand)\n") ||
		strings.Contains(got, " d exec") || !strings.HasSuffix(got, "(2 left alone).\n") {
		t.Errorf("LeftAlone text: want the hand-made hook listed, set news only counted; got:\n%s", got)
	}

	buf.Reset()
	_ = p.WriteText(&buf, TextOptions{Color: true})
	if !strings.Contains(buf.String(), "\x1b[32m+ default") || !strings.Contains(buf.String(), "\x1b[31m- default") {
		t.Errorf("coloured text lacks colours:\n%q", buf.String())
	}
}

func TestDocument(t *testing.T) {
	desired := []hookctl.Hook{hk("a", "/x", "blog"), hk("u", "/x", "blog")}
	live := []hookctl.Hook{with(hk("u", "/x", "blog"), func(h *hookctl.Hook) { h.Filter = "true" }), hk("z", "/x", "")}
	b, err := json.Marshal(Plan(desired, live, 5, Options{}).Document())
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"format_version": 1.0,
		"revision":       5.0,
		"sets":           []any{"blog"},
		"in_sync":        false,
		"summary":        map[string]any{"create": 1.0, "update": 1.0, "delete": 0.0, "unchanged": 0.0, "left_alone": 1.0, "conflict": 0.0},
		"changes": []any{
			map[string]any{"action": "create", "key": map[string]any{"profile": "default", "service": "pubsub.localhost", "node": "a", "type": "exec", "arg": "/x"}, "source": "hooks.yaml:1"},
			map[string]any{"action": "update", "key": map[string]any{"profile": "default", "service": "pubsub.localhost", "node": "u", "type": "exec", "arg": "/x"}, "source": "hooks.yaml:1", "owner": "blog",
				"changes": []any{map[string]any{"field": "filter", "old": "true", "new": ""}}},
			map[string]any{"action": "left-alone", "key": map[string]any{"profile": "default", "service": "pubsub.localhost", "node": "z", "type": "exec", "arg": "/x"}, "source": "hooks.yaml:1", "reason": "made by hand"},
		},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("document (-want +got):\n%s", diff)
	}
}

func BenchmarkPlan10k(b *testing.B) {
	const n = 10000
	desired := make([]hookctl.Hook, n)
	live := make([]hookctl.Hook, n)
	for i := range n {
		desired[i] = hk(fmt.Sprintf("node-%05d", i), "/usr/bin/hook", "blog")
		// A realistic mix: most unchanged, some updated, some replaced.
		l := hk(fmt.Sprintf("node-%05d", i), "/usr/bin/hook", "blog")
		switch i % 10 {
		case 0:
			l.Timeout = hookctl.Duration(time.Second)
		case 1:
			l.Node += "-old"
		}
		desired[i].Events = []hookctl.EventKind{hookctl.EventPublish}
		desired[i].Filter = `item.id startsWith "post-"`
		l.Events, l.Filter = desired[i].Events, desired[i].Filter
		live[i] = l
	}
	b.ReportAllocs()
	for b.Loop() {
		p := Plan(desired, live, 1, Options{})
		_ = p.Batch()
	}
}
