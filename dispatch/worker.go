package dispatch

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"hookctl.dev/hookctl"
	"hookctl.dev/hookctl/runner"
)

// errClosing is the error of runs that never started because the
// dispatcher was closing.
var errClosing = errors.New("dispatcher closing")

// job is one event waiting for one hook.
type job struct {
	ev  *hookctl.Event // shared by every hook the event reached; read-only
	ent *entry
	tr  *tracker // nil when the caller wants no completion callback
	// manual, for runs asked by hand (RunNow), says by whom; result then
	// receives the run recorded (buffered: never blocks).
	manual string
	result chan<- hookctl.Run
}

// enqueueResult says what became of a job handed to a worker.
type enqueueResult int

const (
	queued enqueueResult = iota
	full                 // the queue is full: the job is dropped
	gone                 // the hook was removed meanwhile: the job is not for it any more
	closed               // the dispatcher is closing
)

// worker owns one hook's runner and its bounded FIFO queue. Goroutines are
// started on demand, up to conc, and exit when the queue is empty, so that
// 10,000 idle hooks cost no goroutines; with conc 1 at most one goroutine
// runs at a time, which keeps runs in arrival order.
type worker struct {
	d    *Dispatcher
	hook hookctl.Hook // the hook the runner was made for
	// ctx is the parent of this hook's runs, a child of the dispatcher's.
	// Runs derive from it rather than from the dispatcher's context so that
	// registering a run's timeout touches only this hook's few children,
	// not one map shared by every run in flight.
	ctx     context.Context
	cancel  context.CancelFunc
	runner  runner.Runner
	timeout time.Duration
	conc    int
	max     int // queue capacity
	tm      *typeMetrics
	// after, when set, is the drained channel of the worker this one
	// replaces: runs wait for it so that an attribute change does not let
	// new events overtake old ones.
	after <-chan struct{}
	// drained is closed once the worker is closed, its queue empty and
	// every goroutine gone; then its runner may be closed.
	drained chan struct{}

	dropsUnlogged atomic.Int64
	lastDropLog   atomic.Int64 // unix nanoseconds

	mu       sync.Mutex
	buf      []job // ring buffer, grows up to max
	head, n  int
	active   int  // goroutines running
	isClosed bool // accepts no more jobs
	isGone   bool // closed because the hook was removed or replaced (not Close)
	succ     *worker
	signaled bool // drained is closed
}

func newWorker(d *Dispatcher, h hookctl.Hook, r runner.Runner, tm *typeMetrics) *worker {
	timeout := time.Duration(h.Timeout)
	if timeout <= 0 {
		timeout = d.opts.DefaultTimeout
	}
	ctx, cancel := context.WithCancel(d.ctx)
	return &worker{
		d:       d,
		hook:    h,
		ctx:     ctx,
		cancel:  cancel,
		runner:  r,
		timeout: timeout,
		conc:    max(1, h.Concurrency),
		max:     d.opts.QueueSize,
		tm:      tm,
		drained: make(chan struct{}),
	}
}

// enqueue adds j without blocking. A closed worker forwards to its
// successor (the same hook with new attributes), so that a Dispatch racing
// SetHooks still reaches the hook.
func (w *worker) enqueue(j job) enqueueResult {
	for {
		w.mu.Lock()
		if !w.isClosed {
			break
		}
		succ, isGone := w.succ, w.isGone
		w.mu.Unlock()
		if succ == nil {
			if isGone {
				return gone
			}
			return closed
		}
		w = succ
	}
	if w.n == w.max {
		w.mu.Unlock()
		return full
	}
	w.push(j)
	w.d.m.depth.Inc() // before a run goroutine can take it and Dec
	spawn := w.active < w.conc
	if spawn {
		w.active++
	}
	w.mu.Unlock()
	if spawn {
		w.d.startGoroutine(w)
	}
	return queued
}

// idleTime is how long a goroutine whose queue ran empty waits for another
// worker to serve before it exits.
const idleTime = 2 * time.Second

// startGoroutine has a goroutine run w's queue: an idle one if any, else a
// new one. Reusing goroutines spares each burst a goroutine start and the
// growth of its stack, which cost more than dispatching itself. A new
// goroutine cannot be started after Close has waited for w to drain, since
// w's active count (raised by the caller) keeps it from draining until the
// goroutine has run.
func (d *Dispatcher) startGoroutine(w *worker) {
	select {
	case d.handoff <- w:
	default:
		d.gwg.Add(1)
		go d.serve(w)
	}
}

// serve runs w's queue, then waits up to idleTime for another worker.
func (d *Dispatcher) serve(w *worker) {
	defer d.gwg.Done()
	var t *time.Timer
	for {
		w.loop()
		if t == nil {
			t = time.NewTimer(idleTime)
		} else {
			t.Reset(idleTime)
		}
		select {
		case w = <-d.handoff:
		case <-t.C:
			return
		case <-d.quit:
			t.Stop()
			return
		}
	}
}

// push appends j to the ring, growing it (doubling, up to max) when full.
// The caller holds mu and has checked n < max.
func (w *worker) push(j job) {
	if w.n == len(w.buf) {
		nb := make([]job, min(max(8, 2*len(w.buf)), w.max))
		for i := range w.n {
			nb[i] = w.buf[(w.head+i)%len(w.buf)]
		}
		w.buf, w.head = nb, 0
	}
	i := w.head + w.n
	if i >= len(w.buf) {
		i -= len(w.buf)
	}
	w.buf[i] = j
	w.n++
}

// pop takes the oldest job; when the queue is empty the calling goroutine
// leaves (active is decremented) and pop reports false.
func (w *worker) pop() (job, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.n == 0 {
		w.active--
		w.signalLocked()
		return job{}, false
	}
	j := w.buf[w.head]
	w.buf[w.head] = job{} // drop references for the GC
	w.head++
	if w.head == len(w.buf) {
		w.head = 0
	}
	w.n--
	return j, true
}

// signalLocked closes drained once nothing can run any more.
func (w *worker) signalLocked() {
	if w.isClosed && w.active == 0 && w.n == 0 && !w.signaled {
		w.signaled = true
		close(w.drained)
	}
}

// close stops accepting jobs; queued ones still run (or are skipped as
// dropped when the dispatcher's context has ended). succ, when not nil,
// receives the jobs of Dispatch calls racing the close; isGone says the hook
// left the live set (as opposed to the dispatcher closing).
func (w *worker) close(succ *worker, isGone bool) {
	w.mu.Lock()
	if !w.isClosed {
		w.isClosed, w.succ, w.isGone = true, succ, isGone
	}
	w.signalLocked()
	w.mu.Unlock()
}

func (w *worker) loop() {
	if w.after != nil {
		<-w.after
	}
	br, batching := w.batching()
	var jobs []job // reused from batch to batch
	for {
		j, ok := w.pop()
		if !ok {
			return
		}
		w.d.m.depth.Dec()
		if batching {
			jobs = w.popMore(append(jobs[:0], j))
			w.d.executeBatch(w, br, jobs)
			clear(jobs)
			continue
		}
		w.d.execute(w, j)
	}
}

// execute runs one job and records it.
func (d *Dispatcher) execute(w *worker, j job) {
	started := time.Now()
	var res runner.Result
	if d.refuse(j) {
		return
	}
	if w.ctx.Err() != nil {
		res = runner.Result{Outcome: runner.Dropped, ExitCode: -1, Err: errClosing}
	} else {
		ctx, cancel := context.WithTimeout(w.ctx, w.timeout)
		res = safeRun(ctx, w.runner, j.ev)
		// A runner that returns after its deadline without saying so
		// (or that reports the context error as a failure) still timed out.
		if res.Outcome != runner.OK && errors.Is(ctx.Err(), context.DeadlineExceeded) {
			res.Outcome = runner.Timeout
			if res.Err == nil {
				res.Err = fmt.Errorf("timed out after %s", w.timeout)
			}
		}
		cancel()
	}
	d.finishJob(j, started, res)
}

// safeRun calls r.Run and turns a panic into an Error result, so that a
// broken runner cannot take the backend down.
func safeRun(ctx context.Context, r runner.Runner, ev *hookctl.Event) (res runner.Result) {
	defer func() {
		if p := recover(); p != nil {
			res = runner.Result{Outcome: runner.Error, ExitCode: -1, Err: fmt.Errorf("runner panicked: %v", p)}
		}
	}()
	return checkOutcome(r.Run(ctx, *ev))
}

// checkOutcome gives a result without an outcome one, and makes one with
// an unknown outcome an Error.
func checkOutcome(res runner.Result) runner.Result {
	switch res.Outcome {
	case runner.OK, runner.Failed, runner.Timeout, runner.Error, runner.Dropped, runner.Skipped:
	case "":
		res.Outcome = runner.OK
		if res.Err != nil {
			res.Outcome = runner.Failed
		}
	default:
		res = runner.Result{Outcome: runner.Error, ExitCode: res.ExitCode, Output: res.Output,
			Err: fmt.Errorf("runner returned unknown outcome %q (error: %v)", res.Outcome, res.Err)}
	}
	return res
}

// logDrop logs a drop at most once a second per hook, with how many drops
// were not logged since, so that a flood stays visible without flooding.
func (w *worker) logDrop(log *slog.Logger, ev *hookctl.Event) {
	n := w.dropsUnlogged.Add(1)
	now := time.Now().UnixNano()
	last := w.lastDropLog.Load()
	if now-last < int64(time.Second) || !w.lastDropLog.CompareAndSwap(last, now) {
		return
	}
	w.dropsUnlogged.Add(-n)
	log.Warn("hook queue full, event dropped",
		"hook", w.hook.Key.String(), "name", w.hook.Name,
		"event", ev.Kind, "item_id", ev.ItemID,
		"queue_size", w.max, "dropped", n)
}

// tracker calls an event's completion callback once every hook it reached
// has ended. pending starts at 1 for Dispatch itself, so the callback cannot
// fire before Dispatch knows how many hooks matched.
type tracker struct {
	pending   atomic.Int32
	abandoned atomic.Bool
	matched   int
	done      func(matched int)
}

func (t *tracker) add() {
	if t != nil {
		t.pending.Add(1)
	}
}

func (t *tracker) finish() {
	if t != nil && t.pending.Add(-1) == 0 && !t.abandoned.Load() {
		t.done(t.matched)
	}
}

// abandon ends one run of the event without its completion: the event is
// not finished here (another backend will run it).
func (t *tracker) abandon() {
	if t != nil {
		t.abandoned.Store(true)
		t.pending.Add(-1)
	}
}

// refuse records j as skipped when this backend may not run it (cluster
// mode: Options.MayRun) and reports whether it did; the event is then not
// finished here. Runs by hand are the operator's, and always run.
func (d *Dispatcher) refuse(j job) bool {
	if d.opts.MayRun == nil || j.manual != "" || d.opts.MayRun(j.ev) {
		return false
	}
	d.record(j.ent, j.ev, time.Now(), 0, runner.Result{Outcome: Skipped, ExitCode: -1, Err: errNotHeld}, "")
	j.tr.abandon()
	return true
}

// errNotHeld is why a run was skipped in cluster mode.
var errNotHeld = errors.New("skipped: this replica no longer holds the profile; its new holder runs the item")
