package reconcile

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the watch loop's Prometheus metrics. Create them with
// NewMetrics; a nil *Metrics records nothing.
type Metrics struct {
	reconciles     prometheus.Counter
	failures       prometheus.Counter
	reloadFailures prometheus.Counter
	drift          *prometheus.CounterVec
	changes        *prometheus.CounterVec
	lastSuccess    prometheus.Gauge
	hooks          *prometheus.GaugeVec
	conflicts      prometheus.Gauge
	reloadFailing  prometheus.Gauge
}

// NewMetrics creates the metrics and registers them with reg (which may be
// nil, to record without exposing).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		reconciles: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "hookctl_watch_reconciles_total",
			Help: "Reconcile rounds run (file changes and resyncs).",
		}),
		failures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "hookctl_watch_reconcile_failures_total",
			Help: "Reconcile rounds that failed (registry unreachable, batch refused, empty set refused).",
		}),
		reloadFailures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "hookctl_watch_reload_failures_total",
			Help: "Reads of the hooks files that failed validation; the last good set stayed in force.",
		}),
		drift: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hookctl_watch_drift_total",
			Help: "Differences found in the registry while the files had not changed, by kind (create = a desired hook was missing, update = changed, delete = an extra hook of the set).",
		}, []string{"kind"}),
		changes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hookctl_watch_changes_total",
			Help: "Hook changes applied to the registry, by action.",
		}, []string{"action"}),
		lastSuccess: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "hookctl_watch_last_success_timestamp_seconds",
			Help: "Unix time of the last successful reconcile.",
		}),
		hooks: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "hookctl_watch_hooks",
			Help: "Desired hooks per set in the set in force.",
		}, []string{"set"}),
		conflicts: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "hookctl_watch_conflicts",
			Help: "Desired hooks not applied because a live hook with the same key belongs to someone else.",
		}),
		reloadFailing: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "hookctl_watch_files_invalid",
			Help: "1 while the hooks files on disk are invalid and the last good set is in force, else 0.",
		}),
	}
	for _, a := range []Action{ActionCreate, ActionUpdate, ActionDelete} {
		m.drift.WithLabelValues(string(a))
		m.changes.WithLabelValues(string(a))
	}
	if reg != nil {
		reg.MustRegister(m.reconciles, m.failures, m.reloadFailures, m.drift, m.changes,
			m.lastSuccess, m.hooks, m.conflicts, m.reloadFailing)
	}
	return m
}
