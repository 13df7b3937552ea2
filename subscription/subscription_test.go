package subscription

// Unit tests of the subscription bookkeeping: a real store in a temporary
// directory, a fake PubSub service in place of the XMPP session.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"hookctl.dev/hookctl"
	"hookctl.dev/hookctl/registry"
	"hookctl.dev/hookctl/xmppsession"
)

var errNotFound = errors.New("item-not-found")

// fakeService is a PubSub service with the session's subscriptions.
type fakeService struct {
	mu           sync.Mutex
	disconnected bool
	nodes        map[string]bool // existing nodes
	subs         map[string]bool // nodes the session is subscribed to
	listErr      error           // the answer to listings, when set
	wholeErr     error           // the answer to listings of every node, when set
	lists        int             // listings asked
	// listedSubscribes counts subscribes sent after one listing of the
	// service (no listing of their own)
	listedSubscribes int
}

func newFake(nodes ...string) *fakeService {
	f := &fakeService{nodes: map[string]bool{}, subs: map[string]bool{}}
	for _, n := range nodes {
		f.nodes[n] = true
	}
	return f
}

func (f *fakeService) Connected() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return !f.disconnected
}

func (f *fakeService) Subscribe(_ context.Context, service, node string) (bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.nodes[node] {
		return false, errNotFound
	}
	if f.subs[node] {
		return false, nil
	}
	f.subs[node] = true
	return true, nil
}

// SubscribeListed trusts the caller's listing, as xmppsession does.
func (f *fakeService) SubscribeListed(_ context.Context, service, node string, listed bool) (bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.listedSubscribes++
	if !f.nodes[node] {
		return false, errNotFound
	}
	f.subs[node] = true
	return !listed, nil
}

func (f *fakeService) Unsubscribe(_ context.Context, service, node string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.subs, node)
	return nil
}

func (f *fakeService) SubscribedNodes(_ context.Context, service, node string) (map[string]bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.lists++
	if f.listErr != nil {
		return nil, f.listErr
	}
	if node == "" { // every node's, as Prosody lists them
		if f.wholeErr != nil {
			return nil, f.wholeErr
		}
		return maps.Clone(f.subs), nil
	}
	if !f.nodes[node] {
		return nil, &xmppsession.StanzaError{Condition: "item-not-found"}
	}
	return map[string]bool{node: f.subs[node]}, nil
}

func (f *fakeService) set(fn func()) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fn()
}

func (f *fakeService) subscribed(node string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.subs[node]
}

const svc = "pubsub.localhost"

func hook(node string) hookctl.Hook {
	return hookctl.Hook{Key: hookctl.Key{Profile: "p", Service: svc, Node: node, Type: hookctl.TypeExec, Arg: "/bin/true"}}
}

func openStore(t *testing.T, dir string) *registry.Store {
	t.Helper()
	s, err := registry.Open(dir, registry.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// start runs a manager until the test ends.
func start(t *testing.T, opts Options) *Manager {
	t.Helper()
	opts.Profile, opts.JID = "p", "bot@localhost"
	if opts.RetryFirst == 0 {
		opts.RetryFirst = 10 * time.Millisecond
	}
	m, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); m.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return m
}

func eventually(t *testing.T, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func subscribed(m *Manager, node string) bool {
	ok, _ := m.Subscribed(svc, node)
	return ok
}

func own(t *testing.T, s *registry.Store) []string {
	t.Helper()
	refs, err := s.OwnSubscriptions("p")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, r := range refs {
		out = append(out, r.Node)
	}
	return out
}

func TestSubscribesAndRemovesOnlyItsOwn(t *testing.T) {
	store := openStore(t, t.TempDir())
	f := newFake("a", "b")
	f.subs["b"] = true // the user's own subscription, made before hookctl
	m := start(t, Options{Session: f, Store: store})

	m.SetHooks([]hookctl.Hook{hook("a"), hook("b"), {Key: hookctl.Key{Profile: "other", Node: "c"}}})
	eventually(t, "subscribed to a and b", func() bool { return subscribed(m, "a") && subscribed(m, "b") })
	if got := own(t, store); !slices.Equal(got, []string{"a"}) {
		t.Fatalf("stored own subscriptions %q, want [a]", got)
	}
	if m.Count() != 2 {
		t.Fatalf("count %d, want 2", m.Count())
	}
	f.set(func() { f.disconnected = true })
	if ok, why := m.Subscribed(svc, "a"); ok || why != "profile not connected" || m.Count() != 0 {
		t.Fatalf("disconnected: subscribed %v (%q), count %d", ok, why, m.Count())
	}
	f.set(func() { f.disconnected = false })

	m.SetHooks(nil)
	eventually(t, "a unsubscribed", func() bool { return !f.subscribed("a") })
	eventually(t, "a forgotten", func() bool { return len(own(t, store)) == 0 })
	if !f.subscribed("b") {
		t.Fatal("the user's own subscription to b was removed")
	}
}

func TestMissingNodeIsRetriedAndReported(t *testing.T) {
	store := openStore(t, t.TempDir())
	f := newFake()
	m := start(t, Options{Session: f, Store: store})
	m.SetHooks([]hookctl.Hook{hook("later")})
	eventually(t, "the error reported", func() bool { return len(m.Errors()) == 1 })
	if e := m.Errors()[0]; e.Hook != hook("later").Key || e.Error != "subscribe: item-not-found" {
		t.Fatalf("error %+v", e)
	}
	f.set(func() { f.nodes["later"] = true })
	eventually(t, "subscribed once the node exists", func() bool { return subscribed(m, "later") })
	if len(m.Errors()) != 0 {
		t.Fatalf("errors after success: %+v", m.Errors())
	}
}

// catchupLog records the catch-up calls around subscriptions.
type catchupLog struct {
	mu    sync.Mutex
	calls []string
}

func (c *catchupLog) add(s string) { c.mu.Lock(); c.calls = append(c.calls, s); c.mu.Unlock() }
func (c *catchupLog) Hold()        { c.add("hold") }
func (c *catchupLog) BeforeSubscribe(_ context.Context, r registry.NodeRef) {
	c.add("before " + r.Profile + " " + r.Service + " " + r.Node)
}
func (c *catchupLog) AfterSubscribe(_ context.Context, r registry.NodeRef, err error) {
	c.add("after " + r.Node + " " + map[bool]string{true: "ok", false: "failed"}[err == nil])
}

func TestCatchupAroundEachSubscribe(t *testing.T) {
	store := openStore(t, t.TempDir())
	f := newFake("a")
	cl := &catchupLog{}
	m, err := New(Options{Profile: "p", JID: "bot@localhost", Session: f, Store: store, Catchup: cl})
	if err != nil {
		t.Fatal(err)
	}
	m.SetHooks([]hookctl.Hook{hook("a"), {Key: hookctl.Key{Profile: "p", Node: "pep"}}})
	m.OnConnect(context.Background())
	// Hold first; then each node's before and after, in that order (nodes
	// are subscribed concurrently, so the two nodes' calls interleave).
	if len(cl.calls) != 5 || cl.calls[0] != "hold" {
		t.Fatalf("calls %q, want hold then two calls per node", cl.calls)
	}
	for _, pair := range [][2]string{{"before p bot@localhost pep", "after pep failed"}, {"before p pubsub.localhost a", "after a ok"}} {
		b, a := slices.Index(cl.calls, pair[0]), slices.Index(cl.calls, pair[1])
		if b < 0 || a < b {
			t.Fatalf("calls %q: want %q, then %q", cl.calls, pair[0], pair[1])
		}
	}
}

// gatedService holds each subscribe until as many are in flight as the
// bound allows (or the nodes left to start), counting the most in flight.
type gatedService struct {
	*fakeService
	total int // nodes to subscribe

	mu                      sync.Mutex
	cond                    *sync.Cond
	inflight, peak, started int
	released                bool // the bound was reached once
}

func (g *gatedService) Subscribe(ctx context.Context, service, node string) (bool, error) {
	g.gate(ctx)
	return g.fakeService.Subscribe(ctx, service, node)
}

func (g *gatedService) SubscribeListed(ctx context.Context, service, node string, listed bool) (bool, error) {
	g.gate(ctx)
	return g.fakeService.SubscribeListed(ctx, service, node, listed)
}

func (g *gatedService) gate(ctx context.Context) {
	g.mu.Lock()
	g.inflight++
	g.started++
	g.peak = max(g.peak, g.inflight)
	// Every subscribe waits until the bound is reached once: a manager
	// that kept fewer in flight would never get there (the test times
	// out); one that kept more shows in peak.
	if g.inflight == min(subscribeInflight, g.total) {
		g.released = true
		g.cond.Broadcast()
	}
	for !g.released && ctx.Err() == nil {
		g.cond.Wait()
	}
	g.inflight--
	g.mu.Unlock()
}

func TestSubscriptionsAtStartAreBounded(t *testing.T) {
	const n = 200
	var nodes []string
	var hooks []hookctl.Hook
	for i := range n {
		nodes = append(nodes, fmt.Sprintf("n%03d", i))
		hooks = append(hooks, hook(nodes[i]))
	}
	g := &gatedService{fakeService: newFake(nodes...), total: n}
	g.cond = sync.NewCond(&g.mu)
	store := openStore(t, t.TempDir())
	m, err := New(Options{Profile: "p", JID: "bot@localhost", Session: g, Store: store, OpTimeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	m.SetHooks(hooks)
	done := make(chan struct{})
	go func() { defer close(done); m.OnConnect(context.Background()) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		g.mu.Lock()
		t.Fatalf("subscriptions not done in 10 s: %d in flight, %d started (want %d at once)", g.inflight, g.started, subscribeInflight)
	}
	if g.peak != subscribeInflight {
		t.Errorf("at most %d subscribes in flight, want exactly %d", g.peak, subscribeInflight)
	}
	if m.Count() != n {
		t.Errorf("%d nodes subscribed, want %d", m.Count(), n)
	}
	// Recorded as hookctl's own, in one write.
	if got := own(t, store); len(got) != n {
		t.Errorf("%d subscriptions recorded as own, want %d", len(got), n)
	}
	// One listing of the service for all, not one per node.
	if g.lists != 1 || g.listedSubscribes != n {
		t.Errorf("%d listings, %d subscribes after the listing; want 1 and %d", g.lists, g.listedSubscribes, n)
	}
}

func TestLegacyFileIsImportedOnce(t *testing.T) {
	dir := t.TempDir()
	store := openStore(t, dir)
	legacy := LegacyFile(dir, "p")
	if err := os.MkdirAll(filepath.Dir(legacy), 0o700); err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal([]nodeRef{{svc, "old"}})
	if err := os.WriteFile(legacy, b, 0o600); err != nil {
		t.Fatal(err)
	}
	f := newFake("old")
	f.subs["old"] = true
	m := start(t, Options{Session: f, Store: store, LegacyFile: legacy})
	if _, err := os.Stat(legacy); !os.IsNotExist(err) {
		t.Fatalf("legacy file still there: %v", err)
	}
	if got := own(t, store); !slices.Equal(got, []string{"old"}) {
		t.Fatalf("imported %q", got)
	}
	// No hook needs it: it was hookctl's, so it is removed.
	m.SetHooks(nil)
	eventually(t, "old unsubscribed", func() bool { return !f.subscribed("old") })

	bad := filepath.Join(dir, "bad.json")
	os.WriteFile(bad, []byte("{"), 0o600)
	if _, err := New(Options{Profile: "p", Session: f, Store: store, LegacyFile: bad}); err == nil {
		t.Fatal("a corrupt legacy file gave no error")
	}
}

// A node deleted and re-created: the delete notice resets the subscription,
// which is made again (with the backoff) once the node exists; status says
// why meanwhile.
func TestDeletedNodeIsSubscribedAgainOnceRecreated(t *testing.T) {
	store := openStore(t, t.TempDir())
	f := newFake("n")
	m := start(t, Options{Session: f, Store: store})
	m.SetHooks([]hookctl.Hook{hook("n")})
	eventually(t, "subscribed", func() bool { return subscribed(m, "n") })

	f.set(func() { delete(f.nodes, "n"); delete(f.subs, "n") })
	m.Event(hookctl.Event{Profile: "p", Service: svc, Node: "n", Kind: hookctl.EventDelete})
	if ok, why := m.Subscribed(svc, "n"); ok || why == "" {
		t.Fatalf("after the delete: subscribed %v (%q), want false with a reason", ok, why)
	}
	m.Event(hookctl.Event{Profile: "other", Service: svc, Node: "n", Kind: hookctl.EventDelete}) // not ours: ignored
	time.Sleep(50 * time.Millisecond)                                                            // a few failed retries
	f.set(func() { f.nodes["n"] = true })
	eventually(t, "subscribed to the new node", func() bool { return f.subscribed("n") && subscribed(m, "n") })
	if _, why := m.Subscribed(svc, "n"); why != "" {
		t.Fatalf("reason left after success: %q", why)
	}
}

// The periodic check finds a subscription the service removed without a
// notice, and makes it again; a listing that cannot be read changes nothing.
func TestCheckRepairsASilentlyRemovedSubscription(t *testing.T) {
	store := openStore(t, t.TempDir())
	f := newFake("n", "m")
	m := start(t, Options{Session: f, Store: store, CheckInterval: 20 * time.Millisecond})
	m.SetHooks([]hookctl.Hook{hook("n"), hook("m")})
	eventually(t, "subscribed", func() bool { return subscribed(m, "n") && subscribed(m, "m") })

	f.set(func() { f.listErr = &xmppsession.StanzaError{Condition: "feature-not-implemented"} })
	lists := func() int { f.mu.Lock(); defer f.mu.Unlock(); return f.lists }
	n := lists()
	eventually(t, "two checks", func() bool { return lists() >= n+4 })
	if !subscribed(m, "n") || !subscribed(m, "m") {
		t.Fatal("a listing the service cannot give made a subscription count as lost")
	}

	f.set(func() { f.listErr = nil; delete(f.subs, "n") }) // removed without a word
	eventually(t, "the subscription made again", func() bool { return f.subscribed("n") })
	eventually(t, "subscribed", func() bool { return subscribed(m, "n") })
}

func TestCheckSeesAForbiddenNodeAsLost(t *testing.T) {
	store := openStore(t, t.TempDir())
	f := newFake("n")
	m, err := New(Options{Profile: "p", JID: "bot@localhost", Session: f, Store: store})
	if err != nil {
		t.Fatal(err)
	}
	m.SetHooks([]hookctl.Hook{hook("n")})
	m.OnConnect(context.Background())
	f.set(func() { f.listErr = &xmppsession.StanzaError{Condition: "forbidden"} })
	if lost := m.check(context.Background()); lost != 1 {
		t.Fatalf("lost %d, want 1", lost)
	}
	if ok, why := m.Subscribed(svc, "n"); ok || why != "subscription lost (forbidden): subscribing again" {
		t.Fatalf("subscribed %v, %q", ok, why)
	}
}

func TestCheckListsEveryNodeInOneRequest(t *testing.T) {
	store := openStore(t, t.TempDir())
	f := newFake("a", "b", "c")
	m, err := New(Options{Profile: "p", JID: "bot@localhost", Session: f, Store: store})
	if err != nil {
		t.Fatal(err)
	}
	m.SetHooks([]hookctl.Hook{hook("a"), hook("b"), hook("c")})
	m.OnConnect(context.Background())
	lists := func() int { f.mu.Lock(); defer f.mu.Unlock(); return f.lists }

	n := lists()
	if lost := m.check(context.Background()); lost != 0 || lists() != n+1 {
		t.Fatalf("lost %d with %d listings, want 0 with 1", lost, lists()-n)
	}
	f.set(func() { delete(f.subs, "b") }) // removed without a word
	n = lists()
	if lost := m.check(context.Background()); lost != 1 || lists() != n+1 || subscribed(m, "b") {
		t.Fatalf("lost %d with %d listings, b subscribed %v; want 1 with 1, false", lost, lists()-n, subscribed(m, "b"))
	}

	// A service that cannot list every node (Prosody 0.12 once a
	// subscribed node was deleted) is asked node by node.
	m.OnConnect(context.Background())
	f.set(func() { f.wholeErr = errors.New("no answer"); delete(f.subs, "c") })
	n = lists()
	if lost := m.check(context.Background()); lost != 1 || lists() != n+4 || subscribed(m, "c") {
		t.Fatalf("lost %d with %d listings, c subscribed %v; want 1 with 4 (1 + one per node), false", lost, lists()-n, subscribed(m, "c"))
	}
}

// A connect before the hooks are known (a backend still loading 10,000
// hooks) must not take the subscriptions hookctl made for unwanted: none
// is removed, and once the hooks come they are all kept.
func TestConnectBeforeHooksRemovesNothing(t *testing.T) {
	store := openStore(t, t.TempDir())
	f := newFake("a", "b")
	f.subs["a"], f.subs["b"] = true, true
	if err := store.AddOwnSubscriptions(registry.NodeRef{Profile: "p", Service: svc, Node: "a"}, registry.NodeRef{Profile: "p", Service: svc, Node: "b"}); err != nil {
		t.Fatal(err)
	}
	m, err := New(Options{Profile: "p", JID: "bot@localhost", Session: f, Store: store})
	if err != nil {
		t.Fatal(err)
	}
	m.OnConnect(context.Background())
	if !f.subscribed("a") || !f.subscribed("b") || len(own(t, store)) != 2 {
		t.Fatalf("a connect before the hooks were known removed subscriptions: a %v, b %v, own %q", f.subscribed("a"), f.subscribed("b"), own(t, store))
	}
	m.SetHooks([]hookctl.Hook{hook("a"), hook("b")})
	m.OnConnect(context.Background())
	if m.Count() != 2 || !slices.Equal(own(t, store), []string{"a", "b"}) {
		t.Fatalf("after the hooks: %d subscribed, own %q; want 2, [a b]", m.Count(), own(t, store))
	}
}
