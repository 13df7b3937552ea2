package dispatch

import (
	"context"
	"errors"
	"fmt"

	"hookctl.dev/hookctl"
)

// RunNow runs the hook with key k once on ev, asked by hand (manual says
// how: "trigger", "replay of 12"), through the hook's own queue: after
// the runs already queued, within its concurrency and timeout. It waits
// for the run and returns its record; if ctx ends first it returns ctx's
// error and the run still happens. A suspended hook, a hook without a
// runner or a full queue is an error, and nothing runs.
func (d *Dispatcher) RunNow(ctx context.Context, k hookctl.Key, ev hookctl.Event, manual string) (hookctl.Run, error) {
	if d.isClosed.Load() {
		return hookctl.Run{}, fmt.Errorf("%w: %v", hookctl.ErrUnavailable, errClosing)
	}
	e := d.snap.Load().entries[k]
	switch {
	case e == nil:
		return hookctl.Run{}, fmt.Errorf("%w: hook %s is not live (deleted, quarantined, or its filter does not compile: hookctl status)", hookctl.ErrNotFound, k)
	case e.suspended:
		return hookctl.Run{}, fmt.Errorf("%w: hook %s is suspended (hookctl hook resume)", hookctl.ErrInvalid, k)
	case e.w == nil:
		return hookctl.Run{}, fmt.Errorf("%w: hook %s cannot run: %s", hookctl.ErrUnavailable, k, e.runErr)
	}
	result := make(chan hookctl.Run, 1)
	evp := new(hookctl.Event)
	*evp = ev
	switch e.w.enqueue(job{ev: evp, ent: e, manual: manual, result: result}) {
	case full:
		return hookctl.Run{}, fmt.Errorf("%w: hook %s: %v", hookctl.ErrUnavailable, k, errQueueFull)
	case closed, gone:
		return hookctl.Run{}, fmt.Errorf("%w: hook %s changed meanwhile, try again", hookctl.ErrUnavailable, k)
	}
	select {
	case r := <-result:
		return r, nil
	case <-ctx.Done():
		return hookctl.Run{}, errors.Join(ctx.Err(), errors.New("the run goes on; see hookctl runs"))
	}
}
