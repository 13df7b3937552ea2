// Package alert tells people when hooks fail, a profile's session stays
// down, catch-up finds a gap or the hooks files stop applying: signals from
// the backend are coalesced per subject (Coalescer: the first failure at
// once, then at most one summary per window with the count, then a
// recovery) and sent to sinks (an XMPP chat message through a profile's
// session, a webhook) without ever blocking the backend.
package alert

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"hookctl.dev/hookctl"
)

// Sink sends one alert message somewhere. Send must return by ctx's
// deadline.
type Sink interface {
	Send(ctx context.Context, m Message) error
}

// SinkFunc adapts a function to Sink.
type SinkFunc func(ctx context.Context, m Message) error

// Send calls f.
func (f SinkFunc) Send(ctx context.Context, m Message) error { return f(ctx, m) }

var _ Sink = SinkFunc(nil)

// DefaultTimeout is a send's deadline when its route sets none.
const DefaultTimeout = 10 * time.Second

// Route is a named sink, the kinds it takes and its deadline.
type Route struct {
	Name    string
	Sink    Sink
	Kinds   []Kind        // nil: every kind
	Timeout time.Duration // each send's deadline (default DefaultTimeout)
}

// Options configure a Manager.
type Options struct {
	// Window is the coalescing window (default 5m).
	Window time.Duration
	// SessionDownAfter is how long a session is down before it is told
	// (default 2m).
	SessionDownAfter time.Duration
	Routes           []Route
	// Sessions report each profile's session: up, and its last error.
	Sessions map[string]func() (up bool, lastErr string)
	// Redact hides secret values in every message (nil: none).
	Redact func(string) string
	Logger *slog.Logger
	// Metrics, if set, receives hookctl_alerts_*.
	Metrics prometheus.Registerer
	// QueueSize bounds the signals waiting for the manager (default
	// 4096); SinkQueue the messages waiting for each sink (default 64).
	// Past either, signals and messages are dropped and counted.
	QueueSize, SinkQueue int
	// Tick is how often sessions are polled and summaries sent (default 1s).
	Tick time.Duration
	// RetryEvery is how often a sink that was unavailable is tried again
	// (default 5s).
	RetryEvery time.Duration
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// Manager receives signals from any goroutine without blocking, and its
// Run goroutine (the one owner of the coalescing state) turns them into
// messages for the sinks, each sink with its own sender goroutine.
type Manager struct {
	opts    Options
	log     *slog.Logger
	in      chan Signal
	dropped atomic.Uint64 // signals lost to a full queue, not yet told

	// failingHooks are the hooks whose last run failed, so that a success
	// is only queued when it is a recovery (runs succeed by thousands).
	mu           sync.Mutex
	failingHooks map[hookctl.Key]hookName
	nFailing     atomic.Int32

	sent, failed, lost *prometheus.CounterVec
}

// hookName is what a failing hook's subject is made of.
type hookName struct{ name, set string }

// New returns a manager; Run runs it.
func New(o Options) *Manager {
	if o.Window <= 0 {
		o.Window = 5 * time.Minute
	}
	if o.SessionDownAfter <= 0 {
		o.SessionDownAfter = 2 * time.Minute
	}
	if o.QueueSize <= 0 {
		o.QueueSize = 4096
	}
	if o.SinkQueue <= 0 {
		o.SinkQueue = 64
	}
	if o.Tick <= 0 {
		o.Tick = time.Second
	}
	if o.RetryEvery <= 0 {
		o.RetryEvery = 5 * time.Second
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Redact == nil {
		o.Redact = func(s string) string { return s }
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	m := &Manager{opts: o, log: o.Logger.With("component", "alerts"), in: make(chan Signal, o.QueueSize),
		failingHooks: map[hookctl.Key]hookName{}}
	m.sent = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "hookctl_alerts_sent_total",
		Help: "Alert messages sent, by sink."}, []string{"sink"})
	m.failed = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "hookctl_alerts_failed_total",
		Help: "Alert messages that a sink failed to send (error or deadline), by sink."}, []string{"sink"})
	m.lost = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "hookctl_alerts_dropped_total",
		Help: "Alert signals (where=queue) or messages (where=sink name) dropped because a queue was full."}, []string{"where"})
	if o.Metrics != nil {
		o.Metrics.MustRegister(m.sent, m.failed, m.lost)
	}
	return m
}

// Signal queues sig without blocking; a full queue drops it, counted
// and told in the next message.
func (m *Manager) Signal(sig Signal) {
	if sig.At.IsZero() {
		sig.At = m.opts.Now()
	}
	select {
	case m.in <- sig:
	default:
		m.dropped.Add(1)
		m.lost.WithLabelValues("queue").Inc()
	}
}

// HookRun takes a recorded run: a failure (failed, timeout, error,
// dropped) is a signal; a success is one only when the hook was failing.
// Called on run goroutines; it never blocks.
func (m *Manager) HookRun(r hookctl.Run) {
	fail := false
	switch r.Outcome {
	case "ok":
		if m.nFailing.Load() == 0 {
			return // the common case: nothing to recover
		}
	case "failed", "timeout", "error", "dropped":
		fail = true
	default:
		return // skipped: neither
	}
	m.mu.Lock()
	_, was := m.failingHooks[r.Hook]
	switch {
	case fail && !was:
		m.failingHooks[r.Hook] = hookName{r.HookName, r.Set}
		m.nFailing.Add(1)
	case !fail && was:
		delete(m.failingHooks, r.Hook)
		m.nFailing.Add(-1)
	}
	m.mu.Unlock()
	if !fail && !was {
		return
	}
	if !fail {
		m.Signal(Signal{Kind: HookFailure, Subject: HookSubject(r), OK: true})
		return
	}
	detail := r.Outcome
	if r.Error != "" {
		detail += ": " + r.Error
	}
	if last := lastLine(r.Output); last != "" {
		detail += "; output: " + last
	}
	m.Signal(Signal{Kind: HookFailure, Subject: HookSubject(r), Detail: detail})
}

// Hooks takes the registry's hooks after each change: a failing hook that
// is gone will never succeed again, so its condition ends ("was removed").
func (m *Manager) Hooks(hooks []hookctl.Hook) {
	if m.nFailing.Load() == 0 {
		return
	}
	present := make(map[hookctl.Key]bool, len(hooks))
	for _, h := range hooks {
		present[h.Key] = true
	}
	var gone []hookctl.Run
	m.mu.Lock()
	for k, name := range m.failingHooks {
		if !present[k] {
			delete(m.failingHooks, k)
			m.nFailing.Add(-1)
			gone = append(gone, hookctl.Run{Hook: k, HookName: name.name, Set: name.set})
		}
	}
	m.mu.Unlock()
	for _, r := range gone {
		m.Signal(Signal{Kind: HookFailure, Subject: HookSubject(r), OK: true, Detail: "was removed"})
	}
}

// HookSubject names a run's hook in messages: its set and name, or its key.
func HookSubject(r hookctl.Run) string {
	name := r.HookName
	if name != "" && r.Set != "" {
		name = r.Set + "/" + name
	}
	if name != "" {
		return fmt.Sprintf("hook %q", name)
	}
	return "hook " + clip(r.Hook.String())
}

// Run coalesces signals, polls the sessions and sends messages until ctx
// ends; it waits for its sender goroutines before returning.
func (m *Manager) Run(ctx context.Context) error {
	c := NewCoalescer(m.opts.Window)
	down := NewDownTracker(m.opts.SessionDownAfter)
	queues := make([]chan Message, len(m.opts.Routes))
	var wg sync.WaitGroup
	for i, r := range m.opts.Routes {
		queues[i] = make(chan Message, m.opts.SinkQueue)
		wg.Go(func() { m.sender(ctx, r, queues[i]) })
	}
	defer wg.Wait()
	t := time.NewTicker(m.opts.Tick)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case sig := <-m.in:
			if msg, ok := c.Observe(sig); ok {
				m.route(queues, msg)
			}
		case <-t.C:
			now := m.opts.Now()
			for _, name := range sortedKeys(m.opts.Sessions) {
				up, lastErr := m.opts.Sessions[name]()
				if sig, ok := down.Observe(now, name, up, lastErr); ok {
					if msg, ok := c.Observe(sig); ok {
						m.route(queues, msg)
					}
				}
			}
			for _, msg := range c.Tick(now) {
				m.route(queues, msg)
			}
		}
	}
}

// route renders msg, redacted, and queues it for each sink that takes its
// kind, dropping it (counted) for a sink whose queue is full.
func (m *Manager) route(queues []chan Message, msg Message) {
	msg.Dropped = m.dropped.Swap(0)
	msg.Subject = m.opts.Redact(msg.Subject)
	msg.Detail = m.opts.Redact(clip(msg.Detail))
	msg.Text = m.opts.Redact(Render(msg))
	m.log.Info("alert", "kind", msg.Kind, "subject", msg.Subject, "state", msg.State, "count", msg.Count, "total", msg.Total)
	for i, r := range m.opts.Routes {
		if r.Kinds != nil && !slices.Contains(r.Kinds, msg.Kind) {
			continue
		}
		select {
		case queues[i] <- msg:
		default:
			m.lost.WithLabelValues(r.Name).Inc()
			m.log.Warn("alert sink queue full, message dropped", "sink", r.Name, "subject", msg.Subject)
		}
	}
}

// maxHeld bounds the messages a sink holds while it is unavailable.
const maxHeld = 16

// sender sends r's messages in order, each within r's deadline. A message
// the sink could not take because it is unavailable (the XMPP session is
// down: hookctl.ErrUnavailable) is held, with at most maxHeld others, and
// tried again every RetryEvery, so that an outage's alerts arrive once
// the session is back; any other failure drops the message.
func (m *Manager) sender(ctx context.Context, r Route, q <-chan Message) {
	var held []Message
	retry := time.NewTicker(m.opts.RetryEvery)
	defer retry.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case msg := <-q:
			if len(held) == maxHeld {
				m.lost.WithLabelValues(r.Name).Inc()
				m.log.Warn("alert sink unavailable too long, oldest held message dropped", "sink", r.Name, "subject", held[0].Subject)
				held = held[1:]
			}
			held = append(held, msg)
		case <-retry.C:
		}
		held = m.sendHeld(ctx, r, held)
	}
}

// sendHeld sends held messages in order until the sink is unavailable,
// and returns those left.
func (m *Manager) sendHeld(ctx context.Context, r Route, held []Message) []Message {
	timeout := cmp.Or(r.Timeout, DefaultTimeout)
	for len(held) > 0 && ctx.Err() == nil {
		sctx, cancel := context.WithTimeout(ctx, timeout)
		err := r.Sink.Send(sctx, held[0])
		cancel()
		switch {
		case err == nil:
			m.sent.WithLabelValues(r.Name).Inc()
		case errors.Is(err, hookctl.ErrUnavailable) && ctx.Err() == nil:
			return held // kept for the next try
		default:
			m.failed.WithLabelValues(r.Name).Inc()
			if !errors.Is(err, context.Canceled) {
				m.log.Warn("sending alert failed", "sink", r.Name, "subject", held[0].Subject, "err", m.opts.Redact(err.Error()))
			}
		}
		held = held[1:]
	}
	return held
}

// lastLine is the last non-blank line of s, clipped.
func lastLine(s string) string {
	s = strings.TrimRight(s, " \t\r\n")
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		s = s[i+1:]
	}
	return clip(s)
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}
