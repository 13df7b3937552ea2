package python

import (
	"context"
	"errors"
	"time"

	"hookctl.dev/hookctl"
	"hookctl.dev/hookctl/runner"
)

// Pipelining. When several items of a hook are queued, the dispatcher
// hands them over together (RunBatch) and their run frames go to the
// worker in one write; the worker runs them in order and answers each as
// before (its marker on fd 1, then its done frame), while the next frame
// is already in its buffer. This spares a round trip between the two
// processes per item, and the worker the wake-up and read before each.
//
// Each item stays its own run: its own result, output, traceback and
// timings, and its own timeout, counted from when its run started (the
// answer to the one before it arrived, for all but the first). A run
// that ends its worker (timeout, crash) ends as a lone run would; the
// items sent after it had not started (the worker takes the next frame
// once it has answered), and run again, in order, on the next worker, as
// queued items would. After garbage on the protocol pipe the worker is
// killed at once: there, the item after the garbled answer may have begun
// before it runs again.

// Bounds of one pipelined write: the frames must fit in the pipe (64 KiB
// on Linux, one page when the user has too many pipes; half of it is
// used) so that the write does not wait for the worker, which may be
// writing log frames that nobody reads meanwhile.
const (
	maxPipelined      = 64
	maxPipelinedBytes = 32 << 10
)

// RunBatch runs evs in order, as Run would one after the other with a
// timeout each, and calls done once per item, in order, as soon as its
// result is known. It returns how many items got a result: all of them,
// unless ctx ended (the hook removed, the backend stopping), when the
// caller deals with the rest as with jobs still queued.
func (r *pyRunner) RunBatch(ctx context.Context, timeout time.Duration, evs []*hookctl.Event, done func(i int, started time.Time, res runner.Result)) int {
	if timeout <= 0 {
		timeout = r.timeout()
	}
	i := 0
	for i < len(evs) && ctx.Err() == nil {
		base := i
		i += r.runSome(ctx, timeout, evs[i:], func(j int, started time.Time, res runner.Result) {
			done(base+j, started, res)
		})
	}
	return i
}

// runSome runs evs[0] and as many of the following items as it can
// pipeline behind it; it returns how many got their result (at least one).
func (r *pyRunner) runSome(ctx context.Context, timeout time.Duration, evs []*hookctl.Event, done func(int, time.Time, runner.Result)) int {
	started := time.Now()
	ctx0, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	n := r.pipelinable(evs)
	if n < 2 {
		done(0, started, timedOut(ctx0, r.Run(ctx0, *evs[0])))
		return 1
	}
	limit := timeout.Round(time.Millisecond)
	s, res := r.takeSlot(ctx0, limit)
	if s == nil {
		done(0, started, res)
		return 1
	}
	defer func() { r.slots <- s }()
	if !r.acquire(s) {
		done(0, started, errorResult(errClosed))
		return 1
	}
	defer r.release(s)
	w, loadOut, res := r.ready(ctx0, s, limit)
	if w == nil {
		done(0, started, timedOut(ctx0, res))
		return 1
	}
	n = r.encodeRuns(w, evs[:n])
	sendErr := w.sendRaw(w.buf)
	r.pipelined.Add(int64(n - 1))
	for i, ev := range evs[:n] {
		ctxi, cancel := ctx0, context.CancelFunc(func() {})
		if i > 0 {
			started = time.Now()
			ctxi, cancel = context.WithTimeout(ctx, timeout)
		}
		var res runner.Result
		if sendErr != nil {
			res = r.died(ctxi, s, w, "", limit)
		} else {
			res = r.runOne(ctxi, s, w, ev, limit, true)
		}
		if i == 0 && loadOut != "" {
			res.Output = runner.Tail(loadOut+res.Output, runner.OutputTail)
		}
		res = timedOut(ctxi, res)
		cancel()
		done(i, started, res)
		s.mu.Lock()
		gone := s.w != w
		s.mu.Unlock()
		if gone || !w.alive() {
			// The worker went with this run: the items after it never
			// started; the next call runs them on a new worker.
			return i + 1
		}
	}
	return n
}

// pipelinable is how many of evs, from the first, may go to the worker in
// one write: up to maxPipelined, up to an item this hook published itself
// (skipped, see Run, and not to be sent); 0 or 1 means one run.
func (r *pyRunner) pipelinable(evs []*hookctl.Event) int {
	if r.closed.Load() {
		return 0
	}
	for i, ev := range evs {
		if i == maxPipelined {
			return i
		}
		if ev.Kind == hookctl.EventPublish && r.self.has(ev.Service, ev.Node, ev.ItemID) {
			return i
		}
	}
	return len(evs)
}

// encodeRuns encodes the run frames of evs into w.buf, as many as fit in
// maxPipelinedBytes and half of w's pipe (the first always), and returns
// how many.
func (r *pyRunner) encodeRuns(w *worker, evs []*hookctl.Event) int {
	limit := min(maxPipelinedBytes, w.toCap/2)
	w.buf = w.buf[:0]
	for i, ev := range evs {
		before := len(w.buf)
		w.buf = r.appendRun(w.buf, ev)
		if i > 0 && len(w.buf) > limit {
			w.buf = w.buf[:before]
			return i
		}
	}
	return len(evs)
}

// timedOut makes a run that did not succeed and ended after its deadline
// a Timeout, as the dispatcher does for a lone run.
func timedOut(ctx context.Context, res runner.Result) runner.Result {
	if res.Outcome != runner.OK && res.Outcome != runner.Timeout && errors.Is(ctx.Err(), context.DeadlineExceeded) {
		res.Outcome = runner.Timeout
	}
	return res
}
