// Package catchup gives at-least-once delivery of publish events across
// restarts, reconnects and new subscriptions.
//
// Per (profile, service, node) with hooks, the store remembers which items
// the hooks have finished with (id + digest of the payload, bounded per
// node). An item is marked finished only when every matching hook's run has
// ended, so a crash mid-run means it runs again. When a node's subscription
// (re)starts — backend start, reconnect, a new or recovered subscription —
// its items are fetched and those not finished are dispatched, in publish
// order, as catch-up events (Event.Catchup), before any live event of that
// node: live events are held meanwhile and released after, deduplicated
// against the finished and in-flight items.
//
// A node whose first hooks are new starts from its current items (they are
// recorded as finished, the baseline) unless one of its hooks says
// catchup: all. The state is the node's, shared by its hooks; hooks with
// catchup: none are skipped by the dispatcher for catch-up events.
package catchup

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"hookctl.dev/hookctl"
	"hookctl.dev/hookctl/registry"
	"hookctl.dev/hookctl/xmppsession"
)

// Store is the crash-safe memory of finished items per node
// (registry.Store). MarkFinished must not keep marks: Flush uses the
// slice again.
type Store interface {
	NodeState(ref registry.NodeRef) (registry.NodeState, error)
	SetBaseline(ref registry.NodeRef, items []registry.Finished) error
	MarkFinished(marks []registry.Mark) error
	ForgetNodes(keep func(registry.NodeRef) bool) (int, error)
}

// Fetcher fetches a node's items, oldest first (an xmppsession.Session).
type Fetcher interface {
	Items(ctx context.Context, service, node string, max int) ([]xmppsession.Item, error)
}

// catchupFetchTimeout bounds one fetch of a node's items.
const catchupFetchTimeout = 30 * time.Second

// digest is the payload digest stored per finished item: sha256, truncated
// (collisions only matter between two contents of the same item id).
func digest(payload string) string {
	sum := sha256.Sum256([]byte(payload))
	return hex.EncodeToString(sum[:8])
}

// retracted is the digest recorded for a retracted item, so that the same
// content published again under the same id counts as new.
const retracted = "-"

// Tracker tracks delivery per node; see the package comment. Build it
// with New; Run writes its marks until its context ends.
type Tracker struct {
	// runsHere, when set, says which profiles this backend runs (cluster
	// mode): Pending counts only their nodes.
	runsHere func(profile string) bool
	store    Store
	dispatch func(hookctl.Event, func(int))
	// duplicate records a live item skipped as already handled (nil: not
	// recorded).
	duplicate func(hookctl.Event, error)
	log       *slog.Logger
	m         catchupMetrics

	kick chan struct{} // wakes the writer (buffer 1)

	mu      sync.Mutex
	nodes   map[registry.NodeRef]*tracked
	pending []nodeOp // store writes not done yet, in order
	// spare and marks are the slices of the last Flush, emptied, used
	// again by the next; flushMu makes Flushes one at a time.
	spare   []nodeOp
	marks   []registry.Mark
	flushMu sync.Mutex
	pruned  bool // stale node states of the store were pruned once

	// gap is told of each gap (nil: not told); see OnGap.
	gap func(ref registry.NodeRef, detail string)
}

// tracked is one node with hooks.
type tracked struct {
	catchAll bool // a hook on the node says catchup: all
	known    bool // the node has a baseline (in the store)
	finished map[string]string
	order    []string          // finished ids, oldest first (for the bound)
	inflight map[string]string // id → digest of items dispatched, not finished
	holding  bool              // live events wait in held while catching up
	held     []hookctl.Event
	// connStart: the hold began with the connection (Hold), so the
	// notifications held before the subscribe result came at the
	// connection's start: replays of items missed while away.
	connStart bool

	catching sync.Mutex // one catch-up at a time per node

	lastCatchup time.Time // last fetch of the node's items
	caughtUp    uint64    // items dispatched by catch-up since start
	gaps        uint64    // catch-ups that found only unseen items
	lastGap     string    // the last gap's description, for status
}

// nodeOp is one store write: a finished mark, or a reset (purge, delete).
type nodeOp struct {
	mark  registry.Mark
	reset bool
}

type catchupMetrics struct {
	events     *prometheus.CounterVec
	duplicates *prometheus.CounterVec
	gaps       *prometheus.CounterVec
}

func newCatchupMetrics(reg prometheus.Registerer) catchupMetrics {
	m := catchupMetrics{
		events: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hookctl_catchup_events_total",
			Help: "Publish events dispatched by catch-up (missed while offline).",
		}, []string{"profile"}),
		duplicates: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hookctl_catchup_duplicates_total",
			Help: "Live notifications not run because their item was already handled or in flight.",
		}, []string{"profile"}),
		gaps: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hookctl_catchup_gaps_total",
			Help: "Catch-ups where every item the node still held was unseen: items published before them (beyond the node's max_items) may have been missed.",
		}, []string{"profile", "service", "node"}),
	}
	if reg != nil {
		reg.MustRegister(m.events, m.duplicates, m.gaps)
	}
	return m
}

// Pending counts the tracked nodes not caught up since their last
// (re)subscription started: their live events are held, or their items
// were never fetched. 0 once a start or reconnect has settled.
func (c *Tracker) Pending() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for ref, t := range c.nodes {
		if (t.holding || t.lastCatchup.IsZero()) && (c.runsHere == nil || c.runsHere(ref.Profile)) {
			n++
		}
	}
	return n
}

// New returns a tracker that dispatches through dispatch (its callback,
// when not nil, is called once every run of the event has ended). log and
// reg may be nil.
func New(store Store, dispatch func(hookctl.Event, func(int)), log *slog.Logger, reg prometheus.Registerer) *Tracker {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	c := &Tracker{
		store:    store,
		dispatch: dispatch,
		log:      log,
		m:        newCatchupMetrics(reg),
		kick:     make(chan struct{}, 1),
		nodes:    map[registry.NodeRef]*tracked{},
	}
	if reg != nil {
		reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "hookctl_catchup_pending_nodes",
			Help: "Nodes with hooks not caught up since their subscription (re)started; 0 once a start or reconnect has settled.",
		}, func() float64 { return float64(c.Pending()) }))
	}
	return c
}

// SetHooks tracks the nodes that have hooks. A node that lost its hooks is
// forgotten (its held events are released): if hooks come back, they start
// from the node's state then.
func (c *Tracker) SetHooks(hooks []hookctl.Hook) {
	want := map[registry.NodeRef]bool{} // → catchAll
	for _, h := range hooks {
		ref := registry.NodeRef{Profile: h.Profile, Service: h.Service, Node: h.Node}
		want[ref] = want[ref] || h.Catchup == hookctl.CatchupAll
	}
	c.mu.Lock()
	var gone []*tracked
	for ref, t := range c.nodes {
		if _, ok := want[ref]; !ok {
			gone = append(gone, t)
			delete(c.nodes, ref)
		}
	}
	var added []registry.NodeRef
	for ref, all := range want {
		if t, ok := c.nodes[ref]; ok {
			t.catchAll = all
			continue
		}
		c.nodes[ref] = &tracked{catchAll: all, finished: map[string]string{}, inflight: map[string]string{}}
		added = append(added, ref)
	}
	prune := len(gone) > 0 || !c.pruned
	c.pruned = true
	c.mu.Unlock()

	for _, t := range gone {
		c.mu.Lock()
		held := t.held
		t.held, t.holding, t.connStart = nil, false, false
		c.mu.Unlock()
		for _, ev := range held {
			c.dispatch(ev, nil)
		}
	}
	if prune {
		if _, err := c.store.ForgetNodes(func(r registry.NodeRef) bool { _, ok := want[r]; return ok }); err != nil {
			c.log.Error("catch-up: forgetting nodes without hooks", "err", err)
		}
	}
	for _, ref := range added {
		st, err := c.store.NodeState(ref)
		if err != nil {
			c.log.Error("catch-up: reading node state", "node", ref.Node, "err", err)
			continue
		}
		c.mu.Lock()
		if t := c.nodes[ref]; t != nil && st.Known {
			t.known = true
			for _, f := range st.Finished {
				t.addFinished(f.ID, f.Digest)
			}
		}
		c.mu.Unlock()
	}
}

// Reload reads the state of profile's nodes from the store again and
// forgets what was in flight: in a cluster, another replica held the
// profile meanwhile and finished items this one must not run again.
func (c *Tracker) Reload(profile string) {
	c.mu.Lock()
	var refs []registry.NodeRef
	for ref := range c.nodes {
		if ref.Profile == profile {
			refs = append(refs, ref)
		}
	}
	c.mu.Unlock()
	for _, ref := range refs {
		st, err := c.store.NodeState(ref)
		if err != nil {
			c.log.Error("catch-up: reading node state", "node", ref.Node, "err", err)
			continue
		}
		c.mu.Lock()
		if t := c.nodes[ref]; t != nil {
			t.known = st.Known
			clear(t.finished)
			clear(t.inflight)
			t.order = nil
			for _, f := range st.Finished {
				t.addFinished(f.ID, f.Digest)
			}
		}
		c.mu.Unlock()
	}
}

// addFinished records id as finished with digest dg, within the bound.
// The caller holds c.mu.
func (t *tracked) addFinished(id, dg string) {
	if _, ok := t.finished[id]; ok {
		for i, v := range t.order {
			if v == id {
				t.order = append(t.order[:i], t.order[i+1:]...)
				break
			}
		}
	}
	t.finished[id] = dg
	t.order = append(t.order, id)
	if len(t.order) > registry.MaxFinished {
		delete(t.finished, t.order[0])
		t.order = t.order[1:]
	}
}

// handled reports whether item id with digest dg was finished or is in
// flight. The caller holds c.mu.
func (t *tracked) handled(id, dg string) bool {
	if v, ok := t.inflight[id]; ok && v == dg {
		return true
	}
	v, ok := t.finished[id]
	return ok && v == dg
}

// Event takes a live event from a session; it never blocks.
func (c *Tracker) Event(ev hookctl.Event) {
	ref := registry.NodeRef{Profile: ev.Profile, Service: ev.Service, Node: ev.Node}
	c.mu.Lock()
	t := c.nodes[ref]
	if t == nil {
		c.mu.Unlock()
		c.dispatch(ev, nil) // no hooks here: nothing to remember
		return
	}
	if t.holding {
		t.held = append(t.held, ev)
		c.mu.Unlock()
		return
	}
	send, done := c.admit(ref, t, ev)
	c.mu.Unlock()
	if send {
		c.dispatch(ev, done)
	} else if ev.Kind == hookctl.EventPublish && c.duplicate != nil {
		c.duplicate(ev, errDuplicate)
	}
}

// RunsHere makes Pending count only the nodes of the profiles f accepts
// (in a cluster, those this replica holds: the others are caught up
// elsewhere). Call it before Run.
func (c *Tracker) RunsHere(f func(profile string) bool) { c.runsHere = f }

// OnDuplicate makes f record each live item skipped as already handled
// (a run with outcome skipped, for each hook of its node). Call it before
// Run.
func (c *Tracker) OnDuplicate(f func(hookctl.Event, error)) { c.duplicate = f }

// OnGap makes f hear of each gap found (the alerts): called with the
// tracker's lock held, so it must not block or call the tracker. Call it
// before Run.
func (c *Tracker) OnGap(f func(ref registry.NodeRef, detail string)) { c.gap = f }

// errDuplicate is why a live item is skipped as already handled.
var errDuplicate = errors.New("skipped: this item id was already handled with the same payload (a repeated notification, or the item published again unchanged); publish it with another id or payload, or retract it first, to have hooks run on it")

// admit decides what to do with an event of a tracked node: publish events
// already handled are skipped, others are marked in flight and get a
// completion callback. The caller holds c.mu and dispatches when send.
func (c *Tracker) admit(ref registry.NodeRef, t *tracked, ev hookctl.Event) (send bool, done func(int)) {
	switch ev.Kind {
	case hookctl.EventPublish:
		dg := digest(ev.Payload)
		if t.handled(ev.ItemID, dg) {
			c.m.duplicates.WithLabelValues(ref.Profile).Inc()
			return false, nil
		}
		t.inflight[ev.ItemID] = dg
		id := ev.ItemID
		return true, func(int) { c.finish(ref, id, dg) }
	case hookctl.EventRetract:
		delete(t.inflight, ev.ItemID)
		t.addFinished(ev.ItemID, retracted)
		c.queue(nodeOp{mark: registry.Mark{NodeRef: ref, Finished: registry.Finished{ID: ev.ItemID, Digest: retracted}}})
	case hookctl.EventPurge, hookctl.EventDelete:
		clear(t.finished)
		t.order = nil
		c.queue(nodeOp{mark: registry.Mark{NodeRef: ref}, reset: true})
	}
	return true, nil
}

// finish marks an item finished once every hook it reached has ended.
func (c *Tracker) finish(ref registry.NodeRef, id, dg string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := c.nodes[ref]
	if t == nil {
		return // the node lost its hooks meanwhile
	}
	if t.inflight[id] == dg {
		delete(t.inflight, id)
	}
	t.addFinished(id, dg)
	c.queue(nodeOp{mark: registry.Mark{NodeRef: ref, Finished: registry.Finished{ID: id, Digest: dg}}})
}

// queue adds a store write for the writer. The caller holds c.mu.
func (c *Tracker) queue(op nodeOp) {
	c.pending = append(c.pending, op)
	select {
	case c.kick <- struct{}{}:
	default:
	}
}

// markBatch is how long the writer gathers finished marks before writing
// them in one transaction: one fsync and one rewrite of each node's record
// per batch instead of per item (per item, that was most of the backend's
// CPU in a burst). A crash loses at most this window of marks; those items
// run again. Windows end on the clock's multiples of it, as the run
// history's do (registry.WindowWait).
const markBatch = 50 * time.Millisecond

// Run writes finished marks to the store, many per transaction, until ctx
// ends. Writes wait for no run: a crash loses only marks, and their items
// run again (at least once). Marks the store refused (a shared store out
// of reach) are kept and written again, up to maxPendingMarks.
func (c *Tracker) Run(ctx context.Context) error {
	wait := time.NewTimer(markBatch)
	wait.Stop()
	defer wait.Stop()
	for {
		select {
		case <-ctx.Done():
			c.Flush()
			return nil
		case <-c.kick:
		}
		for delay := registry.WindowWait(time.Now(), markBatch); ; delay = markRetry {
			wait.Reset(delay)
			select {
			case <-ctx.Done():
				c.Flush()
				return nil
			case <-wait.C:
			}
			if c.Flush() {
				break
			}
		}
	}
}

// markRetry is the pause before writing refused marks again;
// maxPendingMarks bounds what is kept meanwhile (the oldest go first:
// their items may run again).
const (
	markRetry       = time.Second
	maxPendingMarks = 100000
)

// Flush writes every pending mark; it reports whether all were written
// (those that were not are pending again).
func (c *Tracker) Flush() bool {
	c.flushMu.Lock()
	defer c.flushMu.Unlock()
	c.mu.Lock()
	ops := c.pending
	c.pending, c.spare = c.spare, nil
	c.mu.Unlock()
	rest := c.write(ops)
	if len(rest) == 0 {
		if cap(ops) <= maxSpare {
			clear(ops)
			c.mu.Lock()
			c.spare = ops[:0]
			c.mu.Unlock()
		}
		return true
	}
	c.mu.Lock()
	c.pending = append(slices.Clone(rest), c.pending...) // rest is part of ops: not kept as spare
	if over := len(c.pending) - maxPendingMarks; over > 0 {
		c.log.Error("catch-up: too many marks waiting for the store; the oldest are dropped (their items may run again)", "dropped", over)
		c.pending = c.pending[over:]
	}
	c.mu.Unlock()
	return false
}

// write applies ops in order and returns those not written.
func (c *Tracker) write(ops []nodeOp) []nodeOp {
	marks := c.marks[:0]
	defer func() {
		if cap(marks) <= maxSpare {
			clear(marks[:cap(marks)])
			c.marks = marks[:0]
		}
	}()
	start := 0 // first op of the marks not yet written
	flush := func() bool {
		if len(marks) == 0 {
			return true
		}
		if err := c.store.MarkFinished(marks); err != nil {
			c.log.Error("catch-up: recording finished items; kept to try again", "count", len(marks), "err", err)
			return false
		}
		marks = marks[:0]
		return true
	}
	for i, op := range ops {
		if !op.reset {
			marks = append(marks, op.mark)
			continue
		}
		if !flush() {
			return ops[start:]
		}
		if err := c.store.SetBaseline(op.mark.NodeRef, nil); err != nil {
			c.log.Error("catch-up: resetting node state; kept to try again", "node", op.mark.Node, "err", err)
			return ops[i:]
		}
		start = i + 1
	}
	if !flush() {
		return ops[start:]
	}
	return nil
}

// maxSpare bounds the capacity of the slices Flush keeps for the next.
const maxSpare = 1024

// Hold makes live events of the profile's tracked nodes wait for their
// catch-up: called when a connection starts.
func (c *Tracker) Hold(profile string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for ref, t := range c.nodes {
		if ref.Profile == profile {
			t.holding, t.connStart = true, true
		}
	}
}

// BeforeSubscribe runs before (re)subscribing to ref: live events are held,
// and a node new to its hooks gets its baseline.
func (c *Tracker) BeforeSubscribe(ctx context.Context, s Fetcher, ref registry.NodeRef) {
	c.mu.Lock()
	t := c.nodes[ref]
	if t == nil {
		c.mu.Unlock()
		return
	}
	t.holding = true
	known, all := t.known, t.catchAll
	c.mu.Unlock()
	if known {
		return
	}
	t.catching.Lock()
	defer t.catching.Unlock()
	var base []registry.Finished
	if !all {
		fctx, cancel := context.WithTimeout(ctx, catchupFetchTimeout)
		items, err := s.Items(fctx, ref.Service, ref.Node, 0)
		cancel()
		if err != nil && !errors.Is(err, hookctl.ErrNotFound) && !errors.Is(err, xmppsession.ErrTooLarge) {
			c.log.Warn("catch-up: fetching the baseline failed; will retry", "profile", ref.Profile, "service", ref.Service, "node", ref.Node, "err", err)
			return
		}
		for _, it := range items {
			base = append(base, registry.Finished{ID: it.ID, Digest: digest(it.Payload)})
		}
	}
	if err := c.store.SetBaseline(ref, base); err != nil {
		c.log.Error("catch-up: recording the baseline", "node", ref.Node, "err", err)
		return
	}
	c.mu.Lock()
	t.known = true
	for _, f := range base {
		t.addFinished(f.ID, f.Digest)
	}
	c.mu.Unlock()
	c.log.Info("catch-up: new node, starting from its current items", "profile", ref.Profile,
		"service", ref.Service, "node", ref.Node, "baseline", len(base), "catchup_all", all)
}

// AfterSubscribe runs once the subscription to ref is back (err nil):
// unfinished items are dispatched in publish order, then held live events.
// On a failed subscription, held events are released.
func (c *Tracker) AfterSubscribe(ctx context.Context, s Fetcher, ref registry.NodeRef, subErr error) {
	c.mu.Lock()
	t := c.nodes[ref]
	// Notifications held since the connection started and before the
	// subscribe result are not live: at a connection's start a server
	// sends them to replay the node's last item on presence and on
	// subscribe (ejabberd's send_last_published_item), or for an item
	// published while the subscription was being restored. Later (a node
	// created after its hook, say) they are live: an owner's own PEP
	// publication, heard before the subscription exists.
	early := 0
	if t != nil && t.connStart {
		early = len(t.held)
	}
	c.mu.Unlock()
	if t == nil {
		return
	}
	t.catching.Lock()
	defer t.catching.Unlock()
	var items []xmppsession.Item
	if subErr == nil {
		fctx, cancel := context.WithTimeout(ctx, catchupFetchTimeout)
		var err error
		items, err = s.Items(fctx, ref.Service, ref.Node, 0)
		cancel()
		if err != nil {
			// Items too large are skipped with a record; the others run.
			c.log.Warn("catch-up: fetching items", "profile", ref.Profile, "service", ref.Service, "node", ref.Node, "fetched", len(items), "err", err)
		}
		// Prosody 0.12 answers in publish order, oldest first (checked by
		// TestCatchupAfterBackendStopped); XEP-0060 fixes no order.
	}
	start := time.Now()
	c.mu.Lock()
	var batch []admitted
	if subErr == nil && t.known {
		batch = c.candidates(ref, t, items, early)
	} else if subErr == nil && len(items) > 0 {
		// No baseline (its fetch failed): start from the current items.
		for _, it := range items {
			t.addFinished(it.ID, digest(it.Payload))
			c.queue(nodeOp{mark: registry.Mark{NodeRef: ref, Finished: registry.Finished{ID: it.ID, Digest: digest(it.Payload)}}})
		}
		t.known = true
	}
	n := len(batch)
	if subErr == nil {
		t.lastCatchup = start
		t.caughtUp += uint64(n)
	}
	c.mu.Unlock()
	if n > 0 {
		c.m.events.WithLabelValues(ref.Profile).Add(float64(n))
	}
	// Dispatch the batch, then held live events, until none are left;
	// only then do live events of the node flow directly again.
	for {
		for _, a := range batch {
			c.dispatch(a.ev, a.done)
		}
		c.mu.Lock()
		held := t.held
		t.held = nil
		if len(held) == 0 {
			t.holding, t.connStart = false, false
			c.mu.Unlock()
			break
		}
		batch = batch[:0]
		for _, ev := range held {
			if send, done := c.admit(ref, t, ev); send {
				batch = append(batch, admitted{ev, done})
			}
		}
		c.mu.Unlock()
	}
	if n > 0 {
		c.log.Info("catch-up: dispatched missed items", "profile", ref.Profile, "service", ref.Service,
			"node", ref.Node, "items", n, "fetched", len(items), "took", time.Since(start))
	}
}

type admitted struct {
	ev   hookctl.Event
	done func(int)
}

// candidates returns the fetched items (publish order) that are neither
// finished nor in flight, marked in flight, as catch-up events. When the
// node holds more items than are remembered per node, items older than the
// oldest remembered one are taken as handled. A fetch in which no item was
// seen before, from a node with history, is a gap: items may have been
// missed. The caller holds c.mu; early is how many held events came before
// the subscribe result.
func (c *Tracker) candidates(ref registry.NodeRef, t *tracked, items []xmppsession.Item, early int) []admitted {
	// Items also waiting as held live notifications, received after the
	// subscription was confirmed, were not missed: they run once, not
	// marked as caught up. The first early held events came before it.
	live := map[string]string{}
	for _, ev := range t.held[min(early, len(t.held)):] {
		if ev.Kind == hookctl.EventPublish {
			live[ev.ItemID] = digest(ev.Payload)
		}
	}
	dgs := make([]string, len(items))
	from, seen := 0, false
	for i, it := range items {
		dgs[i] = digest(it.Payload)
		if !seen && t.handled(it.ID, dgs[i]) {
			seen = true
			if len(items) > registry.MaxFinished {
				from = i
			}
		}
	}
	if !seen && len(items) > 0 && len(t.finished) > 0 {
		t.gaps++
		t.lastGap = fmt.Sprintf("unknown, maybe some: at the catch-up of %s all %d items the node held were new, so items published before them while offline may be gone (the node keeps only its newest items: raise its max_items)",
			time.Now().UTC().Format(time.RFC3339), len(items))
		c.m.gaps.WithLabelValues(ref.Profile, ref.Service, ref.Node).Inc()
		c.log.Warn("catch-up: items may have been missed", "profile", ref.Profile, "service", ref.Service,
			"node", ref.Node, "unseen_items", len(items), "gaps", t.gaps)
		if c.gap != nil {
			c.gap(ref, t.lastGap)
		}
	}
	now := time.Now()
	var out []admitted
	for i := from; i < len(items); i++ {
		it := items[i]
		if t.handled(it.ID, dgs[i]) {
			continue
		}
		t.inflight[it.ID] = dgs[i]
		id, dg := it.ID, dgs[i]
		out = append(out, admitted{
			ev: hookctl.Event{
				Profile: ref.Profile, Service: ref.Service, Node: ref.Node,
				Kind: hookctl.EventPublish, ItemID: it.ID, Publisher: it.Publisher,
				Payload: it.Payload, ItemXML: it.XML, Received: now, Catchup: live[it.ID] != dgs[i],
			},
			done: func(int) { c.finish(ref, id, dg) },
		})
	}
	return out
}

// NodeStatus describes each tracked node for status: hooks per node, what is
// remembered, what catch-up did and the last gap. Services are as the hooks
// name them ("" for the profile's own PEP).
func (c *Tracker) NodeStatus(hooks []hookctl.Hook) []hookctl.NodeStatus {
	count := map[registry.NodeRef]int{}
	for _, h := range hooks {
		count[registry.NodeRef{Profile: h.Profile, Service: h.Service, Node: h.Node}]++
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]hookctl.NodeStatus, 0, len(c.nodes))
	for ref, t := range c.nodes {
		ns := hookctl.NodeStatus{
			Profile: ref.Profile, Service: ref.Service, Node: ref.Node,
			Hooks:       count[ref],
			Finished:    len(t.finished),
			LastCatchup: t.lastCatchup,
			CaughtUp:    t.caughtUp,
			Gaps:        t.gaps,
		}
		if t.gaps > 0 {
			ns.MaybeMissed = fmt.Sprintf("%s [%d such gap(s) since start]", t.lastGap, t.gaps)
		}
		out = append(out, ns)
	}
	slices.SortFunc(out, func(a, b hookctl.NodeStatus) int {
		return cmp.Or(strings.Compare(a.Profile, b.Profile), strings.Compare(a.Service, b.Service), strings.Compare(a.Node, b.Node))
	})
	return out
}
