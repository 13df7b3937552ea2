package dispatch

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"

	"hookctl.dev/hookctl"
	"hookctl.dev/hookctl/runner"
)

const (
	testProfile = "default"
	testService = "pubsub.example.org"
)

func testHook(node, arg string) hookctl.Hook {
	return hookctl.Hook{Key: hookctl.Key{Profile: testProfile, Service: testService, Node: node, Type: hookctl.TypeExec, Arg: arg}}
}

func testEvent(node string, kind hookctl.EventKind, id string) hookctl.Event {
	return hookctl.Event{Profile: testProfile, Service: testService, Node: node, Kind: kind, ItemID: id, Received: time.Now()}
}

// newTest returns a dispatcher using f for exec hooks, closed at cleanup.
func newTest(t testing.TB, f *fakeFactory, opts Options) *Dispatcher {
	t.Helper()
	opts.Factories = map[hookctl.Type]runner.Factory{hookctl.TypeExec: f}
	d := New(opts)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := d.Close(ctx); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return d
}

// dispatchWait dispatches ev and waits for its completion callback,
// checking that it is called exactly once.
func dispatchWait(t testing.TB, d *Dispatcher, ev hookctl.Event) int {
	t.Helper()
	var calls atomic.Int32
	ch := make(chan int, 2)
	d.Dispatch(ev, func(n int) { calls.Add(1); ch <- n })
	select {
	case n := <-ch:
		time.Sleep(time.Millisecond) // a second call would show below
		if c := calls.Load(); c != 1 {
			t.Fatalf("done called %d times", c)
		}
		return n
	case <-time.After(10 * time.Second):
		t.Fatalf("done not called for %v", ev)
		return 0
	}
}

// waitFor polls cond until it holds or 10 s pass.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

func outcomesOf(runs []hookctl.Run) []string {
	var out []string
	for _, r := range runs {
		out = append(out, r.Outcome)
	}
	return out
}

func TestExactNodeMatch(t *testing.T) {
	f := &fakeFactory{}
	d := newTest(t, f, Options{})
	hx, hxy := testHook("X", "/x"), testHook("Xy", "/xy")
	d.SetHooks([]hookctl.Hook{hx, hxy})

	if n := dispatchWait(t, d, testEvent("Xy", hookctl.EventPublish, "1")); n != 1 {
		t.Errorf("event on Xy matched %d hooks, want 1", n)
	}
	if n := dispatchWait(t, d, testEvent("X", hookctl.EventPublish, "2")); n != 1 {
		t.Errorf("event on X matched %d hooks, want 1", n)
	}
	if n := dispatchWait(t, d, testEvent("", hookctl.EventPublish, "3")); n != 0 {
		t.Errorf("event on empty node matched %d hooks, want 0", n)
	}
	if got := f.of(hx.Key)[0].runs.Load(); got != 1 {
		t.Errorf("hook on X ran %d times, want 1", got)
	}
	if got := f.of(hxy.Key)[0].runs.Load(); got != 1 {
		t.Errorf("hook on Xy ran %d times, want 1", got)
	}
	runs := d.Runs(hookctl.RunQuery{})
	got := []string{runs[0].Hook.Node + "/" + runs[0].ItemID, runs[1].Hook.Node + "/" + runs[1].ItemID}
	if diff := cmp.Diff([]string{"X/2", "Xy/1"}, got); diff != "" {
		t.Errorf("runs (-want +got):\n%s", diff)
	}
}

func TestServiceAndProfileMustMatch(t *testing.T) {
	f := &fakeFactory{}
	d := newTest(t, f, Options{})
	d.SetHooks([]hookctl.Hook{testHook("n", "/a")})
	for _, ev := range []hookctl.Event{
		{Profile: "other", Service: testService, Node: "n", Kind: hookctl.EventPublish},
		{Profile: testProfile, Service: "pubsub.example.net", Node: "n", Kind: hookctl.EventPublish},
		{Profile: testProfile, Service: testService + "/resource", Node: "n", Kind: hookctl.EventPublish},
	} {
		if n := dispatchWait(t, d, ev); n != 0 {
			t.Errorf("%+v matched %d hooks, want 0", ev, n)
		}
	}
	if n := dispatchWait(t, d, testEvent("n", hookctl.EventPublish, "i")); n != 1 {
		t.Errorf("matching event matched %d hooks, want 1", n)
	}
}

func TestEventsSelection(t *testing.T) {
	f := &fakeFactory{}
	d := newTest(t, f, Options{})
	def := testHook("n", "/default")
	purge := testHook("n", "/purge")
	purge.Events = []hookctl.EventKind{hookctl.EventPurge, hookctl.EventDelete}
	d.SetHooks([]hookctl.Hook{def, purge})
	want := map[hookctl.EventKind]int{
		hookctl.EventPublish: 1, hookctl.EventRetract: 1,
		hookctl.EventPurge: 1, hookctl.EventDelete: 1, "configure": 0,
	}
	for kind, n := range want {
		if got := dispatchWait(t, d, testEvent("n", kind, "")); got != n {
			t.Errorf("%s matched %d, want %d", kind, got, n)
		}
	}
	if got := f.of(def.Key)[0].runs.Load(); got != 2 {
		t.Errorf("default hook ran %d times, want 2 (publish, retract)", got)
	}
	if got := f.of(purge.Key)[0].runs.Load(); got != 2 {
		t.Errorf("purge hook ran %d times, want 2 (purge, delete)", got)
	}
}

func TestFilter(t *testing.T) {
	f := &fakeFactory{}
	d := newTest(t, f, Options{})
	h := testHook("n", "/f")
	h.Name = "filtered"
	h.Filter = `event.kind == "publish" && item.id startsWith "a"`
	herr := testHook("n", "/err")
	herr.Filter = `int(item.id) > 3` // a run-time error for non-numbers
	bad := testHook("n", "/bad")
	bad.Filter = `item.nope == "x"`
	d.SetHooks([]hookctl.Hook{h, herr, bad})

	errs := d.HookErrors()
	if len(errs) != 1 || errs[0].Hook != bad.Key || !strings.HasPrefix(errs[0].Error, "filter: ") {
		t.Fatalf("HookErrors = %+v, want one filter error for %v", errs, bad.Key)
	}
	if n := dispatchWait(t, d, testEvent("n", hookctl.EventPublish, "abc")); n != 2 {
		t.Errorf("matched %d, want 2 (filter true, filter error)", n)
	}
	if n := dispatchWait(t, d, testEvent("n", hookctl.EventPublish, "7")); n != 1 {
		t.Errorf("matched %d, want 1 (numeric filter true, prefix filter false)", n)
	}
	if got := f.of(h.Key)[0].runs.Load(); got != 1 {
		t.Errorf("filtered hook ran %d times, want 1", got)
	}
	if got := f.of(herr.Key)[0].runs.Load(); got != 1 {
		t.Errorf("numeric hook ran %d times, want 1", got)
	}
	if len(f.of(bad.Key)) != 0 {
		t.Errorf("hook with a bad filter got a runner")
	}
	failed := d.Runs(hookctl.RunQuery{FailedOnly: true})
	if len(failed) != 1 || failed[0].Outcome != "error" || failed[0].Hook != herr.Key || !strings.Contains(failed[0].Error, "filter") {
		t.Errorf("failed runs = %+v, want one filter error of %v", failed, herr.Key)
	}
}

func TestNoRunnerForType(t *testing.T) {
	f := &fakeFactory{}
	d := newTest(t, f, Options{})
	h := testHook("n", "https://example.org/hook")
	h.Type = hookctl.TypeHTTP
	d.SetHooks([]hookctl.Hook{h})
	if errs := d.HookErrors(); len(errs) != 1 || errs[0].Error != "no runner for type http" {
		t.Errorf("HookErrors = %+v", errs)
	}
	if n := dispatchWait(t, d, testEvent("n", hookctl.EventPublish, "i")); n != 1 {
		t.Errorf("matched %d, want 1", n)
	}
	// An http hook that got no answer has no status: 0, not -1.
	runs := d.Runs(hookctl.RunQuery{})
	if len(runs) != 1 || runs[0].Outcome != "error" || runs[0].Error != "no runner for type http" || runs[0].ExitCode != 0 {
		t.Errorf("runs = %+v", runs)
	}
}

func TestRunnerStartFailure(t *testing.T) {
	f := &fakeFactory{newErr: errors.New("python3 not found")}
	d := newTest(t, f, Options{})
	d.SetHooks([]hookctl.Hook{testHook("n", "/a")})
	if errs := d.HookErrors(); len(errs) != 1 || !strings.Contains(errs[0].Error, "python3 not found") {
		t.Errorf("HookErrors = %+v", errs)
	}
	dispatchWait(t, d, testEvent("n", hookctl.EventPublish, "i"))
	if runs := d.Runs(hookctl.RunQuery{}); len(runs) != 1 || runs[0].Outcome != "error" {
		t.Errorf("runs = %+v", runs)
	}
	// A later SetHooks retries.
	f.newErr = nil
	d.SetHooks([]hookctl.Hook{testHook("n", "/a")})
	if errs := d.HookErrors(); len(errs) != 0 {
		t.Errorf("HookErrors after retry = %+v", errs)
	}
}

func TestOrderWithConcurrencyOne(t *testing.T) {
	const events = 5000
	var mu sync.Mutex
	var seen []string
	var inflight, maxInflight atomic.Int32
	f := &fakeFactory{fn: func(ctx context.Context, h hookctl.Hook, ev hookctl.Event) runner.Result {
		n := inflight.Add(1)
		defer inflight.Add(-1)
		if n > maxInflight.Load() {
			maxInflight.Store(n)
		}
		mu.Lock()
		seen = append(seen, ev.ItemID)
		mu.Unlock()
		if len(ev.ItemID)%3 == 0 {
			runtime.Gosched() // vary timing so that a reordering would show
		}
		return runner.Result{Outcome: runner.OK}
	}}
	d := newTest(t, f, Options{QueueSize: events})
	d.SetHooks([]hookctl.Hook{testHook("n", "/a")})
	var wg sync.WaitGroup
	wg.Add(events)
	want := make([]string, events)
	for i := range events {
		want[i] = fmt.Sprint(i)
		d.Dispatch(testEvent("n", hookctl.EventPublish, want[i]), func(int) { wg.Done() })
	}
	wg.Wait()
	if diff := cmp.Diff(want, seen); diff != "" {
		t.Errorf("run order (-want +got):\n%s", diff)
	}
	if m := maxInflight.Load(); m != 1 {
		t.Errorf("max in flight = %d, want 1", m)
	}
}

func TestConcurrencyN(t *testing.T) {
	const conc = 4
	release := make(chan struct{})
	var inflight, maxInflight atomic.Int32
	var maxMu sync.Mutex
	f := &fakeFactory{fn: func(ctx context.Context, h hookctl.Hook, ev hookctl.Event) runner.Result {
		n := inflight.Add(1)
		maxMu.Lock()
		if n > maxInflight.Load() {
			maxInflight.Store(n)
		}
		maxMu.Unlock()
		<-release
		inflight.Add(-1)
		return runner.Result{Outcome: runner.OK}
	}}
	d := newTest(t, f, Options{})
	h := testHook("n", "/a")
	h.Concurrency = conc
	d.SetHooks([]hookctl.Hook{h})
	var wg sync.WaitGroup
	wg.Add(20)
	for i := range 20 {
		d.Dispatch(testEvent("n", hookctl.EventPublish, fmt.Sprint(i)), func(int) { wg.Done() })
	}
	waitFor(t, "4 runs in flight", func() bool { return inflight.Load() == conc })
	close(release)
	wg.Wait()
	if m := maxInflight.Load(); m != conc {
		t.Errorf("max in flight = %d, want %d", m, conc)
	}
	if got := len(d.Runs(hookctl.RunQuery{})); got != 20 {
		t.Errorf("%d runs recorded, want 20", got)
	}
}

func TestQueueFullDrops(t *testing.T) {
	started := make(chan struct{}, 10)
	release := make(chan struct{})
	f := &fakeFactory{fn: func(ctx context.Context, h hookctl.Hook, ev hookctl.Event) runner.Result {
		started <- struct{}{}
		<-release
		return runner.Result{Outcome: runner.OK}
	}}
	reg := prometheus.NewRegistry()
	d := newTest(t, f, Options{QueueSize: 2, Metrics: reg})
	h1, h2 := testHook("n", "/slow"), testHook("n", "/other")
	d.SetHooks([]hookctl.Hook{h1, h2})
	var doneCalls atomic.Int32
	matches := make(chan int, 10)
	done := func(n int) { doneCalls.Add(1); matches <- n }

	// The first event runs on both hooks (2 runs in flight); two more fill
	// both queues; three more are dropped on both hooks.
	d.Dispatch(testEvent("n", hookctl.EventPublish, "0"), done)
	<-started
	<-started
	for i := 1; i <= 5; i++ {
		d.Dispatch(testEvent("n", hookctl.EventPublish, fmt.Sprint(i)), done)
	}
	if got := metricValue(t, reg, "hookctl_queue_drops_total", "type", "exec"); got != 6 {
		t.Errorf("queue drops = %v, want 6", got)
	}
	dropped := d.Runs(hookctl.RunQuery{FailedOnly: true})
	if len(dropped) != 6 {
		t.Fatalf("%d failed runs, want 6 drops: %+v", len(dropped), dropped)
	}
	for _, r := range dropped {
		if r.Outcome != "dropped" || r.Error != "queue full" || (r.ItemID != "3" && r.ItemID != "4" && r.ItemID != "5") {
			t.Errorf("unexpected drop record %+v", r)
		}
	}
	// Events 3-5 were dropped everywhere: they are finished already.
	if got := doneCalls.Load(); got != 3 {
		t.Errorf("done called %d times while runs are pending, want 3 (the dropped events)", got)
	}
	close(release)
	for range 6 {
		select {
		case n := <-matches:
			if n != 2 {
				t.Errorf("done got %d matches, want 2", n)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("done not called")
		}
	}
	time.Sleep(10 * time.Millisecond)
	if got := doneCalls.Load(); got != 6 {
		t.Errorf("done called %d times, want 6", got)
	}
	if got := metricValue(t, reg, "hookctl_runs_total", "outcome", "ok"); got != 6 {
		t.Errorf("ok runs counted = %v, want 6", got)
	}
	if got := metricValue(t, reg, "hookctl_runs_total", "outcome", "dropped"); got != 6 {
		t.Errorf("dropped runs counted = %v, want 6", got)
	}
	if got := metricValue(t, reg, "hookctl_events_received_total", "profile", testProfile); got != 6 {
		t.Errorf("events received = %v, want 6", got)
	}
	if got := metricValue(t, reg, "hookctl_events_matched_total", "", ""); got != 6 {
		t.Errorf("events matched = %v, want 6", got)
	}
	if got := metricValue(t, reg, "hookctl_run_duration_seconds", "type", "exec"); got != 6 {
		t.Errorf("run durations observed = %v, want 6", got)
	}
	if got := metricValue(t, reg, "hookctl_queue_depth", "", ""); got != 0 {
		t.Errorf("queue depth = %v after draining", got)
	}
}

func TestTimeout(t *testing.T) {
	f := &fakeFactory{fn: func(ctx context.Context, h hookctl.Hook, ev hookctl.Event) runner.Result {
		if ev.ItemID == "slow" {
			<-ctx.Done()
			// Reported as a plain failure: dispatch must still see a timeout.
			return runner.Result{Outcome: runner.Failed, ExitCode: -1, Err: ctx.Err()}
		}
		return runner.Result{Outcome: runner.OK, Output: "fine"}
	}}
	d := newTest(t, f, Options{DefaultTimeout: time.Hour})
	h := testHook("n", "/a")
	h.Timeout = hookctl.Duration(50 * time.Millisecond)
	d.SetHooks([]hookctl.Hook{h})
	var wg sync.WaitGroup
	wg.Add(2)
	d.Dispatch(testEvent("n", hookctl.EventPublish, "slow"), func(int) { wg.Done() })
	d.Dispatch(testEvent("n", hookctl.EventPublish, "next"), func(int) { wg.Done() })
	wg.Wait()
	runs := d.Runs(hookctl.RunQuery{})
	if diff := cmp.Diff([]string{"ok", "timeout"}, outcomesOf(runs)); diff != "" {
		t.Fatalf("outcomes (-want +got):\n%s", diff)
	}
	if runs[1].Duration < hookctl.Duration(50*time.Millisecond) {
		t.Errorf("timed-out run lasted %v", runs[1].Duration)
	}
	if runs[0].Output != "fine" || runs[0].ItemID != "next" {
		t.Errorf("next run = %+v", runs[0])
	}
}

func TestDefaultTimeout(t *testing.T) {
	f := &fakeFactory{fn: func(ctx context.Context, h hookctl.Hook, ev hookctl.Event) runner.Result {
		<-ctx.Done()
		return runner.Result{Outcome: runner.Timeout, ExitCode: -1, Err: ctx.Err()}
	}}
	d := newTest(t, f, Options{DefaultTimeout: 20 * time.Millisecond})
	d.SetHooks([]hookctl.Hook{testHook("n", "/a")})
	dispatchWait(t, d, testEvent("n", hookctl.EventPublish, "i"))
	if runs := d.Runs(hookctl.RunQuery{}); len(runs) != 1 || runs[0].Outcome != "timeout" {
		t.Errorf("runs = %+v", runs)
	}
}

func TestPanicRecovered(t *testing.T) {
	f := &fakeFactory{fn: func(ctx context.Context, h hookctl.Hook, ev hookctl.Event) runner.Result {
		if ev.ItemID == "boom" {
			panic("kaboom")
		}
		return runner.Result{Outcome: runner.OK}
	}}
	d := newTest(t, f, Options{})
	d.SetHooks([]hookctl.Hook{testHook("n", "/a")})
	dispatchWait(t, d, testEvent("n", hookctl.EventPublish, "boom"))
	dispatchWait(t, d, testEvent("n", hookctl.EventPublish, "after"))
	runs := d.Runs(hookctl.RunQuery{})
	if diff := cmp.Diff([]string{"ok", "error"}, outcomesOf(runs)); diff != "" {
		t.Fatalf("outcomes (-want +got):\n%s", diff)
	}
	if !strings.Contains(runs[1].Error, "kaboom") {
		t.Errorf("panic run error = %q", runs[1].Error)
	}
}

func TestRemovedHookRunnerClosedAfterQueue(t *testing.T) {
	release := make(chan struct{})
	f := &fakeFactory{fn: func(ctx context.Context, h hookctl.Hook, ev hookctl.Event) runner.Result {
		<-release
		return runner.Result{Outcome: runner.OK}
	}}
	d := newTest(t, f, Options{})
	h := testHook("n", "/a")
	d.SetHooks([]hookctl.Hook{h})
	var wg sync.WaitGroup
	wg.Add(3)
	for i := range 3 {
		d.Dispatch(testEvent("n", hookctl.EventPublish, fmt.Sprint(i)), func(int) { wg.Done() })
	}
	d.SetHooks(nil) // must not block on the queued runs
	r := f.of(h.Key)[0]
	if r.closed.Load() {
		t.Fatal("runner closed while runs were queued")
	}
	if n := dispatchWait(t, d, testEvent("n", hookctl.EventPublish, "late")); n != 0 {
		t.Errorf("removed hook matched %d", n)
	}
	close(release)
	wg.Wait()
	waitFor(t, "runner closed", r.closed.Load)
	if got := r.runs.Load(); got != 3 {
		t.Errorf("removed hook ran %d of its 3 queued events", got)
	}
}

func TestChangedHookGetsNewRunner(t *testing.T) {
	var mu sync.Mutex
	var order []string
	gate := make(chan struct{})
	f := &fakeFactory{fn: func(ctx context.Context, h hookctl.Hook, ev hookctl.Event) runner.Result {
		if ev.ItemID == "old-0" {
			<-gate
		}
		mu.Lock()
		order = append(order, h.Name+":"+ev.ItemID)
		mu.Unlock()
		return runner.Result{Outcome: runner.OK}
	}}
	d := newTest(t, f, Options{})
	h := testHook("n", "/a")
	h.Name = "v1"
	same := testHook("n", "/same")
	d.SetHooks([]hookctl.Hook{h, same})

	var wg sync.WaitGroup
	wg.Add(4)
	d.Dispatch(testEvent("n", hookctl.EventPublish, "old-0"), func(int) { wg.Done() })
	d.Dispatch(testEvent("n", hookctl.EventPublish, "old-1"), func(int) { wg.Done() })
	h2 := h
	h2.Name = "v2"
	h2.Source = "moved.yaml:3" // bookkeeping only: not a change
	same2 := same
	same2.Source = "elsewhere"
	d.SetHooks([]hookctl.Hook{same2, h2})
	d.Dispatch(testEvent("n", hookctl.EventPublish, "new-0"), func(int) { wg.Done() })
	d.Dispatch(testEvent("n", hookctl.EventPublish, "new-1"), func(int) { wg.Done() })
	close(gate)
	wg.Wait()

	rs := f.of(h.Key)
	if len(rs) != 2 {
		t.Fatalf("%d runners for the changed hook, want 2", len(rs))
	}
	waitFor(t, "old runner closed", rs[0].closed.Load)
	if rs[1].closed.Load() {
		t.Error("new runner closed")
	}
	if n := len(f.of(same.Key)); n != 1 {
		t.Errorf("unchanged hook got %d runners, want 1", n)
	}
	var mine []string
	mu.Lock()
	for _, s := range order {
		if !strings.HasPrefix(s, ":") {
			mine = append(mine, s)
		}
	}
	mu.Unlock()
	// The new runner's runs wait for the old queue: order is kept.
	if diff := cmp.Diff([]string{"v1:old-0", "v1:old-1", "v2:new-0", "v2:new-1"}, mine); diff != "" {
		t.Errorf("run order (-want +got):\n%s", diff)
	}
}

func TestDoneCountsEveryMatch(t *testing.T) {
	f := &fakeFactory{}
	d := newTest(t, f, Options{})
	var hooks []hookctl.Hook
	for i := range 5 {
		hooks = append(hooks, testHook("n", fmt.Sprint("/", i)))
	}
	d.SetHooks(hooks)
	if n := dispatchWait(t, d, testEvent("n", hookctl.EventPublish, "i")); n != 5 {
		t.Errorf("matched %d, want 5", n)
	}
	if got := len(d.Runs(hookctl.RunQuery{})); got != 5 {
		t.Errorf("%d runs recorded before done, want 5", got)
	}
	// nil done is allowed.
	d.Dispatch(testEvent("n", hookctl.EventPublish, "j"), nil)
	waitFor(t, "10 runs", func() bool { return len(d.Runs(hookctl.RunQuery{})) == 10 })
}

func TestSwapWhileDispatching(t *testing.T) {
	f := &fakeFactory{fn: func(ctx context.Context, h hookctl.Hook, ev hookctl.Event) runner.Result {
		runtime.Gosched()
		return runner.Result{Outcome: runner.OK}
	}}
	d := New(Options{Factories: map[hookctl.Type]runner.Factory{hookctl.TypeExec: f}, QueueSize: 64})
	setA := []hookctl.Hook{testHook("n", "/a"), testHook("n", "/b"), testHook("m", "/c")}
	b := testHook("n", "/b")
	b.Concurrency = 2 // changed attribute: new runner each swap
	setB := []hookctl.Hook{b, testHook("m", "/c"), testHook("n", "/d")}

	stop := make(chan struct{})
	var dispatched, doneCalls, badCounts atomic.Int64
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				node := "n"
				if i%3 == 0 {
					node = "m"
				}
				dispatched.Add(1)
				d.Dispatch(testEvent(node, hookctl.EventPublish, fmt.Sprint(g, "-", i)), func(n int) {
					if n < 0 || n > 2 {
						badCounts.Add(1)
					}
					doneCalls.Add(1)
				})
			}
		})
	}
	for i := range 200 {
		if i%2 == 0 {
			d.SetHooks(setA)
		} else {
			d.SetHooks(setB)
		}
	}
	close(stop)
	wg.Wait()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := d.Close(ctx); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if dispatched.Load() != doneCalls.Load() {
		t.Errorf("%d events dispatched, %d done calls", dispatched.Load(), doneCalls.Load())
	}
	if badCounts.Load() != 0 {
		t.Errorf("%d done calls with an impossible match count", badCounts.Load())
	}
	if made, closed := f.made.Load(), f.closedN.Load(); made != closed || made < 100 {
		t.Errorf("runners made %d, closed %d", made, closed)
	}
}

func TestCloseWaitsAndCancels(t *testing.T) {
	before := runtime.NumGoroutine()
	started := make(chan struct{}, 1)
	f := &fakeFactory{fn: func(ctx context.Context, h hookctl.Hook, ev hookctl.Event) runner.Result {
		select {
		case started <- struct{}{}:
		default:
		}
		<-ctx.Done()
		return runner.Result{Outcome: runner.Failed, ExitCode: -1, Err: ctx.Err()}
	}}
	d := New(Options{Factories: map[hookctl.Type]runner.Factory{hookctl.TypeExec: f}, DefaultTimeout: time.Hour})
	var hooks []hookctl.Hook
	for i := range 50 {
		hooks = append(hooks, testHook(fmt.Sprint("n", i), "/a"))
	}
	d.SetHooks(hooks)
	var doneCalls atomic.Int32
	for i := range 50 {
		d.Dispatch(testEvent(fmt.Sprint("n", i), hookctl.EventPublish, "1"), func(int) { doneCalls.Add(1) })
		d.Dispatch(testEvent(fmt.Sprint("n", i), hookctl.EventPublish, "2"), func(int) { doneCalls.Add(1) })
	}
	<-started
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	err := d.Close(ctx)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Close = %v, want the context's deadline error", err)
	}
	if got := doneCalls.Load(); got != 100 {
		t.Errorf("done called %d times after Close, want 100", got)
	}
	if made, closed := f.made.Load(), f.closedN.Load(); made != 50 || closed != 50 {
		t.Errorf("runners made %d, closed %d", made, closed)
	}
	runs := d.Runs(hookctl.RunQuery{Limit: 1000})
	counts := map[string]int{}
	for _, r := range runs {
		counts[r.Outcome]++
	}
	if diff := cmp.Diff(map[string]int{"failed": 50, "dropped": 50}, counts); diff != "" {
		t.Errorf("outcomes after Close (-want +got):\n%s", diff)
	}
	// After Close: nothing is accepted, done still called.
	if n := dispatchWait(t, d, testEvent("n1", hookctl.EventPublish, "x")); n != 0 {
		t.Errorf("Dispatch after Close matched %d", n)
	}
	d.SetHooks(hooks)
	if err := d.Close(context.Background()); err != nil {
		t.Errorf("second Close = %v", err)
	}
	waitFor(t, "goroutines to settle", func() bool { return runtime.NumGoroutine() <= before })
}

func TestCloseFinishesQueued(t *testing.T) {
	f := &fakeFactory{fn: func(ctx context.Context, h hookctl.Hook, ev hookctl.Event) runner.Result {
		time.Sleep(time.Millisecond)
		return runner.Result{Outcome: runner.OK}
	}}
	d := New(Options{Factories: map[hookctl.Type]runner.Factory{hookctl.TypeExec: f}})
	d.SetHooks([]hookctl.Hook{testHook("n", "/a")})
	for i := range 20 {
		d.Dispatch(testEvent("n", hookctl.EventPublish, fmt.Sprint(i)), nil)
	}
	if err := d.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	runs := d.Runs(hookctl.RunQuery{})
	if len(runs) != 20 {
		t.Fatalf("%d runs after Close, want 20", len(runs))
	}
	for _, r := range runs {
		if r.Outcome != "ok" {
			t.Errorf("run %+v not ok", r)
		}
	}
	if f.closedN.Load() != 1 {
		t.Errorf("runner closed %d times", f.closedN.Load())
	}
}

func TestRunsQuery(t *testing.T) {
	f := &fakeFactory{fn: func(ctx context.Context, h hookctl.Hook, ev hookctl.Event) runner.Result {
		if ev.ItemID == "bad" {
			return runner.Result{Outcome: runner.Failed, ExitCode: 3, Output: strings.Repeat("x", 5000) + "END", Err: errors.New("exit status 3")}
		}
		return runner.Result{Outcome: runner.OK}
	}}
	d := newTest(t, f, Options{History: 5})
	a := testHook("n", "/a")
	a.Name = "alpha"
	b := testHook("m", "/b")
	d.SetHooks([]hookctl.Hook{a, b})
	ev := testEvent("n", hookctl.EventPublish, "bad")
	ev.Catchup = true
	dispatchWait(t, d, ev)
	for i := range 3 {
		dispatchWait(t, d, testEvent("n", hookctl.EventRetract, fmt.Sprint("n", i)))
		dispatchWait(t, d, testEvent("m", hookctl.EventPublish, fmt.Sprint("m", i)))
	}
	// 7 runs, 5 kept: the failure is gone.
	all := d.Runs(hookctl.RunQuery{})
	var ids []string
	for _, r := range all {
		ids = append(ids, r.ItemID)
	}
	if diff := cmp.Diff([]string{"m2", "n2", "m1", "n1", "m0"}, ids); diff != "" {
		t.Errorf("history (-want +got):\n%s", diff)
	}
	for i := 1; i < len(all); i++ {
		if all[i-1].ID <= all[i].ID {
			t.Errorf("IDs not decreasing: %d then %d", all[i-1].ID, all[i].ID)
		}
	}
	if got := d.Runs(hookctl.RunQuery{Hook: "alpha", Limit: 1}); len(got) != 1 || got[0].ItemID != "n2" || got[0].Event != hookctl.EventRetract {
		t.Errorf("by name = %+v", got)
	}
	if got := d.Runs(hookctl.RunQuery{Hook: "/b"}); len(got) != 3 {
		t.Errorf("by arg: %d runs, want 3", len(got))
	}
	if got := d.Runs(hookctl.RunQuery{Node: "m", Profile: testProfile}); len(got) != 3 {
		t.Errorf("by node: %d runs, want 3", len(got))
	}
	if got := d.Runs(hookctl.RunQuery{Profile: "other"}); len(got) != 0 {
		t.Errorf("other profile: %d runs", len(got))
	}

	d2 := newTest(t, f, Options{})
	d2.SetHooks([]hookctl.Hook{a})
	dispatchWait(t, d2, ev)
	got := d2.Runs(hookctl.RunQuery{FailedOnly: true})
	if len(got) != 1 {
		t.Fatalf("failed runs = %+v", got)
	}
	r := got[0]
	if r.Outcome != "failed" || r.ExitCode != 3 || r.Error != "exit status 3" || !r.Catchup || r.HookName != "alpha" ||
		len(r.Output) != runner.OutputTail || !strings.HasSuffix(r.Output, "END") || r.Started.IsZero() {
		t.Errorf("failed run = %+v", r)
	}
}

func TestDuplicateKey(t *testing.T) {
	f := &fakeFactory{}
	d := newTest(t, f, Options{})
	h := testHook("n", "/a")
	d.SetHooks([]hookctl.Hook{h, h})
	if errs := d.HookErrors(); len(errs) != 1 || !strings.Contains(errs[0].Error, "duplicate") {
		t.Errorf("HookErrors = %+v", errs)
	}
	if n := dispatchWait(t, d, testEvent("n", hookctl.EventPublish, "i")); n != 1 {
		t.Errorf("matched %d, want 1", n)
	}
}

// metricValue gathers reg and returns the value of the series of name that
// has label=value (any series when label is empty): a counter's or gauge's
// value, a histogram's sample count.
func metricValue(t testing.TB, reg *prometheus.Registry, name, label, value string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatalf("gathering metrics: %v", err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			ok := label == ""
			for _, lp := range m.GetLabel() {
				if lp.GetName() == label && lp.GetValue() == value {
					ok = true
				}
			}
			if !ok {
				continue
			}
			switch {
			case m.GetCounter() != nil:
				return m.GetCounter().GetValue()
			case m.GetGauge() != nil:
				return m.GetGauge().GetValue()
			case m.GetHistogram() != nil:
				return float64(m.GetHistogram().GetSampleCount())
			}
		}
	}
	t.Fatalf("no series %s{%s=%q}", name, label, value)
	return 0
}

func TestReaddedHookWaitsForRemovedQueue(t *testing.T) {
	var mu sync.Mutex
	var order []string
	gate := make(chan struct{})
	f := &fakeFactory{fn: func(ctx context.Context, h hookctl.Hook, ev hookctl.Event) runner.Result {
		if ev.ItemID == "a" {
			<-gate
		}
		mu.Lock()
		order = append(order, ev.ItemID)
		mu.Unlock()
		return runner.Result{Outcome: runner.OK}
	}}
	d := newTest(t, f, Options{})
	h := testHook("n", "/a")
	d.SetHooks([]hookctl.Hook{h})
	var wg sync.WaitGroup
	wg.Add(3)
	d.Dispatch(testEvent("n", hookctl.EventPublish, "a"), func(int) { wg.Done() })
	d.Dispatch(testEvent("n", hookctl.EventPublish, "b"), func(int) { wg.Done() })
	d.SetHooks(nil)
	d.SetHooks([]hookctl.Hook{h})
	d.Dispatch(testEvent("n", hookctl.EventPublish, "c"), func(int) { wg.Done() })
	close(gate)
	wg.Wait()
	if n := len(f.of(h.Key)); n != 2 {
		t.Errorf("%d runners, want 2 (re-added hook gets a new one)", n)
	}
	mu.Lock()
	defer mu.Unlock()
	if diff := cmp.Diff([]string{"a", "b", "c"}, order); diff != "" {
		t.Errorf("order (-want +got):\n%s", diff)
	}
}

func TestSkippedItemIsRecordedForTheNodesHooks(t *testing.T) {
	f := &fakeFactory{}
	d := newTest(t, f, Options{})
	retractOnly := testHook("n", "/retract-only")
	retractOnly.Events = []hookctl.EventKind{hookctl.EventRetract}
	d.SetHooks([]hookctl.Hook{testHook("n", "/a"), retractOnly, testHook("other", "/b")})

	d.Skipped(testEvent("n", hookctl.EventPublish, "big"), errors.New("payload too large"))

	runs := d.Runs(hookctl.RunQuery{})
	if len(runs) != 1 {
		t.Fatalf("runs = %+v, want one record for the publish hook of node n", runs)
	}
	r := runs[0]
	if r.Hook.Arg != "/a" || r.ItemID != "big" || r.Outcome != string(runner.Error) || !strings.Contains(r.Error, "payload too large") {
		t.Errorf("run = %+v", r)
	}
	for _, h := range []hookctl.Hook{testHook("n", "/a"), retractOnly} {
		for _, r := range f.of(h.Key) {
			if n := r.runs.Load(); n != 0 {
				t.Errorf("hook %s ran %d times; a skipped item runs nothing", h.Arg, n)
			}
		}
	}
}

func TestRunThatCannotStartIsAHookErrorUntilARunStarts(t *testing.T) {
	var broken atomic.Bool
	broken.Store(true)
	f := &fakeFactory{fn: func(ctx context.Context, h hookctl.Hook, ev hookctl.Event) runner.Result {
		if broken.Load() {
			return runner.Result{Outcome: runner.Error, ExitCode: -1, Err: errors.New("hook does not load")}
		}
		return runner.Result{Outcome: runner.OK}
	}}
	d := newTest(t, f, Options{})
	h := testHook("n", "/a")
	d.SetHooks([]hookctl.Hook{h})

	dispatchWait(t, d, testEvent("n", hookctl.EventPublish, "1"))
	want := []hookctl.HookError{{Hook: h.Key, Error: "run: hook does not load"}}
	if diff := cmp.Diff(want, d.HookErrors()); diff != "" {
		t.Errorf("after a run that could not start (-want +got):\n%s", diff)
	}
	broken.Store(false)
	dispatchWait(t, d, testEvent("n", hookctl.EventPublish, "2"))
	if errs := d.HookErrors(); len(errs) != 0 {
		t.Errorf("after a good run: %v, want none", errs)
	}
	// A hook that is gone takes its problem with it.
	broken.Store(true)
	dispatchWait(t, d, testEvent("n", hookctl.EventPublish, "3"))
	d.SetHooks(nil)
	if errs := d.HookErrors(); len(errs) != 0 {
		t.Errorf("after the hook was removed: %v, want none", errs)
	}
}
