package daemon

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"hookctl.dev/hookctl"
	"hookctl.dev/hookctl/api"
	"hookctl.dev/hookctl/registry"
	"hookctl.dev/hookctl/rules"
)

var _ api.Suspender = (*Daemon)(nil)

// Suspend suspends or resumes a hook (by name, set/name, arg or key) or a
// declared set, as the operator's own decision kept apart from the hooks:
// applying files never undoes it. It returns once the change is in force.
func (d *Daemon) Suspend(ctx context.Context, r api.SuspendRequest) (api.SuspendResult, error) {
	var name string
	switch r.Kind {
	case hookctl.SuspendHook:
		h, err := d.findHook(r.Profile, r.Name)
		if err != nil {
			return api.SuspendResult{}, err
		}
		name = rules.IDOf(h).String()
		if !r.Suspend && h.Suspended {
			return api.SuspendResult{}, fmt.Errorf("%w: hook %s is suspended by its file (enabled: false, %s): change the file to resume it", hookctl.ErrInvalid, name, h.Source)
		}
	case hookctl.SuspendSet:
		name = r.Name
		hooks, _ := d.store.Snapshot()
		if r.Suspend && !slices.ContainsFunc(hooks, func(h hookctl.Hook) bool { return h.Owner == name }) {
			return api.SuspendResult{}, fmt.Errorf("%w: no hook is owned by set %q (hookctl hook list -A)", hookctl.ErrNotFound, name)
		}
	default:
		return api.SuspendResult{}, fmt.Errorf("%w: kind %q (want hook or set)", hookctl.ErrInvalid, r.Kind)
	}
	changed, err := d.store.SetSuspended(r.Kind, name, api.Caller(ctx), r.Suspend)
	if err != nil {
		return api.SuspendResult{}, err
	}
	rev := d.store.Revision()
	if changed {
		action := auditResume
		if r.Suspend {
			action = auditSuspend
		}
		d.audit(ctx, rev, action, r.Kind+" "+name, nil)
		d.synced.wait(ctx, rev)
	}
	return api.SuspendResult{Name: name, Changed: changed, Revision: rev}, nil
}

// findHook returns the one live hook that name designates: its set/name,
// its name, its arg, or its key as printed; several matches are an error
// listing them.
func (d *Daemon) findHook(profile, name string) (hookctl.Hook, error) {
	if name == "" {
		return hookctl.Hook{}, fmt.Errorf("%w: hook name is empty", hookctl.ErrInvalid)
	}
	hooks, _ := d.store.Snapshot()
	var found []hookctl.Hook
	for _, h := range hooks {
		if profile != "" && h.Profile != profile {
			continue
		}
		id := rules.IDOf(h).String()
		if id == name || h.Key.String() == name || (h.Name != "" && h.Name == name) || h.Arg == name {
			found = append(found, h)
		}
	}
	switch len(found) {
	case 1:
		return found[0], nil
	case 0:
		return hookctl.Hook{}, fmt.Errorf("%w: no hook named %q (by name, set/name or arg; see hookctl hook list)", hookctl.ErrNotFound, name)
	}
	ids := make([]string, len(found))
	for i, h := range found {
		ids[i] = rules.IDOf(h).String()
	}
	return hookctl.Hook{}, fmt.Errorf("%w: %q names %d hooks (%s): give set/name or the arg", hookctl.ErrInvalid, name, len(found), strings.Join(ids, "; "))
}

// Suspensions lists the operator's suspensions, then the hooks their
// files declare disabled (By "file").
func (d *Daemon) Suspensions(ctx context.Context) ([]hookctl.Suspension, error) {
	list, err := d.store.Suspensions()
	if err != nil {
		return nil, err
	}
	hooks, _ := d.store.Snapshot()
	for _, h := range hooks {
		if h.Suspended {
			list = append(list, hookctl.Suspension{Kind: hookctl.SuspendHook, Name: rules.IDOf(h).String(), By: "file " + h.Source})
		}
	}
	return list, nil
}

// effectiveHooks marks the hooks an operator suspended (themselves or
// their set) as Suspended, for the dispatcher; hooks is not modified.
func (d *Daemon) effectiveHooks(hooks []hookctl.Hook) []hookctl.Hook {
	list, err := d.store.Suspensions()
	if err != nil {
		d.log.Error("reading suspensions: every hook runs", "err", err)
		return hooks
	}
	if len(list) == 0 {
		return hooks
	}
	sets, ids := map[string]bool{}, map[string]bool{}
	for _, s := range list {
		if s.Kind == registry.SuspendSet {
			sets[s.Name] = true
		} else {
			ids[s.Name] = true
		}
	}
	out := slices.Clone(hooks)
	for i := range out {
		h := &out[i]
		if (h.Owner != "" && sets[h.Owner]) || ids[rules.IDOf(*h).String()] {
			h.Suspended = true
		}
	}
	return out
}

// withoutSuspendedSets drops from b the changes to hooks of suspended
// sets: the watcher and apply leave a suspended set alone, as flux
// suspend does, while the other sets of the batch are applied.
func (d *Daemon) withoutSuspendedSets(b hookctl.Batch) hookctl.Batch {
	list, err := d.store.Suspensions()
	if err != nil || len(list) == 0 {
		return b
	}
	sets := map[string]bool{}
	for _, s := range list {
		if s.Kind == registry.SuspendSet {
			sets[s.Name] = true
		}
	}
	if len(sets) == 0 {
		return b
	}
	hooks, _ := d.store.Snapshot()
	owner := make(map[hookctl.Key]string, len(hooks))
	for _, h := range hooks {
		owner[h.Key] = h.Owner
	}
	skipped := map[string]int{}
	keep := func(set string) bool {
		if sets[set] {
			skipped[set]++
			return false
		}
		return true
	}
	out := hookctl.Batch{Revision: b.Revision}
	for _, h := range b.Create {
		if keep(h.Owner) {
			out.Create = append(out.Create, h)
		}
	}
	for _, h := range b.Update {
		if keep(h.Owner) && keep(owner[h.Key]) {
			out.Update = append(out.Update, h)
		}
	}
	for _, k := range b.Delete {
		if keep(owner[k]) {
			out.Delete = append(out.Delete, k)
		}
	}
	for set, n := range skipped {
		d.log.Info("set is suspended: its changes are not applied", "set", set, "changes", n)
	}
	return out
}
