// Package dispatch routes PubSub events to the hooks that match them and
// runs those hooks: an immutable index of live hooks swapped atomically,
// per-hook bounded queues, concurrency limits, timeouts and a run history.
package dispatch

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"hookctl.dev/hookctl"
	"hookctl.dev/hookctl/filter"
	"hookctl.dev/hookctl/rules"
	"hookctl.dev/hookctl/runner"
)

// Defaults of Options.
const (
	DefaultQueueSize = 1024
	DefaultHistory   = 10000
)

// Options configure a Dispatcher. Zero values mean the defaults.
type Options struct {
	// Factories makes the runner of each hook type. A hook whose type has
	// none stays in the index and every event it matches is recorded as an
	// Error run ("no runner for type"), so the problem is visible.
	Factories map[hookctl.Type]runner.Factory
	// Host is handed to every runner.
	Host runner.Host
	// Logger receives failed runs (Warn), drops (Warn) and successes
	// (Debug); nil discards.
	Logger *slog.Logger
	// QueueSize bounds the runs waiting per hook (default 1024).
	QueueSize int
	// DefaultTimeout bounds a run whose hook sets no timeout
	// (default runner.DefaultTimeout).
	DefaultTimeout time.Duration
	// History is how many runs are kept in memory (default 10000).
	History int
	// Metrics, when set, receives the dispatcher's collectors.
	Metrics prometheus.Registerer
	// HooksRoot is where relative python_file and exec paths (hooks
	// declared in files) are found; see rules.Resolve.
	HooksRoot string
	// HookMetrics adds hookctl_hook_runs_total{set,name,outcome} for named
	// hooks: off by default, as its cardinality is the user's to bound.
	HookMetrics bool
	// CheckScript, when set, may refuse the resolved script or program of
	// a python_file or exec hook before its runner starts (the backend
	// passes rules.ScriptFile); a refused hook is reported, not run.
	CheckScript func(path string, executable bool) error
	// OnRun, when set, receives every run recorded, its ID assigned (the
	// durable history). It is called on run goroutines and must not block.
	OnRun func(hookctl.Run)
	// LastRunID is the ID the run IDs go on from (the durable history's
	// last, so that IDs stay unique across restarts).
	LastRunID uint64
	// MayRun, when set, is asked just before each run whether this
	// backend may still run the event (cluster mode: it holds the
	// profile, and received the event while holding it): a run it may not
	// is recorded as skipped and its item is not marked finished, so that
	// the profile's holder runs it.
	MayRun func(ev *hookctl.Event) bool
}

// Dispatcher routes events to hooks. Its methods are safe for concurrent use.
type Dispatcher struct {
	opts Options
	log  *slog.Logger
	m    *metrics
	hist *history

	// ctx is the parent of every run; cancelled when Close's context ends.
	ctx    context.Context
	cancel context.CancelFunc

	snap     atomic.Pointer[snapshot]
	isClosed atomic.Bool

	mu       sync.Mutex           // serialises SetHooks and Close
	retiring map[*worker]struct{} // workers draining before their runner is closed
	// retiredByKey is the last removed worker of each key still draining.
	retiredByKey map[hookctl.Key]*worker
	wg           sync.WaitGroup // retire goroutines

	// runErrs holds, per hook, why its last run could not start (outcome
	// error: a Python file that stopped loading, a program that vanished),
	// until a run starts again: reported by HookErrors.
	runErrs sync.Map // hookctl.Key → string

	handoff chan *worker   // idle run goroutines wait here for work
	quit    chan struct{}  // closed by Close: idle goroutines exit
	gwg     sync.WaitGroup // run goroutines
}

// nodeKey is what an event is routed by.
type nodeKey struct{ profile, service, node string }

// snapshot is an immutable view of the live hooks. Dispatch reads it
// without locks; SetHooks builds a new one and swaps it in.
type snapshot struct {
	index   map[nodeKey][]*entry
	entries map[hookctl.Key]*entry
	workers map[hookctl.Key]*worker
	errs    []hookctl.HookError
}

// entry is one live hook as Dispatch sees it.
type entry struct {
	hook   hookctl.Hook
	kinds  uint8 // bit set of kindBit
	filter *filter.Filter
	tm     *typeMetrics
	w      *worker // nil when the hook has no runner; then runErr says why
	runErr string
	// suspended hooks have no runner: their events are recorded as
	// skipped runs.
	suspended bool
}

// runner is the entry's runner, nil when it has none.
func (e *entry) runner() runner.Runner {
	if e.w == nil {
		return nil
	}
	return e.w.runner
}

func kindBit(k hookctl.EventKind) uint8 {
	switch k {
	case hookctl.EventPublish:
		return 1
	case hookctl.EventRetract:
		return 2
	case hookctl.EventPurge:
		return 4
	case hookctl.EventDelete:
		return 8
	}
	return 0
}

// New returns a Dispatcher with no hooks.
func New(opts Options) *Dispatcher {
	if opts.QueueSize <= 0 {
		opts.QueueSize = DefaultQueueSize
	}
	if opts.DefaultTimeout <= 0 {
		opts.DefaultTimeout = runner.DefaultTimeout
	}
	if opts.History <= 0 {
		opts.History = DefaultHistory
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	ctx, cancel := context.WithCancel(context.Background())
	d := &Dispatcher{
		opts:         opts,
		log:          log,
		m:            newMetrics(opts.Metrics, log),
		hist:         newHistory(opts.History, opts.LastRunID),
		ctx:          ctx,
		cancel:       cancel,
		retiring:     make(map[*worker]struct{}),
		retiredByKey: make(map[hookctl.Key]*worker),
		handoff:      make(chan *worker),
		quit:         make(chan struct{}),
	}
	if opts.HookMetrics {
		d.m.enableHookMetrics(opts.Metrics, log)
	}
	d.snap.Store(&snapshot{
		index:   map[nodeKey][]*entry{},
		entries: map[hookctl.Key]*entry{},
		workers: map[hookctl.Key]*worker{},
	})
	return d
}

// SetHooks makes hooks the live set. It builds a new index, compiles
// filters (a hook whose filter does not compile is kept out and reported by
// HookErrors), starts runners for new or changed hooks, keeps the runners
// and queues of unchanged ones, and retires the others: their queued runs
// finish in the background, then their runners are closed. A changed hook's
// new runner starts only after the old one's queue is done, so events stay
// in order. SetHooks after Close does nothing.
func (d *Dispatcher) SetHooks(hooks []hookctl.Hook) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.isClosed.Load() {
		return
	}
	old := d.snap.Load()
	next := &snapshot{
		index:   make(map[nodeKey][]*entry),
		entries: make(map[hookctl.Key]*entry, len(hooks)),
		workers: make(map[hookctl.Key]*worker, len(hooks)),
	}
	// Sorted by key so that hooks sharing a node run in a stable order.
	compiled := make(map[string]*filter.Filter) // one compile per distinct filter
	sorted := slices.Clone(hooks)
	slices.SortStableFunc(sorted, func(a, b hookctl.Hook) int { return a.Key.Compare(b.Key) })
	for _, h := range sorted {
		if _, dup := next.entries[h.Key]; dup {
			next.errs = append(next.errs, hookctl.HookError{Hook: h.Key, Error: "duplicate hook key: kept the first"})
			continue
		}
		if h.Quarantined != "" {
			next.errs = append(next.errs, hookctl.HookError{Hook: h.Key, Error: "quarantined, not run: " + h.Quarantined})
			continue
		}
		e, err := d.newEntry(h, old.entries[h.Key], compiled)
		if err != nil {
			next.errs = append(next.errs, hookctl.HookError{Hook: h.Key, Error: err.Error()})
			continue
		}
		if h.Suspended {
			e.suspended = true
			next.entries[h.Key] = e
			nk := nodeKey{h.Profile, h.Service, h.Node}
			next.index[nk] = append(next.index[nk], e)
			continue // its old worker, if any, is retired below
		}
		ow := old.workers[h.Key]
		if ow != nil && ow.hook.SameAttributes(h) {
			e.w = ow
		} else if e.w, err = d.startWorker(h); err != nil {
			e.runErr = err.Error()
			next.errs = append(next.errs, hookctl.HookError{Hook: h.Key, Error: e.runErr})
		}
		if e.w != nil {
			next.workers[h.Key] = e.w
			// A new runner waits for the previous one of the same key, still
			// live or removed a moment ago, so that runs never overlap or
			// reorder across the change. Set before the worker is published.
			if ow != nil && ow != e.w {
				e.w.after = ow.drained
			} else if ow == nil && d.retiredByKey[h.Key] != nil {
				e.w.after = d.retiredByKey[h.Key].drained
			}
		}
		next.entries[h.Key] = e
		nk := nodeKey{h.Profile, h.Service, h.Node}
		next.index[nk] = append(next.index[nk], e)
	}
	d.snap.Store(next)
	for k, ow := range old.workers {
		if nw := next.workers[k]; nw != ow {
			d.retire(ow, nw)
		}
	}
}

// newEntry builds h's index entry, reusing the compiled filter of the
// previous entry for the same key, or of another hook, when the filter text
// is the same (a compiled filter is safe for concurrent use).
func (d *Dispatcher) newEntry(h hookctl.Hook, prev *entry, compiled map[string]*filter.Filter) (*entry, error) {
	e := &entry{hook: h, tm: d.m.forType(h.Type)}
	for _, k := range h.EffectiveEvents() {
		e.kinds |= kindBit(k)
	}
	if prev != nil && prev.hook.Filter == h.Filter {
		e.filter = prev.filter
		return e, nil
	}
	if f, ok := compiled[h.Filter]; ok {
		e.filter = f
		return e, nil
	}
	f, err := filter.Compile(h.Filter)
	if err != nil {
		var fe *filter.Error
		if errors.As(err, &fe) {
			return nil, errors.New("filter: line " + strconv.Itoa(fe.Line) + ", column " + strconv.Itoa(fe.Column) + ": " + fe.Message)
		}
		return nil, errors.New("filter: " + err.Error())
	}
	e.filter = f
	compiled[h.Filter] = f
	return e, nil
}

// startWorker makes the runner of h.
func (d *Dispatcher) startWorker(h hookctl.Hook) (*worker, error) {
	f := d.opts.Factories[h.Type]
	if f == nil {
		return nil, errors.New("no runner for type " + string(h.Type))
	}
	run := h // the runner gets the path resolved; runs keep the hook's key
	if h.Type.TakesPath() {
		p, err := rules.Resolve(h.Arg, d.opts.HooksRoot)
		if err != nil {
			return nil, err
		}
		if d.opts.CheckScript != nil {
			if err := d.opts.CheckScript(p, h.Type == hookctl.TypeExec); err != nil {
				return nil, err
			}
		}
		run.Arg = p
	}
	r, err := f.New(run, d.opts.Host)
	if err != nil {
		return nil, errors.New("starting runner: " + err.Error())
	}
	return newWorker(d, h, r, d.m.forType(h.Type)), nil
}

// retire closes w to new jobs (forwarding racing ones to succ, if any) and,
// in the background, closes its runner once its queue has drained.
// The caller holds d.mu.
func (d *Dispatcher) retire(w, succ *worker) {
	w.close(succ, true)
	d.retiring[w] = struct{}{}
	if succ == nil {
		d.retiredByKey[w.hook.Key] = w
	}
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		<-w.drained
		w.cancel()
		if err := w.runner.Close(); err != nil {
			d.log.Warn("closing hook runner", "hook", w.hook.Key.String(), "error", err)
		}
		d.mu.Lock()
		delete(d.retiring, w)
		if d.retiredByKey[w.hook.Key] == w {
			delete(d.retiredByKey, w.hook.Key)
		}
		d.mu.Unlock()
	}()
}

// Dispatch routes ev to the hooks on exactly (ev.Profile, ev.Service,
// ev.Node) whose events include ev.Kind and whose filter accepts it (a
// caught-up event, ev.Catchup, skips hooks whose Catchup is "none"), and
// queues a run for each without blocking. A full queue drops the run (it is
// counted, logged and recorded as "dropped"). done, when not nil, is called
// exactly once with the number of hooks matched, after every one of their
// runs has ended (including drops and filter errors), or at once when none
// matched. It runs either before Dispatch returns (nothing matched, or
// every run was dropped) or later on a run goroutine, so it must not block
// long nor wait for the caller.
func (d *Dispatcher) Dispatch(ev hookctl.Event, done func(matched int)) {
	if d.isClosed.Load() {
		if done != nil {
			done(0)
		}
		return
	}
	d.m.receivedFor(ev.Profile).Inc()
	ents := d.snap.Load().index[nodeKey{ev.Profile, ev.Service, ev.Node}]
	var tr *tracker
	if done != nil {
		tr = &tracker{done: done}
		tr.pending.Store(1)
	}
	bit := kindBit(ev.Kind)
	var evp *hookctl.Event // one heap copy shared by the queued runs
	matched := 0
	for _, e := range ents {
		if e.kinds&bit == 0 {
			continue
		}
		if ev.Catchup && e.hook.Catchup == hookctl.CatchupNone {
			continue // live events only for this hook
		}
		if e.filter != nil {
			ok, err := e.filter.Match(ev)
			if err != nil {
				matched++
				d.recordNow(e, &ev, runner.Error, err)
				continue
			}
			if !ok {
				continue
			}
		}
		if e.suspended {
			matched++
			d.recordNow(e, &ev, Skipped, errSuspended)
			continue
		}
		if e.w == nil {
			matched++
			d.recordNow(e, &ev, runner.Error, errors.New(e.runErr))
			continue
		}
		if evp == nil {
			evp = new(hookctl.Event)
			*evp = ev
		}
		tr.add()
		switch e.w.enqueue(job{ev: evp, ent: e, tr: tr}) {
		case queued:
			matched++
		case full:
			matched++
			e.tm.drops.Inc()
			e.w.logDrop(d.log, evp)
			d.recordNow(e, evp, runner.Dropped, errQueueFull)
			tr.finish()
		case closed:
			matched++
			d.recordNow(e, evp, runner.Dropped, errClosing)
			tr.finish()
		case gone:
			// Removed by a SetHooks that raced this call: as if it had
			// not matched.
			tr.finish()
		}
	}
	if matched > 0 {
		d.m.matched.Inc()
	}
	if tr != nil {
		tr.matched = matched
		tr.finish()
	}
}

var errQueueFull = errors.New("queue full")

// Skipped is the outcome of an event a suspended hook did not run.
const Skipped runner.Outcome = "skipped"

var errSuspended = errors.New("hook suspended: event not run")

// Skipped records that an item of ev's node arrived but could not be
// decoded (too large, nested too deep): every hook of the node that
// selects ev.Kind gets an error run naming why, so that `hookctl runs
// --failed` shows the item no hook saw. It runs nothing.
func (d *Dispatcher) Skipped(ev hookctl.Event, why error) {
	d.recordAll(ev, runner.Error, fmt.Errorf("item not run: %w", why))
}

// Duplicate records that ev was not dispatched on purpose (why says
// why, e.g. the item was already handled with the same payload): every
// hook of the node that selects ev.Kind gets a run with outcome skipped.
func (d *Dispatcher) Duplicate(ev hookctl.Event, why error) {
	d.recordAll(ev, runner.Skipped, why)
}

// recordAll records a run that did not happen for every hook of ev's node
// that selects ev.Kind, and counts ev as received.
func (d *Dispatcher) recordAll(ev hookctl.Event, o runner.Outcome, why error) {
	if d.isClosed.Load() {
		return
	}
	d.m.received.WithLabelValues(ev.Profile).Inc()
	for _, e := range d.snap.Load().index[nodeKey{ev.Profile, ev.Service, ev.Node}] {
		if e.kinds&kindBit(ev.Kind) != 0 {
			d.recordNow(e, &ev, o, why)
		}
	}
}

// recordNow records a run that ended before it started (dropped, filter
// error, no runner).
func (d *Dispatcher) recordNow(e *entry, ev *hookctl.Event, o runner.Outcome, err error) {
	d.record(e, ev, time.Now(), 0, runner.Result{Outcome: o, ExitCode: -1, Err: err}, "")
}

// record adds a run to the history, counts it and logs it; manual says
// who asked for a run outside the event flow. It returns the run recorded.
func (d *Dispatcher) record(e *entry, ev *hookctl.Event, started time.Time, dur time.Duration, res runner.Result, manual string) hookctl.Run {
	r := hookctl.Run{
		Hook:     e.hook.Key,
		HookName: e.hook.Name,
		Event:    ev.Kind,
		ItemID:   ev.ItemID,
		Started:  started,
		Duration: hookctl.Duration(dur),
		Outcome:  string(res.Outcome),
		ExitCode: res.ExitCode,
		Output:   runner.Tail(res.Output, runner.OutputTail),
		Catchup:  ev.Catchup,
	}
	if res.Err != nil {
		r.Error = res.Err.Error()
	}
	fillRun(&r, e.hook, ev)
	r.Manual = manual
	if d.opts.OnRun == nil {
		r = d.hist.add(r)
	} else {
		// The durable history keeps the event; the memory ring need not.
		in := r.Input
		r.Input = nil
		r = d.hist.add(r)
		r.Input = in
		d.opts.OnRun(r)
	}
	tm := e.tm
	d.m.countRun(e.hook.Type, tm, res.Outcome)
	d.m.countHookRun(e.hook, res.Outcome)
	if res.Outcome != runner.Dropped {
		tm.duration.Observe(dur.Seconds())
	}
	// Built only for a line that is logged: an ok run at info level, the
	// common case, allocates nothing here.
	attrs := func(more ...any) []any {
		return append([]any{"hook", e.hook.Key.String(), "name", e.hook.Name, "set", e.hook.Owner,
			"node", ev.Node, "event", ev.Kind, "item_id", ev.ItemID, "run_id", r.ID}, more...)
	}
	switch {
	case res.Outcome == runner.Dropped:
		// logged by logDrop (queue full) or the closing dispatcher
	case res.Outcome == runner.Skipped:
		d.log.Info("hook run skipped", attrs("reason", r.Error)...)
	case res.Outcome != runner.OK:
		d.log.Warn("hook run failed", attrs("outcome", res.Outcome,
			"exit_code", res.ExitCode, "duration", dur, "error", r.Error)...)
	case d.log.Enabled(context.Background(), slog.LevelDebug):
		d.log.Debug("hook ran", attrs("duration", dur)...)
	}
	return r
}

// Runs returns recent runs selected by q, newest first: q.Profile and
// q.Node match exactly, q.Hook matches the hook's name or arg, FailedOnly
// keeps outcomes other than ok, and at most q.Limit (default 100) are
// returned.
func (d *Dispatcher) Runs(q hookctl.RunQuery) []hookctl.Run { return d.hist.query(q) }

// HookErrors lists the hooks of the last SetHooks that could not be made
// live as asked (filter that does not compile, no runner for the type, a
// runner that failed to start, duplicate key), in key order.
func (d *Dispatcher) HookErrors() []hookctl.HookError {
	snap := d.snap.Load()
	errs := slices.Clone(snap.errs)
	d.runErrs.Range(func(k, v any) bool {
		key := k.(hookctl.Key)
		if _, live := snap.entries[key]; !live {
			d.runErrs.Delete(key) // the hook is gone
			return true
		}
		errs = append(errs, hookctl.HookError{Hook: key, Error: v.(string)})
		return true
	})
	// Runners that keep running a previous version of a hook whose new one
	// does not load (Python reloads) say so.
	for key, e := range snap.entries {
		if p, ok := e.runner().(interface{ Problem() string }); ok {
			if msg := p.Problem(); msg != "" {
				errs = append(errs, hookctl.HookError{Hook: key, Error: msg})
			}
		}
	}
	slices.SortStableFunc(errs, func(a, b hookctl.HookError) int { return a.Hook.Compare(b.Hook) })
	return errs
}

// noteRunError keeps why a hook's run could not start, and forgets it once
// a run starts again (ok, failed or timed out).
func (d *Dispatcher) noteRunError(k hookctl.Key, res runner.Result) {
	switch res.Outcome {
	case runner.Error:
		if res.Err != nil {
			d.runErrs.Store(k, "run: "+res.Err.Error())
		}
	case runner.OK, runner.Failed, runner.Timeout:
		d.runErrs.Delete(k)
	}
}

// Close stops accepting events and waits for the queued runs to finish.
// When ctx ends first, running runs get their context cancelled and queued
// ones are recorded as dropped; Close still waits for every goroutine and
// then closes every runner. It returns ctx's error if ctx ended first,
// joined with the runners' Close errors.
func (d *Dispatcher) Close(ctx context.Context) error {
	d.mu.Lock()
	if d.isClosed.Swap(true) {
		d.mu.Unlock()
		return nil
	}
	live := d.snap.Load().workers
	all := make([]*worker, 0, len(live)+len(d.retiring))
	for _, w := range live {
		w.close(nil, false)
		all = append(all, w)
	}
	for w := range d.retiring {
		all = append(all, w)
	}
	d.mu.Unlock()

	var ctxErr error
	for _, w := range all {
		select {
		case <-w.drained:
			continue
		case <-ctx.Done():
		}
		if ctxErr == nil {
			ctxErr = ctx.Err()
			d.cancel()
		}
		<-w.drained
	}
	d.cancel()
	close(d.quit)
	d.gwg.Wait()
	d.wg.Wait() // retired runners are closed by their goroutines
	errs := []error{ctxErr}
	for _, w := range live {
		w.cancel()
		if err := w.runner.Close(); err != nil {
			errs = append(errs, errors.New("closing runner of "+w.hook.Key.String()+": "+err.Error()))
		}
	}
	return errors.Join(errs...)
}
