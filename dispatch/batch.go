package dispatch

import (
	"context"
	"fmt"
	"slices"
	"time"

	"hookctl.dev/hookctl"
	"hookctl.dev/hookctl/runner"
)

// BatchRunner is a Runner that can take several queued events of its hook
// at once and run them in order, each still its own run (the python
// runner pipelines them to its worker, sparing a round trip per item).
// RunBatch calls done once per event, in order, with when its run started
// and its result; each run has its own timeout, counted from its start.
// It returns how many events got a result: all, unless ctx ended, when the
// rest are treated as jobs still queued.
type BatchRunner interface {
	runner.Runner
	RunBatch(ctx context.Context, timeout time.Duration, evs []*hookctl.Event, done func(i int, started time.Time, res runner.Result)) int
}

// maxBatch bounds the jobs handed to a BatchRunner at once.
const maxBatch = 64

// batching reports whether w hands its queued jobs over together: its
// runner takes batches and runs one at a time (with concurrency N, N
// goroutines share the queue instead).
func (w *worker) batching() (BatchRunner, bool) {
	br, ok := w.runner.(BatchRunner)
	return br, ok && w.conc == 1
}

// popMore appends to jobs the jobs queued behind the one just popped, up
// to maxBatch in all, without leaving when the queue is empty (pop does).
func (w *worker) popMore(jobs []job) []job {
	w.mu.Lock()
	defer w.mu.Unlock()
	for w.n > 0 && len(jobs) < maxBatch {
		jobs = append(jobs, w.buf[w.head])
		w.buf[w.head] = job{}
		w.head++
		if w.head == len(w.buf) {
			w.head = 0
		}
		w.n--
		w.d.m.depth.Dec()
	}
	return jobs
}

// executeBatch runs jobs (popped in order) through br; jobs it did not
// run (the hook's context ended) go through execute, which records them
// as a queued job then is.
func (d *Dispatcher) executeBatch(w *worker, br BatchRunner, jobs []job) {
	// Asked once per batch, when it is handed over (cluster mode).
	jobs = slices.DeleteFunc(jobs, d.refuse)
	if len(jobs) == 0 {
		return
	}
	if len(jobs) == 1 || w.ctx.Err() != nil {
		for _, j := range jobs {
			d.execute(w, j)
		}
		return
	}
	evs := make([]*hookctl.Event, len(jobs))
	for i, j := range jobs {
		evs[i] = j.ev
	}
	next := 0
	finish := func(i int, started time.Time, res runner.Result) {
		if i != next {
			return // not the next in order: a broken runner, caught below
		}
		next++
		d.finishJob(jobs[i], started, checkOutcome(res))
	}
	func() {
		defer func() {
			if p := recover(); p != nil {
				for next < len(jobs) {
					finish(next, time.Now(), runner.Result{Outcome: runner.Error, ExitCode: -1, Err: fmt.Errorf("runner panicked: %v", p)})
				}
			}
		}()
		br.RunBatch(w.ctx, w.timeout, evs, finish)
	}()
	for _, j := range jobs[next:] {
		d.execute(w, j)
	}
}

// finishJob records a job's run and tells who waits for it; the end of
// execute, for a run a BatchRunner made.
func (d *Dispatcher) finishJob(j job, started time.Time, res runner.Result) {
	r := d.record(j.ent, j.ev, started, time.Since(started), res, j.manual)
	if j.result != nil {
		j.result <- r
	}
	d.noteRunError(j.ent.hook.Key, res)
	j.tr.finish()
}
