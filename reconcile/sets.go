package reconcile

import (
	"errors"
	"fmt"
	"maps"
	"slices"

	"hookctl.dev/hookctl"
)

// Why a set's changes are refused. Each wraps hookctl.ErrInvalid.
var (
	// ErrEmptySet refuses deleting the hooks of a set that declares none,
	// or that the files no longer declare at all (a truncated file, a bad
	// checkout, a removed directory). Guards.AllowEmpty means it.
	ErrEmptySet = fmt.Errorf("%w: set would lose all its hooks (use --allow-empty to delete them)", hookctl.ErrInvalid)
	// ErrMassDelete refuses deleting more than Guards.MassDeleteShare of a
	// set's hooks in one round (19 of 20 files gone). AllowMassDelete
	// means it.
	ErrMassDelete = fmt.Errorf("%w: set would lose most of its hooks (use --allow-mass-delete to delete them)", hookctl.ErrInvalid)
	// ErrClaimed refuses a set that another source manages: two watchers
	// or applies over overlapping files would undo each other forever.
	ErrClaimed = fmt.Errorf("%w: set is managed by another source", hookctl.ErrInvalid)
)

// DefaultMassDeleteShare is the share of a set's hooks one round may
// delete without --allow-mass-delete.
const DefaultMassDeleteShare = 0.5

// reasonGone is the reason of the deletes of a set gone from the files.
const reasonGone = "set no longer in the files"

// Guards say which deletions a plan may make without being told.
type Guards struct {
	// AllowEmpty lets a set that declares no hooks, or is gone from the
	// files, delete its live hooks.
	AllowEmpty bool
	// AllowMassDelete lets a set lose more than MassDeleteShare of its
	// live hooks in one round (deletions minus creations: a replaced hook
	// is not lost).
	AllowMassDelete bool
	// MassDeleteShare is that share, in (0, 1] (DefaultMassDeleteShare
	// if 0).
	MassDeleteShare float64
}

// SetPlan is one set's part of a plan.
type SetPlan struct {
	Set string `json:"set"`
	// Gone is true for a set the source manages that the files no longer
	// declare.
	Gone bool `json:"gone,omitempty"`
	// Desired and Live count the set's declared hooks and the live hooks
	// it owns.
	Desired int `json:"desired"`
	Live    int `json:"live"`
	// Counts are the set's entries by action.
	Counts Counts `json:"counts"`
	// Err, when set, is why the set's changes are refused; the rest of
	// the plan goes ahead.
	Err error `json:"-"`
	// Refused is Err's text, for the JSON document.
	Refused string `json:"refused,omitempty"`
}

// scope is what a plan may touch: the declared sets, the sets its source
// manages, and the keys and nodes they own or declare.
type scope struct {
	declared []string
	oursSet  map[string]bool
	gone     map[string]bool
	claimed  map[string]string            // declared set → the other source
	records  map[string]hookctl.SetRecord // every source's, by set
	owned    map[hookctl.Key]string       // key → our set whose record holds it
	nodes    map[[3]string]bool           // declared profile, service, node
}

func newScope(desired []hookctl.Hook, opts Options) *scope {
	sc := &scope{
		oursSet: map[string]bool{}, gone: map[string]bool{}, claimed: map[string]string{},
		records: map[string]hookctl.SetRecord{}, owned: map[hookctl.Key]string{}, nodes: map[[3]string]bool{},
	}
	sets := slices.Clone(opts.Sets)
	for _, h := range desired {
		if opts.PruneUnowned {
			sc.nodes[nodeOf(h.Key)] = true
		}
		if len(opts.Sets) == 0 && h.Owner != "" && !slices.Contains(sets, h.Owner) {
			sets = append(sets, h.Owner)
		}
	}
	slices.Sort(sets)
	sc.declared = slices.Compact(sets)
	for _, s := range sc.declared {
		sc.oursSet[s] = true
	}
	if opts.Source == "" {
		return sc
	}
	for _, r := range opts.Inventory {
		sc.records[r.Set] = r
		switch {
		case r.Source != opts.Source && sc.oursSet[r.Set] && !opts.TakeOver:
			sc.claimed[r.Set] = r.Source
			delete(sc.oursSet, r.Set)
		case r.Source == opts.Source && !sc.oursSet[r.Set]:
			sc.gone[r.Set] = true
			sc.oursSet[r.Set] = true
		}
	}
	for _, r := range opts.Inventory {
		if sc.oursSet[r.Set] && (r.Source == opts.Source || opts.TakeOver) {
			for _, k := range r.Members {
				sc.owned[k] = r.Set
			}
		}
	}
	return sc
}

func (sc *scope) ours(owner string) bool { return owner != "" && sc.oursSet[owner] }

func nodeOf(k hookctl.Key) [3]string { return [3]string{k.Profile, k.Service, k.Node} }

// names returns every set the plan concerns, sorted: declared (claimed
// ones included) and gone.
func (sc *scope) names() []string {
	out := slices.Clone(sc.declared)
	for s := range sc.gone {
		out = append(out, s)
	}
	slices.Sort(out)
	return out
}

// judge counts each set's entries and applies the guards.
func (sc *scope) judge(desired, live []hookctl.Hook, entries []Entry, opts Options) []SetPlan {
	names := sc.names()
	idx := make(map[string]*SetPlan, len(names))
	plans := make([]SetPlan, len(names))
	for i, s := range names {
		plans[i] = SetPlan{Set: s, Gone: sc.gone[s]}
		idx[s] = &plans[i]
	}
	for _, h := range desired {
		if sp := idx[h.Owner]; sp != nil {
			sp.Desired++
		}
	}
	for _, h := range live {
		if sp := idx[h.Owner]; sp != nil {
			sp.Live++
		}
	}
	for _, e := range entries {
		if sp := idx[e.Set]; sp != nil {
			sp.Counts.add(e.Action)
		}
	}
	for i := range plans {
		if err := sc.guard(plans[i], opts); err != nil {
			plans[i].Err, plans[i].Refused = err, err.Error()
		}
	}
	return plans
}

// guard says why sp's changes may not be applied, or nil.
func (sc *scope) guard(sp SetPlan, opts Options) error {
	g := opts.Guards
	if other, ok := sc.claimed[sp.Set]; ok {
		return fmt.Errorf("set %s is declared by source %s but managed by source %s (two watchers or applies over overlapping files?); declare it in one source only (--take-over moves it here): %w",
			sp.Set, opts.Source, other, ErrClaimed)
	}
	del := sp.Counts.Delete
	if del == 0 {
		return nil
	}
	if sp.Desired == 0 && !g.AllowEmpty {
		why := "declares no hooks"
		if sp.Gone {
			why = "is no longer in the files"
		}
		return fmt.Errorf("set %s %s but the registry holds %d of its hooks: %w", sp.Set, why, del, ErrEmptySet)
	}
	share := g.MassDeleteShare
	if share <= 0 {
		share = DefaultMassDeleteShare
	}
	// The loss, not the deletions: a hook replaced (a changed node or arg
	// of an unnamed hook is a delete and a create) is not lost.
	if loss := del - sp.Counts.Create; sp.Desired > 0 && !g.AllowMassDelete && float64(loss) > share*float64(sp.Live) {
		return fmt.Errorf("set %s would lose %d of its %d hooks (more than %g%%): %w",
			sp.Set, loss, sp.Live, share*100, ErrMassDelete)
	}
	return nil
}

// refused reports whether set's changes are refused.
func (p Changeset) refused(set string) bool {
	if set == "" {
		return false
	}
	for _, sp := range p.SetPlans {
		if sp.Set == set {
			return sp.Err != nil
		}
	}
	return false
}

// Sent counts the entries the batch carries out: Counts without the
// refused sets' entries.
func (p Changeset) Sent() Counts {
	var c Counts
	for _, e := range p.Entries {
		if !p.refused(e.Set) {
			c.add(e.Action)
		}
	}
	return c
}

// groups returns the sets whose part of the batch is not empty (hooks or
// inventory records), "" (hand-made hooks) first.
func (p Changeset) groups() []string {
	seen := map[string]bool{}
	for _, e := range p.Entries {
		switch e.Action {
		case ActionCreate, ActionUpdate, ActionDelete:
			if !p.refused(e.Set) {
				seen[e.Set] = true
			}
		}
	}
	if c := p.Inventory; c != nil {
		for _, r := range c.Put {
			seen[r.Set] = true
		}
		for _, set := range c.Forget {
			seen[set] = true
		}
	}
	return slices.Sorted(maps.Keys(seen))
}

// batchOf is the part of the plan's batch that concerns set, against
// revision rev.
func (p Changeset) batchOf(set string, rev uint64) hookctl.Batch {
	q := p
	q.Revision = rev
	q.Entries = slices.DeleteFunc(slices.Clone(p.Entries), func(e Entry) bool { return e.Set != set })
	q.Inventory = nil
	if c := p.Inventory; c != nil {
		var part hookctl.InventoryChange
		for _, r := range c.Put {
			if r.Set == set {
				part.Put = append(part.Put, r)
			}
		}
		if slices.Contains(c.Forget, set) {
			part.Forget = []string{set}
		}
		if len(part.Put)+len(part.Forget) > 0 {
			q.Inventory = &part
		}
	}
	return q.Batch()
}

// refuse marks set refused with err (the backend refused its batch).
func (p Changeset) refuse(set string, err error) {
	for i := range p.SetPlans {
		if p.SetPlans[i].Set == set {
			p.SetPlans[i].Err, p.SetPlans[i].Refused = err, err.Error()
		}
	}
}

// Err joins the reasons of every refused set, nil when none is.
func (p Changeset) Err() error {
	var errs []error
	for _, sp := range p.SetPlans {
		if sp.Err != nil {
			errs = append(errs, sp.Err)
		}
	}
	return errors.Join(errs...)
}

// inventoryChange is the records the plan's batch writes: each of our
// sets that is not refused and that the batch changes (or whose record is
// missing or out of date) gets its members after the batch and the
// source's revision (a gone set left without hooks is forgotten). Nil
// when nothing changes.
func (sc *scope) inventoryChange(p Changeset, opts Options) *hookctl.InventoryChange {
	if opts.Source == "" {
		return nil
	}
	members := map[string][]hookctl.Key{}
	for _, e := range p.Entries {
		if h := p.after(e); h != nil && sc.ours(h.Owner) {
			members[h.Owner] = append(members[h.Owner], h.Key)
		}
	}
	var c hookctl.InventoryChange
	for _, sp := range p.SetPlans {
		if sp.Err != nil || !sc.oursSet[sp.Set] {
			continue
		}
		old, had := sc.records[sp.Set]
		if sp.Gone && len(members[sp.Set]) == 0 {
			if had {
				c.Forget = append(c.Forget, sp.Set)
			}
			continue
		}
		r := hookctl.SetRecord{Set: sp.Set, Source: opts.Source, Revision: opts.SourceRevision, Members: members[sp.Set]}
		if sp.Gone {
			r.Revision = old.Revision // not applied from this revision
		}
		// A set the round does not change keeps its record (and the
		// revision it last changed at): an edit of one set writes one.
		changed := sp.Counts.Changes() > 0 || old.Revision == ""
		if !had || old.Source != r.Source || !slices.Equal(old.Members, r.Members) || changed && old.Revision != r.Revision {
			if r.Members == nil {
				r.Members = []hookctl.Key{}
			}
			c.Put = append(c.Put, r)
		}
	}
	if len(c.Put) == 0 && len(c.Forget) == 0 {
		return nil
	}
	return &c
}

// after is the hook an entry leaves in the registry once the batch is
// applied (nil: none).
func (p Changeset) after(e Entry) *hookctl.Hook {
	if p.refused(e.Set) {
		return e.Live
	}
	switch e.Action {
	case ActionCreate, ActionUpdate, ActionUnchanged:
		return e.Desired
	case ActionDelete:
		return nil
	}
	return e.Live
}
