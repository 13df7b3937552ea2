package reconcile

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"hookctl.dev/hookctl"
)

// DefaultAttempts is how many times Apply plans and sends a batch before
// giving up on a registry that keeps changing under it.
const DefaultAttempts = 5

// ApplyOptions are Options plus what only applying needs.
type ApplyOptions struct {
	Options
	// DryRun computes the plan against the live registry and stops there.
	DryRun bool
	// Attempts bounds plan-and-send rounds on ErrStale (DefaultAttempts if 0).
	Attempts int
}

// Result is what Apply did.
type Result struct {
	// Plan is the plan that was applied (or would be, with DryRun).
	Plan Changeset
	// Revision is the registry revision after the batch (the plan's
	// revision when nothing was sent).
	Revision uint64
	// Attempts is how many plans were computed (1 unless the registry
	// changed concurrently).
	Attempts int
	// Applied is true when a batch changing hooks was sent and accepted.
	Applied bool
	// Refused is Plan.Err(): why some sets' changes were not sent (the
	// others' were). Apply returns this very error, so that callers can
	// tell a partial round (err == res.Refused) from a failed one.
	Refused error
}

// EmptySets returns the sets that have no desired hook while live hooks
// they own exist: pruning would delete all of them.
func EmptySets(desired, live []hookctl.Hook, sets []string) []string {
	has := make(map[string]bool, len(sets))
	for _, h := range desired {
		has[h.Owner] = true
	}
	var out []string
	for _, h := range live {
		if h.Owner != "" && slices.Contains(sets, h.Owner) && !has[h.Owner] && !slices.Contains(out, h.Owner) {
			out = append(out, h.Owner)
		}
	}
	slices.Sort(out)
	return out
}

// Apply makes reg match desired: it lists the live hooks (and, with a
// Source, the inventory), plans, and sends the plan as one batch carrying
// the revision it was planned at. When the registry changed in between
// (hookctl.ErrStale) it lists and plans again, up to opts.Attempts times.
// Conflicting entries are not sent; the caller sees them in the result's
// plan. The entries of refused sets are not sent either: the other sets'
// changes are applied, and the error (Changeset.Err) names each refused
// set and why.
func Apply(ctx context.Context, reg hookctl.Registry, desired []hookctl.Hook, opts ApplyOptions) (Result, error) {
	attempts := opts.Attempts
	if attempts <= 0 {
		attempts = DefaultAttempts
	}
	var res Result
	for res.Attempts < attempts {
		res.Attempts++
		live, rev, err := reg.List(ctx, "")
		if err != nil {
			return res, fmt.Errorf("listing live hooks: %w", err)
		}
		popts := opts.Options
		if popts.Source != "" {
			inv, invRev, err := readInventory(ctx, reg)
			switch {
			case errors.Is(err, hookctl.ErrNotFound):
				// A registry (an older backend) without an inventory:
				// plan as before it, by the declared sets alone.
				popts.Source = ""
			case err != nil:
				return res, err
			case invRev != rev:
				continue // the registry moved between the two reads
			default:
				popts.Inventory = inv
			}
		}
		res.Plan = Plan(desired, live, rev, popts)
		res.Revision = rev
		b := res.Plan.Batch()
		res.Refused = res.Plan.Err()
		if opts.DryRun || (b.Empty() && b.Inventory == nil) {
			return res, res.Refused
		}
		newRev, err := reg.Apply(ctx, b)
		if err != nil && perSetWorthIt(ctx, err, res.Plan) {
			// The backend refused a hook (a missing script, a type not
			// allowed): that set must not hold back the others.
			newRev, err = applyPerSet(ctx, reg, &res)
			if err == nil {
				res.Revision = newRev
				return res, res.Refused
			}
		}
		if errors.Is(err, hookctl.ErrStale) {
			continue
		}
		if err != nil {
			return res, fmt.Errorf("applying plan: %w", err)
		}
		// Applied says hooks changed; a batch of inventory records only
		// moves the revision.
		res.Revision, res.Applied = newRev, !b.Empty()
		return res, res.Refused
	}
	return res, fmt.Errorf("applying plan: gave up after %d attempts: %w", attempts, hookctl.ErrStale)
}

// readInventory reads the registry's set records.
func readInventory(ctx context.Context, reg hookctl.Registry) ([]hookctl.SetRecord, uint64, error) {
	ir, ok := reg.(hookctl.InventoryReader)
	if !ok {
		return nil, 0, fmt.Errorf("%w: this registry keeps no inventory of sets", hookctl.ErrNotFound)
	}
	inv, rev, err := ir.Inventory(ctx)
	if err != nil {
		return nil, 0, fmt.Errorf("reading the inventory of sets: %w", err)
	}
	return inv, rev, nil
}

// perSetWorthIt reports whether a refused batch should be sent again one
// set at a time: the backend refused its content (not a stale revision,
// an unreachable backend or a cancelled context), and more than one set
// has changes in it.
func perSetWorthIt(ctx context.Context, err error, p Changeset) bool {
	if ctx.Err() != nil || errors.Is(err, hookctl.ErrStale) || errors.Is(err, hookctl.ErrUnavailable) {
		return false
	}
	return len(p.groups()) > 1
}

// applyPerSet sends the plan as one batch per set (hand-made hooks'
// deletions first, then the sets by name), each against the revision
// the previous one left. A set whose batch is refused is marked refused
// with the backend's reason; the others are applied. A stale revision or
// an unreachable backend stops it with that error (Apply then plans
// again from the registry as it is).
func applyPerSet(ctx context.Context, reg hookctl.Registry, res *Result) (uint64, error) {
	rev := res.Plan.Revision
	for _, set := range res.Plan.groups() {
		b := res.Plan.batchOf(set, rev)
		newRev, err := reg.Apply(ctx, b)
		switch {
		case err == nil:
			rev = newRev
			res.Applied = res.Applied || !b.Empty()
		case set == "" || ctx.Err() != nil || errors.Is(err, hookctl.ErrStale) || errors.Is(err, hookctl.ErrUnavailable):
			return rev, err
		default:
			res.Plan.refuse(set, fmt.Errorf("set %s: the backend refused its changes: %w", set, err))
		}
	}
	res.Refused = res.Plan.Err()
	return rev, nil
}
