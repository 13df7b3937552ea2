package runlog

import (
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"hookctl.dev/hookctl"
	"hookctl.dev/hookctl/registry"
)

// copyStore keeps copies of the runs it is given, as the registry writes
// them out, and fails the writes it is told to.
type copyStore struct {
	mu   sync.Mutex
	runs []hookctl.Run
	fail bool
}

func (s *copyStore) AppendRuns(runs []hookctl.Run, _ registry.RunLimits, _ time.Time) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fail {
		return fmt.Errorf("disk full")
	}
	s.runs = append(s.runs, runs...)
	return nil
}

func (s *copyStore) Runs(hookctl.RunQuery, int) ([]hookctl.Run, error) { return nil, nil }
func (s *copyStore) Run(uint64) (hookctl.Run, error)                   { return hookctl.Run{}, nil }

func run(id uint64) hookctl.Run {
	return hookctl.Run{ID: id, ItemID: fmt.Sprint("i", id), Output: fmt.Sprint("out ", id), Outcome: "ok"}
}

// TestFlushWritesEachRunOnce: windows of runs, small and large, and a
// failed write, reach the store in order, each run once, none changed by
// the slice being used again for the next window.
func TestFlushWritesEachRunOnce(t *testing.T) {
	st := &copyStore{}
	l := New(st, registry.RunLimits{}, nil)
	var want []hookctl.Run
	id := uint64(0)
	for w, n := range []int{1, 40, 3, 2000, 7, 0, 40} {
		st.fail = w == 2
		for range n {
			id++
			l.Add(run(id))
			if !st.fail {
				want = append(want, run(id))
			}
		}
		l.Flush()
	}
	if !slices.EqualFunc(st.runs, want, func(a, b hookctl.Run) bool { return a == b }) {
		t.Fatalf("store got %d runs, want %d in order (first difference at %d)", len(st.runs), len(want), firstDiff(st.runs, want))
	}
	if cap(l.spare) > maxSpare {
		t.Errorf("kept a slice of capacity %d after a burst, want at most %d", cap(l.spare), maxSpare)
	}
}

func firstDiff(a, b []hookctl.Run) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

// BenchmarkAddFlush: a window of 40 runs (50 ms at 800 items/s) added
// and handed to a store that writes nothing: the history's own cost per
// run, the store's apart.
func BenchmarkAddFlush(b *testing.B) {
	l := New(nopStore{}, registry.RunLimits{}, nil)
	r := run(1)
	r.Input = &hookctl.Event{ItemID: "i1", ItemXML: "<item id='i1'/>"}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		l.Add(r)
		if i%40 == 39 {
			l.Flush()
		}
	}
}

type nopStore struct{}

func (nopStore) AppendRuns([]hookctl.Run, registry.RunLimits, time.Time) error { return nil }
func (nopStore) Runs(hookctl.RunQuery, int) ([]hookctl.Run, error)             { return nil, nil }
func (nopStore) Run(uint64) (hookctl.Run, error)                               { return hookctl.Run{}, nil }
