// Package python runs the Python hook types (python, python_file,
// python_code) in long-lived python3 worker processes, one per hook (or per
// concurrent run slot), speaking a line protocol with an embedded shim.
//
// What a hook sees: hook(host, client, item) is called once per item or
// retraction, in arrival order (python_code is executed instead, with the
// globals host, client and item set; its globals persist between items).
// A coroutine it returns (async def hook, or python_code with a top-level
// await) is run to completion in an event loop the worker keeps.
//
//   - item is an xml.etree.ElementTree.Element parsed from Event.ItemXML,
//     the <item>, <retract>, <purge> or <delete> element with its
//     namespaces (tags in "{ns}name" form).
//   - client has the attributes profile, jid (the profile's JID, from
//     Options.ProfileJID) and event, whose attributes are service, node,
//     kind, item_id, publisher, catchup and received (RFC 3339 text).
//   - host.log(*args, level="info") logs a line into the backend's log
//     (with the hook, node and item id) and the run's output;
//     host.publish(service, node, payload, item_id=None, loop=False)
//     publishes payload (XML text, UTF-8 bytes or an Element) through the
//     backend's session (runner.Host.Publish) and returns the item id, or
//     raises RuntimeError. An item published on the node that triggered
//     the run is not run by this hook again (outcome Skipped) unless loop.
//
// Loading: a worker loads one version of the hook, once: python_file is
// executed as a module, python imported, python_code compiled (and its
// top-level imports imported). The hook must be callable as hook(host,
// client, item) and not a generator. A load is bounded by the hook's
// timeout, python3's start-up aside; Factory.Check reports why a hook does
// not load. The files of the modules loaded from the hook's own directory
// are stat'ed before each run (once per batch of pipelined runs, see
// batch.go); when they changed and have been stable for settle, the new
// version is loaded in a new worker beside the old one, which keeps
// serving until then, and for good if the new version does not load
// (Problem says why).
//
// Isolation: each run starts in the worker's directory with the sys.path
// of the load. An exception fails the run (the traceback ends its Output)
// and the next item runs in the same worker. What the hook prints goes to
// the worker's fd 1 and 2 as written, so output up to a crash or a kill is
// kept; the protocol uses fds 3 and 4. A worker that dies fails its run
// and is restarted for the next one, after a backoff when it keeps dying.
// A run past its deadline gets a stack dump (faulthandler, SIGUSR1), then
// its worker is killed and the run returns Timeout saying where it was.
// Workers idle for Options.IdleTimeout exit and are started again on
// demand.
//
// Processes: the process started is a keeper, parent and subreaper of the
// worker, running no hook code: when the worker ends, Close or a deadline
// asks (SIGTERM), or the backend dies (its parent-death signal), it kills
// everything below it, also processes that left the process group. The
// worker kills what a run started at the run's end. Each worker's address
// space is bounded (RLIMIT_AS) by the hook's memory or Options.Memory.
//
// Workers run with a clean environment: PATH=/usr/local/bin:/usr/bin:/bin,
// HOME (the backend's), LANG=C.UTF-8, PYTHONPATH (Options.PythonPath, then
// the backend's PYTHONPATH), PYTHONDONTWRITEBYTECODE=1, PYTHONUNBUFFERED=1,
// then the hook's own env and secrets (runner.HookEnv), which win.
// Their working directory is the script's directory for python_file, else
// Options.WorkDir.
package python

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"hookctl.dev/hookctl"
	"hookctl.dev/hookctl/runner"
)

// Options configure the Python runners.
type Options struct {
	// Python is the interpreter; default "python3", looked up on the
	// backend's PATH. Workers run the binary it reports as sys.executable
	// (so a pyenv shim is resolved once, not run at every start).
	Python string
	// PythonPath lists directories searched for hook modules, before the
	// backend's own PYTHONPATH (the backend config's python_path). Relative
	// entries are made absolute from the backend's working directory.
	PythonPath []string
	// WorkDir is the workers' working directory for python and python_code
	// hooks (python_file hooks run in their script's directory); default
	// os.TempDir().
	WorkDir string
	// IdleTimeout stops a worker that has not run for this long; it starts
	// again on the next event. Default 10 minutes; negative never stops.
	IdleTimeout time.Duration
	// ProfileJID returns the JID of a profile, shown to hooks as
	// client.jid; nil leaves it empty.
	ProfileJID func(profile string) string
	// Memory is the default address-space limit of a worker in bytes
	// (RLIMIT_AS, set by the worker on itself before any hook code runs;
	// the backend config's python_memory), 0 or less for none. A hook's
	// own memory field overrides it.
	Memory int64
	// Secrets are what a hook's secrets: may name; they are read when a
	// worker starts (a rotated file takes effect at the next worker).
	// nil declares none.
	Secrets runner.SecretSource
	// Logger receives the runner's own messages (worker restarts); host.log
	// lines go to the Host's logger. Default: discard.
	Logger *slog.Logger
}

// DefaultIdleTimeout is how long an unused worker lives by default.
const DefaultIdleTimeout = 10 * time.Minute

// loadRetry is how long a load error is remembered before the next run
// tries to load again (a python_file is retried at once when it changes).
const loadRetry = 10 * time.Second

// LoadError says a Python hook could not be loaded: a syntax error, a
// missing module, no hook function. It matches hookctl.ErrInvalid.
type LoadError struct {
	Type hookctl.Type
	Arg  string
	// Msg is the Python error, e.g. "SyntaxError: invalid syntax (y.py, line 3)".
	Msg string
	// Traceback is the Python traceback, when the error was raised by the
	// hook's own code while loading.
	Traceback string
}

// Error renders e.g. "python_file /x/y.py: SyntaxError: invalid syntax (y.py, line 3)".
func (e *LoadError) Error() string {
	arg := e.Arg
	if e.Type == hookctl.TypePythonCode {
		return fmt.Sprintf("%s: %s", e.Type, e.Msg)
	}
	return fmt.Sprintf("%s %s: %s", e.Type, arg, e.Msg)
}

// Unwrap makes errors.Is(err, hookctl.ErrInvalid) true.
func (e *LoadError) Unwrap() error { return hookctl.ErrInvalid }

// NewFactory returns the factory of the three Python hook types.
func NewFactory(opts Options) runner.Factory {
	if opts.Python == "" {
		opts.Python = "python3"
	}
	if opts.WorkDir == "" {
		opts.WorkDir = os.TempDir()
	}
	if opts.IdleTimeout == 0 {
		opts.IdleTimeout = DefaultIdleTimeout
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	// Workers run in other directories: a relative entry would be searched
	// from each worker's own working directory.
	pp := make([]string, 0, len(opts.PythonPath))
	for _, d := range opts.PythonPath {
		if a, err := filepath.Abs(d); err == nil {
			d = a
		}
		pp = append(pp, d)
	}
	opts.PythonPath = pp
	return &factory{opts: opts, warmups: make(chan struct{}, maxWarmups)}
}

// maxWarmups bounds how many workers start ahead of events at once, so
// that a registry of many Python hooks does not start them all together.
const maxWarmups = 2

type factory struct {
	opts    Options
	warmups chan struct{} // semaphore of warm-ups in progress

	mu     sync.Mutex
	python string // the resolved interpreter, once known
}

var _ runner.Factory = (*factory)(nil)

func isPython(t hookctl.Type) bool {
	return t == hookctl.TypePython || t == hookctl.TypePythonFile || t == hookctl.TypePythonCode
}

// validate checks what can be checked without Python.
func validate(h hookctl.Hook) error {
	if !isPython(h.Type) {
		return fmt.Errorf("%w: pyrunner cannot run %s hooks", hookctl.ErrInvalid, h.Type)
	}
	if _, err := hookctl.ParseMemory(h.Memory); err != nil {
		return err
	}
	switch h.Type {
	case hookctl.TypePythonFile:
		if !filepath.IsAbs(h.Arg) {
			return fmt.Errorf("%w: python_file %s: path is not absolute", hookctl.ErrInvalid, h.Arg)
		}
		fi, err := os.Stat(h.Arg)
		if err != nil {
			return fmt.Errorf("%w: python_file %w", hookctl.ErrInvalid, err)
		}
		if !fi.Mode().IsRegular() {
			return fmt.Errorf("%w: python_file %s is not a file", hookctl.ErrInvalid, h.Arg)
		}
	case hookctl.TypePython:
		if h.Arg == "" || strings.ContainsAny(h.Arg, "/ \t\n") {
			return fmt.Errorf("%w: python %q is not a module name", hookctl.ErrInvalid, h.Arg)
		}
	case hookctl.TypePythonCode:
		if strings.TrimSpace(h.Arg) == "" {
			return fmt.Errorf("%w: python_code is empty", hookctl.ErrInvalid)
		}
	}
	return nil
}

// env is the workers' clean environment.
func (f *factory) env() []string {
	pp := append([]string(nil), f.opts.PythonPath...)
	if own := os.Getenv("PYTHONPATH"); own != "" {
		pp = append(pp, own)
	}
	env := []string{
		"PATH=/usr/local/bin:/usr/bin:/bin",
		"LANG=C.UTF-8",
		"PYTHONDONTWRITEBYTECODE=1",
		"PYTHONUNBUFFERED=1",
	}
	if home := os.Getenv("HOME"); home != "" {
		env = append(env, "HOME="+home)
	}
	if len(pp) > 0 {
		env = append(env, "PYTHONPATH="+strings.Join(pp, string(os.PathListSeparator)))
	}
	return env
}

func (f *factory) workDir(h hookctl.Hook) string {
	if h.Type == hookctl.TypePythonFile {
		return filepath.Dir(h.Arg)
	}
	return f.opts.WorkDir
}

// interpreter returns the python3 binary to run. Version-manager shims
// (pyenv, asdf) are scripts that would re-add their environment and cost a
// shell at every start, so the interpreter's own sys.executable is asked
// once and used from then on. A failure is not cached: installing Python
// later works without restarting the backend.
func (f *factory) interpreter() (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.python != "" {
		return f.python, nil
	}
	p, err := exec.LookPath(f.opts.Python)
	if err != nil {
		return "", fmt.Errorf("python interpreter: %w", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, p, "-c", "import sys; print(sys.executable)").Output()
	if err != nil {
		return "", fmt.Errorf("python interpreter %s: %w", p, err)
	}
	if real := strings.TrimSpace(string(out)); filepath.IsAbs(real) {
		if fi, err := os.Stat(real); err == nil && fi.Mode().IsRegular() {
			p = real
		}
	}
	f.python = p
	return p, nil
}

// start starts a worker for h with the given memory limit.
func (f *factory) start(h hookctl.Hook, memory int64) (*worker, error) {
	python, err := f.interpreter()
	if err != nil {
		return nil, err
	}
	env, err := runner.HookEnv(f.env(), h, f.opts.Secrets)
	if err != nil {
		return nil, fmt.Errorf("environment: %w", err)
	}
	return startWorker(python, env, f.workDir(h), string(h.Type), memory)
}

// memory is h's memory limit in bytes: its own, else the default; 0 for
// none. validate has checked h.Memory.
func (f *factory) memory(h hookctl.Hook) int64 {
	n, _ := hookctl.ParseMemory(h.Memory)
	if n == 0 {
		n = f.opts.Memory
	}
	return max(n, 0)
}

// Check starts a worker, has it load the hook, and reports why it does not
// load (a *LoadError), or nil. The load is bounded by the hook's timeout: a
// module that blocks at import is refused, with where it was stuck.
func (f *factory) Check(ctx context.Context, h hookctl.Hook) error {
	if err := validate(h); err != nil {
		return err
	}
	w, err := f.start(h, f.memory(h))
	if err != nil {
		return err
	}
	defer w.stop(0)
	if err := w.awaitReady(ctx); err != nil {
		return fmt.Errorf("checking %s hook: %w", h.Type, err)
	}
	limit := time.Duration(h.Timeout)
	if limit <= 0 {
		limit = runner.DefaultTimeout
	}
	which := "the hook's timeout"
	if d, ok := ctx.Deadline(); ok && time.Until(d) < limit {
		limit, which = time.Until(d).Round(time.Millisecond), "the request's deadline"
	}
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	stop := context.AfterFunc(ctx, w.dumpAndKill)
	defer stop()
	_, lerr, _, err := load(w, h)
	if err != nil {
		w.reap()
		out := strings.ReplaceAll(w.stray.take(), string(w.marker), "")
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return &LoadError{Type: h.Type, Arg: h.Arg, Traceback: out,
				Msg: fmt.Sprintf("loading did not finish within %s (%s)%s", limit, which, stuckAt(out))}
		}
		if ctx.Err() != nil {
			return fmt.Errorf("checking %s hook: %w", h.Type, ctx.Err())
		}
		return fmt.Errorf("checking %s hook: %w: %s (%s)", h.Type, err, w.exitText(), strings.TrimSpace(out))
	}
	if lerr != nil {
		return lerr
	}
	return nil
}

// load asks w to load h. It returns what loading printed, the load error
// when the hook does not load, the module files the worker loaded from the
// hook's directory, or an error when the worker failed.
func load(w *worker, h hookctl.Hook) (string, *LoadError, []string, error) {
	if err := w.awaitReady(context.Background()); err != nil {
		return "", nil, nil, err
	}
	if err := w.send(loadFrame{Op: "load", Type: string(h.Type), Arg: h.Arg}); err != nil {
		return "", nil, nil, err
	}
	var fr inFrame
	if err := w.recv(&fr); err != nil {
		return "", nil, nil, err
	}
	switch fr.Op {
	case "loaded":
		return w.loadOut + w.output(), nil, fr.Files, nil
	case "load_error":
		return w.loadOut + w.output(), &LoadError{Type: h.Type, Arg: h.Arg, Msg: fr.Error, Traceback: fr.Traceback}, nil, nil
	}
	return "", nil, nil, fmt.Errorf("python worker answered %q to load", fr.Op)
}

// New returns a runner for h. The first worker starts and loads the hook in
// the background at once, so that the first events do not queue behind
// python3's start-up; others start on demand.
func (f *factory) New(h hookctl.Hook, host runner.Host) (runner.Runner, error) {
	if err := validate(h); err != nil {
		return nil, err
	}
	n := max(h.Concurrency, 1)
	r := &pyRunner{f: f, hook: h, host: host, slots: make(chan *slot, n), closing: make(chan struct{}), memory: f.memory(h)}
	r.ctx, r.cancel = context.WithCancel(context.Background())
	r.all = make([]*slot, n)
	for i := range n {
		s := &slot{r: r}
		r.all[i] = s
		r.slots <- s
	}
	if host != nil {
		r.log = host.Logger()
	}
	if r.log == nil {
		r.log = f.opts.Logger
	}
	// Every line, host.log's included, says which hook it is about.
	r.log = r.log.With("hook", h.Key.String())
	if h.Name != "" {
		r.log = r.log.With("name", h.Name)
	}
	r.warming.Add(1)
	go func() {
		defer r.warming.Done()
		r.warm()
	}()
	return r, nil
}

var errClosed = errors.New("python runner closed")
