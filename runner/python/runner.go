package python

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"hookctl.dev/hookctl"
	"hookctl.dev/hookctl/runner"
)

// pyRunner runs one hook. It has max(Concurrency, 1) slots, each with at
// most one worker; a run takes a slot for its whole duration, so with the
// default concurrency items go through one worker in arrival order.
type pyRunner struct {
	f      *factory
	hook   hookctl.Hook
	host   runner.Host
	log    *slog.Logger
	slots  chan *slot // the free slots
	all    []*slot
	memory int64 // RLIMIT_AS of the workers, 0 for none

	ctx       context.Context // cancelled by Close: ends reloads and warm-ups
	cancel    context.CancelFunc
	closed    atomic.Bool
	closing   chan struct{} // closed by Close: ends backoff waits
	closeOnce sync.Once
	stopping  sync.WaitGroup // idle and retired stops in progress
	warming   sync.WaitGroup // the start-up warm-up, see warm
	reloads   sync.WaitGroup // reloads in progress, see startReload

	// problem says why the last reload failed while the previous version
	// keeps running ("" when none), for status.
	problem atomic.Pointer[string]
	self    selfPublished

	// pipelined counts the runs whose frame went to the worker behind
	// another's, in one write (batch.go).
	pipelined atomic.Int64
}

var _ runner.Runner = (*pyRunner)(nil)

// slot is one worker position. mu guards the fields shared with the idle
// timer, reloads and Close; the rest belongs to the run holding the slot.
type slot struct {
	r *pyRunner

	mu        sync.Mutex
	w         *worker
	next      *worker       // a new version, loaded, waiting to replace w
	reloading chan struct{} // closed when the reload in flight ends
	failedKey string        // the files' version whose reload failed
	busy      bool
	lastUse   time.Time
	timer     *time.Timer
	armed     bool

	failures int // consecutive worker deaths, for the restart backoff
}

// backoff is the wait before starting a worker that died n times in a row:
// 0, 100ms, 200ms, 400ms… up to 5s.
func backoff(n int) time.Duration {
	if n <= 1 {
		return 0
	}
	if n > 8 {
		return 5 * time.Second
	}
	return min(100*time.Millisecond<<(n-2), 5*time.Second)
}

// timeout is the hook's own timeout, which also bounds a load.
func (r *pyRunner) timeout() time.Duration {
	if d := time.Duration(r.hook.Timeout); d > 0 {
		return d
	}
	return runner.DefaultTimeout
}

// Run runs the hook on ev in a worker, starting or reloading it as needed.
func (r *pyRunner) Run(ctx context.Context, ev hookctl.Event) runner.Result {
	if r.closed.Load() {
		return errorResult(errClosed)
	}
	if ev.Kind == hookctl.EventPublish && r.self.take(ev.Service, ev.Node, ev.ItemID) {
		return runner.Result{Outcome: runner.Skipped, ExitCode: -1, Err: errSelfPublished}
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, r.timeout())
		defer cancel()
	}
	deadline, _ := ctx.Deadline()
	limit := time.Until(deadline).Round(time.Millisecond)
	s, res := r.takeSlot(ctx, limit)
	if s == nil {
		return res
	}
	defer func() { r.slots <- s }()
	return r.runOn(ctx, s, ev, limit)
}

// takeSlot waits for a free slot, or returns nil and the result of a run
// whose context ended first.
func (r *pyRunner) takeSlot(ctx context.Context, limit time.Duration) (*slot, runner.Result) {
	select {
	case s := <-r.slots:
		return s, runner.Result{}
	case <-ctx.Done():
		return nil, ctxResult(ctx, fmt.Sprintf("python hook timed out waiting for a free worker (all %d busy): its timeout of %s passed", len(r.all), limit), "")
	}
}

func (r *pyRunner) runOn(ctx context.Context, s *slot, ev hookctl.Event, limit time.Duration) runner.Result {
	if !r.acquire(s) {
		return errorResult(errClosed)
	}
	defer r.release(s)
	w, loadOut, res := r.ready(ctx, s, limit)
	if w == nil {
		return res
	}
	res = r.runOne(ctx, s, w, &ev, limit, false)
	if loadOut != "" {
		res.Output = runner.Tail(loadOut+res.Output, runner.OutputTail)
	}
	return res
}

// acquire marks s busy for a run, the reloaded worker swapped in; false
// when the runner is closed. release undoes it.
func (r *pyRunner) acquire(s *slot) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if r.closed.Load() {
		return false
	}
	s.busy = true
	r.swapNext(s)
	return true
}

// ready returns s's worker with the hook loaded, started or reloaded as
// needed, and what loading printed (for the first run's output); or nil
// and the result of a run that cannot go on (the hook does not load, the
// worker does not start).
func (r *pyRunner) ready(ctx context.Context, s *slot, limit time.Duration) (*worker, string, runner.Result) {
	s.mu.Lock()
	w := s.w
	s.mu.Unlock()
	if w != nil && !w.alive() {
		// Died between runs (a hook's thread called os._exit, the OOM
		// killer): start another without failing this item.
		s.failures++
		r.log.Warn("python worker exited while idle", "status", w.exitText(), "output", w.stray.take())
		r.drop(s, w)
		w = nil
	}
	if w != nil && w.loadErr != nil {
		// No version loads: try again once the files changed, or after
		// loadRetry (a module it lacked may have been installed).
		if changed, _, _ := w.changed(); changed || time.Since(w.loadedAt) >= loadRetry {
			r.drop(s, w)
			w = nil
		}
	}
	if w == nil {
		var res runner.Result
		if w, res = r.startLoaded(ctx, s, limit); w == nil {
			return nil, "", res
		}
	} else {
		w = r.maybeReload(ctx, s, w)
	}
	loadOut := w.loadOut
	w.loadOut = ""
	if w.loadErr != nil {
		return nil, "", loadErrorResult(loadOut, w.loadErr)
	}
	return w, loadOut, runner.Result{}
}

// runOne runs ev on w, whose run frame is sent unless sent is true,
// killing w at ctx's end.
func (r *pyRunner) runOne(ctx context.Context, s *slot, w *worker, ev *hookctl.Event, limit time.Duration, sent bool) runner.Result {
	kill := context.AfterFunc(ctx, w.dumpAndKill)
	var res runner.Result
	if sent {
		res = r.serve(ctx, s, w, ev, limit)
	} else {
		res = r.exchange(ctx, s, w, ev, limit)
	}
	if !kill() && w.alive() {
		// The deadline passed just as the run ended: the worker is being
		// killed; the result stands.
		r.drop(s, w)
	}
	return res
}

func loadErrorResult(out string, lerr *LoadError) runner.Result {
	detail := lerr.Traceback
	if detail == "" {
		detail = lerr.Msg + "\n"
	}
	return runner.Result{
		Outcome:  runner.Error,
		ExitCode: -1,
		Output:   runner.Tail(out+detail, runner.OutputTail),
		Err:      lerr,
	}
}

// startLoaded starts a worker for s and loads the hook in it, once the
// hook's file is stable: it returns nil and the run's result when the run
// cannot go on. A load error is not one: the worker keeps it.
func (r *pyRunner) startLoaded(ctx context.Context, s *slot, limit time.Duration) (*worker, runner.Result) {
	if d := backoff(s.failures); d > 0 {
		r.log.Info("python worker keeps dying; waiting before restarting it", "failures", s.failures, "wait", d)
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-t.C:
		case <-r.closing:
			return nil, errorResult(errClosed)
		case <-ctx.Done():
			return nil, errorResult(fmt.Errorf("python worker restart delayed after %d failures: %w", s.failures, ctx.Err()))
		}
	}
	for attempt := 1; ; attempt++ {
		mainSig, settled, err := r.waitMain(ctx)
		if err != nil {
			return nil, errorResult(err)
		}
		w, err := r.f.start(r.hook, r.memory)
		if err != nil {
			return nil, errorResult(err)
		}
		s.mu.Lock()
		if r.closed.Load() {
			s.mu.Unlock()
			w.stop(0)
			return nil, errorResult(errClosed)
		}
		s.w = w
		s.mu.Unlock()
		kill := context.AfterFunc(ctx, w.dumpAndKill)
		err = r.loadInto(w, mainSig)
		if !kill() {
			r.drop(s, w)
			return nil, r.stopped(ctx, w, "while loading the hook", limit)
		}
		if err != nil {
			return nil, r.died(ctx, s, w, "while loading the hook", limit)
		}
		if w.loadErr != nil && attempt < maxLoadAttempts && r.changing(mainSig, settled) {
			// Loaded while an editor was writing the file: the error may
			// be the half-written file's. Load again.
			r.drop(s, w)
			continue
		}
		// No previous version runs any more: runs report this one's state.
		r.problem.Store(nil)
		return w, runner.Result{}
	}
}

// maxLoadAttempts bounds the loads of a file that keeps changing.
const maxLoadAttempts = 20

// changing reports whether a python_file loaded with signature sig may
// have been read half-written: it had not settled, or changed since.
func (r *pyRunner) changing(sig fileSig, settled bool) bool {
	if r.hook.Type != hookctl.TypePythonFile {
		return false
	}
	now, err := statSig(r.hook.Arg)
	return !settled || err != nil || now != sig
}

// waitMain waits until a python_file has not changed for settle (an
// editor may be writing it) and returns its signature and true. A file
// that keeps changing for longer than maxSettleWait is taken in a quiet
// moment (unchanged for quietGap) instead, and settled is false: its load
// is then only trusted if it succeeds. Other types have no file of their
// own.
func (r *pyRunner) waitMain(ctx context.Context) (sig fileSig, settled bool, err error) {
	if r.hook.Type != hookctl.TypePythonFile {
		return fileSig{}, true, nil
	}
	start := time.Now()
	for {
		sig, err := statSig(r.hook.Arg)
		if err != nil {
			return sig, false, fmt.Errorf("python_file %w", err)
		}
		want := settle
		if time.Since(start) > maxSettleWait {
			want = quietGap
		}
		age := time.Since(sig.newest())
		if age >= want || age < 0 {
			return sig, want == settle, nil
		}
		t := time.NewTimer(want - age)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return sig, false, fmt.Errorf("python_file %s kept changing: %w", r.hook.Arg, ctx.Err())
		}
	}
}

// How long a first load waits for a changing file to settle, and the quiet
// moment it settles for after that.
const (
	maxSettleWait = time.Second
	quietGap      = 10 * time.Millisecond
)

// loadInto has w load the hook and records what it was loaded from:
// mainSig for a python_file (taken before the load read it), the other
// module files as they are now.
func (r *pyRunner) loadInto(w *worker, mainSig fileSig) error {
	out, lerr, files, err := load(w, r.hook)
	if err != nil {
		return err
	}
	w.loaded, w.loadErr, w.loadedAt, w.loadOut = true, lerr, time.Now(), out
	if r.hook.Type == hookctl.TypePythonFile {
		w.watch = append(w.watch, watched{path: r.hook.Arg, sig: mainSig})
	}
	w.addWatch(files)
	if lerr != nil {
		r.log.Error("python hook does not load", "error", lerr)
	}
	return nil
}

// maybeReload returns the worker to run the item on: w, or a new worker
// with the new version when w's files changed and the new version loads.
// The new version is loaded beside w, in another worker, once its files
// have been stable for settle; w keeps serving meanwhile and for good if
// the new version does not load (the reason is in status). The item waits
// for the load at most half its time.
func (r *pyRunner) maybeReload(ctx context.Context, s *slot, w *worker) *worker {
	changed, stable, key := w.changed()
	if !changed || !stable {
		return w
	}
	s.mu.Lock()
	if key == s.failedKey {
		s.mu.Unlock()
		return w
	}
	done := r.startReload(s, key)
	s.mu.Unlock()
	wait := time.Duration(0)
	if d, ok := ctx.Deadline(); ok {
		wait = time.Until(d) / 2
	}
	t := time.NewTimer(wait)
	select {
	case <-done:
	case <-t.C:
	case <-ctx.Done():
	}
	t.Stop()
	s.mu.Lock()
	r.swapNext(s)
	w = s.w
	s.mu.Unlock()
	return w
}

// startReload loads the hook in a new worker in the background; on
// success it becomes s.next, which the slot's next run swaps in. The
// caller holds s.mu. It returns a channel closed when the reload ends.
func (r *pyRunner) startReload(s *slot, key string) <-chan struct{} {
	if s.reloading != nil {
		return s.reloading
	}
	done := make(chan struct{})
	s.reloading = done
	r.reloads.Add(1)
	go func() {
		defer r.reloads.Done()
		defer close(done)
		nw, err := r.loadBeside()
		s.mu.Lock()
		s.reloading = nil
		switch {
		case r.closed.Load():
		case errors.Is(err, errChangedWhileLoading):
		case err != nil:
			s.failedKey = key
		default:
			if s.next != nil {
				r.retire(s.next)
			}
			s.next, nw = nw, nil
			s.failedKey = ""
		}
		s.mu.Unlock()
		if nw != nil {
			nw.stop(0)
		}
		switch {
		case r.closed.Load(), errors.Is(err, errChangedWhileLoading):
		case err != nil:
			msg := fmt.Sprintf("reload: the changed hook does not load, the previous version keeps running: %v", err)
			r.problem.Store(&msg)
			r.log.Error("python hook changed but does not load; the previous version keeps running", "error", err)
		default:
			r.problem.Store(nil)
			r.log.Info("python hook reloaded")
		}
	}()
	return done
}

// loadBeside starts a worker and loads the hook's current version in it,
// within the hook's timeout. A version that does not load is an error.
func (r *pyRunner) loadBeside() (*worker, error) {
	ctx, cancel := context.WithTimeout(r.ctx, r.timeout())
	defer cancel()
	mainSig, settled, err := r.waitMain(ctx)
	if err != nil {
		return nil, err
	}
	w, err := r.f.start(r.hook, r.memory)
	if err != nil {
		return nil, err
	}
	kill := context.AfterFunc(ctx, w.dumpAndKill)
	err = r.loadInto(w, mainSig)
	if !kill() {
		w.reap()
		out := w.stray.take()
		return nil, fmt.Errorf("loading did not finish within the hook's timeout (%s)%s", r.timeout(), stuckAt(out))
	}
	if err != nil {
		w.reap()
		return nil, fmt.Errorf("python worker exited while loading the hook: %s: %s", w.exitText(), strings.TrimSpace(w.stray.take()))
	}
	if w.loadErr != nil {
		w.stop(0)
		if r.changing(mainSig, settled) {
			return nil, errChangedWhileLoading
		}
		return nil, w.loadErr
	}
	return w, nil
}

// errChangedWhileLoading: a reload whose file changed while it loaded, and
// failed; it is tried again at the next change, not reported.
var errChangedWhileLoading = errors.New("the file changed while it was loaded")

// swapNext puts a reloaded worker in place of the slot's current one,
// which is stopped in the background. The caller holds s.mu.
func (r *pyRunner) swapNext(s *slot) {
	if s.next == nil {
		return
	}
	if s.w != nil {
		r.retire(s.w)
	}
	s.w, s.next = s.next, nil
	s.failures = 0
}

// retire stops an idle worker in the background.
func (r *pyRunner) retire(w *worker) {
	r.stopping.Add(1)
	go func() {
		defer r.stopping.Done()
		w.stop(2 * time.Second)
	}()
}

// Problem says why the hook's last reload failed while its previous
// version keeps running, or "".
func (r *pyRunner) Problem() string {
	if p := r.problem.Load(); p != nil {
		return *p
	}
	return ""
}

// warm starts a worker and loads the hook in a free slot, ahead of the
// first event: python3 takes tens to hundreds of milliseconds to start, and
// a burst arriving meanwhile would queue behind it. Problems are left for
// the first run to meet and report.
func (r *pyRunner) warm() {
	select {
	case r.f.warmups <- struct{}{}:
		defer func() { <-r.f.warmups }()
	case <-r.closing:
		return
	}
	var s *slot
	select {
	case s = <-r.slots:
	default:
		return // a run got there first
	}
	defer func() { r.slots <- s }()
	s.mu.Lock()
	if r.closed.Load() || s.w != nil {
		s.mu.Unlock()
		return
	}
	s.busy = true
	s.mu.Unlock()
	defer r.release(s)

	ctx, cancel := context.WithTimeout(r.ctx, r.timeout())
	defer cancel()
	_, _ = r.startLoaded(ctx, s, r.timeout())
}

// release marks s free and arms its idle timer.
func (r *pyRunner) release(s *slot) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.busy = false
	s.lastUse = time.Now()
	idle := r.f.opts.IdleTimeout
	if idle <= 0 || s.w == nil || s.armed || r.closed.Load() {
		return
	}
	s.armed = true
	if s.timer == nil {
		s.timer = time.AfterFunc(idle, func() { r.idleCheck(s) })
	} else {
		s.timer.Reset(idle)
	}
}

// idleCheck stops s's worker if it has not run for IdleTimeout.
func (r *pyRunner) idleCheck(s *slot) {
	idle := r.f.opts.IdleTimeout
	s.mu.Lock()
	if r.closed.Load() || s.w == nil {
		s.armed = false
		s.mu.Unlock()
		return
	}
	// A worker running the previous version of a hook whose new version
	// does not load is kept: started again, it would load the broken one.
	if since := time.Since(s.lastUse); s.busy || since < idle || r.Problem() != "" {
		if since >= idle {
			since = 0 // kept for a problem: look again in a while
		}
		s.timer.Reset(idle - since)
		s.mu.Unlock()
		return
	}
	w, next := s.w, s.next
	s.w, s.next = nil, nil
	s.armed = false
	r.stopping.Add(1)
	s.mu.Unlock()
	defer r.stopping.Done()
	r.log.Debug("stopping idle python worker", "pid", w.cmd.Process.Pid)
	w.stop(2 * time.Second)
	if next != nil {
		next.stop(2 * time.Second)
	}
}

// drop forgets s's worker w and reaps it.
func (r *pyRunner) drop(s *slot, w *worker) {
	s.mu.Lock()
	if s.w == w {
		s.w = nil
	}
	s.mu.Unlock()
	w.reap()
}

// exchange sends the run frame and serves the worker until it is done.
func (r *pyRunner) exchange(ctx context.Context, s *slot, w *worker, ev *hookctl.Event, limit time.Duration) runner.Result {
	w.buf = r.appendRun(w.buf[:0], ev)
	if err := w.sendRaw(w.buf); err != nil {
		return r.died(ctx, s, w, "", limit)
	}
	return r.serve(ctx, s, w, ev, limit)
}

// appendRun appends the run frame of ev.
func (r *pyRunner) appendRun(b []byte, ev *hookctl.Event) []byte {
	fr := runFrame{
		Op:     "run",
		Client: clientFrame{Profile: ev.Profile},
		Event: eventFrame{
			Service:   ev.Service,
			Node:      ev.Node,
			Kind:      string(ev.Kind),
			ItemID:    ev.ItemID,
			Publisher: ev.Publisher,
			Catchup:   ev.Catchup,
		},
		ItemXML: ev.ItemXML,
	}
	if r.f.opts.ProfileJID != nil {
		fr.Client.JID = r.f.opts.ProfileJID(ev.Profile)
	}
	if !ev.Received.IsZero() {
		fr.Event.Received = ev.Received.Format(time.RFC3339Nano)
	}
	return appendRunFrame(b, &fr)
}

// serve serves the worker until the run of ev, whose frame was sent, is
// done: its log lines and publish requests, then its result.
func (r *pyRunner) serve(ctx context.Context, s *slot, w *worker, ev *hookctl.Event, limit time.Duration) runner.Result {
	var in inFrame
	for {
		if err := w.recv(&in); err != nil {
			if !errors.Is(err, errWorkerDied) {
				// Garbage on the protocol pipe: the worker cannot be trusted.
				w.kill()
				r.drop(s, w)
				s.failures++
				return runner.Result{Outcome: runner.Failed, ExitCode: -1, Output: runner.Tail(w.stray.take(), runner.OutputTail), Err: err}
			}
			return r.died(ctx, s, w, "", limit)
		}
		switch in.Op {
		case "log":
			r.log.Log(ctx, logLevel(in.Level), in.Msg, "node", ev.Node, "item_id", ev.ItemID)
		case "publish":
			reply := r.publish(ctx, *ev, &in)
			if err := w.send(&reply); err != nil {
				return r.died(ctx, s, w, "", limit)
			}
		case "done":
			s.failures = 0
			w.addWatch(in.Files)
			return r.done(w, &in)
		default:
			w.kill()
			r.drop(s, w)
			s.failures++
			return runner.Result{Outcome: runner.Failed, ExitCode: -1, Err: fmt.Errorf("python worker sent unexpected %q", in.Op)}
		}
	}
}

// done is the result of a run the worker finished.
func (r *pyRunner) done(w *worker, in *inFrame) runner.Result {
	out := w.output()
	if in.OK {
		return runner.Result{Outcome: runner.OK, ExitCode: -1, Output: runner.Tail(out, runner.OutputTail)}
	}
	if in.Traceback != "" {
		if out != "" && !strings.HasSuffix(out, "\n") {
			out += "\n"
		}
		out += in.Traceback
	}
	err := fmt.Errorf("hook raised %s", in.Error)
	if r.memory > 0 && strings.HasPrefix(in.Error, "MemoryError") {
		err = fmt.Errorf("hook raised %s: the hook's memory limit (%s) was reached", in.Error, formatBytes(r.memory))
	}
	return runner.Result{Outcome: runner.Failed, ExitCode: -1, Output: runner.Tail(out, runner.OutputTail), Err: err}
}

// publish serves a host.publish. An item the hook publishes on the node
// that triggered it is remembered, so that its notification does not run
// the hook again (a loop) unless the hook passed loop=True; it gets an id
// here when the hook gave none, so that it is known before it is sent.
func (r *pyRunner) publish(ctx context.Context, ev hookctl.Event, in *inFrame) replyFrame {
	if r.host == nil {
		return replyFrame{Op: "publish_error", Error: "publishing is not available"}
	}
	svc := in.Service
	if svc == "" && r.f.opts.ProfileJID != nil {
		svc = r.f.opts.ProfileJID(ev.Profile) // own PEP: notified from the profile's bare JID
	}
	own := !in.Loop && in.Node == ev.Node && svc == ev.Service
	id := in.ItemID
	if own {
		if id == "" {
			id = newItemID()
		}
		r.self.add(ev.Service, ev.Node, id)
	}
	got, err := r.host.Publish(ctx, ev.Profile, in.Service, in.Node, id, in.Payload)
	if err != nil {
		if own {
			r.self.take(ev.Service, ev.Node, id)
		}
		return replyFrame{Op: "publish_error", Error: err.Error()}
	}
	return replyFrame{Op: "publish_result", ItemID: got}
}

// died builds the result of a run whose worker went away: killed by us at
// the deadline (Timeout), or exited by itself (Failed, restarted next time).
func (r *pyRunner) died(ctx context.Context, s *slot, w *worker, when string, limit time.Duration) runner.Result {
	if ctx.Err() != nil {
		r.drop(s, w)
		if when == "" {
			when = "while running"
		}
		return r.stopped(ctx, w, when, limit)
	}
	// Give the process a moment to finish exiting so that its status and
	// last words (a fatal error on stderr) are known.
	w.waitExit(context.Background(), time.Second)
	r.drop(s, w)
	s.failures++
	msg := "python worker exited"
	if when != "" {
		msg += " " + when
	}
	r.log.Warn(msg, "status", w.exitText(), "failures", s.failures)
	err := fmt.Errorf("%s: %s", msg, w.exitText())
	if r.memory > 0 && w.exitCode() < 0 {
		err = fmt.Errorf("%w (killed by a signal; the hook's memory limit is %s)", err, formatBytes(r.memory))
	}
	return runner.Result{
		Outcome:  runner.Failed,
		ExitCode: w.exitCode(),
		Output:   runner.Tail(strings.ReplaceAll(w.stray.take(), string(w.marker), ""), runner.OutputTail),
		Err:      err,
	}
}

// stopped is the result of a run whose worker was killed because its
// context ended: a Timeout saying which limit and where the hook was
// (from the stack dump taken before the kill), or Failed when cancelled.
func (r *pyRunner) stopped(ctx context.Context, w *worker, when string, limit time.Duration) runner.Result {
	out := strings.ReplaceAll(w.stray.take(), string(w.marker), "")
	if !errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return runner.Result{Outcome: runner.Failed, ExitCode: -1, Output: runner.Tail(out, runner.OutputTail),
			Err: fmt.Errorf("python hook stopped %s: %w", when, ctx.Err())}
	}
	return runner.Result{Outcome: runner.Timeout, ExitCode: -1, Output: runner.Tail(out, runner.OutputTail),
		Err: fmt.Errorf("python hook timed out %s: its timeout of %s passed%s (%w)", when, limit, stuckAt(out), ctx.Err())}
}

// stuckAt finds where a faulthandler dump says the hook was: its first
// frame outside the shim (whose frames are in "<stdin>").
func stuckAt(dump string) string {
	for line := range strings.Lines(dump) {
		line = strings.TrimSpace(line)
		if !strings.HasPrefix(line, `File "`) || strings.HasPrefix(line, `File "<stdin>"`) {
			continue
		}
		return "; stuck at " + strings.TrimPrefix(line, "File ")
	}
	return ""
}

// formatBytes renders a size, e.g. 512 MiB.
func formatBytes(n int64) string {
	switch {
	case n >= 1<<30 && n%(1<<30) == 0:
		return fmt.Sprintf("%d GiB", n>>30)
	case n >= 1<<20:
		return fmt.Sprintf("%d MiB", n>>20)
	}
	return fmt.Sprintf("%d bytes", n)
}

// Close stops every worker at once (process groups killed), waits for
// runs in progress to return, and reaps the processes.
func (r *pyRunner) Close() error {
	r.closeOnce.Do(func() {
		r.closed.Store(true)
		close(r.closing)
		for _, s := range r.all {
			s.mu.Lock()
			if s.timer != nil {
				s.timer.Stop()
			}
			if s.w != nil {
				s.w.kill()
			}
			s.mu.Unlock()
		}
		// Take every slot: runs in progress end promptly once killed.
		held := make([]*slot, 0, len(r.all))
		for range r.all {
			held = append(held, <-r.slots)
		}
		r.cancel() // ends reloads in progress
		r.reloads.Wait()
		for _, s := range held {
			s.mu.Lock()
			w, next := s.w, s.next
			s.w, s.next = nil, nil
			s.mu.Unlock()
			for _, w := range []*worker{w, next} {
				if w != nil {
					w.reap()
				}
			}
			r.slots <- s
		}
		r.stopping.Wait()
		r.warming.Wait()
	})
	return nil
}

func errorResult(err error) runner.Result {
	return runner.Result{Outcome: runner.Error, ExitCode: -1, Err: err}
}

// ctxResult is the result of a run stopped by its context: Timeout at the
// deadline, Failed when cancelled (the backend is stopping).
func ctxResult(ctx context.Context, what, output string) runner.Result {
	out := runner.Tail(output, runner.OutputTail)
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return runner.Result{Outcome: runner.Timeout, ExitCode: -1, Output: out, Err: fmt.Errorf("%s: %w", what, ctx.Err())}
	}
	return runner.Result{Outcome: runner.Failed, ExitCode: -1, Output: out, Err: fmt.Errorf("%s: %w", what, ctx.Err())}
}

func logLevel(s string) slog.Level {
	switch strings.ToLower(s) {
	case "debug":
		return slog.LevelDebug
	case "warn", "warning":
		return slog.LevelWarn
	case "error", "critical", "exception":
		return slog.LevelError
	}
	return slog.LevelInfo
}

// errSelfPublished is why an item the hook published itself on its own
// node is skipped.
var errSelfPublished = errors.New("skipped: the item was published by this hook itself on the node that triggered it (host.publish); running the hook on it again could loop forever. Pass loop=True to host.publish to have such items run the hook")

// selfPublished remembers the items a hook published on its own node, the
// newest maxSelf of them, until their notification comes back.
type selfPublished struct {
	mu    sync.Mutex
	ids   map[string]struct{}
	order []string
}

const maxSelf = 1024

func selfKey(service, node, id string) string { return service + "\x00" + node + "\x00" + id }

func (p *selfPublished) add(service, node, id string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ids == nil {
		p.ids = map[string]struct{}{}
	}
	k := selfKey(service, node, id)
	p.ids[k] = struct{}{}
	p.order = append(p.order, k)
	if len(p.order) > maxSelf {
		delete(p.ids, p.order[0])
		p.order = p.order[1:]
	}
}

// has reports whether the item is one the hook published.
func (p *selfPublished) has(service, node, id string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	_, ok := p.ids[selfKey(service, node, id)]
	return ok
}

// take reports whether the item is one the hook published, forgetting it.
func (p *selfPublished) take(service, node, id string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	k := selfKey(service, node, id)
	if _, ok := p.ids[k]; !ok {
		return false
	}
	delete(p.ids, k)
	return true
}

// newItemID returns a random item id, as a PubSub service would choose.
func newItemID() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
