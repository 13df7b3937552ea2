package registry

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	bolt "go.etcd.io/bbolt"

	"hookctl.dev/hookctl"
	"hookctl.dev/hookctl/rules"
)

var testProfiles = map[string]string{
	"default": "Bot@Example.org",
	"other":   "other@example.org",
}

// fixedNow is a clock that ticks one second per call, so Created values are
// predictable and distinct.
func fixedNow() func() time.Time {
	t := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	return func() time.Time { t = t.Add(time.Second); return t }
}

func openStore(tb testing.TB, dir string, opts Options) *Store {
	tb.Helper()
	s, err := Open(dir, opts)
	if err != nil {
		tb.Fatalf("Open: %v", err)
	}
	tb.Cleanup(func() { s.Close() })
	return s
}

func newStore(tb testing.TB) (*Store, string) {
	tb.Helper()
	dir := filepath.Join(tb.TempDir(), "data")
	return openStore(tb, dir, Options{Profiles: testProfiles, Now: fixedNow()}), dir
}

func hook(node string, t hookctl.Type, arg string, persistent bool) hookctl.Hook {
	return hookctl.Hook{
		Key:        hookctl.Key{Profile: "default", Service: "pubsub.example.org", Node: node, Type: t, Arg: arg},
		Persistent: persistent,
	}
}

func mustCreate(tb testing.TB, s *Store, h hookctl.Hook) hookctl.Hook {
	tb.Helper()
	got, err := s.Create(context.Background(), h)
	if err != nil {
		tb.Fatalf("Create(%s): %v", h.Key, err)
	}
	return got
}

func keys(hs []hookctl.Hook) []string {
	out := make([]string, len(hs))
	for i, h := range hs {
		out[i] = h.Key.String()
	}
	return out
}

func TestOpenCreatesFiles(t *testing.T) {
	_, dir := newStore(t)
	for path, want := range map[string]os.FileMode{dir: 0o700 | os.ModeDir, filepath.Join(dir, "hooks.db"): 0o600} {
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode() != want {
			t.Errorf("%s: mode %v, want %v", path, fi.Mode(), want)
		}
	}
}

func TestCreateListDuplicate(t *testing.T) {
	ctx := context.Background()
	s, _ := newStore(t)
	rev0 := s.Revision()

	h := hook("urn:xmpp:microblog:0", hookctl.TypePythonFile, "/a.py", true)
	h.Owner, h.Source = "blog", "hooks.yaml:12"
	h.Events = []hookctl.EventKind{hookctl.EventPublish}
	got := mustCreate(t, s, h)
	if got.Created.IsZero() {
		t.Error("Created not set")
	}
	if s.Revision() != rev0+1 {
		t.Errorf("revision %d after create, want %d", s.Revision(), rev0+1)
	}
	tmp := mustCreate(t, s, hook("n2", hookctl.TypeExec, "/bin/true", false))
	oth := hook("n1", hookctl.TypeExpr, "true", false)
	oth.Profile, oth.Service = "other", ""
	oth = mustCreate(t, s, oth)

	list, rev, err := s.List(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	if rev != rev0+3 {
		t.Errorf("List revision %d, want %d", rev, rev0+3)
	}
	want := []hookctl.Hook{got, tmp, oth} // Key order: default (pubsub…, n2 < urn…), then other
	slices.SortFunc(want, func(a, b hookctl.Hook) int { return a.Key.Compare(b.Key) })
	if diff := cmp.Diff(want, list); diff != "" {
		t.Errorf("List(\"\") (-want +got):\n%s", diff)
	}
	list, _, _ = s.List(ctx, "other")
	if diff := cmp.Diff([]hookctl.Hook{oth}, list); diff != "" {
		t.Errorf("List(other) (-want +got):\n%s", diff)
	}
	if list, _, _ := s.List(ctx, "nobody"); len(list) != 0 {
		t.Errorf("List(nobody) = %v", keys(list))
	}

	// The same key again, persistent or not, with other attributes: refused,
	// naming the existing hook's owner and source.
	dup := h
	dup.Persistent, dup.Owner, dup.Source = false, "", "cli"
	dup.Service = "PubSub.Example.ORG" // normalises to the same key
	_, err = s.Create(ctx, dup)
	if !errors.Is(err, hookctl.ErrDuplicate) {
		t.Fatalf("duplicate Create: err = %v, want ErrDuplicate", err)
	}
	for _, part := range []string{h.Key.String(), "owner blog", "hooks.yaml:12"} {
		if !strings.Contains(err.Error(), part) {
			t.Errorf("duplicate error %q does not mention %q", err, part)
		}
	}
	if s.Revision() != rev0+3 {
		t.Errorf("refused create moved the revision to %d", s.Revision())
	}

	// The returned and listed hooks are copies: changing them changes
	// nothing in the registry.
	list, _, _ = s.List(ctx, "default")
	for _, x := range list {
		if len(x.Events) > 0 {
			x.Events[0] = hookctl.EventDelete
		}
	}
	h.Events[0] = hookctl.EventDelete
	snap, _ := s.Snapshot()
	for _, x := range snap {
		if slices.Contains(x.Events, hookctl.EventDelete) {
			t.Errorf("registry's hook changed through a caller's copy: %+v", x)
		}
	}
}

func TestValidation(t *testing.T) {
	s, _ := newStore(t)
	base := hook("n", hookctl.TypeExec, "/bin/true", true)
	cases := []struct {
		name   string
		change func(*hookctl.Hook)
		sentry error
		field  string
	}{
		{"no profile", func(h *hookctl.Hook) { h.Profile = "" }, hookctl.ErrInvalid, "profile"},
		{"unknown profile", func(h *hookctl.Hook) { h.Profile = "ghost" }, hookctl.ErrNotFound, `unknown profile "ghost"`},
		{"no node", func(h *hookctl.Hook) { h.Node = "" }, hookctl.ErrInvalid, "node"},
		{"bad type", func(h *hookctl.Hook) { h.Type = "perl" }, hookctl.ErrInvalid, "type"},
		{"no arg", func(h *hookctl.Hook) { h.Arg = "" }, hookctl.ErrInvalid, "arg"},
		{"bad event", func(h *hookctl.Hook) { h.Events = []hookctl.EventKind{"publish", "explode"} }, hookctl.ErrInvalid, "event"},
		{"negative concurrency", func(h *hookctl.Hook) { h.Concurrency = -1 }, hookctl.ErrInvalid, "concurrency"},
		{"negative timeout", func(h *hookctl.Hook) { h.Timeout = -1 }, hookctl.ErrInvalid, "timeout"},
		{"bad catchup", func(h *hookctl.Hook) { h.Catchup = "some" }, hookctl.ErrInvalid, "catchup"},
		{"bad service", func(h *hookctl.Hook) { h.Service = "not a jid@x" }, hookctl.ErrInvalid, "service"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := base
			tc.change(&h)
			_, err := s.Create(context.Background(), h)
			if !errors.Is(err, tc.sentry) {
				t.Fatalf("err = %v, want %v", err, tc.sentry)
			}
			if !strings.Contains(err.Error(), tc.field) {
				t.Errorf("error %q does not name %q", err, tc.field)
			}
		})
	}
	if snap, _ := s.Snapshot(); len(snap) != 0 {
		t.Errorf("invalid hooks were stored: %v", keys(snap))
	}
	// A valid one still goes in: the cases above failed for their reason.
	mustCreate(t, s, base)
}

func TestServiceNormalisation(t *testing.T) {
	ctx := context.Background()
	s, _ := newStore(t)
	pep := hook("n", hookctl.TypeExec, "/x", true)
	pep.Service = ""
	got := mustCreate(t, s, pep)
	if got.Service != "bot@example.org" {
		t.Errorf("empty service stored as %q, want the profile's bare JID bot@example.org", got.Service)
	}
	h := hook("n", hookctl.TypeExec, "/y", true)
	h.Service = "  PubSub.Example.ORG "
	got = mustCreate(t, s, h)
	if got.Service != "pubsub.example.org" {
		t.Errorf("service stored as %q, want pubsub.example.org", got.Service)
	}
	// A resource is refused, not silently stripped.
	h.Service = "pubsub.example.org/resource"
	if _, err := s.Create(ctx, h); !errors.Is(err, hookctl.ErrInvalid) || !strings.Contains(err.Error(), "has a resource") {
		t.Errorf("Create(service with a resource) = %v, want it refused", err)
	}
	// The own-PEP hook is addressed by its JID spelled any way, or by "".
	if _, err := s.Create(ctx, hookctl.Hook{Key: hookctl.Key{Profile: "default", Service: "BOT@example.org", Node: "n", Type: hookctl.TypeExec, Arg: "/x"}}); !errors.Is(err, hookctl.ErrDuplicate) {
		t.Errorf("same PEP hook by JID: err = %v, want ErrDuplicate", err)
	}
	n, err := s.Remove(ctx, hookctl.Match{Profile: "default", Service: "", Node: "n"})
	if err != nil || n != 1 {
		t.Errorf("Remove own PEP = %d, %v; want 1", n, err)
	}
	n, err = s.Remove(ctx, hookctl.Match{Profile: "default", Service: "PUBSUB.example.org", Node: "n"})
	if err != nil || n != 1 {
		t.Errorf("Remove by upper-case service = %d, %v; want 1", n, err)
	}

	// Without a profile map any profile goes and "" stays "".
	free := openStore(t, filepath.Join(t.TempDir(), "free"), Options{})
	h = hook("n", hookctl.TypeExec, "/x", true)
	h.Profile, h.Service = "anyone", ""
	if got := mustCreate(t, free, h); got.Service != "" {
		t.Errorf("service without profiles = %q, want empty", got.Service)
	}
	if _, err := Open(filepath.Join(t.TempDir(), "bad"), Options{Profiles: map[string]string{"p": "not a jid@"}}); !errors.Is(err, hookctl.ErrInvalid) {
		t.Errorf("Open with a bad profile JID: err = %v, want ErrInvalid", err)
	}
}

func TestRemoveAllMatches(t *testing.T) {
	ctx := context.Background()
	// The reference deleted while iterating and so removed only every other
	// match: with 2 matches it removed 1, with 3 it removed 2.
	for _, count := range []int{2, 3} {
		t.Run(fmt.Sprint(count), func(t *testing.T) {
			s, _ := newStore(t)
			for i := range count {
				mustCreate(t, s, hook("node", hookctl.TypePythonFile, fmt.Sprintf("/h%d.py", i), i%2 == 0))
			}
			keep := mustCreate(t, s, hook("node2", hookctl.TypePythonFile, "/h0.py", true))
			rev := s.Revision()
			n, err := s.Remove(ctx, hookctl.Match{Profile: "default", Service: "pubsub.example.org", Node: "node"})
			if err != nil {
				t.Fatal(err)
			}
			if n != count {
				t.Errorf("Remove returned %d, want %d", n, count)
			}
			list, r, _ := s.List(ctx, "")
			if diff := cmp.Diff([]hookctl.Hook{keep}, list); diff != "" {
				t.Errorf("left after remove (-want +got):\n%s", diff)
			}
			if r != rev+1 {
				t.Errorf("revision %d after remove, want %d", r, rev+1)
			}
			// Nothing matches any more: 0, and the revision stays.
			n, err = s.Remove(ctx, hookctl.Match{Profile: "default", Service: "pubsub.example.org", Node: "node"})
			if n != 0 || err != nil || s.Revision() != rev+1 {
				t.Errorf("second Remove = %d, %v, revision %d; want 0, nil, %d", n, err, s.Revision(), rev+1)
			}
		})
	}
}

func TestRemoveByTypeOrArg(t *testing.T) {
	ctx := context.Background()
	s, _ := newStore(t)
	mustCreate(t, s, hook("n", hookctl.TypePythonFile, "/a.py", true))
	mustCreate(t, s, hook("n", hookctl.TypePythonFile, "/b.py", false))
	mustCreate(t, s, hook("n", hookctl.TypeExec, "/a.py", true))
	mustCreate(t, s, hook("n", hookctl.TypeExpr, "true", false))
	m := hookctl.Match{Profile: "default", Service: "pubsub.example.org", Node: "n"}

	byArg := m
	byArg.Arg = "/a.py"
	if n, err := s.Remove(ctx, byArg); n != 2 || err != nil {
		t.Errorf("Remove(arg /a.py) = %d, %v; want 2", n, err)
	}
	byType := m
	byType.Type = hookctl.TypeExpr
	if n, err := s.Remove(ctx, byType); n != 1 || err != nil {
		t.Errorf("Remove(type expr) = %d, %v; want 1", n, err)
	}
	list, _, _ := s.List(ctx, "default")
	if diff := cmp.Diff([]string{hook("n", hookctl.TypePythonFile, "/b.py", false).Key.String()}, keys(list)); diff != "" {
		t.Errorf("left (-want +got):\n%s", diff)
	}
	other := m
	other.Node = "elsewhere"
	if n, err := s.Remove(ctx, other); n != 0 || err != nil {
		t.Errorf("Remove(other node) = %d, %v", n, err)
	}
	unknown := m
	unknown.Profile = "ghost"
	if _, err := s.Remove(ctx, unknown); !errors.Is(err, hookctl.ErrNotFound) {
		t.Errorf("Remove(unknown profile): err = %v, want ErrNotFound", err)
	}
	noNode := m
	noNode.Node = ""
	if _, err := s.Remove(ctx, noNode); !errors.Is(err, hookctl.ErrInvalid) {
		t.Errorf("Remove(no node): err = %v, want ErrInvalid", err)
	}
}

func TestApplyBatch(t *testing.T) {
	ctx := context.Background()
	s, dir := newStore(t)
	a := mustCreate(t, s, hook("n", hookctl.TypeExec, "/a", true))
	b := mustCreate(t, s, hook("n", hookctl.TypeExec, "/b", false))
	c := mustCreate(t, s, hook("n", hookctl.TypeExec, "/c", true))
	d := mustCreate(t, s, hook("n", hookctl.TypeExec, "/d", false))
	rev := s.Revision()

	a2 := a
	a2.Persistent, a2.Owner, a2.Created = false, "set", time.Time{} // persistent → temporary
	b2 := b
	b2.Persistent, b2.Name = true, "now-kept" // temporary → persistent
	e := hook("n", hookctl.TypeExec, "/e", true)
	e.Owner, e.Source = "set", "hooks.yaml:3"
	e.Service = "PUBSUB.example.org"
	newRev, err := s.Apply(ctx, hookctl.Batch{
		Revision: rev,
		Create:   []hookctl.Hook{e},
		Update:   []hookctl.Hook{a2, b2},
		Delete:   []hookctl.Key{c.Key, d.Key},
	})
	if err != nil {
		t.Fatal(err)
	}
	if newRev != rev+1 || s.Revision() != rev+1 {
		t.Errorf("Apply returned revision %d (store %d), want %d", newRev, s.Revision(), rev+1)
	}
	list, _, _ := s.List(ctx, "")
	a2.Created = a.Created // updates keep the original Created
	e.Service = "pubsub.example.org"
	want := []hookctl.Hook{a2, b2, e}
	if len(list) == 3 {
		e.Created = list[2].Created
		want[2] = e
	}
	if diff := cmp.Diff(want, list); diff != "" {
		t.Errorf("after Apply (-want +got):\n%s", diff)
	}
	if list[2].Created.IsZero() {
		t.Error("created hook has no Created time")
	}

	// The persistent side survives a restart exactly: b2 and e, not a2.
	s.Close()
	s2 := openStore(t, dir, Options{Profiles: testProfiles})
	list, _, _ = s2.List(ctx, "")
	if diff := cmp.Diff([]hookctl.Hook{b2, e}, list); diff != "" {
		t.Errorf("after restart (-want +got):\n%s", diff)
	}

	// An empty batch at the current revision succeeds and moves nothing.
	r := s2.Revision()
	if got, err := s2.Apply(ctx, hookctl.Batch{Revision: r}); err != nil || got != r || s2.Revision() != r {
		t.Errorf("empty Apply = %d, %v (store %d); want %d", got, err, s2.Revision(), r)
	}
}

func TestApplyAtomicOnInvalid(t *testing.T) {
	ctx := context.Background()
	s, dir := newStore(t)
	a := mustCreate(t, s, hook("n", hookctl.TypeExec, "/a", true))
	tmp := mustCreate(t, s, hook("n", hookctl.TypeExec, "/t", false))
	rev := s.Revision()
	before, _, _ := s.List(ctx, "")
	fresh := func(arg string) hookctl.Hook { return hook("n", hookctl.TypeExec, arg, true) }
	bad := fresh("/bad")
	bad.Concurrency = -3
	ghost := fresh("/ghost")
	a2 := a
	a2.Name = "changed"

	cases := []struct {
		name  string
		batch hookctl.Batch
		want  error
	}{
		{"invalid create", hookctl.Batch{Create: []hookctl.Hook{fresh("/x"), bad}, Delete: []hookctl.Key{tmp.Key}}, hookctl.ErrInvalid},
		{"create exists", hookctl.Batch{Create: []hookctl.Hook{fresh("/x"), a}, Update: []hookctl.Hook{a2}}, hookctl.ErrDuplicate},
		{"create exists temporary", hookctl.Batch{Create: []hookctl.Hook{fresh("/x"), tmp}}, hookctl.ErrDuplicate},
		{"update missing", hookctl.Batch{Create: []hookctl.Hook{fresh("/x")}, Update: []hookctl.Hook{a2, ghost}}, hookctl.ErrNotFound},
		{"delete missing", hookctl.Batch{Create: []hookctl.Hook{fresh("/x")}, Delete: []hookctl.Key{a.Key, ghost.Key}}, hookctl.ErrNotFound},
		{"key twice", hookctl.Batch{Create: []hookctl.Hook{fresh("/x"), fresh("/x")}}, hookctl.ErrInvalid},
		{"update and delete", hookctl.Batch{Update: []hookctl.Hook{a2}, Delete: []hookctl.Key{a.Key}}, hookctl.ErrInvalid},
		{"unknown profile", hookctl.Batch{Delete: []hookctl.Key{{Profile: "ghost", Node: "n", Type: hookctl.TypeExec, Arg: "/a"}}}, hookctl.ErrNotFound},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tc.batch.Revision = rev
			_, err := s.Apply(ctx, tc.batch)
			if !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
			after, r, _ := s.List(ctx, "")
			if r != rev {
				t.Errorf("revision moved to %d", r)
			}
			if diff := cmp.Diff(before, after); diff != "" {
				t.Errorf("refused batch changed the registry (-before +after):\n%s", diff)
			}
		})
	}
	// And the file too holds only a.
	s.Close()
	s2 := openStore(t, dir, Options{Profiles: testProfiles})
	list, _, _ := s2.List(ctx, "")
	if diff := cmp.Diff([]hookctl.Hook{a}, list); diff != "" {
		t.Errorf("file after refused batches (-want +got):\n%s", diff)
	}
}

func TestApplyStale(t *testing.T) {
	ctx := context.Background()
	s, _ := newStore(t)
	_, rev, _ := s.List(ctx, "")
	mustCreate(t, s, hook("n", hookctl.TypeExec, "/a", true)) // someone else changes it
	_, err := s.Apply(ctx, hookctl.Batch{Revision: rev, Create: []hookctl.Hook{hook("n", hookctl.TypeExec, "/b", true)}})
	if !errors.Is(err, hookctl.ErrStale) {
		t.Fatalf("err = %v, want ErrStale", err)
	}
	if !strings.Contains(err.Error(), fmt.Sprint(rev)) || !strings.Contains(err.Error(), fmt.Sprint(rev+1)) {
		t.Errorf("stale error %q does not give both revisions %d and %d", err, rev, rev+1)
	}
	// Even an empty batch is stale: the caller's view is old.
	if _, err := s.Apply(ctx, hookctl.Batch{Revision: rev}); !errors.Is(err, hookctl.ErrStale) {
		t.Errorf("empty stale batch: err = %v, want ErrStale", err)
	}
	if snap, _ := s.Snapshot(); len(snap) != 1 {
		t.Errorf("stale batch applied: %v", keys(snap))
	}
}

func TestRestart(t *testing.T) {
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "data")
	s, err := Open(dir, Options{Profiles: testProfiles})
	if err != nil {
		t.Fatal(err)
	}
	p := mustCreate(t, s, hook("n", hookctl.TypeExec, "/p", true))
	mustCreate(t, s, hook("n", hookctl.TypeExec, "/t", false))
	rev := s.Revision()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Create(ctx, hook("n", hookctl.TypeExec, "/late", true)); !errors.Is(err, hookctl.ErrUnavailable) {
		t.Errorf("Create after Close: err = %v, want ErrUnavailable", err)
	}

	s2 := openStore(t, dir, Options{Profiles: testProfiles})
	list, rev2, _ := s2.List(ctx, "")
	if diff := cmp.Diff([]hookctl.Hook{p}, list); diff != "" {
		t.Errorf("after restart (-want +got):\n%s", diff)
	}
	if rev2 <= rev {
		t.Errorf("revision after restart %d, want > %d", rev2, rev)
	}
	// A plan made before the restart is stale.
	if _, err := s2.Apply(ctx, hookctl.Batch{Revision: rev, Delete: []hookctl.Key{p.Key}}); !errors.Is(err, hookctl.ErrStale) {
		t.Errorf("pre-restart plan: err = %v, want ErrStale", err)
	}
}

func TestTemporaryOnlyChangesPersistRevision(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	s, err := Open(dir, Options{Profiles: testProfiles})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		mustCreate(t, s, hook("n", hookctl.TypeExec, fmt.Sprintf("/t%d", i), false))
	}
	rev := s.Revision()
	s.Close()
	s2 := openStore(t, dir, Options{Profiles: testProfiles})
	if s2.Revision() <= rev {
		t.Errorf("revision went from %d to %d across a restart", rev, s2.Revision())
	}
}

func TestDropTemporary(t *testing.T) {
	ctx := context.Background()
	s, _ := newStore(t)
	p := mustCreate(t, s, hook("n", hookctl.TypeExec, "/p", true))
	mustCreate(t, s, hook("n", hookctl.TypeExec, "/t1", false))
	mustCreate(t, s, hook("m", hookctl.TypeExec, "/t2", false))
	o := hook("n", hookctl.TypeExec, "/t", false)
	o.Profile = "other"
	o = mustCreate(t, s, o)
	rev := s.Revision()
	n, err := s.DropTemporary("default")
	if err != nil || n != 2 {
		t.Fatalf("DropTemporary = %d, %v; want 2", n, err)
	}
	list, r, _ := s.List(ctx, "")
	want := []hookctl.Hook{p, o}
	if diff := cmp.Diff(want, list); diff != "" {
		t.Errorf("after DropTemporary (-want +got):\n%s", diff)
	}
	if r != rev+1 {
		t.Errorf("revision %d, want %d", r, rev+1)
	}
	if n, _ := s.DropTemporary("default"); n != 0 || s.Revision() != rev+1 {
		t.Errorf("second DropTemporary = %d, revision %d", n, s.Revision())
	}
}

func TestChanges(t *testing.T) {
	s, _ := newStore(t)
	ch1, cancel1 := s.Changes()
	ch2, cancel2 := s.Changes()
	defer cancel2()

	// Three changes with nobody reading coalesce into one pending signal
	// and never block the writer.
	for i := range 3 {
		mustCreate(t, s, hook("n", hookctl.TypeExec, fmt.Sprintf("/%d", i), false))
	}
	for _, ch := range []<-chan struct{}{ch1, ch2} {
		select {
		case <-ch:
		default:
			t.Fatal("no signal after a change")
		}
		select {
		case <-ch:
			t.Fatal("signals did not coalesce")
		default:
		}
	}
	// A refused change signals nothing.
	s.Create(context.Background(), hook("n", hookctl.TypeExec, "/0", false))
	select {
	case <-ch1:
		t.Error("signal after a refused create")
	default:
	}
	cancel1()
	cancel1() // idempotent
	if _, ok := <-ch1; ok {
		t.Error("cancelled channel not closed")
	}
	mustCreate(t, s, hook("n", hookctl.TypeExec, "/later", false))
	if _, ok := <-ch2; !ok {
		t.Error("remaining subscriber not signalled")
	}
	s.Close()
	if _, ok := <-ch2; ok {
		t.Error("channel not closed by Close")
	}
	if ch3, cancel3 := s.Changes(); true {
		if _, ok := <-ch3; ok {
			t.Error("Changes after Close gave an open channel")
		}
		cancel3()
	}
}

func TestSecondOpenFailsFast(t *testing.T) {
	_, dir := newStore(t)
	start := time.Now()
	_, err := Open(dir, Options{})
	if err == nil {
		t.Fatal("second Open of the same data dir succeeded")
	}
	if want := fmt.Sprintf("data dir %s is in use by another backend", dir); !strings.Contains(err.Error(), want) {
		t.Errorf("error %q does not say %q", err, want)
	}
	if !errors.Is(err, hookctl.ErrUnavailable) {
		t.Errorf("error %v is not ErrUnavailable", err)
	}
	t.Logf("second Open failed after %v", time.Since(start).Round(time.Millisecond))
}

func TestNewerSchemaRefused(t *testing.T) {
	s, dir := newStore(t)
	if err := s.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucketMeta).Put(keySchema, []byte("99")) }); err != nil {
		t.Fatal(err)
	}
	s.Close()
	if _, err := Open(dir, Options{}); err == nil || !strings.Contains(err.Error(), "schema 99") {
		t.Errorf("Open of a newer schema: err = %v", err)
	}
}

// TestLargeBatchSnapshot exercises the merge rebuild (more than a few keys
// changed): the snapshot stays sorted and holds exactly the expected hooks.
func TestLargeBatchSnapshot(t *testing.T) {
	ctx := context.Background()
	s, _ := newStore(t)
	h := func(i int) hookctl.Hook {
		return hook(fmt.Sprintf("n%d", i%7), hookctl.TypeExec, fmt.Sprintf("/h%03d", i), i%2 == 0)
	}
	var first []hookctl.Hook
	for i := range 60 {
		first = append(first, h(i))
	}
	if _, err := s.Apply(ctx, hookctl.Batch{Revision: s.Revision(), Create: first}); err != nil {
		t.Fatal(err)
	}
	want := map[string]bool{}
	for i := range 60 {
		want[h(i).Key.String()] = true
	}
	var b hookctl.Batch
	b.Revision = s.Revision()
	for i := range 20 { // updates switching sides
		u := h(i)
		u.Persistent = !u.Persistent
		b.Update = append(b.Update, u)
	}
	for i := 20; i < 35; i++ {
		b.Delete = append(b.Delete, h(i).Key)
		delete(want, h(i).Key.String())
	}
	for i := 100; i < 125; i++ {
		b.Create = append(b.Create, h(i))
		want[h(i).Key.String()] = true
	}
	if _, err := s.Apply(ctx, b); err != nil {
		t.Fatal(err)
	}
	snap, _ := s.Snapshot()
	if !slices.IsSortedFunc(snap, func(a, b hookctl.Hook) int { return a.Key.Compare(b.Key) }) {
		t.Error("snapshot not in Key order")
	}
	got := map[string]bool{}
	for _, x := range snap {
		got[x.Key.String()] = true
		if i := slices.IndexFunc(b.Update, func(u hookctl.Hook) bool { return u.Key == x.Key }); i >= 0 && x.Persistent != b.Update[i].Persistent {
			t.Errorf("%s: persistent %v, want %v", x.Key, x.Persistent, b.Update[i].Persistent)
		}
	}
	if len(snap) != len(got) {
		t.Errorf("snapshot has %d hooks, %d distinct", len(snap), len(got))
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("snapshot keys (-want +got):\n%s", diff)
	}
}

func TestOversizedKeyFieldsAreInvalid(t *testing.T) {
	s, err := Open(t.TempDir(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	lim := rules.DefaultLimits()
	big := strings.Repeat("x", lim.MaxArg+1)
	for _, h := range []hookctl.Hook{
		{Key: hookctl.Key{Profile: "p", Node: "n", Type: hookctl.TypePythonCode, Arg: big}, Persistent: true},
		{Key: hookctl.Key{Profile: "p", Node: strings.Repeat("n", lim.MaxNode+1), Type: hookctl.TypeExpr, Arg: "true"}, Persistent: true},
	} {
		if _, err := s.Create(context.Background(), h); !errors.Is(err, hookctl.ErrInvalid) {
			t.Errorf("Create(%d-byte arg, %d-byte node) = %v, want ErrInvalid", len(h.Arg), len(h.Node), err)
		}
	}
	// The largest allowed arg is stored.
	h := hookctl.Hook{Key: hookctl.Key{Profile: "p", Node: "n", Type: hookctl.TypePythonCode, Arg: big[:lim.MaxArg]}, Persistent: true}
	if _, err := s.Create(context.Background(), h); err != nil {
		t.Fatalf("Create(%d-byte arg) = %v", lim.MaxArg, err)
	}
}
