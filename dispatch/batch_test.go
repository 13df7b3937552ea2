package dispatch

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"hookctl.dev/hookctl"
	"hookctl.dev/hookctl/runner"
	"hookctl.dev/hookctl/runner/python"
)

// batchFactory makes batchRunners: Run blocks while gate is open (so
// that a queue builds up behind the first run); RunBatch records the size
// of each batch, fails items named "fail" and returns after stopAfter
// items of a batch when set, as it does when its context ends.
type batchFactory struct {
	fakeFactory
	gate      chan struct{}
	started   chan struct{}
	stopAfter int

	mu      sync.Mutex
	batches []int
	order   []string // items as run, by Run or RunBatch
}

func (f *batchFactory) New(h hookctl.Hook, _ runner.Host) (runner.Runner, error) {
	return &batchRunner{f: f}, nil
}

type batchRunner struct{ f *batchFactory }

func (r *batchRunner) Run(ctx context.Context, ev hookctl.Event) runner.Result {
	if ev.ItemID == "first" {
		close(r.f.started)
		<-r.f.gate
	}
	r.f.mu.Lock()
	r.f.order = append(r.f.order, ev.ItemID)
	r.f.mu.Unlock()
	return result(&ev)
}

func result(ev *hookctl.Event) runner.Result {
	if ev.ItemID == "fail" {
		return runner.Result{Outcome: runner.Failed, ExitCode: -1, Err: errors.New("failed on purpose")}
	}
	return runner.Result{Outcome: runner.OK}
}

func (r *batchRunner) RunBatch(ctx context.Context, timeout time.Duration, evs []*hookctl.Event, done func(int, time.Time, runner.Result)) int {
	r.f.mu.Lock()
	r.f.batches = append(r.f.batches, len(evs))
	r.f.mu.Unlock()
	for i, ev := range evs {
		if r.f.stopAfter > 0 && i == r.f.stopAfter {
			return i
		}
		r.f.mu.Lock()
		r.f.order = append(r.f.order, ev.ItemID)
		r.f.mu.Unlock()
		done(i, time.Now(), result(ev))
	}
	return len(evs)
}

func (r *batchRunner) Close() error { return nil }

// Items queued behind a run go to a BatchRunner together, in order; each
// is recorded as its own run with its own outcome; items a RunBatch left
// (its context ended) are run one by one rather than lost.
func TestBatchRunnerGetsQueuedItemsInOrder(t *testing.T) {
	for _, stopAfter := range []int{0, 3} {
		t.Run(fmt.Sprintf("stopAfter=%d", stopAfter), func(t *testing.T) {
			f := &batchFactory{gate: make(chan struct{}), started: make(chan struct{}), stopAfter: stopAfter}
			d := New(Options{Factories: map[hookctl.Type]runner.Factory{hookctl.TypeExec: f}})
			defer d.Close(context.Background())
			d.SetHooks([]hookctl.Hook{testHook("n", "/a")})
			var wg sync.WaitGroup
			ids := []string{"first"}
			for i := range 10 {
				ids = append(ids, fmt.Sprintf("i%d", i))
				if i == 4 {
					ids = append(ids, "fail")
				}
			}
			for i, id := range ids {
				wg.Add(1)
				d.Dispatch(testEvent("n", hookctl.EventPublish, id), func(int) { wg.Done() })
				if i == 0 {
					<-f.started // the others queue behind it
				}
			}
			close(f.gate)
			wg.Wait()
			f.mu.Lock()
			defer f.mu.Unlock()
			if fmt.Sprint(f.order) != fmt.Sprint(ids) {
				t.Errorf("run order %v, want %v", f.order, ids)
			}
			if len(f.batches) == 0 || f.batches[0] != len(ids)-1 {
				t.Errorf("batches %v, want the %d queued items in one", f.batches, len(ids)-1)
			}
			runs := d.Runs(hookctl.RunQuery{})
			if len(runs) != len(ids) {
				t.Fatalf("%d runs recorded, want %d", len(runs), len(ids))
			}
			for i, r := range runs {
				id := ids[len(ids)-1-i] // newest first
				want := "ok"
				if id == "fail" {
					want = "failed"
				}
				if r.ItemID != id || r.Outcome != want {
					t.Errorf("run %d: %s %s, want %s %s", i, r.ItemID, r.Outcome, id, want)
				}
			}
		})
	}
}

// The python runner is a BatchRunner: were it wrapped or its method
// changed, its hooks would silently lose pipelining.
func TestPythonRunnerIsBatchRunner(t *testing.T) {
	h := hookctl.Hook{Key: hookctl.Key{Profile: testProfile, Service: testService, Node: "n", Type: hookctl.TypePythonCode, Arg: "pass"}}
	r, err := python.NewFactory(python.Options{Python: "/nonexistent/python3"}).New(h, nil)
	if err != nil {
		t.Skipf("no python runner: %v", err)
	}
	defer r.Close()
	if _, ok := r.(BatchRunner); !ok {
		t.Errorf("%T is not a dispatch.BatchRunner", r)
	}
}
