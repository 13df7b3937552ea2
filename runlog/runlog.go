// Package runlog is the durable run history: it gathers the runs the
// dispatcher records and writes them to the store in batches (one
// transaction per 50 ms window, as catch-up writes its marks), bounded by
// count and age, and answers `hookctl runs` from the store.
package runlog

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"hookctl.dev/hookctl"
	"hookctl.dev/hookctl/registry"
)

// Defaults of the limits (config runs_keep, runs_max_age).
const (
	DefaultKeep   = 10000
	DefaultMaxAge = 30 * 24 * time.Hour
)

// DefaultLimit is how many runs Query returns when the query sets none.
const DefaultLimit = 100

// batchWindow is how long the writer gathers runs before writing them in
// one transaction: one fsync per window instead of per run. A crash loses
// at most this window of records (the runs themselves are not affected).
// Windows end on the clock's multiples of it, as catch-up's do, so that
// both writes of a window share a transaction (registry.WindowWait).
const batchWindow = 50 * time.Millisecond

// Store is what the history needs of the registry. AppendRuns must not
// keep runs: the slice is used again for the next runs.
type Store interface {
	AppendRuns(runs []hookctl.Run, lim registry.RunLimits, now time.Time) error
	Runs(q hookctl.RunQuery, limit int) ([]hookctl.Run, error)
	Run(id uint64) (hookctl.Run, error)
}

var _ Store = (*registry.Store)(nil)

// Log is the durable run history. Add never blocks on the store.
type Log struct {
	store Store
	lim   registry.RunLimits
	log   *slog.Logger

	mu      sync.Mutex
	pending []hookctl.Run
	// spare is the slice of the last write, emptied, that pending becomes
	// at the next: a window's runs are not appended to a slice grown from
	// nothing each time (a run is ~400 bytes).
	spare []hookctl.Run
	kick  chan struct{}

	flushMu sync.Mutex // one write at a time, so a query sees every run added before it
}

// New returns a history writing to store, keeping what lim allows.
func New(store Store, lim registry.RunLimits, log *slog.Logger) *Log {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Log{store: store, lim: lim, log: log, kick: make(chan struct{}, 1)}
}

// Add queues r (its ID assigned) for the next write.
func (l *Log) Add(r hookctl.Run) {
	l.mu.Lock()
	l.pending = append(l.pending, r)
	l.mu.Unlock()
	select {
	case l.kick <- struct{}{}:
	default:
	}
}

// Run writes queued runs, one transaction per window, until ctx ends;
// then it writes what is left.
func (l *Log) Run(ctx context.Context) error {
	wait := time.NewTimer(batchWindow)
	wait.Stop()
	defer wait.Stop()
	for {
		select {
		case <-ctx.Done():
			l.Flush()
			return nil
		case <-l.kick:
		}
		wait.Reset(registry.WindowWait(time.Now(), batchWindow))
		select {
		case <-ctx.Done():
			l.Flush()
			return nil
		case <-wait.C:
		}
		l.Flush()
	}
}

// Flush writes every queued run now. A failed write is logged and its
// runs are lost to the history (the store stays consistent).
func (l *Log) Flush() {
	l.flushMu.Lock()
	defer l.flushMu.Unlock()
	l.mu.Lock()
	runs := l.pending
	l.pending, l.spare = l.spare, nil
	l.mu.Unlock()
	if err := l.store.AppendRuns(runs, l.lim, time.Now()); err != nil {
		l.log.Error("run history: writing runs", "count", len(runs), "err", err)
	}
	if cap(runs) > maxSpare {
		return // a burst's slice is not kept
	}
	clear(runs) // the runs' strings are not kept either
	l.mu.Lock()
	l.spare = runs[:0]
	l.mu.Unlock()
}

// maxSpare bounds the capacity of the slice kept for the next window.
const maxSpare = 1024

// Query returns the runs q selects, newest first, at most q.Limit
// (default DefaultLimit), including those added a moment ago.
func (l *Log) Query(q hookctl.RunQuery) ([]hookctl.Run, error) {
	l.Flush()
	limit := q.Limit
	if limit <= 0 {
		limit = DefaultLimit
	}
	return l.store.Runs(q, limit)
}

// Get returns run id in full, with its attempt number.
func (l *Log) Get(id uint64) (hookctl.Run, error) {
	l.Flush()
	return l.store.Run(id)
}
