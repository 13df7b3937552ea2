package registry

import (
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
)

// The per-item writes, the run history's (AppendRuns) and catch-up's
// (MarkFinished), each come once per 50 ms window, usually at the same
// moment, and each paid a transaction of its own, whose commit (page
// writes, two fdatasyncs) was most of their cost. sharedUpdate puts the
// writes that wait together into one transaction (group commit): whoever
// gets the writer lock takes every queued write, and those queued while it
// runs them, then commits once. When a write fails, the shared
// transaction is rolled back and each write is done again in a
// transaction of its own, so that one write's error stays its own.
//
// The two writers' windows end at the same instants (WindowWait), but
// their goroutines wake up to a millisecond apart, by which time the first
// one's writes are done: so a lone write waits up to shareWait for a
// partner before it commits (a commit delay, as databases' group commit
// has), when the other writer wrote within expectWindow (with the memory
// run history, catch-up writes alone and does not wait). Nothing waits
// for the transaction but the writers' own goroutines.

// shareWait is how long a lone write waits for another to share its
// transaction; expectWindow how recently the other writer must have
// written for the wait (two 50 ms windows).
const (
	shareWait    = 2 * time.Millisecond
	expectWindow = 100 * time.Millisecond
)

// writeKind is who writes: the run history or catch-up.
type writeKind int

const (
	writeRuns writeKind = iota
	writeMarks
)

// sharedWrites is the queue of writes waiting for a shared transaction.
type sharedWrites struct {
	mu    sync.Mutex
	queue []*sharedWrite
	// arrived has a token when a write was queued since the last take.
	arrived chan struct{}
	// last is when a write of each kind was last queued.
	last [2]time.Time
}

// sharedWrite is one write: f, and its result once done.
type sharedWrite struct {
	kind writeKind
	f    func(*bolt.Tx) error
	err  error
	done bool // set, like err, under the Store's mu
}

func (q *sharedWrites) push(w *sharedWrite) {
	q.mu.Lock()
	q.queue = append(q.queue, w)
	q.last[w.kind] = time.Now()
	if q.arrived == nil {
		q.arrived = make(chan struct{}, 1)
	}
	arrived := q.arrived
	q.mu.Unlock()
	select {
	case arrived <- struct{}{}:
	default:
	}
}

// expecting reports whether a write of the other kind than k was queued
// within expectWindow before now.
func (q *sharedWrites) expecting(k writeKind, now time.Time) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	last := q.last[writeRuns+writeMarks-k]
	return !last.IsZero() && now.Sub(last) < expectWindow
}

// partner waits up to shareWait for a write to be queued, when one of the
// other kind than k is expected, and returns whether one was.
func (q *sharedWrites) partner(k writeKind) bool {
	if !q.expecting(k, time.Now()) {
		return false
	}
	q.mu.Lock()
	if q.arrived == nil {
		q.arrived = make(chan struct{}, 1)
	}
	arrived := q.arrived
	q.mu.Unlock()
	select {
	case <-arrived: // a token of a write already taken
	default:
	}
	q.mu.Lock()
	queued := len(q.queue) > 0
	q.mu.Unlock()
	if queued {
		return true
	}
	t := time.NewTimer(shareWait)
	defer t.Stop()
	select {
	case <-arrived:
		return true
	case <-t.C:
		return false
	}
}

// take returns the queued writes and empties the queue.
func (q *sharedWrites) take() []*sharedWrite {
	q.mu.Lock()
	defer q.mu.Unlock()
	ws := q.queue
	q.queue = nil
	return ws
}

func finish(ws []*sharedWrite, err error) {
	for _, w := range ws {
		w.err, w.done = err, true
	}
}

// sharedUpdate runs f in a write transaction, shared with the other
// sharedUpdate writes queued meanwhile, and returns f's error or the
// commit's (unwrapped: the callers say what they were writing).
func (s *Store) sharedUpdate(k writeKind, f func(*bolt.Tx) error) error {
	w := &sharedWrite{kind: k, f: f}
	s.shared.push(w)
	s.mu.Lock()
	defer s.mu.Unlock()
	if w.done { // the writer before us took it
		return w.err
	}
	if s.closed {
		finish(s.shared.take(), errClosed) // w among them
		return w.err
	}
	var all []*sharedWrite
	err := s.db.Update(func(tx *bolt.Tx) error {
		for ws := s.shared.take(); len(ws) > 0; ws = s.shared.take() {
			all = append(all, ws...)
			for _, x := range ws {
				if err := x.f(tx); err != nil {
					return err
				}
			}
			if len(all) == 1 && !s.shared.partner(all[0].kind) {
				break
			}
		}
		return nil
	})
	switch {
	case err == nil || len(all) == 1:
		finish(all, err)
	case len(all) == 0: // no transaction: every queued write fails with it
		finish(s.shared.take(), err)
	default: // rolled back: each on its own
		for _, x := range all {
			x.err, x.done = s.db.Update(x.f), true
		}
	}
	return w.err
}

// WindowWait is how long a writer that gathers writes for window waits
// from now before writing them: until the next multiple of window on the
// clock (at most window), the same instant for every such writer, so that
// the run history's and catch-up's writes of a window meet in one
// sharedUpdate. Waiting a full window from each writer's own first write
// left them a commit apart for good once they had drifted.
func WindowWait(now time.Time, window time.Duration) time.Duration {
	return now.Truncate(window).Add(window).Sub(now)
}
