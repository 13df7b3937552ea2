package daemon

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"mellium.im/xmpp/jid"

	"hookctl.dev/hookctl"
	"hookctl.dev/hookctl/api"
	"hookctl.dev/hookctl/config"
	"hookctl.dev/hookctl/registry"
	"hookctl.dev/hookctl/xmppsession"
)

// nodeRef names a node of a service, as one subscription.
type nodeRef struct{ Service, Node string }

// profile is one configured account: its session and the subscriptions
// its hooks need.
type profile struct {
	d       *Daemon
	name    string
	jid     string // bare
	session *xmppsession.Session

	kick chan struct{} // wakes the subscription loop (buffer 1)

	mu     sync.Mutex
	want   map[nodeRef][]hookctl.Key // nodes that hooks need, with the hooks
	have   map[nodeRef]bool          // nodes known subscribed in this connection
	ours   map[nodeRef]bool          // subscriptions hookctl made (persisted)
	errors map[nodeRef]string        // last subscribe error per node
}

func (d *Daemon) newProfile(name string, pc config.Profile, password string) (*profile, error) {
	j, err := jid.Parse(pc.JID)
	if err != nil {
		return nil, err
	}
	p := &profile{
		d:      d,
		name:   name,
		jid:    j.Bare().String(),
		kick:   make(chan struct{}, 1),
		want:   map[nodeRef][]hookctl.Key{},
		have:   map[nodeRef]bool{},
		errors: map[nodeRef]string{},
	}
	p.ours, err = loadOurs(d.cfg.DataDir, name)
	if err != nil {
		return nil, err
	}
	tls := xmppsession.TLSMode(pc.TLS)
	if tls == "" {
		tls = xmppsession.TLSStartTLS
	}
	p.session, err = xmppsession.New(xmppsession.Config{
		Profile:            name,
		JID:                pc.JID,
		Password:           password,
		Server:             pc.Server,
		TLS:                tls,
		InsecureSkipVerify: pc.InsecureSkipVerify,
		RequestTimeout:     time.Duration(pc.RequestTimeout),
		Resource:           cmp.Or(pc.Resource, xmppsession.ResourceFor(d.cfg.DataDir)),
		Logger:             d.log,
		OnEvent:            d.onEvent,
		OnSkip:             d.onSkip,
		OnConnect:          p.onConnect,
	})
	if err != nil {
		return nil, err
	}
	return p, nil
}

// onEvent hands a notification to the dispatcher; it must not block.
func (d *Daemon) onEvent(ev hookctl.Event) { d.catchup.event(ev) }

// onConnect forgets what was known of the old connection and re-checks
// every subscription.
func (p *profile) onConnect(ctx context.Context, reconnect bool) {
	p.d.catchup.hold(p.name)
	p.mu.Lock()
	clear(p.have)
	p.mu.Unlock()
	if p.syncSubscriptions(ctx) {
		p.wake() // the loop retries with its backoff
	}
}

// wake wakes the subscription loop without blocking.
func (p *profile) wake() {
	select {
	case p.kick <- struct{}{}:
	default:
	}
}

// wantNodes records which nodes this profile's hooks need, and wakes the
// subscription loop.
func (p *profile) wantNodes(hooks []hookctl.Hook) {
	want := map[nodeRef][]hookctl.Key{}
	for _, h := range hooks {
		if h.Profile != p.name {
			continue
		}
		svc := h.Service
		if svc == "" {
			svc = p.jid
		}
		ref := nodeRef{svc, h.Node}
		want[ref] = append(want[ref], h.Key)
	}
	p.mu.Lock()
	p.want = want
	p.mu.Unlock()
	p.wake()
}

// nodeMayExist wakes the subscription loop at once when this profile may
// just have created a node that a hook is waiting for (a PEP node is
// created by its first publish), rather than at the next retry.
func (p *profile) nodeMayExist(service, node string) {
	if service == "" {
		service = p.jid
	}
	ref := nodeRef{service, node}
	p.mu.Lock()
	_, wanted := p.want[ref]
	waiting := wanted && !p.have[ref]
	p.mu.Unlock()
	if waiting {
		p.wake()
	}
}

// Failed subscriptions are retried after retryFirst, doubling up to
// retryMax. A PEP node does not exist until its first publish (subscribing
// gives item-not-found), so a hook created before it must not wait a full
// minute to start firing.
const (
	retryFirst = time.Second
	retryMax   = time.Minute
)

// runSubscriptions subscribes to the nodes hooks need and unsubscribes
// from those it made and no hook needs any more, whenever hooks change.
// Failed subscriptions are retried with a backoff (retryFirst … retryMax);
// every retryMax the subscriptions are checked anyway.
func (p *profile) runSubscriptions(ctx context.Context) error {
	wait := retryFirst
	t := time.NewTimer(retryMax)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-p.kick:
			wait = retryFirst
		case <-t.C:
		}
		failed := false
		if p.session.State().State == xmppsession.StateConnected {
			failed = p.syncSubscriptions(ctx)
		}
		next := retryMax
		if failed {
			next = wait
			wait = min(2*wait, retryMax)
		}
		t.Reset(next)
	}
}

// syncSubscriptions makes the subscriptions match the hooks; it reports
// whether a node that hooks need is still not subscribed.
func (p *profile) syncSubscriptions(ctx context.Context) (failed bool) {
	p.mu.Lock()
	var add, drop []nodeRef
	for ref := range p.want {
		if !p.have[ref] {
			add = append(add, ref)
		}
	}
	for ref := range p.ours {
		if _, ok := p.want[ref]; !ok {
			drop = append(drop, ref)
		}
	}
	p.mu.Unlock()
	sortRefs(add)
	sortRefs(drop)

	changedOurs := false
	for _, ref := range add {
		node := registry.NodeRef{Profile: p.name, Service: ref.Service, Node: ref.Node}
		p.d.catchup.beforeSubscribe(ctx, p.session, node)
		opCtx, cancel := context.WithTimeout(ctx, 15*time.Second)
		created, err := p.session.Subscribe(opCtx, ref.Service, ref.Node)
		cancel()
		p.mu.Lock()
		if err != nil {
			p.errors[ref] = "subscribe: " + err.Error()
			p.d.log.Warn("subscribe failed", "profile", p.name, "service", ref.Service, "node", ref.Node, "err", err)
		} else {
			delete(p.errors, ref)
			p.have[ref] = true
			if created && !p.ours[ref] {
				p.ours[ref] = true
				changedOurs = true
			}
		}
		p.mu.Unlock()
		p.d.catchup.afterSubscribe(ctx, p.session, node, err)
	}
	for _, ref := range drop {
		opCtx, cancel := context.WithTimeout(ctx, 15*time.Second)
		err := p.session.Unsubscribe(opCtx, ref.Service, ref.Node)
		cancel()
		if err != nil {
			p.d.log.Warn("unsubscribe failed", "profile", p.name, "service", ref.Service, "node", ref.Node, "err", err)
			if ctx.Err() != nil {
				break
			}
		}
		// Forget it even on error: the node may be gone; retrying forever
		// would help nobody.
		p.mu.Lock()
		delete(p.ours, ref)
		delete(p.have, ref)
		delete(p.errors, ref)
		p.mu.Unlock()
		changedOurs = true
	}
	if changedOurs {
		p.mu.Lock()
		ours := maps2slice(p.ours)
		p.mu.Unlock()
		if err := saveOurs(p.d.cfg.DataDir, p.name, ours); err != nil {
			p.d.log.Error("saving subscriptions", "profile", p.name, "err", err)
		}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	for ref := range p.want {
		if !p.have[ref] {
			return true
		}
	}
	return false
}

// subscriptionErrors lists, per hook, the subscribe problem of its node.
func (p *profile) subscriptionErrors() []api.HookError {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []api.HookError
	for ref, msg := range p.errors {
		for _, k := range p.want[ref] {
			out = append(out, api.HookError{Hook: k, Error: msg})
		}
	}
	return out
}

// subscribed reports whether the session is subscribed to the node in the
// current connection (service is never empty: own PEP is the bare JID).
func (p *profile) subscribed(service, node string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.have[nodeRef{service, node}]
}

func (p *profile) status() api.ProfileStatus {
	st := p.session.State()
	p.mu.Lock()
	subs := len(p.have)
	p.mu.Unlock()
	return api.ProfileStatus{
		Name:          p.name,
		JID:           p.jid,
		State:         string(st.State),
		LastError:     st.LastError,
		Since:         st.Since,
		Subscriptions: subs,
		Events:        st.Events,
		Reconnects:    st.Reconnects,
		Conflicts:     st.Conflicts,
		BoundJID:      st.JID,
	}
}

func sortRefs(refs []nodeRef) {
	slices.SortFunc(refs, func(a, b nodeRef) int {
		if c := strings.Compare(a.Service, b.Service); c != 0 {
			return c
		}
		return strings.Compare(a.Node, b.Node)
	})
}

func maps2slice(m map[nodeRef]bool) []nodeRef {
	out := make([]nodeRef, 0, len(m))
	for ref := range m {
		out = append(out, ref)
	}
	sortRefs(out)
	return out
}

// The subscriptions hookctl made are kept in a small JSON file per
// profile, so that after a restart it still removes only its own.
func oursPath(dataDir, profile string) string {
	return filepath.Join(dataDir, "subscriptions", profile+".json")
}

func loadOurs(dataDir, profile string) (map[nodeRef]bool, error) {
	out := map[nodeRef]bool{}
	b, err := os.ReadFile(oursPath(dataDir, profile))
	if os.IsNotExist(err) {
		return out, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading subscriptions: %w", err)
	}
	var refs []nodeRef
	if err := json.Unmarshal(b, &refs); err != nil {
		return nil, fmt.Errorf("reading subscriptions %s: %w", oursPath(dataDir, profile), err)
	}
	for _, r := range refs {
		out[r] = true
	}
	return out, nil
}

func saveOurs(dataDir, profile string, refs []nodeRef) error {
	path := oursPath(dataDir, profile)
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	b, err := json.Marshal(refs)
	if err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
