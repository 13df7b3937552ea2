package dispatch

import (
	"sync"

	"hookctl.dev/hookctl"
	"hookctl.dev/hookctl/runner"
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

func newHistory(size int) *history {
	return &history{size: size}
}

// add assigns r the next ID and stores it, evicting the oldest run when full.
func (h *history) add(r hookctl.Run) {
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
		if !selected(r, q) {
			continue
		}
		out = append(out, *r)
		if len(out) == limit {
			break
		}
	}
	return out
}

func selected(r *hookctl.Run, q hookctl.RunQuery) bool {
	if q.Profile != "" && r.Hook.Profile != q.Profile {
		return false
	}
	if q.Node != "" && r.Hook.Node != q.Node {
		return false
	}
	if q.Hook != "" && r.HookName != q.Hook && r.Hook.Arg != q.Hook {
		return false
	}
	if q.FailedOnly && r.Outcome == string(runner.OK) {
		return false
	}
	return true
}
