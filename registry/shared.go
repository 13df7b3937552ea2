package registry

import (
	"sync"

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

// sharedWrites is the queue of writes waiting for a shared transaction.
type sharedWrites struct {
	mu    sync.Mutex
	queue []*sharedWrite
}

// sharedWrite is one write: f, and its result once done.
type sharedWrite struct {
	f    func(*bolt.Tx) error
	err  error
	done bool // set, like err, under the Store's mu
}

func (q *sharedWrites) push(w *sharedWrite) {
	q.mu.Lock()
	q.queue = append(q.queue, w)
	q.mu.Unlock()
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
func (s *Store) sharedUpdate(f func(*bolt.Tx) error) error {
	w := &sharedWrite{f: f}
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
