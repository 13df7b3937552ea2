// Package subscription keeps one profile's PubSub subscriptions matching
// what its hooks need: it subscribes to the nodes hooks watch, retries
// failures with a backoff, and removes the subscriptions it made once no
// hook needs them. Which subscriptions hookctl made is kept in the
// crash-safe store, so that after a restart it removes only its own.
//
// Around each (re)subscription it tells catch-up, which holds the node's
// live events and runs the items missed meanwhile first.
//
// The subscriptions track the server's reality: a node deleted, purged or
// reconfigured, or a subscription the service changed, makes the node's
// subscription be checked again (and re-made, with the backoff, once the
// node exists again); and every CheckInterval the subscriptions believed
// live are compared with the service's list, those it no longer has are
// made again.
package subscription

import (
	"cmp"
	"context"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"hookctl.dev/hookctl"
	"hookctl.dev/hookctl/registry"
)

// Session is the XMPP session of the profile (an xmppsession.Session).
type Session interface {
	// Connected reports whether the session has a live connection.
	Connected() bool
	// Subscribe makes sure the session is subscribed to node; created is
	// false when it was already.
	Subscribe(ctx context.Context, service, node string) (created bool, err error)
	// Unsubscribe removes the session's subscription to node.
	Unsubscribe(ctx context.Context, service, node string) error
	// SubscribedNodes lists the nodes of service the session is
	// subscribed to (of node alone when not ""); a service refusal is an
	// *xmppsession.StanzaError.
	SubscribedNodes(ctx context.Context, service, node string) (map[string]bool, error)
}

// Store remembers the subscriptions hookctl made (a registry.Store).
type Store interface {
	OwnSubscriptions(profile string) ([]registry.NodeRef, error)
	AddOwnSubscriptions(refs ...registry.NodeRef) error
	RemoveOwnSubscriptions(refs ...registry.NodeRef) error
}

// Catchup is told around each subscription of a node with hooks.
type Catchup interface {
	// Hold makes live events of the profile's nodes wait: a connection
	// starts, every subscription is checked again.
	Hold()
	// BeforeSubscribe runs before subscribing to ref.
	BeforeSubscribe(ctx context.Context, ref registry.NodeRef)
	// AfterSubscribe runs after, with the subscription's error.
	AfterSubscribe(ctx context.Context, ref registry.NodeRef, err error)
}

// Options configure a Manager.
type Options struct {
	Profile string
	// JID is the profile's bare JID: the service of hooks on its own PEP.
	JID     string
	Session Session
	Store   Store
	Catchup Catchup // optional
	Logger  *slog.Logger
	// LegacyFile is where older versions kept the subscriptions hookctl
	// made (JSON); when it exists, it is imported into Store and removed.
	LegacyFile string
	// RetryFirst and RetryMax bound the backoff of failed subscriptions;
	// defaults 1s and 1m. Every RetryMax the subscriptions are checked
	// anyway.
	RetryFirst, RetryMax time.Duration
	// OpTimeout bounds each subscribe and unsubscribe; default 15s.
	OpTimeout time.Duration
	// CheckInterval is how often the subscriptions believed live are
	// compared with the service's lists; default 1m. CheckTimeout bounds
	// each listing request; default 5s.
	CheckInterval, CheckTimeout time.Duration
}

// nodeRef names a node of a service, as one subscription.
type nodeRef struct{ Service, Node string }

func compareRefs(a, b nodeRef) int {
	return cmp.Or(strings.Compare(a.Service, b.Service), strings.Compare(a.Node, b.Node))
}

// Manager keeps one profile's subscriptions; Run drives it.
type Manager struct {
	opts Options
	log  *slog.Logger

	kick chan struct{} // wakes the loop (buffer 1)

	// syncMu makes syncs (the loop's, a connect's) take turns: two at
	// once would subscribe the same nodes twice.
	syncMu sync.Mutex

	mu       sync.Mutex
	hooksSet bool                      // SetHooks was called: until then want is unknown, not empty
	want     map[nodeRef][]hookctl.Key // nodes that hooks need, with the hooks
	have     map[nodeRef]bool          // nodes known subscribed in this connection
	ours     map[nodeRef]bool          // subscriptions hookctl made (stored)
	errors   map[nodeRef]string        // last subscribe error per node
}

// New loads the subscriptions hookctl made (importing the legacy file).
func New(opts Options) (*Manager, error) {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Catchup == nil {
		opts.Catchup = noCatchup{}
	}
	if opts.RetryFirst <= 0 {
		opts.RetryFirst = time.Second
	}
	if opts.RetryMax <= 0 {
		opts.RetryMax = time.Minute
	}
	if opts.OpTimeout <= 0 {
		opts.OpTimeout = 15 * time.Second
	}
	if opts.CheckInterval <= 0 {
		opts.CheckInterval = time.Minute
	}
	if opts.CheckTimeout <= 0 {
		opts.CheckTimeout = 5 * time.Second
	}
	m := &Manager{
		opts:   opts,
		log:    opts.Logger.With("profile", opts.Profile),
		kick:   make(chan struct{}, 1),
		want:   map[nodeRef][]hookctl.Key{},
		have:   map[nodeRef]bool{},
		ours:   map[nodeRef]bool{},
		errors: map[nodeRef]string{},
	}
	if err := m.importLegacy(); err != nil {
		return nil, err
	}
	refs, err := opts.Store.OwnSubscriptions(opts.Profile)
	if err != nil {
		return nil, err
	}
	for _, r := range refs {
		m.ours[nodeRef{r.Service, r.Node}] = true
	}
	return m, nil
}

type noCatchup struct{}

func (noCatchup) Hold()                                                   {}
func (noCatchup) BeforeSubscribe(context.Context, registry.NodeRef)       {}
func (noCatchup) AfterSubscribe(context.Context, registry.NodeRef, error) {}

func (m *Manager) ref(r nodeRef) registry.NodeRef {
	return registry.NodeRef{Profile: m.opts.Profile, Service: r.Service, Node: r.Node}
}

// service is the service a hook or request names, "" being own PEP.
func (m *Manager) service(s string) string {
	if s == "" {
		return m.opts.JID
	}
	return s
}

// wake wakes the loop without blocking.
func (m *Manager) wake() {
	select {
	case m.kick <- struct{}{}:
	default:
	}
}

// SetHooks records which nodes this profile's hooks need (hooks of other
// profiles are ignored) and wakes the loop.
func (m *Manager) SetHooks(hooks []hookctl.Hook) {
	want := map[nodeRef][]hookctl.Key{}
	for _, h := range hooks {
		if h.Profile != m.opts.Profile {
			continue
		}
		ref := nodeRef{m.service(h.Service), h.Node}
		want[ref] = append(want[ref], h.Key)
	}
	m.mu.Lock()
	m.want = want
	m.hooksSet = true
	m.mu.Unlock()
	m.wake()
}

// NodeMayExist wakes the loop at once when this profile may just have
// created a node that a hook is waiting for (a PEP node is created by its
// first publish), rather than at the next retry.
func (m *Manager) NodeMayExist(service, node string) {
	ref := nodeRef{m.service(service), node}
	m.mu.Lock()
	_, wanted := m.want[ref]
	waiting := wanted && !m.have[ref]
	m.mu.Unlock()
	if waiting {
		m.wake()
	}
}

// OnConnect forgets what was known of the old connection and checks every
// subscription again; the session calls it after each connect.
func (m *Manager) OnConnect(ctx context.Context) {
	m.opts.Catchup.Hold()
	m.mu.Lock()
	clear(m.have)
	m.mu.Unlock()
	if m.sync(ctx) {
		m.wake() // the loop retries with its backoff
	}
}

// Run subscribes to the nodes hooks need and unsubscribes from those it
// made and no hook needs any more, whenever hooks change or a node's
// notice calls for it. Failed subscriptions are retried with a backoff
// (RetryFirst … RetryMax); every CheckInterval the live subscriptions are
// compared with the service's lists (see check). It returns when ctx ends.
func (m *Manager) Run(ctx context.Context) error {
	wait := m.opts.RetryFirst
	t := time.NewTimer(m.opts.RetryMax)
	defer t.Stop()
	tick := time.NewTicker(m.opts.CheckInterval)
	defer tick.Stop()
	for {
		checkNow := false
		select {
		case <-ctx.Done():
			return nil
		case <-m.kick:
			wait = m.opts.RetryFirst
		case <-t.C:
		case <-tick.C:
			checkNow = true
		}
		failed := false
		if m.opts.Session.Connected() {
			if checkNow && m.check(ctx) > 0 {
				wait = m.opts.RetryFirst
			}
			failed = m.sync(ctx)
		}
		next := m.opts.RetryMax
		if failed {
			next = wait
			wait = min(2*wait, m.opts.RetryMax)
		}
		t.Reset(next)
	}
}

// sync makes the subscriptions match the hooks; it reports whether a node
// that hooks need is still not subscribed.
//
// Before the first SetHooks it does nothing: with no hooks known yet, every
// subscription hookctl made would look unwanted (a backend with 10,000
// hooks connected before it had loaded them, and unsubscribed from all).
func (m *Manager) sync(ctx context.Context) (failed bool) {
	m.syncMu.Lock()
	defer m.syncMu.Unlock()
	m.mu.Lock()
	if !m.hooksSet {
		m.mu.Unlock()
		return false
	}
	var add, drop []nodeRef
	for ref := range m.want {
		if !m.have[ref] {
			add = append(add, ref)
		}
	}
	for ref := range m.ours {
		if _, ok := m.want[ref]; !ok {
			drop = append(drop, ref)
		}
	}
	m.mu.Unlock()
	slices.SortFunc(add, compareRefs)
	slices.SortFunc(drop, compareRefs)
	m.subscribeAll(ctx, add)
	m.unsubscribe(ctx, drop)

	m.mu.Lock()
	defer m.mu.Unlock()
	for ref := range m.want {
		if !m.have[ref] {
			return true
		}
	}
	return false
}

// subscribeInflight bounds how many nodes a profile subscribes to at once,
// each with its catch-up fetches (one request at a time per node): at
// most this many requests of a profile's start-up are in flight toward
// the server. One at a time, 10,000 nodes took minutes of round trips;
// all at once would be a burst of 10,000 requests that the server queues
// (and may count against the account's rate limits).
const subscribeInflight = 16

// ListedSubscriber is a Session that can subscribe without asking first
// whether the subscription exists, given a listing of every node of the
// service (an xmppsession.Session).
type ListedSubscriber interface {
	SubscribeListed(ctx context.Context, service, node string, listed bool) (created bool, err error)
}

// subscribeAll subscribes to the nodes in add, in order, subscribeInflight
// at a time, and records in one store write the subscriptions it made
// (one write each was one fsync each). Where several nodes of a service
// are added, the service's subscriptions are listed once for all of them
// rather than once per node (a request less per node).
func (m *Manager) subscribeAll(ctx context.Context, add []nodeRef) {
	var mu sync.Mutex
	var made []nodeRef
	slots := make(chan struct{}, subscribeInflight)
	var wg sync.WaitGroup
	var listed map[string]bool // of add[i].Service, nil when not listed
	for i, ref := range add {
		if i == 0 || ref.Service != add[i-1].Service {
			listed = m.listService(ctx, add[i:])
		}
		select {
		case slots <- struct{}{}:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
		listed := listed // this node's; the loop moves on to other services
		wg.Go(func() {
			defer func() { <-slots }()
			if m.subscribe(ctx, ref, listed) {
				mu.Lock()
				made = append(made, ref)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	m.record(made)
}

// record stores the subscriptions hookctl made. They are stored before
// they count as ours: a crash in between leaves subscriptions hookctl
// will not remove, never one of the user's that it would.
func (m *Manager) record(made []nodeRef) {
	if len(made) == 0 {
		return
	}
	refs := make([]registry.NodeRef, len(made))
	for i, r := range made {
		refs[i] = m.ref(r)
	}
	if err := m.opts.Store.AddOwnSubscriptions(refs...); err != nil {
		m.log.Error("recording subscriptions", "count", len(refs), "err", err)
		return
	}
	m.mu.Lock()
	for _, r := range made {
		m.ours[r] = true
	}
	m.mu.Unlock()
}

// listService lists the subscriptions of the service of add[0] when add
// holds more than one node of it and the session can use the list; nil
// otherwise, or when the listing fails (Prosody 0.12 cannot list every
// node once a subscribed node was deleted): then each node is asked.
func (m *Manager) listService(ctx context.Context, add []nodeRef) map[string]bool {
	if _, ok := m.opts.Session.(ListedSubscriber); !ok || len(add) < 2 || add[1].Service != add[0].Service {
		return nil
	}
	lctx, cancel := context.WithTimeout(ctx, m.opts.CheckTimeout)
	defer cancel()
	subs, err := m.opts.Session.SubscribedNodes(lctx, add[0].Service, "")
	if err != nil {
		m.log.Debug("cannot list the service's subscriptions; asking node by node", "service", add[0].Service, "err", err)
		return nil
	}
	return subs
}

// subscribe subscribes to one node, catch-up around it; made reports a
// subscription hookctl made that is not recorded as its own yet. listed,
// when not nil, is the service's list of subscriptions.
func (m *Manager) subscribe(ctx context.Context, ref nodeRef, listed map[string]bool) (made bool) {
	m.opts.Catchup.BeforeSubscribe(ctx, m.ref(ref))
	opCtx, cancel := context.WithTimeout(ctx, m.opts.OpTimeout)
	var created bool
	var err error
	if ls, ok := m.opts.Session.(ListedSubscriber); ok && listed != nil {
		created, err = ls.SubscribeListed(opCtx, ref.Service, ref.Node, listed[ref.Node])
	} else {
		created, err = m.opts.Session.Subscribe(opCtx, ref.Service, ref.Node)
	}
	cancel()
	m.mu.Lock()
	if err != nil {
		m.errors[ref] = "subscribe: " + err.Error()
		m.log.Warn("subscribe failed", "service", ref.Service, "node", ref.Node, "err", err)
	} else {
		delete(m.errors, ref)
		m.have[ref] = true
		made = created && !m.ours[ref]
	}
	m.mu.Unlock()
	m.opts.Catchup.AfterSubscribe(ctx, m.ref(ref), err)
	return made
}

// unsubscribe removes subscriptions hookctl made that no hook needs.
func (m *Manager) unsubscribe(ctx context.Context, drop []nodeRef) {
	var gone []registry.NodeRef
	for _, ref := range drop {
		opCtx, cancel := context.WithTimeout(ctx, m.opts.OpTimeout)
		err := m.opts.Session.Unsubscribe(opCtx, ref.Service, ref.Node)
		cancel()
		if err != nil {
			m.log.Warn("unsubscribe failed", "service", ref.Service, "node", ref.Node, "err", err)
			if ctx.Err() != nil {
				break
			}
		}
		// Forget it even on error: the node may be gone; retrying forever
		// would help nobody.
		m.mu.Lock()
		delete(m.ours, ref)
		delete(m.have, ref)
		delete(m.errors, ref)
		m.mu.Unlock()
		gone = append(gone, m.ref(ref))
	}
	if len(gone) > 0 {
		if err := m.opts.Store.RemoveOwnSubscriptions(gone...); err != nil {
			m.log.Error("forgetting subscriptions", "err", err)
		}
	}
}

// Event takes a notification of the profile's session. A node deleted,
// purged or reconfigured, or a subscription changed by the service, may
// have ended the subscription without a word: it is checked again (a
// subscribe is idempotent), and made again once the node exists. It never
// blocks.
func (m *Manager) Event(ev hookctl.Event) {
	if ev.Profile != m.opts.Profile {
		return
	}
	why := ""
	switch ev.Kind {
	case hookctl.EventDelete:
		why = "node deleted: subscribing again once it exists"
	case hookctl.EventPurge, hookctl.EventConfiguration, hookctl.EventSubscription:
	default:
		return
	}
	ref := nodeRef{ev.Service, ev.Node}
	m.mu.Lock()
	_, wanted := m.want[ref]
	if wanted {
		delete(m.have, ref)
		if why != "" {
			m.errors[ref] = why
		}
	}
	m.mu.Unlock()
	if wanted {
		m.log.Info("node changed: checking its subscription", "event", ev.Kind, "service", ev.Service, "node", ev.Node)
		m.wake()
	}
}

// Errors lists, per hook, the subscribe problem of its node.
func (m *Manager) Errors() []hookctl.HookError {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []hookctl.HookError
	for ref, msg := range m.errors {
		for _, k := range m.want[ref] {
			out = append(out, hookctl.HookError{Hook: k, Error: msg})
		}
	}
	return out
}

// Subscribed reports whether the session is subscribed to the node in the
// current connection (service "" is own PEP) and, when it is not, why.
func (m *Manager) Subscribed(service, node string) (bool, string) {
	if !m.opts.Session.Connected() {
		return false, "profile not connected"
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	ref := nodeRef{m.service(service), node}
	return m.have[ref], m.errors[ref]
}

// Count is how many nodes are subscribed in the current connection.
func (m *Manager) Count() int {
	if !m.opts.Session.Connected() {
		return 0
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.have)
}
