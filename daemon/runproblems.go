package daemon

import (
	"context"
	"sync"

	"hookctl.dev/hookctl"
	"hookctl.dev/hookctl/api"
	"hookctl.dev/hookctl/runner"
)

// runProblems remembers, per hook, why its last run could not be started
// (outcome error: a Python hook that no longer loads, a program that is
// gone), so that status reports it until a run starts again. Problems found
// at create time are refused by check; these are the ones that appear later
// (a file edited after the hook was created, a persistent hook whose file
// broke while the backend was down).
type runProblems struct {
	mu sync.Mutex
	m  map[hookctl.Key]string
}

// note records the outcome of one run of k.
func (p *runProblems) note(k hookctl.Key, res runner.Result) {
	p.mu.Lock()
	defer p.mu.Unlock()
	switch res.Outcome {
	case runner.Error:
		if res.Err != nil {
			if p.m == nil {
				p.m = map[hookctl.Key]string{}
			}
			p.m[k] = "run: " + res.Err.Error()
		}
	case runner.OK, runner.Failed, runner.Timeout:
		delete(p.m, k)
	}
}

// list returns the problems of the live hooks, and forgets the others.
func (p *runProblems) list(hooks []hookctl.Hook) []api.HookError {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.m) == 0 {
		return nil
	}
	live := make(map[hookctl.Key]bool, len(hooks))
	for _, h := range hooks {
		live[h.Key] = true
	}
	var out []api.HookError
	for k, msg := range p.m {
		if !live[k] {
			delete(p.m, k)
			continue
		}
		out = append(out, api.HookError{Hook: k, Error: msg})
	}
	return out
}

// problemFactory wraps a factory so that its runners report to p.
type problemFactory struct {
	runner.Factory
	p *runProblems
}

func (f problemFactory) New(h hookctl.Hook, host runner.Host) (runner.Runner, error) {
	r, err := f.Factory.New(h, host)
	if err != nil {
		return nil, err
	}
	return problemRunner{Runner: r, key: h.Key, p: f.p}, nil
}

type problemRunner struct {
	runner.Runner
	key hookctl.Key
	p   *runProblems
}

func (r problemRunner) Run(ctx context.Context, ev hookctl.Event) runner.Result {
	res := r.Runner.Run(ctx, ev)
	r.p.note(r.key, res)
	return res
}
