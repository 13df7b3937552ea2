// Package reconcile makes the live hook registry match the hooks declared
// in files: Plan computes the difference as data, Apply sends it as one
// atomic batch, and Watcher keeps the two matching as files and the
// registry change.
package reconcile

import (
	"fmt"
	"slices"
	"strings"

	"hookctl.dev/hookctl"
	"hookctl.dev/hookctl/rules"
)

// Action is what a plan does with one hook.
type Action string

// The actions of a plan entry.
const (
	// ActionCreate: desired, not live.
	ActionCreate Action = "create"
	// ActionUpdate: desired and live with the same key, other attributes;
	// applied as one atomic replace.
	ActionUpdate Action = "update"
	// ActionDelete: live, owned by a set being applied, no longer desired.
	ActionDelete Action = "delete"
	// ActionUnchanged: desired and live are the same.
	ActionUnchanged Action = "unchanged"
	// ActionLeftAlone: live, not desired, and not ours to delete (made by
	// hand, owned by another set, or pruning is off).
	ActionLeftAlone Action = "left-alone"
	// ActionConflict: desired, but a live hook with the same key belongs to
	// someone else (made by hand without --adopt, or another set). The
	// plan neither creates (it would be a duplicate) nor touches it.
	ActionConflict Action = "conflict"
)

// Entry is one hook in a plan.
type Entry struct {
	Action Action
	Key    hookctl.Key
	// Desired is the hook as declared (nil for delete and left-alone).
	Desired *hookctl.Hook
	// Live is the hook in the registry (nil for create).
	Live *hookctl.Hook
	// Changes lists the attributes an update changes, old → new.
	Changes []hookctl.Change
	// Reason says why a hook is left alone, in conflict, deleted with its
	// vanished set, or restored from a hand-made edit.
	Reason string
	// Set is the set whose changes the entry belongs to (its guards and
	// refusal): the desired hook's, else the live hook's when the plan
	// manages it; "" for hand-made hooks.
	Set string
}

// Source is where the entry's hook was declared: the desired hook's
// "file:line", else the live hook's recorded source.
func (e Entry) Source() string {
	if e.Desired != nil {
		return e.Desired.Source
	}
	if e.Live != nil {
		return e.Live.Source
	}
	return ""
}

// Changeset is a computed plan: what to do to the live registry so that it
// matches the desired hooks. It is plain data; Batch turns it into the
// registry request.
type Changeset struct {
	// Sets are the declared sets the plan manages.
	Sets []string
	// SetPlans describe each set the plan concerns (declared, or managed
	// by the source and gone from the files), by name, with its guard's
	// verdict.
	SetPlans []SetPlan
	// Inventory is the inventory change to send with the batch (nil when
	// the plan has no source, or nothing changed).
	Inventory *hookctl.InventoryChange
	// Revision is the registry revision the live hooks were read at.
	Revision uint64
	// Entries are in Key order, one per key seen on either side.
	Entries []Entry
}

// Options says how far a plan may reach beyond the desired hooks.
// The zero value is the default: prune the sets' own hooks, leave every
// other live hook alone.
type Options struct {
	// Sets are the sets being applied (spec.Set.Sets): live hooks they own
	// and that are no longer desired are deleted. When empty, the owners of
	// the desired hooks are used.
	Sets []string
	// NoPrune keeps live hooks of the sets that are no longer desired
	// (`--prune=false`): they are left alone instead of deleted.
	NoPrune bool
	// PruneUnowned deletes hooks made by hand (Owner "") that are not
	// desired. Hooks of other sets are never deleted.
	PruneUnowned bool
	// Adopt takes over hooks made by hand whose key is desired: they are
	// updated to the desired attributes and owner instead of reported as a
	// conflict.
	Adopt bool
	Guards
	// Source names the files' source (SourceOf); with it the plan reads
	// Inventory: the sets this source manages that the files no longer
	// declare are pruned, keys a managed set owned are the files' (a
	// hand-made hook there is drift), a set another source manages is
	// refused, and the plan carries the new records. "" plans without an
	// inventory.
	Source string
	// SourceRevision is the revision of the files (git commit or digest)
	// recorded with each set.
	SourceRevision string
	// Inventory are the registry's set records (every source's).
	Inventory []hookctl.SetRecord
	// TakeOver lets this source manage declared sets another source
	// manages (their files moved) instead of refusing them.
	TakeOver bool
}

// Plan computes the changeset that makes live match desired. It is a pure
// function: inputs are not modified and the same inputs give the same
// plan. Desired hooks must have their Service normalised (see
// NormalizeServices) and Owner set to their set. Each set's changes are
// judged on their own (Guards, another source's claim): a refused set's
// entries stay in the plan but are left out of its Batch.
func Plan(desired, live []hookctl.Hook, revision uint64, opts Options) Changeset {
	sc := newScope(desired, opts)
	ls := sortedRefs(live)
	m := newMatcher(ls, sc.ours)
	entries := make([]Entry, 0, max(len(desired), len(ls)))
	ds := sortedRefs(desired)
	for i := 0; i < len(ds); i = skipSame(ds, i) {
		entries = append(entries, m.match(ds[i], sc, opts))
	}
	for _, l := range ls {
		if !m.used[l] {
			entries = append(entries, sc.leftover(l, opts))
		}
	}
	slices.SortStableFunc(entries, func(a, b Entry) int { return a.Key.Compare(b.Key) })
	p := Changeset{Sets: sc.declared, Revision: revision, Entries: entries}
	p.SetPlans = sc.judge(desired, live, entries, opts)
	p.Inventory = sc.inventoryChange(p, opts)
	return p
}

// matcher finds the live hook a desired one is: by set and name when the
// desired hook has a name (so a changed arg or node is an update), else by
// key (hooks made by hand, and unnamed declarations).
type matcher struct {
	byKey  map[hookctl.Key]*hookctl.Hook
	byName map[rules.ID]*hookctl.Hook
	used   map[*hookctl.Hook]bool
}

func newMatcher(ls []*hookctl.Hook, ours func(string) bool) *matcher {
	m := &matcher{
		byKey:  make(map[hookctl.Key]*hookctl.Hook, len(ls)),
		byName: make(map[rules.ID]*hookctl.Hook),
		used:   make(map[*hookctl.Hook]bool, len(ls)),
	}
	for _, l := range ls {
		m.byKey[l.Key] = l
		if l.Name != "" && ours(l.Owner) {
			m.byName[rules.IDOf(*l)] = l
		}
	}
	return m
}

// match returns the entry of desired hook d.
func (m *matcher) match(d *hookctl.Hook, sc *scope, opts Options) Entry {
	l := m.byName[rules.IDOf(*d)]
	if d.Name == "" || l == nil {
		l = m.byKey[d.Key]
	}
	if l == nil {
		return Entry{Action: ActionCreate, Key: d.Key, Desired: d, Set: d.Owner}
	}
	m.used[l] = true
	if other := m.byKey[d.Key]; l.Key != d.Key && other != nil {
		// Renamed onto a key another hook holds: never take it silently.
		m.used[other] = true
		who := "made by hand"
		if other.Owner != "" {
			who = "of set " + other.Owner
		}
		return Entry{Action: ActionConflict, Key: d.Key, Desired: d, Live: other, Set: d.Owner,
			Reason: fmt.Sprintf("its new key is taken by hook %s %s", rules.IDOf(*other), who)}
	}
	return sc.matched(d, l, opts)
}

// changes is l.AttributeChanges(*d) with a fast path for the common case
// of identical attributes: AttributeChanges formats every field, which
// dominates a plan of thousands of unchanged hooks. sameAttributes only
// answers true when AttributeChanges would find nothing.
func changes(l, d *hookctl.Hook) []hookctl.Change {
	if l.SameAttributes(*d) {
		return nil
	}
	return l.AttributeChanges(*d)
}

// sortedRefs returns pointers to hs's elements in Key order.
func sortedRefs(hs []hookctl.Hook) []*hookctl.Hook {
	refs := make([]*hookctl.Hook, len(hs))
	for i := range hs {
		refs[i] = &hs[i]
	}
	cmpRef := func(a, b *hookctl.Hook) int { return a.Key.Compare(b.Key) }
	if !slices.IsSortedFunc(refs, cmpRef) {
		slices.SortStableFunc(refs, cmpRef)
	}
	return refs
}

// skipSame returns the index after hs[i] and any duplicates of its key
// (spec refuses duplicates; the first one wins if one slips through).
func skipSame(hs []*hookctl.Hook, i int) int {
	k := hs[i].Key
	for i++; i < len(hs) && hs[i].Key == k; i++ {
	}
	return i
}

// matched is the entry of a key both desired and live.
func (sc *scope) matched(d, l *hookctl.Hook, opts Options) Entry {
	e := Entry{Key: d.Key, Desired: d, Live: l, Set: d.Owner}
	owner, owned := sc.owned[l.Key]
	switch {
	case l.Owner == "" && owned:
		// A key one of our sets owns, taken over or edited by hand: the
		// files win.
		e.Reason = "made by hand on a key of set " + owner + ": the files win"
	case l.Owner == "" && !opts.Adopt:
		e.Action, e.Reason = ActionConflict, "made by hand (use --adopt to take it over)"
		return e
	case l.Owner != "" && !sc.ours(l.Owner):
		e.Action, e.Reason = ActionConflict, "owned by set "+l.Owner
		return e
	}
	if e.Changes = changes(l, d); len(e.Changes) > 0 {
		e.Action = ActionUpdate
	} else {
		e.Action, e.Reason = ActionUnchanged, ""
	}
	return e
}

// leftover is the entry of a live hook that is not desired.
func (sc *scope) leftover(l *hookctl.Hook, opts Options) Entry {
	e := Entry{Key: l.Key, Live: l}
	owner, owned := sc.owned[l.Key]
	switch {
	case l.Owner == "" && owned && !opts.NoPrune:
		e.Action, e.Set = ActionDelete, owner
		e.Reason = "made by hand on a key set " + owner + " owned: the files win"
	case l.Owner == "" && opts.PruneUnowned && sc.nodes[nodeOf(l.Key)]:
		e.Action = ActionDelete
	case l.Owner == "" && opts.PruneUnowned:
		e.Action, e.Reason = ActionLeftAlone, "made by hand, on a node the files do not declare"
	case l.Owner == "":
		e.Action, e.Reason = ActionLeftAlone, "made by hand"
	case !sc.ours(l.Owner):
		e.Action, e.Reason = ActionLeftAlone, "owned by set "+l.Owner
	case opts.NoPrune:
		e.Action, e.Reason, e.Set = ActionLeftAlone, "owned by set "+l.Owner+", pruning off", l.Owner
	case sc.gone[l.Owner]:
		e.Action, e.Reason, e.Set = ActionDelete, reasonGone, l.Owner
	default:
		e.Action, e.Set = ActionDelete, l.Owner
	}
	return e
}

// Counts is how many entries of each action a plan has.
type Counts struct {
	Create    int `json:"create"`
	Update    int `json:"update"`
	Delete    int `json:"delete"`
	Unchanged int `json:"unchanged"`
	LeftAlone int `json:"left_alone"`
	Conflict  int `json:"conflict"`
}

// Changes is the number of changes the plan makes to the registry.
func (c Counts) Changes() int { return c.Create + c.Update + c.Delete }

// Counts counts the plan's entries by action.
func (p Changeset) Counts() Counts {
	var c Counts
	for _, e := range p.Entries {
		c.add(e.Action)
	}
	return c
}

func (c *Counts) add(a Action) {
	switch a {
	case ActionCreate:
		c.Create++
	case ActionUpdate:
		c.Update++
	case ActionDelete:
		c.Delete++
	case ActionUnchanged:
		c.Unchanged++
	case ActionLeftAlone:
		c.LeftAlone++
	case ActionConflict:
		c.Conflict++
	}
}

// InSync reports whether the registry already matches the desired hooks:
// nothing to create, update or delete, and no conflict in the way (a
// refused set has changes, so it is not in sync either).
func (p Changeset) InSync() bool {
	c := p.Counts()
	return c.Changes() == 0 && c.Conflict == 0
}

// Batch is the registry request that carries out the plan, against the
// revision the plan was computed at, without the entries of refused sets
// and with the inventory change. Updates send the desired hook, so a
// stale recorded Source is refreshed; Created is kept by the registry.
func (p Changeset) Batch() hookctl.Batch {
	b := hookctl.Batch{Revision: p.Revision, Inventory: p.Inventory}
	for _, e := range p.Entries {
		if p.refused(e.Set) {
			continue
		}
		switch e.Action {
		case ActionCreate:
			b.Create = append(b.Create, *e.Desired)
		case ActionUpdate:
			h := *e.Desired
			h.Created = e.Live.Created
			if e.Live.Key != h.Key {
				// A named hook whose key changed (arg, node, …): replaced
				// in the same atomic batch.
				b.Delete = append(b.Delete, e.Live.Key)
				b.Create = append(b.Create, h)
				continue
			}
			b.Update = append(b.Update, h)
		case ActionDelete:
			b.Delete = append(b.Delete, e.Key)
		}
	}
	return b
}

// Summary is the one-line human summary, e.g.
// "Plan: 2 to create, 1 to update, 0 to delete (3 left alone)."
func (p Changeset) Summary() string {
	c := p.Counts()
	var extra []string
	if c.LeftAlone > 0 {
		extra = append(extra, fmt.Sprintf("%d left alone", c.LeftAlone))
	}
	if c.Conflict > 0 {
		extra = append(extra, fmt.Sprintf("%d in conflict", c.Conflict))
	}
	s := fmt.Sprintf("Plan: %d to create, %d to update, %d to delete", c.Create, c.Update, c.Delete)
	if len(extra) > 0 {
		s += " (" + strings.Join(extra, ", ") + ")"
	}
	return s + "."
}

// NormalizeServices returns desired with services in the form the registry
// stores them (rules.Normalise: an empty Service becomes the bare JID of
// the hook's profile, jids maps profile name → JID; every JID bare and
// canonical), so that plans compare like with like. Two declarations that
// become the same hook once normalised (service omitted, and the
// profile's own JID written out) are an error naming both places: one
// would otherwise vanish without a word. Hooks of unknown profiles keep
// their empty Service and invalid services are left for the registry to
// refuse. The input is not modified.
func NormalizeServices(desired []hookctl.Hook, jids map[string]string) ([]hookctl.Hook, error) {
	out := slices.Clone(desired)
	seen := make(map[hookctl.Key]int, len(out))
	var errs []string
	for i := range out {
		if n, err := rules.Normalise(out[i], jids[out[i].Profile]); err == nil {
			out[i] = n
		}
		if j, dup := seen[out[i].Key]; dup {
			errs = append(errs, fmt.Sprintf("%s: the same hook as %s (same profile, service, node, type and arg once the service is normalised to %s)",
				out[i].Source, out[j].Source, out[i].Service))
			continue
		}
		seen[out[i].Key] = i
	}
	if len(errs) > 0 {
		slices.Sort(errs)
		return nil, fmt.Errorf("%w: %s", hookctl.ErrInvalid, strings.Join(errs, "\n"))
	}
	return out, nil
}
