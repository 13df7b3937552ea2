// Package exprrunner runs expr hooks: an expr-lang program, compiled once,
// evaluated in-process for each event with `event`, `item` and the action
// functions `log` and `publish` (see Env).
//
// A run is OK unless evaluation fails (a runtime error, a failed publish,
// the memory budget exceeded): the program's value is not interpreted, so
// `event.kind == "publish" && publish(...)` and a bare sequence
// `log("x"); publish(...)` both work.
//
// Limits: expr-lang cannot be interrupted, so a run that overruns its
// timeout returns Timeout at once while its evaluation finishes in the
// background (Close waits for it). What bounds that evaluation is expr's
// memory budget, which counts loop iterations, ranges, arrays and maps, so a
// runaway loop fails with "memory budget exceeded"; `repeat` is disabled and
// + on strings has its own per-run byte budget because expr counts neither.
package exprrunner

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"strings"
	"sync"
	"time"

	"github.com/expr-lang/expr"
	"github.com/expr-lang/expr/ast"
	"github.com/expr-lang/expr/conf"
	"github.com/expr-lang/expr/file"
	"github.com/expr-lang/expr/vm"
	"github.com/expr-lang/expr/vm/runtime"

	"hookctl.dev/hookctl"
	"hookctl.dev/hookctl/filter"
	"hookctl.dev/hookctl/runner"
)

// DefaultStringBudget is the default for Options.StringBudget.
const DefaultStringBudget = 16 << 20

// Options configure the expr Factory.
type Options struct {
	// MemoryBudget is expr's per-run budget (its own units: elements of
	// ranges, arrays and maps, loop scopes); zero means expr's default
	// (conf.DefaultMemoryBudget, 1e6).
	MemoryBudget uint
	// StringBudget bounds the bytes of the strings one run builds with +;
	// zero means DefaultStringBudget.
	StringBudget int
}

// Env is what an expr hook program sees. `event` and `item` are the filter
// environment's; the functions act through the run's Host:
//
//	log(args...)                               → true; appends a line to the
//	                                             run's output and the hook's log
//	publish(service, node, payloadXML[, itemID]) → the published item's id;
//	                                             a failure fails the run
//
// A fresh Env is made for each run, so runs never share state.
type Env struct {
	Event   filter.EventEnv                                                          `expr:"event"`
	Item    filter.ItemEnv                                                           `expr:"item"`
	Log     func(args ...any) any                                                    `expr:"log"`
	Publish func(service, node, payloadXML string, itemID ...string) (string, error) `expr:"publish"`
	// Add implements + on non-numbers, within the run's string budget;
	// programs do not call it by name.
	Add func(x, y any) (any, error) `expr:"_add"`
}

// NewFactory returns the Factory of expr hooks.
func NewFactory(opts Options) runner.Factory {
	if opts.MemoryBudget == 0 {
		opts.MemoryBudget = conf.DefaultMemoryBudget
	}
	if opts.StringBudget <= 0 {
		opts.StringBudget = DefaultStringBudget
	}
	return &factory{opts: opts}
}

type factory struct{ opts Options }

var _ runner.Factory = (*factory)(nil)

// Check compiles h.Arg. A compile error wraps both hookctl.ErrInvalid and a
// *filter.Error carrying its line and column.
func (f *factory) Check(_ context.Context, h hookctl.Hook) error {
	_, err := f.compile(h.Arg)
	return err
}

func (f *factory) compile(src string) (*vm.Program, error) {
	if strings.TrimSpace(src) == "" {
		return nil, fmt.Errorf("%w: expr program is empty", hookctl.ErrInvalid)
	}
	if err := filter.CheckDepth(src); err != nil {
		return nil, fmt.Errorf("%w: expr program: %w", hookctl.ErrInvalid, err)
	}
	// Type-check alone first: compiling with a patcher reports fewer
	// errors (expr-lang 1.17.8 let an unknown field through).
	_, err := expr.Compile(src, expr.Env(Env{}), expr.DisableBuiltin("repeat"))
	if err == nil {
		var p *vm.Program
		p, err = expr.Compile(src,
			expr.Env(Env{}),
			// repeat allocates before expr counts the memory.
			expr.DisableBuiltin("repeat"),
			expr.Patch(addPatcher{}),
		)
		if err == nil {
			return p, nil
		}
	}
	fe := &filter.Error{Line: 1, Message: err.Error()}
	var ce *file.Error
	if errors.As(err, &ce) {
		fe = &filter.Error{Line: ce.Line, Column: ce.Column, Message: ce.Message}
	}
	return nil, fmt.Errorf("%w: expr program: %w", hookctl.ErrInvalid, fe)
}

// addFunc is the Env function that + becomes when it may join strings.
const addFunc = "_add"

// addPatcher rewrites a + b into _add(a, b) unless both sides are known
// numbers: string concatenation is not counted by expr's memory budget, so
// `reduce(1..64, #acc + #acc, "x")` would otherwise exhaust memory, and
// appending in a loop would burn CPU quadratically.
type addPatcher struct{}

func (addPatcher) Visit(node *ast.Node) {
	b, ok := (*node).(*ast.BinaryNode)
	if !ok || b.Operator != "+" || (isNumber(b.Left.Type()) && isNumber(b.Right.Type())) {
		return
	}
	call := &ast.CallNode{Callee: &ast.IdentifierNode{Value: addFunc}, Arguments: []ast.Node{b.Left, b.Right}}
	ast.Patch(node, call)
}

func isNumber(t reflect.Type) bool {
	if t == nil {
		return false
	}
	switch t.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64,
		reflect.Float32, reflect.Float64:
		return true
	}
	return false
}

// stringBudget is + with a budget on the bytes of strings it builds in
// one run; other operands get expr's own addition.
type stringBudget struct {
	mu   sync.Mutex // an evaluation is sequential, but cheap insurance
	left int
}

func (b *stringBudget) add(x, y any) (any, error) {
	if xs, ok := x.(string); ok {
		if ys, ok := y.(string); ok {
			n := len(xs) + len(ys)
			b.mu.Lock()
			ok := n <= b.left
			if ok {
				b.left -= n
			}
			b.mu.Unlock()
			if !ok {
				return nil, errors.New("string budget exceeded")
			}
			return xs + ys, nil
		}
	}
	return runtime.Add(x, y), nil
}

// New compiles h.Arg and returns its Runner.
func (f *factory) New(h hookctl.Hook, host runner.Host) (runner.Runner, error) {
	p, err := f.compile(h.Arg)
	if err != nil {
		return nil, err
	}
	return &Runner{program: p, host: host, hook: h, keyString: h.Key.String(), budget: f.opts.MemoryBudget, strings: f.opts.StringBudget,
		timeout: time.Duration(h.Timeout), jobs: make(chan *evalJob), quit: make(chan struct{})}, nil
}

// evaluatorIdle is how long an evaluator goroutine waits for the next run
// before it ends.
const evaluatorIdle = time.Second

// Runner runs one expr hook; safe for concurrent use.
type Runner struct {
	program *vm.Program
	host    runner.Host
	hook    hookctl.Hook // for the attributes of its log lines
	// keyString is hook.Key.String(), made once: a log line carries it.
	keyString string
	budget    uint
	strings   int
	timeout   time.Duration // used only when ctx has no deadline

	// evals tracks the evaluator goroutines, including those whose
	// evaluation was left running after a timeout, so that Close can wait
	// for them.
	evals sync.WaitGroup
	// jobs hands a run to an idle evaluator (unbuffered: only one that is
	// waiting takes it); quit, closed by Close, ends the idle ones.
	jobs      chan *evalJob
	quit      chan struct{}
	closeOnce sync.Once
}

// evalJob is one evaluation: the run's environment, and where its result
// goes (buffered: a run that timed out no longer reads it).
type evalJob struct {
	env  Env
	done chan evalResult
}

var _ runner.Runner = (*Runner)(nil)

// Close waits for evaluations still running after their run timed out.
// They end because the memory budget bounds them and publish honours the
// run's context.
func (r *Runner) Close() error {
	r.closeOnce.Do(func() { close(r.quit) })
	r.evals.Wait()
	return nil
}

type evalResult struct {
	value any
	err   error
}

// Run evaluates the program for ev.
func (r *Runner) Run(ctx context.Context, ev hookctl.Event) runner.Result {
	ctx, cancel := runner.WithDeadline(ctx, r.timeout)
	defer cancel()
	out := runner.NewTailWriter(runner.OutputTail)
	env := r.env(ctx, ev, out)

	done := r.evaluate(env)
	select {
	case res := <-done:
		if res.err != nil {
			return runner.Result{Outcome: runner.Failed, ExitCode: -1, Output: out.String(), Err: fmt.Errorf("expr: %w", plainError(res.err))}
		}
		return runner.Result{Outcome: runner.OK, ExitCode: -1, Output: out.String()}
	case <-ctx.Done():
		return runner.Stopped(ctx, runner.Result{ExitCode: -1, Output: out.String()})
	}
}

// evaluate starts the evaluation of env on an idle evaluator goroutine,
// or a new one when none is idle. Evaluators are kept for the next runs
// because a fresh goroutine's stack grew, by copying, several times in
// every run (VM.Run needs more than a new goroutine starts with): that
// was a twelfth of the backend's CPU per item for an expr hook.
func (r *Runner) evaluate(env Env) <-chan evalResult {
	job := &evalJob{env: env, done: make(chan evalResult, 1)}
	select {
	case r.jobs <- job:
	default:
		r.evals.Add(1)
		go r.evaluator(job)
	}
	return job.done
}

// evaluator runs job, then the jobs handed to it, until it has waited
// evaluatorIdle for one or the runner is closed.
func (r *Runner) evaluator(job *evalJob) {
	defer r.evals.Done()
	idle := time.NewTimer(evaluatorIdle)
	defer idle.Stop()
	for {
		m := vm.VM{MemoryBudget: r.budget} // a VM is not safe for concurrent use
		v, err := m.Run(r.program, job.env)
		job.done <- evalResult{v, err}
		job = nil
		idle.Reset(evaluatorIdle)
		select {
		case job = <-r.jobs:
		case <-idle.C:
			return
		case <-r.quit:
			return
		}
	}
}

// env builds the per-run environment; its functions write to out and act
// through the host under ctx.
func (r *Runner) env(ctx context.Context, ev hookctl.Event, out *runner.TailWriter) Env {
	fe := filter.NewEnv(ev)
	sb := &stringBudget{left: r.strings}
	return Env{
		Add:   sb.add,
		Event: fe.Event,
		Item:  fe.Item,
		Log: func(args ...any) any {
			parts := make([]string, len(args))
			for i, a := range args {
				parts[i] = fmt.Sprint(a)
			}
			line := runner.Tail(strings.Join(parts, " "), runner.OutputTail)
			out.WriteString(line + "\n")
			r.logLine(line, ev)
			return true
		},
		Publish: func(service, node, payloadXML string, itemID ...string) (string, error) {
			if len(itemID) > 1 {
				return "", errors.New("publish takes at most one item id")
			}
			if err := ctx.Err(); err != nil {
				return "", err // the run is over: act no more
			}
			id := ""
			if len(itemID) == 1 {
				id = itemID[0]
			}
			got, err := r.host.Publish(ctx, ev.Profile, service, node, id, payloadXML)
			if err != nil {
				return "", fmt.Errorf("publish to %s %s: %w", service, node, err)
			}
			return got, nil
		},
	}
}

// logLine logs a line of the program at Info with the hook's attributes,
// made only when the program logs (most runs do not). The record is
// handed to the handler as Logger.Info would, without the caller's
// program counter: no handler of the backend adds the source, and
// finding it (runtime.Callers) was a fifth of a logged line's cost.
func (r *Runner) logLine(line string, ev hookctl.Event) {
	ctx := context.Background() // as Logger.Info passes
	l := r.host.Logger()
	if !l.Enabled(ctx, slog.LevelInfo) {
		return
	}
	rec := slog.NewRecord(time.Now(), slog.LevelInfo, line, 0)
	rec.AddAttrs(slog.String("hook", r.keyString), slog.String("name", r.hook.Name), slog.String("set", r.hook.Owner),
		slog.String("node", ev.Node), slog.String("item_id", ev.ItemID))
	_ = l.Handler().Handle(ctx, rec)
}

// plainError drops expr's source excerpt from a runtime error, keeping the
// message, position and wrapped cause, so the run record stays one line.
func plainError(err error) error {
	var fe *file.Error
	if !errors.As(err, &fe) {
		return err
	}
	return &runError{msg: fmt.Sprintf("%s (%d:%d)", fe.Message, fe.Line, fe.Column), err: fe.Unwrap()}
}

type runError struct {
	msg string
	err error
}

func (e *runError) Error() string { return e.msg }
func (e *runError) Unwrap() error { return e.err }

// CheckProgram compiles src exactly as the runner does (environment,
// options, depth bound) and returns why it would be refused; the rules
// package calls it so that every door refuses what the runner would.
func CheckProgram(src string) error {
	_, err := (&factory{}).compile(src)
	return err
}
