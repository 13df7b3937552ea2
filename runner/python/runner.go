package python

import (
	"context"
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
	f     *factory
	hook  hookctl.Hook
	host  runner.Host
	log   *slog.Logger
	slots chan *slot // the free slots
	all   []*slot

	closed    atomic.Bool
	closing   chan struct{} // closed by Close: ends backoff waits
	closeOnce sync.Once
	stopping  sync.WaitGroup // idle stops in progress
	warming   sync.WaitGroup // the start-up warm-up, see warm
}

var _ runner.Runner = (*pyRunner)(nil)

// slot is one worker position. mu guards the fields shared with the idle
// timer and Close; the rest belongs to the run holding the slot.
type slot struct {
	r *pyRunner

	mu      sync.Mutex
	w       *worker
	busy    bool
	lastUse time.Time
	timer   *time.Timer
	armed   bool

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

// Run runs the hook on ev in a worker, starting or reloading it as needed.
func (r *pyRunner) Run(ctx context.Context, ev hookctl.Event) runner.Result {
	if r.closed.Load() {
		return errorResult(errClosed)
	}
	if _, ok := ctx.Deadline(); !ok {
		d := time.Duration(r.hook.Timeout)
		if d == 0 {
			d = runner.DefaultTimeout
		}
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, d)
		defer cancel()
	}
	var s *slot
	select {
	case s = <-r.slots:
	case <-ctx.Done():
		return ctxResult(ctx, "waiting for a free worker", "")
	}
	defer func() { r.slots <- s }()
	return r.runOn(ctx, s, ev)
}

func (r *pyRunner) runOn(ctx context.Context, s *slot, ev hookctl.Event) runner.Result {
	s.mu.Lock()
	if r.closed.Load() {
		s.mu.Unlock()
		return errorResult(errClosed)
	}
	s.busy = true
	w := s.w
	s.mu.Unlock()
	defer r.release(s)

	if w != nil && !w.alive() {
		// Died between runs (a hook's thread called os._exit, the OOM
		// killer): start another without failing this item.
		s.failures++
		r.log.Warn("python worker exited while idle", "status", w.exitText(), "output", w.stray.take())
		r.drop(s, w)
		w = nil
	}
	if w == nil {
		var res runner.Result
		if w, res = r.startWorker(ctx, s); w == nil {
			return res
		}
	}

	kill := context.AfterFunc(ctx, w.kill)
	loadOut, res, done := r.ensureLoaded(ctx, s, w)
	if done {
		if !kill() {
			r.drop(s, w)
		}
		return res
	}
	res = r.exchange(ctx, s, w, ev)
	if !kill() && w.alive() {
		// The deadline passed just as the run ended: the worker is being
		// killed; the result stands.
		r.drop(s, w)
	}
	if loadOut != "" {
		res.Output = runner.Tail(loadOut+res.Output, runner.OutputTail)
	}
	return res
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

	ctx, cancel := context.WithTimeout(context.Background(), runner.DefaultTimeout)
	defer cancel()
	w, _ := r.startWorker(ctx, s)
	if w == nil {
		return
	}
	kill := context.AfterFunc(ctx, w.kill)
	_, _, _ = r.ensureLoaded(ctx, s, w)
	if !kill() {
		r.drop(s, w)
	}
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
	if since := time.Since(s.lastUse); s.busy || since < idle {
		s.timer.Reset(idle - since)
		s.mu.Unlock()
		return
	}
	w := s.w
	s.w = nil
	s.armed = false
	r.stopping.Add(1)
	s.mu.Unlock()
	defer r.stopping.Done()
	r.log.Debug("stopping idle python worker", "pid", w.cmd.Process.Pid)
	w.stop(2 * time.Second)
}

// startWorker starts a worker for s, after the backoff its failures call for.
func (r *pyRunner) startWorker(ctx context.Context, s *slot) (*worker, runner.Result) {
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
	w, err := r.f.start(r.hook)
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
	return w, runner.Result{}
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

// ensureLoaded loads the hook into w unless it is loaded and current. It
// returns what loading printed, and done with the run's result when the
// run cannot go on.
func (r *pyRunner) ensureLoaded(ctx context.Context, s *slot, w *worker) (string, runner.Result, bool) {
	h := r.hook
	var sig fileSig
	if h.Type == hookctl.TypePythonFile {
		var err error
		if sig, err = statSig(h.Arg); err != nil {
			return "", errorResult(fmt.Errorf("python_file %w", err)), true
		}
	}
	current := w.loaded && sig == w.loadSig && (w.loadErr == nil || time.Since(w.loadedAt) < loadRetry)
	var out string
	if !current {
		var lerr *LoadError
		var err error
		out, lerr, err = load(w, h)
		if err != nil {
			return "", r.died(ctx, s, w, "while loading the hook"), true
		}
		w.loaded, w.loadSig, w.loadErr, w.loadedAt = true, sig, lerr, time.Now()
		if lerr != nil {
			r.log.Error("python hook does not load", "error", lerr)
		}
	}
	if w.loadErr != nil {
		detail := w.loadErr.Traceback
		if detail == "" {
			detail = w.loadErr.Msg + "\n"
		}
		return "", runner.Result{
			Outcome:  runner.Error,
			ExitCode: -1,
			Output:   runner.Tail(out+detail, runner.OutputTail),
			Err:      w.loadErr,
		}, true
	}
	return out, runner.Result{}, false
}

// exchange sends the run frame and serves the worker until it is done.
func (r *pyRunner) exchange(ctx context.Context, s *slot, w *worker, ev hookctl.Event) runner.Result {
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
	if err := w.send(&fr); err != nil {
		return r.died(ctx, s, w, "")
	}
	var in inFrame
	for {
		if err := w.recv(&in); err != nil {
			if !errors.Is(err, errWorkerDied) {
				// Garbage on the protocol pipe: the worker cannot be trusted.
				w.kill()
				r.drop(s, w)
				s.failures++
				return runner.Result{Outcome: runner.Failed, ExitCode: -1, Output: w.stray.take(), Err: err}
			}
			return r.died(ctx, s, w, "")
		}
		switch in.Op {
		case "log":
			r.log.Log(ctx, logLevel(in.Level), in.Msg)
		case "publish":
			reply := replyFrame{Op: "publish_result"}
			if r.host == nil {
				reply = replyFrame{Op: "publish_error", Error: "publishing is not available"}
			} else if id, err := r.host.Publish(ctx, ev.Profile, in.Service, in.Node, in.ItemID, in.Payload); err != nil {
				reply = replyFrame{Op: "publish_error", Error: err.Error()}
			} else {
				reply.ItemID = id
			}
			if err := w.send(&reply); err != nil {
				return r.died(ctx, s, w, "")
			}
		case "done":
			s.failures = 0
			out := in.Output + w.stray.take()
			if in.OK {
				return runner.Result{Outcome: runner.OK, ExitCode: -1, Output: runner.Tail(out, runner.OutputTail)}
			}
			if in.Traceback != "" {
				if out != "" && !strings.HasSuffix(out, "\n") {
					out += "\n"
				}
				out += in.Traceback
			}
			return runner.Result{
				Outcome:  runner.Failed,
				ExitCode: -1,
				Output:   runner.Tail(out, runner.OutputTail),
				Err:      fmt.Errorf("hook raised %s", in.Error),
			}
		default:
			w.kill()
			r.drop(s, w)
			s.failures++
			return runner.Result{Outcome: runner.Failed, ExitCode: -1, Err: fmt.Errorf("python worker sent unexpected %q", in.Op)}
		}
	}
}

// died builds the result of a run whose worker went away: killed by us at
// the deadline (Timeout), or exited by itself (Failed, restarted next time).
func (r *pyRunner) died(ctx context.Context, s *slot, w *worker, when string) runner.Result {
	if ctx.Err() != nil {
		r.drop(s, w)
		return ctxResult(ctx, "python hook stopped", w.stray.take())
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
	return runner.Result{
		Outcome:  runner.Failed,
		ExitCode: w.exitCode(),
		Output:   runner.Tail(w.stray.take(), runner.OutputTail),
		Err:      fmt.Errorf("%s: %s", msg, w.exitText()),
	}
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
		for _, s := range held {
			s.mu.Lock()
			w := s.w
			s.w = nil
			s.mu.Unlock()
			if w != nil {
				w.reap()
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
