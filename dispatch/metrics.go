package dispatch

import (
	"errors"
	"log/slog"
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"hookctl.dev/hookctl"
	"hookctl.dev/hookctl/runner"
)

// metrics are the dispatcher's Prometheus collectors. They exist (and count)
// even when no registerer is given, so that the code has one path.
type metrics struct {
	received *prometheus.CounterVec   // profile
	matched  prometheus.Counter       // events that matched at least one hook
	runs     *prometheus.CounterVec   // type, outcome
	duration *prometheus.HistogramVec // type
	drops    *prometheus.CounterVec   // type
	depth    prometheus.Gauge         // runs waiting in every queue
	// byHook counts runs per named hook (set, name, outcome); nil unless
	// Options.HookMetrics: its cardinality is the user's hooks.
	byHook *prometheus.CounterVec

	// byProfile caches received's children: WithLabelValues hashes its
	// labels, a sync.Map load is cheaper on the hot path.
	byProfile sync.Map // string → prometheus.Counter

	mu     sync.Mutex
	byType map[hookctl.Type]*typeMetrics
}

// typeMetrics are the children of one hook type, bound once so that a run
// does no label lookup.
type typeMetrics struct {
	runs     map[runner.Outcome]prometheus.Counter
	duration prometheus.Observer
	drops    prometheus.Counter
}

func newMetrics(reg prometheus.Registerer, log *slog.Logger) *metrics {
	m := &metrics{
		received: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hookctl_events_received_total",
			Help: "PubSub events handed to the dispatcher, by profile.",
		}, []string{"profile"}),
		matched: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "hookctl_events_matched_total",
			Help: "Events that matched at least one hook.",
		}),
		runs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hookctl_runs_total",
			Help: "Hook runs recorded, by hook type and outcome (ok, failed, timeout, error, dropped).",
		}, []string{"type", "outcome"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "hookctl_run_duration_seconds",
			Help:    "Duration of hook runs, by hook type.",
			Buckets: []float64{.001, .005, .01, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60},
		}, []string{"type"}),
		drops: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hookctl_queue_drops_total",
			Help: "Events dropped because the hook's queue was full, by hook type.",
		}, []string{"type"}),
		depth: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "hookctl_queue_depth",
			Help: "Runs waiting in hook queues.",
		}),
		byType: make(map[hookctl.Type]*typeMetrics),
	}
	if reg != nil {
		m.received = register(reg, m.received, log)
		m.matched = register(reg, m.matched, log)
		m.runs = register(reg, m.runs, log)
		m.duration = register(reg, m.duration, log)
		m.drops = register(reg, m.drops, log)
		m.depth = register(reg, m.depth, log)
	}
	return m
}

// register registers c, or returns the collector already registered under
// its name (a second dispatcher on the same registry shares the counters).
func register[T prometheus.Collector](reg prometheus.Registerer, c T, log *slog.Logger) T {
	err := reg.Register(c)
	if err == nil {
		return c
	}
	var are prometheus.AlreadyRegisteredError
	if errors.As(err, &are) {
		if ex, ok := are.ExistingCollector.(T); ok {
			return ex
		}
	}
	log.Warn("registering dispatch metrics", "error", err)
	return c
}

func (m *metrics) receivedFor(profile string) prometheus.Counter {
	if c, ok := m.byProfile.Load(profile); ok {
		return c.(prometheus.Counter)
	}
	c, _ := m.byProfile.LoadOrStore(profile, m.received.WithLabelValues(profile))
	return c.(prometheus.Counter)
}

var outcomes = []runner.Outcome{runner.OK, runner.Failed, runner.Timeout, runner.Error, runner.Dropped, runner.Skipped}

func (m *metrics) forType(t hookctl.Type) *typeMetrics {
	m.mu.Lock()
	defer m.mu.Unlock()
	if tm, ok := m.byType[t]; ok {
		return tm
	}
	tm := &typeMetrics{
		runs:     make(map[runner.Outcome]prometheus.Counter, len(outcomes)),
		duration: m.duration.WithLabelValues(string(t)),
		drops:    m.drops.WithLabelValues(string(t)),
	}
	for _, o := range outcomes {
		tm.runs[o] = m.runs.WithLabelValues(string(t), string(o))
	}
	m.byType[t] = tm
	return tm
}

// countRun counts one recorded run; an outcome outside the known ones (a
// misbehaving runner) gets its own label rather than being lost.
func (m *metrics) countRun(t hookctl.Type, tm *typeMetrics, o runner.Outcome) {
	if c, ok := tm.runs[o]; ok {
		c.Inc()
		return
	}
	m.runs.WithLabelValues(string(t), string(o)).Inc()
}

// enableHookMetrics adds hookctl_hook_runs_total{set,name,outcome}.
func (m *metrics) enableHookMetrics(reg prometheus.Registerer, log *slog.Logger) {
	m.byHook = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "hookctl_hook_runs_total",
		Help: "Runs of each named hook, by set, name and outcome (opt-in: config metrics_hook_names).",
	}, []string{"set", "name", "outcome"})
	if reg != nil {
		m.byHook = register(reg, m.byHook, log)
	}
}

// countHookRun counts a run of a named hook when per-hook metrics are on.
func (m *metrics) countHookRun(h hookctl.Hook, o runner.Outcome) {
	if m.byHook != nil && h.Name != "" {
		m.byHook.WithLabelValues(h.Owner, h.Name, string(o)).Inc()
	}
}
