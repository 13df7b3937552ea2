package dispatch

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"hookctl.dev/hookctl"
	"hookctl.dev/hookctl/runner"
)

// countingFactory makes runners that only count: the benchmark measures
// dispatch, not hooks.
type countingFactory struct{ runs atomic.Int64 }

func (f *countingFactory) Check(context.Context, hookctl.Hook) error { return nil }
func (f *countingFactory) New(hookctl.Hook, runner.Host) (runner.Runner, error) {
	return countingRunner{f}, nil
}

type countingRunner struct{ f *countingFactory }

func (r countingRunner) Run(context.Context, hookctl.Event) runner.Result {
	r.f.runs.Add(1)
	return runner.Result{Outcome: runner.OK}
}
func (countingRunner) Close() error { return nil }

const benchFilter = `event.kind == "publish" && item.id startsWith "a"`

// BenchmarkDispatch dispatches events to 10,000 registered hooks with an
// expr filter, end to end: each event is routed, filtered, queued, run by a
// counting runner and recorded, and its completion callback is called. A
// window of 1024 events in flight stands for the session that would wait.
//
// spread: one hook per node, each event matches one hook.
// shared: 100 hooks per node (100 nodes), each event matches 100 hooks.
// Half of the item ids start with "a", so half of the filter evaluations
// lead to a run; filter-rejects sends none that pass, measuring routing and
// filtering alone.
func BenchmarkDispatch(b *testing.B) {
	for _, tc := range []struct {
		name         string
		nodes, hooks int
		filter       string
		runs         bool // false: every item id fails the filter (routing and filtering only)
	}{
		{"spread/filter", 10000, 10000, benchFilter, true},
		{"spread/filter-rejects", 10000, 10000, benchFilter, false},
		{"spread/nofilter", 10000, 10000, "", true},
		{"shared100/filter", 100, 10000, benchFilter, true},
	} {
		b.Run(tc.name, func(b *testing.B) {
			f := &countingFactory{}
			d := New(Options{Factories: map[hookctl.Type]runner.Factory{hookctl.TypeExec: f}, History: 10000})
			hooks := make([]hookctl.Hook, tc.hooks)
			for i := range hooks {
				hooks[i] = hookctl.Hook{
					Key:    hookctl.Key{Profile: "default", Service: "pubsub.example.org", Node: fmt.Sprint("node-", i%tc.nodes), Type: hookctl.TypeExec, Arg: fmt.Sprint("/hook/", i)},
					Filter: tc.filter,
				}
			}
			d.SetHooks(hooks)
			if errs := d.HookErrors(); len(errs) != 0 {
				b.Fatal(errs)
			}
			events := make([]hookctl.Event, 2*tc.nodes)
			for i := range events {
				id := "b-item"
				if i%2 == 0 && tc.runs {
					id = "a-item"
				}
				events[i] = hookctl.Event{Profile: "default", Service: "pubsub.example.org", Node: fmt.Sprint("node-", (i/2)%tc.nodes),
					Kind: hookctl.EventPublish, ItemID: id, Received: time.Now()}
			}
			window := make(chan struct{}, 1024)
			done := func(int) { <-window }
			b.ReportAllocs()
			b.ResetTimer()
			start := time.Now()
			for i := 0; i < b.N; i++ {
				window <- struct{}{}
				d.Dispatch(events[i%len(events)], done)
			}
			for range cap(window) {
				window <- struct{}{} // every event finished
			}
			elapsed := time.Since(start)
			b.StopTimer()
			b.ReportMetric(float64(b.N)/elapsed.Seconds(), "events/s")
			b.ReportMetric(float64(f.runs.Load())/elapsed.Seconds(), "runs/s")
			if err := d.Close(context.Background()); err != nil {
				b.Fatal(err)
			}
			if drops := d.Runs(hookctl.RunQuery{FailedOnly: true}); len(drops) != 0 {
				b.Fatalf("%d runs not ok, e.g. %+v", len(drops), drops[0])
			}
		})
	}
}

// BenchmarkSetHooks measures re-applying 10,000 unchanged hooks, what the
// backend does on every registry change.
func BenchmarkSetHooks(b *testing.B) {
	f := &countingFactory{}
	d := New(Options{Factories: map[hookctl.Type]runner.Factory{hookctl.TypeExec: f}})
	defer d.Close(context.Background())
	hooks := make([]hookctl.Hook, 10000)
	for i := range hooks {
		hooks[i] = hookctl.Hook{
			Key:    hookctl.Key{Profile: "default", Service: "pubsub.example.org", Node: fmt.Sprint("node-", i), Type: hookctl.TypeExec, Arg: fmt.Sprint("/hook/", i)},
			Filter: benchFilter, Events: []hookctl.EventKind{hookctl.EventPublish}, Name: fmt.Sprint("h", i),
		}
	}
	d.SetHooks(hooks)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		d.SetHooks(hooks)
	}
}
