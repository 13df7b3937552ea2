package reconcile

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"hookctl.dev/hookctl"
)

// ErrEmptySet refuses a plan that would delete every hook of a set because
// its desired hooks are empty (a truncated file, a bad checkout); it wraps
// hookctl.ErrInvalid. Pass AllowEmpty to mean it.
var ErrEmptySet = fmt.Errorf("%w: desired set is empty but the registry still holds its hooks (use --allow-empty to delete them)", hookctl.ErrInvalid)

// DefaultAttempts is how many times Apply plans and sends a batch before
// giving up on a registry that keeps changing under it.
const DefaultAttempts = 5

// ApplyOptions are Options plus what only applying needs.
type ApplyOptions struct {
	Options
	// DryRun computes the plan against the live registry and stops there.
	DryRun bool
	// AllowEmpty lets a set with no desired hooks delete its live hooks.
	AllowEmpty bool
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
	// Applied is true when a batch was sent and accepted.
	Applied bool
}

// EmptySets returns the sets that have no desired hook while live hooks
// they own exist: applying would delete all of them.
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

// Apply makes reg match desired: it lists the live hooks, plans, and sends
// the plan as one batch carrying the revision it was planned at. When the
// registry changed in between (hookctl.ErrStale) it lists and plans again,
// up to opts.Attempts times. Conflicting entries are not sent; the caller
// sees them in the result's plan.
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
		res.Plan = Plan(desired, live, rev, opts.Options)
		res.Revision = rev
		if !opts.AllowEmpty {
			if empty := EmptySets(desired, live, res.Plan.Sets); len(empty) > 0 {
				return res, fmt.Errorf("set %s: %w", strings.Join(empty, ", "), ErrEmptySet)
			}
		}
		b := res.Plan.Batch()
		if opts.DryRun || b.Empty() {
			return res, nil
		}
		newRev, err := reg.Apply(ctx, b)
		if errors.Is(err, hookctl.ErrStale) {
			continue
		}
		if err != nil {
			return res, fmt.Errorf("applying plan: %w", err)
		}
		res.Revision, res.Applied = newRev, true
		return res, nil
	}
	return res, fmt.Errorf("applying plan: gave up after %d attempts: %w", attempts, hookctl.ErrStale)
}
