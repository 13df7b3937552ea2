package catchup

// Unit tests of catch-up's bookkeeping: a real store in a temporary
// directory, the node's items from a fake fetcher (no XMPP server).

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"

	"hookctl.dev/hookctl"
	"hookctl.dev/hookctl/registry"
	"hookctl.dev/hookctl/xmppsession"
)

// items is a node's content, oldest first, as a fetcher returns it.
type items []xmppsession.Item

func (it *items) Items(context.Context, string, string, int) ([]xmppsession.Item, error) {
	return slices.Clone(*it), nil
}

// fetchHook runs before at each fetch of the items.
type fetchHook struct {
	*items
	before func()
}

func (f fetchHook) Items(ctx context.Context, s, n string, max int) ([]xmppsession.Item, error) {
	if f.before != nil {
		f.before()
	}
	return f.items.Items(ctx, s, n, max)
}

func (it *items) publish(id, payload string) xmppsession.Item {
	i := xmppsession.Item{ID: id, Payload: payload}
	*it = append(*it, i)
	return i
}

// recorder is the dispatcher: it records events and finishes them at once.
type recorder struct {
	mu  sync.Mutex
	got []string // "id" or "id(catchup)"
}

func (r *recorder) dispatch(ev hookctl.Event, done func(int)) {
	r.mu.Lock()
	s := ev.ItemID
	if ev.Kind != hookctl.EventPublish {
		s = string(ev.Kind) + ":" + s
	} else if ev.Catchup {
		s += "(catchup)"
	}
	r.got = append(r.got, s)
	r.mu.Unlock()
	if done != nil {
		done(1)
	}
}

func (r *recorder) take() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := r.got
	r.got = nil
	return out
}

var ref = registry.NodeRef{Profile: "p", Service: "pubsub.localhost", Node: "n"}

func hooks(catchupPolicy string) []hookctl.Hook {
	return []hookctl.Hook{{Key: hookctl.Key{Profile: ref.Profile, Service: ref.Service, Node: ref.Node, Type: hookctl.TypeExec, Arg: "/bin/true"}, Catchup: catchupPolicy}}
}

func live(id, payload string) hookctl.Event {
	return hookctl.Event{Profile: ref.Profile, Service: ref.Service, Node: ref.Node, Kind: hookctl.EventPublish, ItemID: id, Payload: payload}
}

func openStore(t *testing.T, dir string) *registry.Store {
	t.Helper()
	s, err := registry.Open(dir, registry.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// subscribe runs a (re)subscription as the subscription manager does.
func subscribe(tr *Tracker, f Fetcher) {
	ctx := context.Background()
	tr.Hold(ref.Profile)
	tr.BeforeSubscribe(ctx, f, ref)
	tr.AfterSubscribe(ctx, f, ref, nil)
}

func check(t *testing.T, r *recorder, want ...string) {
	t.Helper()
	got := r.take()
	if !slices.Equal(got, want) {
		t.Fatalf("dispatched %q, want %q", got, want)
	}
}

func TestNewNodeStartsFromItsItemsThenCatchesUpAfterRestart(t *testing.T) {
	dir := t.TempDir()
	node := &items{}
	node.publish("a", "<x>a</x>")
	node.publish("b", "<x>b</x>")

	store := openStore(t, dir)
	r := &recorder{}
	tr := New(store, r.dispatch, nil, nil)
	tr.SetHooks(hooks(""))
	subscribe(tr, node)
	check(t, r) // a and b are the baseline

	node.publish("c", "<x>c</x>")
	tr.Event(live("c", "<x>c</x>"))
	tr.Event(live("c", "<x>c</x>")) // a duplicate notification
	check(t, r, "c")
	tr.Flush()
	store.Close()

	// Offline: d is published; then the backend starts again.
	node.publish("d", "<x>d</x>")
	store = openStore(t, dir)
	defer store.Close()
	tr = New(store, r.dispatch, nil, nil)
	tr.SetHooks(hooks(""))
	subscribe(tr, node)
	check(t, r, "d(catchup)")

	// b republished with new content counts as new.
	tr.Event(live("b", "<x>b2</x>"))
	check(t, r, "b")
}

func TestCatchupAllRunsTheNodesCurrentItems(t *testing.T) {
	store := openStore(t, t.TempDir())
	defer store.Close()
	node := &items{}
	node.publish("a", "1")
	node.publish("b", "2")
	r := &recorder{}
	tr := New(store, r.dispatch, nil, nil)
	tr.SetHooks(hooks(hookctl.CatchupAll))
	subscribe(tr, node)
	check(t, r, "a(catchup)", "b(catchup)")
}

func TestLiveEventsWaitForTheCatchup(t *testing.T) {
	store := openStore(t, t.TempDir())
	defer store.Close()
	node := &items{}
	r := &recorder{}
	tr := New(store, r.dispatch, nil, nil)
	tr.SetHooks(hooks(""))
	subscribe(tr, node) // empty baseline
	ctx := context.Background()

	tr.Hold(ref.Profile) // a reconnect
	node.publish("a", "1")
	node.publish("b", "2")
	tr.BeforeSubscribe(ctx, node, ref)
	// The subscribe result is in; c is published and arrives live while
	// the items are fetched: held.
	during := fetchHook{node, func() {
		node.publish("c", "3")
		tr.Event(live("c", "3"))
	}}
	tr.AfterSubscribe(ctx, during, ref, nil)
	// a and b were missed; c came live after the subscription was
	// confirmed, so it runs once and not as catch-up.
	check(t, r, "a(catchup)", "b(catchup)", "c")
}

// Outside a connection's start (a node created after its hook), a
// notification heard before the subscribe result is live: an owner's own
// PEP publication, heard before the subscription exists.
func TestNotificationBeforeALaterSubscribeIsLive(t *testing.T) {
	store := openStore(t, t.TempDir())
	defer store.Close()
	node := &items{}
	r := &recorder{}
	tr := New(store, r.dispatch, nil, nil)
	tr.SetHooks(hooks(""))
	subscribe(tr, node) // empty baseline
	ctx := context.Background()

	tr.BeforeSubscribe(ctx, node, ref) // a later subscription, no Hold
	node.publish("a", "1")
	tr.Event(live("a", "1"))
	tr.AfterSubscribe(ctx, node, ref, nil)
	check(t, r, "a")
}

// ejabberd replays a node's last item on subscribe and on presence
// (send_last_published_item: on_sub_and_presence), before the subscribe
// result: that copy of an item missed while down is caught up, once, not
// run as a live item (which catchup: none hooks would run).
func TestLastItemReplayedBeforeTheSubscribeResultIsCaughtUp(t *testing.T) {
	store := openStore(t, t.TempDir())
	defer store.Close()
	node := &items{}
	r := &recorder{}
	tr := New(store, r.dispatch, nil, nil)
	tr.SetHooks(hooks(""))
	subscribe(tr, node) // empty baseline
	ctx := context.Background()

	tr.Hold(ref.Profile) // a reconnect
	node.publish("a", "1")
	node.publish("b", "2")
	tr.BeforeSubscribe(ctx, node, ref)
	tr.Event(live("b", "2")) // the replay, before the subscribe result
	tr.AfterSubscribe(ctx, node, ref, nil)
	check(t, r, "a(catchup)", "b(catchup)")
}

func TestDeleteResetsTheNodeSoTheNewNodesItemsAreCaughtUp(t *testing.T) {
	store := openStore(t, t.TempDir())
	defer store.Close()
	node := &items{}
	node.publish("a", "1")
	r := &recorder{}
	tr := New(store, r.dispatch, nil, nil)
	tr.SetHooks(hooks(""))
	subscribe(tr, node)
	check(t, r)

	tr.Event(hookctl.Event{Profile: ref.Profile, Service: ref.Service, Node: ref.Node, Kind: hookctl.EventDelete})
	check(t, r, "delete:")
	tr.Flush()
	// The node is re-created and gets a and c before the subscription is
	// back: both are items of the new node.
	*node = nil
	node.publish("a", "1")
	node.publish("c", "3")
	subscribe(tr, node)
	check(t, r, "a(catchup)", "c(catchup)")
	tr.Flush()
	st, err := store.NodeState(ref)
	if err != nil || len(st.Finished) != 2 {
		t.Fatalf("stored state after catch-up: %+v, %v", st, err)
	}
	if ns := tr.NodeStatus(hooks("")); len(ns) != 1 || ns[0].CaughtUp != 2 || ns[0].Gaps != 0 {
		t.Fatalf("status: %+v", ns)
	}
}

func TestNodeWithoutHooksIsForgotten(t *testing.T) {
	store := openStore(t, t.TempDir())
	defer store.Close()
	node := &items{}
	node.publish("a", "1")
	r := &recorder{}
	tr := New(store, r.dispatch, nil, nil)
	tr.SetHooks(hooks(""))
	subscribe(tr, node)
	tr.SetHooks(nil)
	if st, err := store.NodeState(ref); err != nil || st.Known {
		t.Fatalf("state of a node without hooks: %+v, %v", st, err)
	}
	tr.Event(live("z", "9")) // untracked: dispatched, nothing remembered
	check(t, r, "z")
}

// Pending counts the nodes not caught up since their subscription
// started: every node after a connect, none once each has caught up; a
// failed subscription keeps its node pending.
func TestPendingNodes(t *testing.T) {
	store := openStore(t, t.TempDir())
	defer store.Close()
	r := &recorder{}
	tr := New(store, r.dispatch, nil, nil)
	other := registry.NodeRef{Profile: ref.Profile, Service: ref.Service, Node: "m"}
	tr.SetHooks(append(hooks(""), hookctl.Hook{Key: hookctl.Key{Profile: other.Profile, Service: other.Service, Node: other.Node, Type: hookctl.TypeExec, Arg: "/bin/true"}}))
	if n := tr.Pending(); n != 2 {
		t.Fatalf("pending %d before any subscription, want 2", n)
	}
	subscribe(tr, &items{}) // holds both, catches up ref
	if n := tr.Pending(); n != 1 {
		t.Fatalf("pending %d with one node caught up, want 1", n)
	}
	ctx := context.Background()
	tr.BeforeSubscribe(ctx, &items{}, other)
	tr.AfterSubscribe(ctx, &items{}, other, errNoSubscription)
	if n := tr.Pending(); n != 1 {
		t.Fatalf("pending %d after a failed subscription, want 1", n)
	}
	tr.BeforeSubscribe(ctx, &items{}, other)
	tr.AfterSubscribe(ctx, &items{}, other, nil)
	if n := tr.Pending(); n != 0 {
		t.Fatalf("pending %d with every node caught up, want 0", n)
	}
}

var errNoSubscription = errors.New("subscribe refused")

// failingStore refuses MarkFinished while down, like a shared store out of
// reach.
type failingStore struct {
	*registry.Store
	down bool
}

func (f *failingStore) MarkFinished(m []registry.Mark) error {
	if f.down {
		return errors.New("etcd unreachable")
	}
	return f.Store.MarkFinished(m)
}

// Marks the store refused are kept and written by the next flush, so
// that their items do not run again once the store is back.
func TestRefusedMarksAreWrittenLater(t *testing.T) {
	dir := t.TempDir()
	node := &items{}
	store := &failingStore{Store: openStore(t, dir)}
	r := &recorder{}
	tr := New(store, r.dispatch, nil, nil)
	tr.SetHooks(hooks(""))
	subscribe(tr, node)
	node.publish("a", "<x>a</x>")
	tr.Event(live("a", "<x>a</x>"))
	check(t, r, "a")
	store.down = true
	if tr.Flush() {
		t.Fatal("Flush reported success while the store was down")
	}
	store.down = false
	if !tr.Flush() {
		t.Fatal("Flush failed with the store back")
	}
	st, err := store.NodeState(ref)
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Finished) != 1 || st.Finished[0].ID != "a" {
		t.Fatalf("stored %+v, want a finished", st.Finished)
	}
}

// In a cluster, Pending counts only the nodes of the profiles this
// replica runs: the others are caught up by their holder.
func TestPendingCountsOnlyProfilesRunHere(t *testing.T) {
	tr := New(openStore(t, t.TempDir()), (&recorder{}).dispatch, nil, nil)
	tr.SetHooks(hooks(""))
	if tr.Pending() != 1 {
		t.Fatalf("pending %d, want 1 (never caught up)", tr.Pending())
	}
	tr.RunsHere(func(string) bool { return false })
	if tr.Pending() != 0 {
		t.Fatalf("pending %d with the profile held elsewhere, want 0", tr.Pending())
	}
}
