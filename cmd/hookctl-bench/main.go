// Command hookctl-bench measures the hookctl runtime end to end against a
// private Prosody: a publisher sends a burst of items to a PubSub node; the
// backend (run in this process, as `hookctl serve` would) fires one hook per
// item, and a bare XMPP subscriber on the same node, in the same run, is the
// yardstick. For each consumer it prints the rate (items/s from the first
// publish sent to the last item handled), the publish-to-handled latency
// (median, p99, max) and how many items were handled out of arrival order.
//
// Usage:
//
//	go run ./cmd/hookctl-bench -type expr -items 2000
//	go run ./cmd/hookctl-bench -type exec -items 2000
//	go run ./cmd/hookctl-bench -type python_file -items 2000
//	go run ./cmd/hookctl-bench -type expr -items 2000 -check   # for make: exit 3 on a missed goal
//
// Timestamps: "sent" is taken just before each publish request is written;
// the bare subscriber's "handled" when its session decodes the event; a
// hook's "handled" is the end of its run (Run.Started + Run.Duration from
// the backend's run history; the backend runs in this process, so the
// clocks are the same). Arrival order is the order the bare subscriber
// received the notifications (Prosody notifies every subscriber in the same
// order). For exec hooks a plain loop of the same program, started
// sequentially with os/exec, is measured as the baseline.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"hookctl.dev/hookctl"
	"hookctl.dev/hookctl/api"
	"hookctl.dev/hookctl/config"
	"hookctl.dev/hookctl/daemon"
	"hookctl.dev/hookctl/internal/prosodytest"
	"hookctl.dev/hookctl/xmppsession"
)

const (
	node     = "bench"
	password = "benchpw"
	pwEnv    = "HOOKCTL_BENCH_PASSWORD"
)

type options struct {
	typ        string
	items      int
	inflight   int
	timeout    time.Duration
	asJSON     bool
	verbose    bool
	cpuprofile string
	check      bool
	// runs is where the backend keeps its run history: store (the
	// durable history, the default), memory, or both (one burst each,
	// memory first, same process).
	runs string
	// store is Prosody's PubSub storage: memory or file.
	store string
	// endurance, when > 0, publishes this many items through one hook of
	// a backend in a child process, sampling its RSS, fds and store size.
	endurance int
	// scale, when > 0, measures a backend starting with this many hooks
	// on as many nodes, spread over profiles profiles.
	scale, profiles int
	// idle is how long the scale mode measures idle CPU.
	idle time.Duration
	// exprProg is the expr hook's program.
	exprProg string
	// separate runs the backend and the bare subscriber each in a
	// child process, and reports each one's CPU per item.
	separate bool
	// backendProfile is where the child backend writes a CPU profile
	// (scale: one per start, .1 and .2).
	backendProfile string
}

func main() {
	var o options
	flag.StringVar(&o.typ, "type", "expr", "hook type to measure: expr, exec or python_file")
	flag.IntVar(&o.items, "items", 2000, "items published in the burst (at most 10000, the run history size)")
	flag.IntVar(&o.inflight, "inflight", 8, "publish requests in flight at once")
	flag.DurationVar(&o.timeout, "timeout", 5*time.Minute, "give up when the burst is not handled within this time")
	flag.BoolVar(&o.asJSON, "json", false, "print the results as JSON")
	flag.BoolVar(&o.verbose, "v", false, "log the backend at debug level to stderr")
	flag.BoolVar(&o.check, "check", false, "exit with status 3 when a goal is missed: any run not ok or out of order, or (expr) rate below 0.9× or p99 above 2× the bare subscriber's")
	flag.StringVar(&o.cpuprofile, "cpuprofile", "", "write a CPU profile of this process (backend, subscriber, publisher) during the burst; samples carry a role label (backend, pub, bare): go tool pprof -tags")
	flag.StringVar(&o.runs, "runs", "store", "run history: store (durable, the default), memory, or both (one burst each, reported one after the other)")
	flag.StringVar(&o.store, "store", "memory", "Prosody's PubSub item storage: memory or file")
	flag.IntVar(&o.endurance, "endurance", 0, "endurance mode: publish this many items through one hook of a backend in a child process, sampling RSS, open fds and store size")
	flag.IntVar(&o.scale, "scale", 0, "scale mode: a backend in a child process with this many persistent hooks on as many nodes; time to ready, RSS, idle CPU")
	flag.IntVar(&o.profiles, "profiles", 1, "scale mode: spread the nodes over this many profiles (accounts)")
	flag.DurationVar(&o.idle, "idle", 65*time.Second, "scale mode: how long idle CPU is measured once ready (over a minute includes the subscriptions' periodic check)")
	flag.StringVar(&o.backendProfile, "backend-cpuprofile", "", "scale and endurance modes: write a CPU profile of the child backend, from its start to its stop, and its heap in use at the stop to FILE.heap (scale: FILE.1 first start, FILE.2 restart)")
	flag.StringVar(&o.exprProg, "expr", "log(item.id)", "the expr hook's program (the default logs each item: a line in the backend's log)")
	flag.BoolVar(&o.separate, "separate", false, "run the backend and the bare subscriber each in a child process of its own and report each one's CPU per item and their ratio (with -cpuprofile: the backend child's profile of the burst)")
	bareChild := flag.String("bare-child", "", "internal: run the bare subscriber on this JSON spec (the child of -separate)")
	backendConfig := flag.String("backend-config", "", "internal: run the backend on this JSON config (the child of -scale and -endurance)")
	backendLog := flag.String("backend-log", "", "internal: the child backend's log file")
	flag.Parse()
	if *bareChild != "" {
		if err := serveBare(*bareChild); err != nil {
			fmt.Fprintln(os.Stderr, "hookctl-bench bare subscriber:", err)
			os.Exit(1)
		}
		return
	}
	if *backendConfig != "" {
		if err := serveChild(*backendConfig, *backendLog); err != nil {
			fmt.Fprintln(os.Stderr, "hookctl-bench backend:", err)
			os.Exit(1)
		}
		return
	}
	if o.store != "memory" && o.store != "file" {
		fmt.Fprintf(os.Stderr, "hookctl-bench: -store %q: want memory or file\n", o.store)
		os.Exit(2)
	}
	if err := mode(o); err != nil {
		fmt.Fprintln(os.Stderr, "hookctl-bench:", err)
		if errors.Is(err, errGoal) {
			os.Exit(3)
		}
		os.Exit(1)
	}
}

// Result is one consumer's figures.
type Result struct {
	Consumer   string  `json:"consumer"`
	Items      int     `json:"items"`
	Seconds    float64 `json:"seconds"`
	PerSecond  float64 `json:"items_per_second"`
	MedianMS   float64 `json:"latency_median_ms"`
	P99MS      float64 `json:"latency_p99_ms"`
	MaxMS      float64 `json:"latency_max_ms"`
	OutOfOrder int     `json:"out_of_order"`
	NotOK      int     `json:"not_ok,omitempty"`
	// NotOKByOutcome counts the runs that were not ok by outcome
	// (dropped: the hook's queue was full).
	NotOKByOutcome map[string]int `json:"not_ok_by_outcome,omitempty"`
	LatencyNote    string         `json:"latency,omitempty"`
	// BusyPerSecond is the rate from the first item handled to the last:
	// how fast the consumer drains once it has work.
	BusyPerSecond float64 `json:"busy_items_per_second,omitempty"`
	// RunMedianMS and RunP99MS are the hook's own run durations.
	RunMedianMS float64 `json:"run_median_ms,omitempty"`
	RunP99MS    float64 `json:"run_p99_ms,omitempty"`
	// RunMeanMS is the mean run duration; GapMeanMS the mean time from
	// one run's end to the next one's start while runs were queued (the
	// dispatcher's own cost per run, plus scheduling).
	RunMeanMS float64 `json:"run_mean_ms,omitempty"`
	GapMeanMS float64 `json:"gap_mean_ms,omitempty"`
}

// Report is the whole output.
type Report struct {
	Type      string   `json:"type"`
	Items     int      `json:"items"`
	InFlight  int      `json:"inflight"`
	CPUs      int      `json:"cpus"`
	Publisher Result   `json:"publisher"`
	Results   []Result `json:"results"`
	Ratio     *Ratio   `json:"hook_vs_bare,omitempty"`
	// LoopRatio (exec) is the hook's rate ÷ the plain fork/exec loop's.
	LoopRatio float64 `json:"hook_vs_loop,omitempty"`
	// ProsodyCPU is the CPU time the server used during the burst, and
	// SelfCPU this process's (backend, subscriber, publisher), in seconds.
	ProsodyCPU float64 `json:"prosody_cpu_seconds"`
	SelfCPU    float64 `json:"self_cpu_seconds"`
	// HookCPU is the CPU time of the hooks' processes (exec programs that
	// ended, Python workers still running).
	HookCPU float64   `json:"hook_cpu_seconds"`
	When    time.Time `json:"when"`
	// RunHistory is where the backend kept its runs: store or memory.
	RunHistory string `json:"run_history"`
	// ProsodyStore is Prosody's PubSub item storage: memory or file.
	ProsodyStore string `json:"prosody_store"`
	// Separate: the backend and the bare subscriber ran in child
	// processes, and BackendCPU and BareCPU are each one's CPU seconds
	// during the burst.
	Separate   bool    `json:"separate,omitempty"`
	BackendCPU float64 `json:"backend_cpu_seconds,omitempty"`
	BareCPU    float64 `json:"bare_cpu_seconds,omitempty"`
	// CPURatio is the backend's CPU per item ÷ the bare subscriber's.
	CPURatio float64 `json:"backend_vs_bare_cpu,omitempty"`
}

// Ratio compares the hook with the bare subscriber.
type Ratio struct {
	Rate float64 `json:"rate"` // hook items/s ÷ bare items/s
	P99  float64 `json:"p99"`  // hook p99 ÷ bare p99
}

// mode runs the mode the flags chose.
func mode(o options) error {
	switch {
	case o.endurance > 0:
		return endurance(o)
	case o.scale > 0:
		return scale(o)
	}
	return runEach(o)
}

// discardLog is the bench's logger: debug to stderr with -v, else none.
func discardLog(verbose bool) *slog.Logger {
	if verbose {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

// freeLoopbackPort finds a free TCP port on 127.0.0.1.
func freeLoopbackPort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// runEach runs the bench once, or once per run history with -runs both.
func runEach(o options) error {
	switch o.runs {
	case "store", "memory":
		return run(o)
	case "both":
		for _, r := range []string{"memory", "store"} {
			o.runs = r
			if !o.asJSON {
				fmt.Printf("== run history: %s\n", r)
			}
			if err := run(o); err != nil {
				return err
			}
		}
		return nil
	}
	return fmt.Errorf("-runs %q: want store, memory or both", o.runs)
}

func run(o options) error {
	if o.items <= 0 || o.items > 10000 {
		return fmt.Errorf("-items must be in 1..10000")
	}
	typ, err := hookctl.ParseType(o.typ)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	b := &bench{o: o, typ: typ, log: discardLog(o.verbose), bareDone: make(chan struct{})}
	defer b.close()
	if err := b.start(ctx); err != nil {
		return err
	}
	if err := b.createHook(ctx); err != nil {
		return err
	}
	m, err := b.burst(ctx)
	if err != nil {
		return err
	}
	rep, err := b.report(ctx, m)
	if err != nil {
		return err
	}
	if o.asJSON {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(rep); err != nil {
			return err
		}
		return checkGoals(o, rep)
	}
	printReport(rep)
	return checkGoals(o, rep)
}

// bench is one run: the server, the publisher, the bare subscriber (the
// yardstick) and what it saw, the backend and its hook. What it starts is
// stopped by close, in reverse order.
type bench struct {
	o   options
	typ hookctl.Type
	log *slog.Logger

	srv       *prosodytest.Server
	dir       string
	pub       *xmppsession.Session
	client    *api.Client
	prog, out string   // exec: the hook's program; exec, python_file: its output
	closers   []func() // run by close, last first

	bareMu   sync.Mutex
	bareIDs  []string    // items the bare subscriber got, in arrival order
	bareAt   []time.Time // when it got each
	bareDone chan struct{}

	// -separate: the children, and the bare child's CPU seconds when it
	// had every item.
	barePID int
	bareCPU float64
	backend *child
}

// start starts the server, the bare subscriber and the backend: in this
// process, or each in its own with -separate.
func (b *bench) start(ctx context.Context) error {
	if !b.o.separate {
		if err := b.startServer(ctx); err != nil {
			return err
		}
		return b.startBackend(ctx)
	}
	if err := b.startServerOnly(ctx); err != nil {
		return err
	}
	if err := b.startBareChild(ctx); err != nil {
		return err
	}
	return b.startBackendChild(ctx)
}

func (b *bench) onClose(f func()) { b.closers = append(b.closers, f) }

func (b *bench) close() {
	for i := len(b.closers) - 1; i >= 0; i-- {
		b.closers[i]()
	}
}

// startServer starts Prosody with the accounts, the node (owned by the
// publisher, so only it may publish) and the bare subscriber.
func (b *bench) startServer(ctx context.Context) error {
	if err := b.startServerOnly(ctx); err != nil {
		return err
	}
	if _, err := b.srv.RegisterUser("bare", password); err != nil {
		return err
	}
	srv := b.srv

	// The bare subscriber records when each item arrives, in arrival order.
	bare, stopBare, err := session(ctx, srv, "bare", b.bareEvent, b.log)
	if err != nil {
		return err
	}
	b.onClose(stopBare)
	if _, err := bare.Subscribe(ctx, srv.PubSub, node); err != nil {
		return fmt.Errorf("bare subscriber: %w", err)
	}
	return nil
}

func (b *bench) bareEvent(ev hookctl.Event) {
	now := time.Now()
	if ev.Kind != hookctl.EventPublish || ev.Node != node {
		return
	}
	b.bareMu.Lock()
	defer b.bareMu.Unlock()
	b.bareIDs = append(b.bareIDs, ev.ItemID)
	b.bareAt = append(b.bareAt, now)
	if len(b.bareIDs) == b.o.items {
		close(b.bareDone)
	}
}

// startBackend runs the backend in this process, as `hookctl serve` runs
// it, and waits until its profile is connected.
func (b *bench) startBackend(ctx context.Context) error {
	cfg := config.Config{
		DataDir:    filepath.Join(b.dir, "data"),
		AllowTypes: []hookctl.Type{b.typ},
		Profiles: map[string]config.Profile{"default": {
			JID: "bot@localhost", PasswordEnv: pwEnv, Server: b.srv.Addr, TLS: config.TLSNone,
		}},
	}
	cfg.Defaults()
	d, err := daemon.New(daemon.Options{Config: cfg, Logger: b.log, Version: "bench", MemoryRuns: b.o.runs == "memory",
		Getenv: func(k string) string {
			if k == pwEnv {
				return password
			}
			return os.Getenv(k)
		}})
	if err != nil {
		return err
	}
	dctx, stopDaemon := context.WithCancel(ctx)
	daemonErr := make(chan error, 1)
	// pprof labels (role=backend, pub, bare) tell the three apart in a
	// -cpuprofile: `go tool pprof -tags` gives the backend's own share.
	go pprof.Do(dctx, pprof.Labels("role", "backend"), func(ctx context.Context) { daemonErr <- d.Run(ctx) })
	b.onClose(func() {
		stopDaemon()
		if err := <-daemonErr; err != nil {
			fmt.Fprintln(os.Stderr, "backend:", err)
		}
	})
	if b.client, err = api.NewClient(api.ClientOptions{Socket: cfg.Socket}); err != nil {
		return err
	}
	b.onClose(func() { b.client.Close() })
	return waitFor(ctx, 20*time.Second, "backend connected", func() (bool, error) {
		st, err := b.client.Status(ctx)
		if err != nil {
			return false, nil // not listening yet
		}
		return len(st.Profiles) == 1 && st.Profiles[0].State == "connected", nil
	})
}

// createHook creates the measured hook and waits for its subscription.
func (b *bench) createHook(ctx context.Context) error {
	h := hookctl.Hook{Name: "bench", Key: hookctl.Key{Profile: "default", Service: b.srv.PubSub, Node: node, Type: b.typ},
		Events: []hookctl.EventKind{hookctl.EventPublish}}
	var err error
	switch b.typ {
	case hookctl.TypeExpr:
		h.Arg = b.o.exprProg
	case hookctl.TypeExec:
		b.out = filepath.Join(b.dir, "exec.out")
		b.prog = filepath.Join(b.dir, "hook.sh")
		if err := os.WriteFile(b.prog, []byte("#!/bin/sh\necho \"$HOOK_ITEM_ID\" >> "+b.out+"\n"), 0o755); err != nil {
			return err
		}
		h.Arg = b.prog
	case hookctl.TypePythonFile:
		if h.Arg, b.out, err = pythonFileHook(b.dir); err != nil {
			return err
		}
	default:
		return fmt.Errorf("-type %s is not measured yet (expr, exec, python_file)", b.typ)
	}
	if _, err := b.client.Create(ctx, h); err != nil {
		return fmt.Errorf("creating hook: %w", err)
	}
	return waitFor(ctx, 20*time.Second, "backend subscribed", func() (bool, error) {
		st, err := b.client.Status(ctx)
		if err != nil {
			return false, err
		}
		if len(st.HookErrors) > 0 {
			return false, fmt.Errorf("hook error: %s", st.HookErrors[0].Error)
		}
		return st.Profiles[0].Subscriptions == 1, nil
	})
}

// burstResult is what the burst measured.
type burstResult struct {
	sent      []time.Time    // when each item's publish was sent
	index     map[string]int // item id → its index in sent
	published time.Time      // when the last publish was acknowledged
	// CPU seconds used during the burst.
	prosodyCPU, selfCPU, hookCPU float64
	// -separate: the backend child's and the bare child's.
	backendCPU, bareCPU float64
}

// burst publishes the items and waits until the bare subscriber and the
// hook have handled them all.
func (b *bench) burst(ctx context.Context) (burstResult, error) {
	o := b.o
	fmt.Fprintf(os.Stderr, "publishing %d items (%d in flight) to a %s hook and a bare subscriber…\n", o.items, o.inflight, b.typ)
	m := burstResult{sent: make([]time.Time, o.items), index: map[string]int{}}
	ids := make([]string, o.items)
	for i := range ids {
		ids[i] = fmt.Sprintf("i%06d", i)
		m.index[ids[i]] = i
	}
	if o.cpuprofile != "" && o.separate {
		_ = b.backend.cmd.Process.Signal(syscall.SIGUSR1) // the child profiles the burst, until SIGUSR2 below
	} else if o.cpuprofile != "" {
		f, err := os.Create(o.cpuprofile)
		if err != nil {
			return m, err
		}
		b.onClose(func() { f.Close() })
		if err := pprof.StartCPUProfile(f); err != nil {
			return m, err
		}
		b.onClose(pprof.StopCPUProfile)
	}
	// A Python hook's worker starts when the hook is added: let its
	// start-up end before the burst, so that it is not counted per item.
	last := -1.0
	_ = waitEvery(ctx, 10*time.Second, 200*time.Millisecond, "hook processes settled", func() (bool, error) {
		now := hookProcessCPU(b.srv.PID())
		settled := now == last
		last = now
		return settled, nil
	})
	prosodyCPU0, selfCPU0 := cpuSeconds(b.srv.PID()), cpuSeconds(os.Getpid())
	hookCPU := func() float64 { return hookProcessCPU(b.srv.PID()) }
	if o.separate { // the backend child's running children (Python workers)
		hookCPU = func() float64 { return childrenCPU(b.backend.pid()) }
	}
	hookCPU0 := hookCPU()
	var backendCPU0, bareCPU0 float64
	if o.separate {
		backendCPU0, bareCPU0 = procCPU(b.backend.pid()), procCPU(b.barePID)
	}
	var err error
	if m.published, err = b.publish(ctx, ids, m.sent); err != nil {
		return m, err
	}
	if err := b.waitHandled(ctx); err != nil {
		return m, err
	}
	m.prosodyCPU, m.selfCPU = cpuSeconds(b.srv.PID())-prosodyCPU0, cpuSeconds(os.Getpid())-selfCPU0
	m.hookCPU = hookCPU() - hookCPU0
	if o.separate {
		m.backendCPU = procCPU(b.backend.pid()) - backendCPU0
		m.bareCPU = b.bareCPU - bareCPU0 // read when the child had every item
		if o.cpuprofile != "" {
			_ = b.backend.cmd.Process.Signal(syscall.SIGUSR2)
		}
	}
	return m, nil
}

// publish sends the items with o.inflight publishers, each taking the next
// index in turn, recording when each was sent; it returns when all are
// acknowledged.
func (b *bench) publish(ctx context.Context, ids []string, sent []time.Time) (time.Time, error) {
	payload := "<entry xmlns='urn:example:bench'>item</entry>"
	var next atomic.Int64
	var wg sync.WaitGroup
	errc := make(chan error, b.o.inflight)
	for range b.o.inflight {
		wg.Go(func() {
			pprof.SetGoroutineLabels(pprof.WithLabels(ctx, pprof.Labels("role", "pub")))
			for {
				i := int(next.Add(1)) - 1
				if i >= len(ids) {
					return
				}
				sent[i] = time.Now()
				if _, err := b.pub.Publish(ctx, b.srv.PubSub, node, ids[i], payload); err != nil {
					errc <- fmt.Errorf("publishing %s: %w", ids[i], err)
					return
				}
			}
		})
	}
	wg.Wait()
	published := time.Now()
	close(errc)
	return published, <-errc
}

// waitHandled waits until the bare subscriber got every item and the hook
// ran for every one, within o.timeout each.
func (b *bench) waitHandled(ctx context.Context) error {
	select {
	case <-b.bareDone:
	case <-time.After(b.o.timeout):
		b.bareMu.Lock()
		n := len(b.bareIDs)
		b.bareMu.Unlock()
		return fmt.Errorf("bare subscriber got %d of %d items within %s", n, b.o.items, b.o.timeout)
	}
	// Runs are numbered from 1 and only this hook runs: the newest run's
	// ID says how many have been recorded.
	return waitFor(ctx, b.o.timeout, "hook runs", func() (bool, error) {
		runs, err := b.client.Runs(ctx, api.RunQuery{Limit: 1})
		if err != nil {
			return false, err
		}
		return len(runs) == 1 && runs[0].ID >= uint64(b.o.items), nil
	})
}

// report compares the hook's runs with the bare subscriber's arrivals,
// checks the hook's own output, and (exec) measures the plain loop.
func (b *bench) report(ctx context.Context, m burstResult) (Report, error) {
	o, typ := b.o, b.typ
	runs, err := b.client.Runs(ctx, api.RunQuery{Limit: o.items})
	if err != nil {
		return Report{}, err
	}
	slices.Reverse(runs) // oldest first

	first := slices.MinFunc(m.sent, func(a, b time.Time) int { return a.Compare(b) })
	rep := Report{Type: string(typ), Items: o.items, InFlight: o.inflight, CPUs: runtime.NumCPU(), When: time.Now().UTC(),
		ProsodyCPU: m.prosodyCPU, SelfCPU: m.selfCPU, HookCPU: m.hookCPU, RunHistory: o.runs, ProsodyStore: o.store,
		Separate: o.separate, BackendCPU: m.backendCPU, BareCPU: m.bareCPU}
	if m.bareCPU > 0 {
		rep.CPURatio = m.backendCPU / m.bareCPU
	}
	rep.Publisher = Result{Consumer: "publisher (acks)", Items: o.items, Seconds: m.published.Sub(first).Seconds(),
		PerSecond: float64(o.items) / m.published.Sub(first).Seconds()}

	arrival := map[string]int{}
	for i, id := range b.bareIDs {
		arrival[id] = i
	}
	bareRes := measure("bare subscriber", b.bareIDs, b.bareAt, m.sent, m.index, arrival, first)
	bareRes.LatencyNote = "publish sent → event decoded"
	hookRes, okIDs := b.hookResult(runs, m, arrival, first)
	rep.Results = append(rep.Results, bareRes, hookRes)
	rep.Ratio = &Ratio{Rate: hookRes.PerSecond / bareRes.PerSecond, P99: hookRes.P99MS / bareRes.P99MS}

	if typ == hookctl.TypePythonFile || typ == hookctl.TypeExec {
		// The hook's own output lists every item it ran, in run order
		// (runs dropped by a full queue are reported as not ok).
		if err := checkHookOutput(b.out, okIDs); err != nil {
			return rep, err
		}
	}
	if typ == hookctl.TypeExec {
		base, err := forkLoop(b.prog, filepath.Join(b.dir, "loop.out"), o.items)
		if err != nil {
			return rep, err
		}
		rep.Results = append(rep.Results, base)
		rep.LoopRatio = hookRes.PerSecond / base.PerSecond
	}
	return rep, nil
}

// hookResult measures the hook from its runs (oldest first): rate,
// latency, order, run durations and the gaps between queued runs; okIDs
// are the items of its ok runs, in run order.
func (b *bench) hookResult(runs []hookctl.Run, m burstResult, arrival map[string]int, first time.Time) (res Result, okIDs []string) {
	var hookIDs []string
	var hookAt []time.Time
	notOK := map[string]int{}
	var durs []time.Duration
	for _, r := range runs {
		durs = append(durs, time.Duration(r.Duration))
		hookIDs = append(hookIDs, r.ItemID)
		hookAt = append(hookAt, r.Started.Add(time.Duration(r.Duration)))
		if r.Outcome != "ok" {
			notOK[r.Outcome]++
		} else {
			okIDs = append(okIDs, r.ItemID)
		}
	}
	res = measure(string(b.typ)+" hook", hookIDs, hookAt, m.sent, m.index, arrival, first)
	res.NotOK = len(runs) - len(okIDs)
	res.NotOKByOutcome = notOK
	var sum, gaps time.Duration
	ngaps := 0
	for i, r := range runs {
		sum += time.Duration(r.Duration)
		if i > 0 {
			prevEnd := runs[i-1].Started.Add(time.Duration(runs[i-1].Duration))
			// Queued: the next item had arrived before the previous run ended.
			if a, ok := arrival[r.ItemID]; ok && b.bareAt[a].Before(prevEnd) {
				gaps += r.Started.Sub(prevEnd)
				ngaps++
			}
		}
	}
	if len(runs) > 0 {
		res.RunMeanMS = ms(sum / time.Duration(len(runs)))
	}
	if ngaps > 0 {
		res.GapMeanMS = ms(gaps / time.Duration(ngaps))
	}
	slices.Sort(durs)
	res.RunMedianMS, res.RunP99MS = ms(percentile(durs, 50)), ms(percentile(durs, 99))
	res.LatencyNote = "publish sent → run ended (Run.Started+Duration)"
	return res, okIDs
}

// errGoal marks a missed goal (-check).
var errGoal = errors.New("goal missed")

// checkGoals returns errGoal, with the reasons, when -check is set and
// the run misses a goal.
func checkGoals(o options, rep Report) error {
	if !o.check {
		return nil
	}
	var why []string
	hook := rep.Results[1]
	if hook.NotOK > 0 || hook.OutOfOrder > 0 {
		why = append(why, fmt.Sprintf("%d runs not ok, %d out of order", hook.NotOK, hook.OutOfOrder))
	}
	if rep.Type == string(hookctl.TypeExpr) {
		if rep.Ratio.Rate < 0.9 {
			why = append(why, fmt.Sprintf("rate %.2f× the bare subscriber's (goal ≥ 0.9×)", rep.Ratio.Rate))
		}
		if rep.Ratio.P99 > 2 {
			why = append(why, fmt.Sprintf("p99 %.2f× the bare subscriber's (goal ≤ 2×)", rep.Ratio.P99))
		}
	}
	if len(why) > 0 {
		return fmt.Errorf("%w: %s", errGoal, strings.Join(why, "; "))
	}
	return nil
}

// measure computes a consumer's figures from the items it handled, in the
// order it handled them, and when.
func measure(name string, ids []string, at, sent []time.Time, index, arrival map[string]int, first time.Time) Result {
	r := Result{Consumer: name, Items: len(ids)}
	if len(ids) == 0 {
		return r
	}
	last := slices.MaxFunc(at, func(a, b time.Time) int { return a.Compare(b) })
	r.Seconds = last.Sub(first).Seconds()
	r.PerSecond = float64(len(ids)) / r.Seconds
	if firstAt := slices.MinFunc(at, func(a, b time.Time) int { return a.Compare(b) }); last.After(firstAt) && len(ids) > 1 {
		r.BusyPerSecond = float64(len(ids)-1) / last.Sub(firstAt).Seconds()
	}
	lat := make([]time.Duration, 0, len(ids))
	maxArrival := -1
	for i, id := range ids {
		if j, ok := index[id]; ok {
			lat = append(lat, at[i].Sub(sent[j]))
		}
		// Out of order: handled after an item that arrived later.
		a, ok := arrival[id]
		if !ok {
			continue
		}
		if a < maxArrival {
			r.OutOfOrder++
		}
		maxArrival = max(maxArrival, a)
	}
	slices.Sort(lat)
	r.MedianMS = ms(percentile(lat, 50))
	r.P99MS = ms(percentile(lat, 99))
	r.MaxMS = ms(lat[len(lat)-1])
	return r
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// hookProcessCPU is the CPU time so far of this process's descendants
// other than Prosody: the ended ones (exec hooks, reaped) from getrusage,
// the running ones (Python keepers and their workers) from /proc.
func hookProcessCPU(prosody int) float64 {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_CHILDREN, &ru)
	total := time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
	// Every descendant, not only children: a Python hook's worker is the
	// child of its keeper, the process the backend started.
	entries, _ := os.ReadDir("/proc")
	kids := map[int][]int{}
	for _, e := range entries {
		if pid, err := strconv.Atoi(e.Name()); err == nil && pid != prosody {
			ppid := parentOf(pid)
			kids[ppid] = append(kids[ppid], pid)
		}
	}
	todo := append([]int(nil), kids[os.Getpid()]...)
	for len(todo) > 0 {
		pid := todo[len(todo)-1]
		todo = append(todo[:len(todo)-1], kids[pid]...)
		total += cpuSeconds(pid)
	}
	return total
}

// parentOf returns the parent pid of pid, from /proc (0 when unknown).
func parentOf(pid int) int {
	f := procStat(pid)
	if len(f) < 2 {
		return 0
	}
	ppid, _ := strconv.Atoi(f[1])
	return ppid
}

// procStat returns the fields of /proc/PID/stat after the command name
// (state first), nil when there is no such process.
func procStat(pid int) []string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return nil
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return nil
	}
	return strings.Fields(s[i+1:])
}

// cpuSeconds returns the user+system CPU time of process pid so far, from
// /proc (0 where there is none).
func cpuSeconds(pid int) float64 {
	f := procStat(pid)
	// After ")": state is field 3, utime 14 and stime 15 (1-based).
	if len(f) < 13 {
		return 0
	}
	ut, _ := strconv.ParseFloat(f[11], 64)
	st, _ := strconv.ParseFloat(f[12], 64)
	return (ut + st) / 100 // USER_HZ is 100 on Linux
}

// percentile returns the p-th percentile (nearest rank) of sorted d.
func percentile(d []time.Duration, p int) time.Duration {
	if len(d) == 0 {
		return 0
	}
	i := (len(d)*p + 99) / 100
	return d[min(max(i-1, 0), len(d)-1)]
}

// forkLoop starts prog n times in sequence, as the exec runner does (event
// JSON on stdin, HOOK_* environment, own process group), and reports the
// rate and the per-run latency.
func forkLoop(prog, out string, n int) (Result, error) {
	fmt.Fprintf(os.Stderr, "fork/exec baseline: %d sequential runs…\n", n)
	ev := hookctl.Event{Profile: "default", Service: "pubsub.localhost", Node: node, Kind: hookctl.EventPublish,
		Payload: "<entry xmlns='urn:example:bench'>item</entry>", Received: time.Now()}
	lat := make([]time.Duration, n)
	start := time.Now()
	for i := range n {
		ev.ItemID = fmt.Sprintf("i%06d", i)
		input, err := json.Marshal(ev)
		if err != nil {
			return Result{}, err
		}
		t0 := time.Now()
		cmd := exec.Command(prog)
		cmd.Dir = filepath.Dir(prog)
		cmd.Env = []string{"HOOK_ITEM_ID=" + ev.ItemID, "HOOK_NODE=" + node, "HOOK_EVENT=publish", "PATH=/usr/bin:/bin"}
		cmd.Stdin = bytes.NewReader(input)
		var buf bytes.Buffer
		cmd.Stdout, cmd.Stderr = &buf, &buf
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		if err := cmd.Run(); err != nil {
			return Result{}, fmt.Errorf("baseline run %d: %w: %s", i, err, buf.String())
		}
		lat[i] = time.Since(t0)
	}
	total := time.Since(start)
	_ = os.Remove(out)
	slices.Sort(lat)
	return Result{Consumer: "fork/exec loop (baseline)", Items: n, Seconds: total.Seconds(),
		PerSecond: float64(n) / total.Seconds(), BusyPerSecond: float64(n) / total.Seconds(), MedianMS: ms(percentile(lat, 50)), P99MS: ms(percentile(lat, 99)),
		MaxMS: ms(lat[len(lat)-1]), LatencyNote: "one run, start to exit"}, nil
}

func printReport(r Report) {
	fmt.Printf("hookctl-bench: %s hook, %d items, %d publishes in flight, %d CPUs, Prosody store %s, run history %s\n\n",
		r.Type, r.Items, r.InFlight, r.CPUs, r.ProsodyStore, r.RunHistory)
	fmt.Printf("%-28s %7s %9s %9s %10s %10s %10s %12s\n", "consumer", "items", "items/s", "busy/s", "median ms", "p99 ms", "max ms", "out-of-order")
	row := func(x Result) {
		fmt.Printf("%-28s %7d %9.0f %9.0f %10.2f %10.2f %10.2f %12d\n", x.Consumer, x.Items, x.PerSecond, x.BusyPerSecond, x.MedianMS, x.P99MS, x.MaxMS, x.OutOfOrder)
	}
	fmt.Printf("%-28s %7d %9.0f\n", r.Publisher.Consumer, r.Publisher.Items, r.Publisher.PerSecond)
	for _, x := range r.Results {
		row(x)
	}
	fmt.Println()
	for _, x := range r.Results {
		if x.LatencyNote != "" {
			fmt.Printf("latency of %s: %s\n", x.Consumer, x.LatencyNote)
		}
		if x.NotOK > 0 {
			fmt.Printf("%s: %d runs not ok %v\n", x.Consumer, x.NotOK, x.NotOKByOutcome)
		}
	}
	for _, x := range r.Results {
		if x.RunMedianMS > 0 {
			fmt.Printf("%s: run duration median %.2f ms, p99 %.2f ms, mean %.2f ms; mean gap between queued runs %.3f ms\n",
				x.Consumer, x.RunMedianMS, x.RunP99MS, x.RunMeanMS, x.GapMeanMS)
		}
	}
	fmt.Printf("CPU during the burst: prosody %.2fs, this process %.2fs, hook processes %.2fs\n", r.ProsodyCPU, r.SelfCPU, r.HookCPU)
	if !r.Separate {
		fmt.Printf("CPU per item, this process (backend, publisher and bare subscriber) plus hook processes: %.3f ms\n",
			(r.SelfCPU+r.HookCPU)*1000/float64(r.Items))
	} else {
		fmt.Printf("(-separate: this process is the publisher; hook processes are the backend child's running children)\n")
		fmt.Printf("CPU per item, each in its own process: backend %.4f ms, bare subscriber %.4f ms; backend ÷ bare %.2f× (backend %.3fs, bare %.3fs)\n",
			r.BackendCPU*1000/float64(r.Items), r.BareCPU*1000/float64(r.Items), r.CPURatio, r.BackendCPU, r.BareCPU)
	}
	if r.Ratio != nil {
		fmt.Printf("hook ÷ bare subscriber: rate %.2f×, p99 %.2f×\n", r.Ratio.Rate, r.Ratio.P99)
	}
	if r.LoopRatio > 0 {
		fmt.Printf("exec hook ÷ fork/exec loop: rate %.2f×\n", r.LoopRatio)
	}
}

// session connects user to srv and runs the session until stop is called.
func session(ctx context.Context, srv *prosodytest.Server, user string, onEvent func(hookctl.Event), log *slog.Logger) (*xmppsession.Session, func(), error) {
	s, err := xmppsession.New(xmppsession.Config{Profile: user, JID: user + "@" + srv.Domain, Password: password,
		Server: srv.Addr, TLS: xmppsession.TLSNone, OnEvent: onEvent, Logger: log})
	if err != nil {
		return nil, nil, err
	}
	sctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go pprof.Do(sctx, pprof.Labels("role", user), func(ctx context.Context) { defer close(done); _ = s.Run(ctx) })
	stop := func() { cancel(); <-done }
	wctx, wcancel := context.WithTimeout(ctx, 20*time.Second)
	defer wcancel()
	if err := s.WaitConnected(wctx); err != nil {
		stop()
		return nil, nil, fmt.Errorf("%s: connecting: %w (%s)", user, err, s.State().LastError)
	}
	return s, stop, nil
}

// waitFor polls cond every 50ms until it holds, fails, or timeout passes.
func waitFor(ctx context.Context, timeout time.Duration, what string, cond func() (bool, error)) error {
	return waitEvery(ctx, timeout, 50*time.Millisecond, what, cond)
}

// waitEvery polls cond every interval until it holds, fails, or timeout
// passes.
func waitEvery(ctx context.Context, timeout, every time.Duration, what string, cond func() (bool, error)) error {
	deadline := time.Now().Add(timeout)
	for {
		ok, err := cond()
		if err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		if ok {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: not within %s", what, timeout)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(every):
		}
	}
}

// checkHookOutput checks that the hook (exec or python_file, which append
// each item id to out) wrote the ids of its ok runs, in run order.
func checkHookOutput(out string, runIDs []string) error {
	data, err := os.ReadFile(out)
	if err != nil {
		return err
	}
	got := strings.Split(strings.TrimSuffix(string(data), "\n"), "\n")
	if len(got) != len(runIDs) {
		return fmt.Errorf("hook wrote %d lines, want %d", len(got), len(runIDs))
	}
	for i := range got {
		if got[i] != runIDs[i] {
			return fmt.Errorf("hook wrote %s as line %d, but run %d was %s", got[i], i+1, i+1, runIDs[i])
		}
	}
	return nil
}
