package dispatch

import (
	"sync"

	"hookctl.dev/hookctl"
)

// defaultRunsLimit is how many runs Runs returns when the query sets no limit.
const defaultRunsLimit = 100

// history is the run history: a fixed-size ring of the most recent runs.
// One short mutex section per run is cheap next to running a hook.
type history struct {
	mu     sync.Mutex
	runs   []hookctl.Run // grows up to size, then wraps
	size   int
	next   int // index the next run is written at, once full
	lastID uint64
}

func newHistory(size int, lastID uint64) *history {
	return &history{size: size, lastID: lastID}
}

// add assigns r the next ID and stores it, evicting the oldest run when
// full; it returns r with its ID.
func (h *history) add(r hookctl.Run) hookctl.Run {
	h.mu.Lock()
	h.lastID++
	r.ID = h.lastID
	if len(h.runs) < h.size {
		h.runs = append(h.runs, r)
	} else {
		h.runs[h.next] = r
		h.next++
		if h.next == h.size {
			h.next = 0
		}
	}
	h.mu.Unlock()
	return r
}

// query returns the runs selected by q, newest first.
func (h *history) query(q hookctl.RunQuery) []hookctl.Run {
	limit := q.Limit
	if limit <= 0 {
		limit = defaultRunsLimit
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	n := len(h.runs)
	out := make([]hookctl.Run, 0, min(limit, n))
	// Newest is just before next (when full) or at the end (while growing).
	newest := n - 1
	if n == h.size {
		newest = h.next - 1
	}
	for i := range n {
		idx := newest - i
		if idx < 0 {
			idx += n
		}
		r := &h.runs[idx]
		if !q.Selects(r) {
			continue
		}
		out = append(out, *r)
		if len(out) == limit {
			break
		}
	}
	return out
}
