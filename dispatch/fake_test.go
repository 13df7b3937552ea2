package dispatch

import (
	"context"
	"sync"
	"sync/atomic"

	"hookctl.dev/hookctl"
	"hookctl.dev/hookctl/runner"
)

// fakeFactory makes fakeRunners whose behaviour is fn (nil = succeed). It
// counts runners made and closed, and keeps them by key for inspection.
type fakeFactory struct {
	fn     func(ctx context.Context, h hookctl.Hook, ev hookctl.Event) runner.Result
	newErr error

	made, closedN atomic.Int64
	mu            sync.Mutex
	runners       map[hookctl.Key][]*fakeRunner
}

func (f *fakeFactory) Check(context.Context, hookctl.Hook) error { return nil }

func (f *fakeFactory) New(h hookctl.Hook, _ runner.Host) (runner.Runner, error) {
	if f.newErr != nil {
		return nil, f.newErr
	}
	f.made.Add(1)
	r := &fakeRunner{f: f, h: h}
	f.mu.Lock()
	if f.runners == nil {
		f.runners = make(map[hookctl.Key][]*fakeRunner)
	}
	f.runners[h.Key] = append(f.runners[h.Key], r)
	f.mu.Unlock()
	return r, nil
}

// of returns the runners made for k, oldest first.
func (f *fakeFactory) of(k hookctl.Key) []*fakeRunner {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]*fakeRunner(nil), f.runners[k]...)
}

type fakeRunner struct {
	f      *fakeFactory
	h      hookctl.Hook
	runs   atomic.Int64
	closed atomic.Bool
}

func (r *fakeRunner) Run(ctx context.Context, ev hookctl.Event) runner.Result {
	r.runs.Add(1)
	if r.f.fn == nil {
		return runner.Result{Outcome: runner.OK, ExitCode: 0}
	}
	return r.f.fn(ctx, r.h, ev)
}

func (r *fakeRunner) Close() error {
	if r.closed.Swap(true) {
		panic("runner closed twice")
	}
	r.f.closedN.Add(1)
	return nil
}
