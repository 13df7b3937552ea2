package daemon

import (
	"context"
	"fmt"
	"time"

	"hookctl.dev/hookctl"
	"hookctl.dev/hookctl/dispatch"
	"hookctl.dev/hookctl/registry"
	"hookctl.dev/hookctl/runlog"
)

// openRunLog sets up the durable run history (unless the options keep runs
// in memory only) and has the dispatcher feed it, its IDs going on from
// the last stored run.
func (d *Daemon) openRunLog(o *dispatch.Options) error {
	if d.memoryRuns {
		return nil
	}
	last, err := d.store.LastRunID()
	if err != nil {
		return fmt.Errorf("reading run history: %w", err)
	}
	lim := registry.RunLimits{Keep: d.cfg.RunsKeep, MaxAge: time.Duration(d.cfg.RunsMaxAge)}
	d.runlog = runlog.New(d.store, lim, d.log)
	o.LastRunID = last
	o.OnRun = d.runlog.Add
	return nil
}

// Runs returns recent runs, newest first: from the durable history, or
// the dispatcher's memory when there is none.
// A list leaves out each run's event (runs show has it).
func (d *Daemon) Runs(ctx context.Context, q hookctl.RunQuery) ([]hookctl.Run, error) {
	var runs []hookctl.Run
	switch {
	case d.runlog != nil:
		var err error
		if runs, err = d.runlog.Query(q); err != nil {
			return nil, err
		}
	case d.dispatcher != nil:
		runs = d.dispatcher.Runs(q)
	}
	for i := range runs {
		runs[i].Input = nil
		runs[i] = d.redactRun(runs[i])
	}
	return runs, nil
}

// GetRun returns one run of the history in full.
func (d *Daemon) GetRun(ctx context.Context, id uint64) (hookctl.Run, error) {
	if d.runlog != nil {
		r, err := d.runlog.Get(id)
		return d.redactRun(r), err
	}
	for _, r := range d.dispatcher.Runs(hookctl.RunQuery{Limit: dispatch.DefaultHistory}) {
		if r.ID == id {
			return d.redactRun(r), nil
		}
	}
	return hookctl.Run{}, fmt.Errorf("%w: run %d (not in the history)", hookctl.ErrNotFound, id)
}
