package daemon

import (
	"context"
	"encoding/xml"
	"errors"
	"fmt"
	"strings"
	"time"

	"hookctl.dev/hookctl"
	"hookctl.dev/hookctl/api"
	"hookctl.dev/hookctl/rules"
	"hookctl.dev/hookctl/runner"
	"hookctl.dev/hookctl/xmppsession"
)

var _ api.Backend = (*Daemon)(nil)

// List returns the live hooks; see hookctl.Registry.
func (d *Daemon) List(ctx context.Context, profile string) ([]hookctl.Hook, uint64, error) {
	return d.store.List(ctx, profile)
}

// Create checks that the hook's type is allowed and can run, then stores it.
func (d *Daemon) Create(ctx context.Context, h hookctl.Hook) (hookctl.Hook, error) {
	if err := d.check(ctx, h); err != nil {
		return hookctl.Hook{}, err
	}
	stored, err := d.store.Create(ctx, h)
	if err == nil {
		d.audit(ctx, d.store.Revision(), auditCreate, "", []hookctl.AuditChange{created(stored)}) // audit.go
		d.synced.wait(ctx, d.store.Revision())
	}
	return stored, err
}

// Remove deletes every matching hook; see hookctl.Registry.
func (d *Daemon) Remove(ctx context.Context, m hookctl.Match) (int, error) {
	before, _ := d.store.Snapshot()
	n, err := d.store.Remove(ctx, m)
	if err == nil && n > 0 {
		after, rev := d.store.Snapshot()
		d.audit(ctx, rev, auditRemove, "", removedBetween(before, after))
		d.synced.wait(ctx, d.store.Revision())
	}
	return n, err
}

// Apply checks every created or updated hook, then applies the batch
// atomically; see hookctl.Registry.
func (d *Daemon) Apply(ctx context.Context, b hookctl.Batch) (uint64, error) {
	b = d.withoutSuspendedSets(b)
	var errs []error
	for _, list := range [][]hookctl.Hook{b.Create, b.Update} {
		for _, h := range list {
			if err := d.check(ctx, h); err != nil {
				errs = append(errs, err)
			}
		}
	}
	if err := errors.Join(errs...); err != nil {
		return 0, err
	}
	before, cur := d.store.Snapshot()
	rev, err := d.store.Apply(ctx, b)
	if err == nil && rev != cur {
		changes, subject := batchChanges(before, b)
		d.audit(ctx, rev, auditApply, subject, changes)
	}
	if err == nil {
		d.synced.wait(ctx, rev)
	}
	return rev, err
}

// Inventory returns the registry's set records (GitOps sources).
func (d *Daemon) Inventory(ctx context.Context) ([]hookctl.SetRecord, uint64, error) {
	return d.store.Inventory(ctx)
}

// check refuses hook types the config does not allow and hooks their
// runner says cannot run (missing program, Python that does not load).
func (d *Daemon) check(ctx context.Context, h hookctl.Hook) error {
	// The rules first, so that a hook gets the same verdict and message
	// here as at every other door; the runner's own check comes after.
	if err := rules.Validate(h); err != nil {
		return err
	}
	if !d.cfg.Allowed(h.Type) {
		return fmt.Errorf("%w: %s (this backend allows %v)", hookctl.ErrTypeNotAllowed, h.Type, d.cfg.AllowTypes)
	}
	if err := runner.CheckSecrets(h, d.secrets); err != nil {
		return fmt.Errorf("%w: hook %s: %v", hookctl.ErrInvalid, rules.IDOf(h), err)
	}
	f, ok := d.factories[h.Type]
	if !ok {
		return nil
	}
	if h.Type.TakesPath() {
		p, err := rules.Resolve(h.Arg, d.cfg.HooksRoot)
		if err != nil {
			return fmt.Errorf("hook %s: %w", rules.IDOf(h), err)
		}
		if err := rules.ScriptFile(p, h.Type == hookctl.TypeExec, d.cfg.AllowInsecureScripts); err != nil {
			return fmt.Errorf("%w: hook %s: arg: %v", hookctl.ErrInvalid, rules.IDOf(h), err)
		}
		h.Arg = p
	}
	err := f.Check(ctx, h)
	if err != nil && !errors.Is(err, hookctl.ErrInvalid) {
		err = fmt.Errorf("%w: %s hook %q: %v", hookctl.ErrInvalid, h.Type, h.Arg, err)
	}
	return err
}

// Status describes the backend, its profiles and hooks with problems.
func (d *Daemon) Status(ctx context.Context) (api.Status, error) {
	hooks, rev := d.store.Snapshot()
	st := api.Status{
		Version:  d.version,
		Started:  d.started,
		Revision: rev,
		Hooks:    len(hooks),
	}
	perProfile := map[string]int{}
	for _, h := range hooks {
		perProfile[h.Profile]++
	}
	for _, p := range d.profiles {
		ps := p.status()
		ps.Hooks = perProfile[p.name]
		if d.cluster != nil && p.heldSince.Load() == nil {
			ps.State = "standby" // another replica holds it, or none can now
		}
		st.Profiles = append(st.Profiles, ps)
	}
	st.HookErrors = d.hookErrors()
	for i := range st.HookErrors {
		e := &st.HookErrors[i]
		e.Hook.Arg, e.Error = d.redact(e.Hook.Arg), d.redact(e.Error)
	}
	st.Suspended, _ = d.Suspensions(ctx)
	if d.cluster != nil {
		cs := d.cluster.Status(ctx)
		st.Cluster = &cs
	}
	if len(d.watch.Paths) > 0 {
		ws := d.watcher().Status()
		st.Watch = &ws
	}
	if d.catchup != nil {
		st.Nodes = d.catchup.NodeStatus(hooks)
		for i := range st.Nodes {
			n := &st.Nodes[i]
			if p := d.profileByName[n.Profile]; p != nil {
				if n.Service == "" {
					n.Service = p.jid
				}
				n.Subscribed, n.SubscribeError = p.subs.Subscribed(n.Service, n.Node)
			}
		}
	}
	return st, nil
}

// PubSub carries out a PubSub operation through the profile's session.
func (d *Daemon) PubSub(ctx context.Context, r api.PubSubRequest) (api.PubSubResult, error) {
	p, ok := d.profileByName[r.Profile]
	if !ok {
		return api.PubSubResult{}, fmt.Errorf("%w: profile %q is not configured", hookctl.ErrNotFound, r.Profile)
	}
	if r.Node == "" {
		return api.PubSubResult{}, fmt.Errorf("%w: node is required", hookctl.ErrInvalid)
	}
	if r.Op == api.OpPublish {
		if err := d.cfg.CheckPublish(r.Payload); err != nil {
			return api.PubSubResult{}, err
		}
	}
	s := p.session
	// A session that is down gets a bounded wait: the caller is told
	// rather than held until it gives up.
	wctx, cancel := context.WithTimeout(ctx, connectWait)
	defer cancel()
	if err := s.WaitConnected(wctx); err != nil {
		return api.PubSubResult{}, fmt.Errorf("%w: profile %s is not connected (waited %v; see hookctl status): %v",
			hookctl.ErrUnavailable, r.Profile, connectWait, err)
	}
	var err error
	var res api.PubSubResult
	switch r.Op {
	case api.OpPublish:
		if err := checkDepth(r.Payload); err != nil {
			return res, err
		}
		res.ItemID, err = s.Publish(ctx, r.Service, r.Node, r.ItemID, r.Payload)
	case api.OpRetract:
		if r.ItemID == "" {
			return res, fmt.Errorf("%w: item id is required", hookctl.ErrInvalid)
		}
		notify := r.Notify == nil || *r.Notify
		err = s.Retract(ctx, r.Service, r.Node, r.ItemID, notify)
	case api.OpNodeCreate:
		err = s.CreateNode(ctx, r.Service, r.Node)
	case api.OpNodeDelete:
		err = s.DeleteNode(ctx, r.Service, r.Node)
	default:
		return res, fmt.Errorf("%w: unknown pubsub op %q", hookctl.ErrInvalid, r.Op)
	}
	if err != nil {
		var se *xmppsession.StanzaError
		if errors.As(err, &se) && !errors.Is(err, hookctl.ErrNotFound) {
			// The server refused (forbidden, conflict, …): the request cannot
			// succeed as it is, so it is the caller's to change.
			return res, fmt.Errorf("%w: %s on %s refused by %s: %v", hookctl.ErrInvalid, r.Op, r.Node, serviceName(r.Service), err)
		}
		return res, fmt.Errorf("%s on %s: %w", r.Op, r.Node, err)
	}
	if r.Op == api.OpPublish || r.Op == api.OpNodeCreate {
		p.subs.NodeMayExist(r.Service, r.Node)
	}
	return res, nil
}

// connectWait bounds how long a PubSub request waits for its profile's
// session to (re)connect.
const connectWait = 10 * time.Second

func serviceName(service string) string {
	if service == "" {
		return "own PEP"
	}
	return service
}

// maxPayloadDepth is the nesting the receiving side decodes
// (xmppsession's cap): deeper items would be skipped by every backend, and
// Prosody's handling of very deep stanzas is not bounded.
const maxPayloadDepth = 256

// checkDepth refuses a payload nested deeper than maxPayloadDepth; other
// syntax errors are left to the session's own check.
func checkDepth(payload string) error {
	d := xml.NewDecoder(strings.NewReader(payload))
	depth := 0
	for {
		tok, err := d.RawToken()
		if err != nil {
			return nil
		}
		switch tok.(type) {
		case xml.StartElement:
			if depth++; depth > maxPayloadDepth {
				return fmt.Errorf("%w: payload: elements nested deeper than %d", hookctl.ErrInvalid, maxPayloadDepth)
			}
		case xml.EndElement:
			depth--
		}
	}
}
