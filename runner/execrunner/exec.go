// Package execrunner runs exec hooks: a program started directly (no shell)
// per event, with the event as JSON on stdin and HOOK_* variables in a
// minimal environment. The program is started by a keeper
// (keeper_linux.go), a long-lived child subreaper of the backend, one per
// run slot of the hook: when the run ends, is stopped, or the backend dies
// (even by kill -9), the keeper kills every descendant of the program,
// those that called setsid included, so nothing it forked outlives the run
// or the backend.
//
// The stdin document is the hookctl.Event encoded with its JSON tags, nothing
// added or wrapped, for example:
//
//	{"profile":"default","service":"pubsub.example.org","node":"blog",
//	 "kind":"publish","item_id":"p1","payload":"<entry .../>",
//	 "item_xml":"<item id=\"p1\">...</item>","received":"2025-01-02T03:04:05Z"}
//
// The environment holds only the base list (PATH, HOME, LANG by default)
// plus HOOK_PROFILE, HOOK_SERVICE, HOOK_NODE, HOOK_EVENT, HOOK_ITEM_ID, and
// HOOK_CATCHUP=1 for catch-up events; the backend's own environment, which
// may hold secrets, is not passed on. The payload is never put in argv.
package execrunner

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"time"
	"unsafe"

	"hookctl.dev/hookctl"
	"hookctl.dev/hookctl/runner"
)

// DefaultWaitDelay is how long a run waits, once its process group is
// killed, for the output pipe to reach EOF before closing it. Only a process
// that escaped the group (setsid) can hold the pipe that long.
const DefaultWaitDelay = 2 * time.Second

// Options configure the exec Factory.
type Options struct {
	// Env is the base environment of every program, "NAME=value" entries,
	// to which the HOOK_* variables are added; nil means DefaultEnv().
	Env []string
	// WaitDelay bounds the wait for the output pipe after the process group
	// is killed; zero means DefaultWaitDelay.
	WaitDelay time.Duration
	// Secrets are what a hook's secrets: may name, read at each run (a
	// rotated file takes effect at the next run); nil declares none.
	Secrets runner.SecretSource
}

// DefaultEnv is the base environment used when Options.Env is nil: a fixed
// PATH, the backend's HOME and a UTF-8 locale.
func DefaultEnv() []string {
	env := []string{"PATH=/usr/local/bin:/usr/bin:/bin", "LANG=C.UTF-8"}
	if home := os.Getenv("HOME"); home != "" {
		env = append(env, "HOME="+home)
	}
	return env
}

// NewFactory returns the Factory of exec hooks.
func NewFactory(opts Options) runner.Factory {
	if opts.Env == nil {
		opts.Env = DefaultEnv()
	}
	if opts.WaitDelay <= 0 {
		opts.WaitDelay = DefaultWaitDelay
	}
	return &factory{opts: opts}
}

type factory struct{ opts Options }

var _ runner.Factory = (*factory)(nil)

// Check reports whether h.Arg names an absolute path to an executable
// regular file.
func (f *factory) Check(_ context.Context, h hookctl.Hook) error {
	return checkProgram(h.Arg)
}

func checkProgram(path string) error {
	if !filepath.IsAbs(path) {
		return fmt.Errorf("%w: exec program %q is not an absolute path", hookctl.ErrInvalid, path)
	}
	fi, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("%w: exec program: %w", hookctl.ErrInvalid, err)
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("%w: exec program %q is not a regular file", hookctl.ErrInvalid, path)
	}
	// access(2) answers for this process's identity, unlike the mode bits.
	if err := syscall.Access(path, 1 /* X_OK */); err != nil {
		return fmt.Errorf("%w: exec program %q is not executable: %w", hookctl.ErrInvalid, path, err)
	}
	return nil
}

// New returns a Runner for h. The program is checked at each run, not here,
// so that a program installed after the hook starts working without reload.
func (f *factory) New(h hookctl.Hook, _ runner.Host) (runner.Runner, error) {
	if !filepath.IsAbs(h.Arg) {
		return nil, fmt.Errorf("%w: exec program %q is not an absolute path", hookctl.ErrInvalid, h.Arg)
	}
	return &Runner{
		keepers:   &pool{max: max(h.Concurrency, 1)},
		path:      h.Arg,
		args:      append([]string(nil), h.Args...),
		env:       f.opts.Env,
		own:       h,
		secrets:   f.opts.Secrets,
		waitDelay: f.opts.WaitDelay,
		timeout:   time.Duration(h.Timeout),
	}, nil
}

// Runner runs one exec hook; it keeps an idle keeper per run slot between
// runs (Close ends them) and is safe for concurrent use.
type Runner struct {
	keepers   *pool
	path      string
	args      []string
	env       []string
	own       hookctl.Hook // its Env and Secrets: the hook's own environment
	secrets   runner.SecretSource
	waitDelay time.Duration
	timeout   time.Duration // used only when ctx has no deadline
}

var _ runner.Runner = (*Runner)(nil)

// Close ends the idle keepers; a keeper busy with a run ends when the run
// does. Every run releases the processes it started before returning.
func (r *Runner) Close() error {
	r.keepers.close()
	return nil
}

// Run starts the program for ev and waits for it, or kills its process group
// when ctx ends. Exit 0 is OK, another status Failed, a killed run Timeout
// (deadline) or Failed (cancel), a program that cannot start Error.
func (r *Runner) Run(ctx context.Context, ev hookctl.Event) runner.Result {
	ctx, cancel := runner.WithDeadline(ctx, r.timeout)
	defer cancel()
	input, err := runner.EventJSON(ev)
	if err != nil {
		return runner.Result{Outcome: runner.Error, ExitCode: -1, Err: fmt.Errorf("encoding event: %w", err)}
	}

	base, err := runner.HookEnv(r.env, r.own, r.secrets)
	if err != nil {
		return runner.Result{Outcome: runner.Error, ExitCode: -1, Err: fmt.Errorf("environment: %w", err)}
	}
	out := runner.NewTailWriter(runner.OutputTail)
	if !procExe() {
		return r.runDirect(ctx, input, hookEnv(base, ev), out)
	}
	req := request{Path: r.path, Args: r.args, Env: hookEnv(base, ev), Dir: filepath.Dir(r.path)}
	kr, err := r.runKept(ctx, req, input, out)
	if err != nil {
		return runner.Result{Outcome: runner.Error, ExitCode: -1, Output: out.String(), Err: err}
	}
	res := runner.Result{ExitCode: kr.code, Output: out.String()}
	switch {
	case kr.startErr != "":
		return runner.Result{Outcome: runner.Error, ExitCode: -1, Err: errors.New(kr.startErr)}
	case kr.stopped:
		return stoppedResult(ctx, res)
	case kr.signal != 0:
		res.Outcome, res.ExitCode = runner.Failed, -1
		res.Err = fmt.Errorf("killed by signal %s", kr.signal)
	case kr.code == 0:
		res.Outcome = runner.OK
	default:
		res.Outcome = runner.Failed
		res.Err = fmt.Errorf("exit status %d", kr.code)
	}
	return res
}

// runKept runs req through a keeper of the pool; a keeper that turns out
// to be gone before it took the run (its idle timeout) is replaced once.
func (r *Runner) runKept(ctx context.Context, req request, input []byte, out io.Writer) (keeperRun, error) {
	for attempt := 0; ; attempt++ {
		k, err := r.keepers.get()
		if err != nil {
			return keeperRun{}, err
		}
		kr, err := k.run(ctx, req, input, out, r.waitDelay)
		if kr.broken {
			k.close()
		} else {
			r.keepers.put(k)
		}
		if errors.Is(err, errKeeperGone) && attempt == 0 {
			continue
		}
		return kr, err
	}
}

// procExe reports whether /proc/self/exe, which starts keepers, exists;
// /proc does not come and go while the backend runs.
var procExe = sync.OnceValue(func() bool {
	_, err := os.Stat("/proc/self/exe")
	return err == nil
})

// stoppedResult is the result of a run that ctx ended: Timeout at its
// deadline, Failed when cancelled.
func stoppedResult(ctx context.Context, res runner.Result) runner.Result {
	res.ExitCode = -1
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		res.Outcome = runner.Timeout
		res.Err = fmt.Errorf("killed after timeout: %w", ctx.Err())
	} else {
		res.Outcome = runner.Failed
		res.Err = fmt.Errorf("killed: %w", ctx.Err())
	}
	return res
}

// runDirect runs the program without a keeper, where /proc is missing (a
// bare container): in its own process group, killed as a group, so that
// only descendants that left the group (setsid) can outlive the run.
func (r *Runner) runDirect(ctx context.Context, input []byte, env []string, out *runner.TailWriter) runner.Result {
	cmd := exec.Command(r.path, r.args...)
	cmd.Env, cmd.Dir = env, filepath.Dir(r.path)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Stdin = bytes.NewReader(input)
	// One writer for both streams: exec then uses a single pipe, so the
	// tail keeps stdout and stderr interleaved as the program wrote them.
	cmd.Stdout, cmd.Stderr = out, out
	// Wait returns at most WaitDelay after the process exits even if an
	// escaped descendant still holds the output pipe.
	cmd.WaitDelay = r.waitDelay
	if err := cmd.Start(); err != nil {
		return runner.Result{Outcome: runner.Error, ExitCode: -1, Err: fmt.Errorf("starting %s: %w", r.path, err)}
	}
	stopped := r.wait(ctx, cmd)
	res := runner.Result{ExitCode: cmd.ProcessState.ExitCode(), Output: out.String()}
	switch {
	case stopped:
		return stoppedResult(ctx, res)
	case cmd.ProcessState.Success():
		res.Outcome = runner.OK
	default:
		res.Outcome = runner.Failed
		res.Err = describeExit(cmd.ProcessState)
	}
	return res
}

// wait waits for cmd's process to exit, killing its group if ctx ends
// first, then kills whatever remains of the group and reaps the process.
// It reports whether the run was stopped by ctx.
func (r *Runner) wait(ctx context.Context, cmd *exec.Cmd) (stopped bool) {
	pid := cmd.Process.Pid
	exited := make(chan error, 1)
	go func() { exited <- waitExited(pid) }()
	var err error
	select {
	case err = <-exited:
	case <-ctx.Done():
		stopped = true
		killGroup(pid)
		err = <-exited
	}
	if err != nil {
		// waitid failed (it should not): fall back to reaping in the
		// background, at the cost of killing the group after the reap.
		waited := make(chan struct{})
		go func() { _ = cmd.Wait(); close(waited) }()
		select {
		case <-waited:
		case <-ctx.Done():
			stopped = true
			killGroup(pid)
			<-waited
		}
		killGroup(pid)
		return stopped
	}
	// The leader has exited but is not reaped, so its pid, which is the
	// group id, cannot have been reused: this kill reaches only descendants
	// that outlived it. Wait then reaps it and drains the output pipe,
	// bounded by WaitDelay; its error is already in ProcessState.
	killGroup(pid)
	_ = cmd.Wait()
	return stopped
}

func describeExit(ps *os.ProcessState) error {
	if ws, ok := ps.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return fmt.Errorf("killed by signal %s", ws.Signal())
	}
	return fmt.Errorf("exit status %d", ps.ExitCode())
}

// hookEnv returns base plus the HOOK_* variables of ev.
func hookEnv(base []string, ev hookctl.Event) []string {
	env := make([]string, 0, len(base)+6)
	env = append(env, base...)
	env = append(env,
		"HOOK_PROFILE="+ev.Profile,
		"HOOK_SERVICE="+ev.Service,
		"HOOK_NODE="+ev.Node,
		"HOOK_EVENT="+string(ev.Kind),
		"HOOK_ITEM_ID="+ev.ItemID,
	)
	if ev.Catchup {
		env = append(env, "HOOK_CATCHUP=1")
	}
	return env
}

// killGroup sends SIGKILL to the process group pgid; an empty group (ESRCH)
// is the normal case after a clean exit.
func killGroup(pgid int) {
	_ = syscall.Kill(-pgid, syscall.SIGKILL)
}

// waitExited blocks until process pid has exited, without reaping it
// (waitid with WNOWAIT), so that its pid stays reserved until cmd.Wait.
func waitExited(pid int) error {
	const pPID = 1     // P_PID
	var info [128]byte // siginfo_t
	for {
		_, _, errno := syscall.Syscall6(syscall.SYS_WAITID, pPID, uintptr(pid),
			uintptr(unsafe.Pointer(&info)), syscall.WEXITED|syscall.WNOWAIT, 0, 0)
		if errno == syscall.EINTR {
			continue
		}
		if errno != 0 {
			return errno
		}
		return nil
	}
}
