package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"hookctl.dev/hookctl"
	"hookctl.dev/hookctl/alert"
	"hookctl.dev/hookctl/api"
	"hookctl.dev/hookctl/catchup"
	"hookctl.dev/hookctl/cluster"
	"hookctl.dev/hookctl/config"
	"hookctl.dev/hookctl/dispatch"
	"hookctl.dev/hookctl/reconcile"
	"hookctl.dev/hookctl/registry"
	"hookctl.dev/hookctl/rules"
	"hookctl.dev/hookctl/runlog"
	"hookctl.dev/hookctl/runner"
	"hookctl.dev/hookctl/runner/execrunner"
	"hookctl.dev/hookctl/runner/exprrunner"
	"hookctl.dev/hookctl/runner/httprunner"
	"hookctl.dev/hookctl/runner/python"
)

// Options configure a Daemon.
type Options struct {
	Config  config.Config // Defaults already applied
	Logger  *slog.Logger
	Version string
	// Getenv reads passwords and secrets; os.Getenv when nil.
	Getenv func(string) string
	// Watch, when set, runs the reconciler in-process on these paths.
	Watch WatchOptions
	// SubscriptionCheck is how often each profile's subscriptions are
	// compared with the server's; zero is subscription's default (1m).
	SubscriptionCheck time.Duration
	// MemoryRuns keeps the run history in memory only, as before the
	// durable history (for benchmarks that compare the two).
	MemoryRuns bool
}

// WatchOptions configure the in-process reconciler (serve --watch).
type WatchOptions struct {
	Paths     []string
	Recursive bool
	Interval  time.Duration
	Drift     string
	// Watcher, if set, is the loop to run, prepared by the caller (files,
	// options, source); the daemon sets its Registry, JIDs, Logger and
	// Metrics. Otherwise one is built from the fields above.
	Watcher *reconcile.Watcher
}

// Daemon is the backend. Build it with New, run it with Run.
type Daemon struct {
	cfg     config.Config
	log     *slog.Logger
	version string
	getenv  func(string) string
	watch   WatchOptions
	started time.Time

	watchOnce sync.Once
	watchLoop *reconcile.Watcher // serve --watch, built by watcher()

	store         *registry.Store
	runlog        *runlog.Log // nil with Options.MemoryRuns
	dispatcher    *dispatch.Dispatcher
	catchup       *catchup.Tracker
	factories     map[hookctl.Type]runner.Factory
	profiles      []*profile
	profileByName map[string]*profile
	metrics       *prometheus.Registry
	synced        syncedRevision

	subscriptionCheck time.Duration
	secrets           *config.Secrets // what http hooks may name; redacted everywhere
	memoryRuns        bool
	alerts            *alert.Manager   // nil without alert sinks (alerts.go)
	cluster           *cluster.Cluster // nil unless clustered (cluster.go)
}

// syncedRevision is the registry revision the dispatcher runs, so that a
// change made through the API returns only once it is in force: a hook
// created, then an item published, fires for that item.
type syncedRevision struct {
	mu      sync.Mutex
	rev     uint64
	changed chan struct{} // closed and replaced at each advance
}

func (s *syncedRevision) advance(rev uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if rev > s.rev {
		s.rev = rev
	}
	if s.changed != nil {
		close(s.changed)
		s.changed = nil
	}
}

// wait returns once revision rev is in force, ctx ends, or a few seconds
// pass (the change is stored either way; only its effect is late).
func (s *syncedRevision) wait(ctx context.Context, rev uint64) {
	timeout := time.NewTimer(5 * time.Second)
	defer timeout.Stop()
	for {
		s.mu.Lock()
		if s.rev >= rev {
			s.mu.Unlock()
			return
		}
		if s.changed == nil {
			s.changed = make(chan struct{})
		}
		ch := s.changed
		s.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return
		case <-timeout.C:
			return
		}
	}
}

// New checks the configuration and prepares the pieces; it opens nothing.
func New(opts Options) (*Daemon, error) {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Getenv == nil {
		opts.Getenv = os.Getenv
	}
	d := &Daemon{
		cfg:           opts.Config,
		log:           opts.Logger,
		version:       opts.Version,
		getenv:        opts.Getenv,
		watch:         opts.Watch,
		profileByName: map[string]*profile{},
		metrics:       prometheus.NewRegistry(),

		subscriptionCheck: opts.SubscriptionCheck,
		memoryRuns:        opts.MemoryRuns,
	}
	if d.cfg.HooksRoot == "" && len(d.watch.Paths) == 1 {
		d.cfg.HooksRoot = watchRoot(d.watch.Paths[0])
	}
	d.metrics.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	d.secrets = d.cfg.Secrets(d.getenv)
	if err := d.secrets.ReadAll(); err != nil {
		return nil, err
	}
	d.log = slog.New(redactHandler{h: d.log.Handler(), redact: d.redact})
	d.factories = d.newFactories()
	for name, pc := range d.cfg.Profiles {
		pw, err := pc.Password(d.getenv)
		if err != nil {
			return nil, fmt.Errorf("profile %s: %w", name, err)
		}
		p, err := d.newProfile(name, pc, pw)
		if err != nil {
			return nil, fmt.Errorf("profile %s: %w", name, err)
		}
		d.profiles = append(d.profiles, p)
		d.profileByName[name] = p
	}
	d.registerInfoMetrics()
	var err error
	if d.alerts, err = d.newAlerts(); err != nil {
		return nil, err
	}
	return d, nil
}

// registerInfoMetrics adds hookctl_build_info and, per profile,
// hookctl_xmpp_connected (1 while the session is connected), read when
// scraped.
func (d *Daemon) registerInfoMetrics() {
	d.metrics.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name:        "hookctl_build_info",
		Help:        "Always 1; the labels say which hookctl runs.",
		ConstLabels: prometheus.Labels{"version": d.version, "goversion": runtime.Version()},
	}, func() float64 { return 1 }))
	for _, p := range d.profiles {
		d.metrics.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name:        "hookctl_xmpp_connected",
			Help:        "1 while the profile's XMPP session is connected, else 0.",
			ConstLabels: prometheus.Labels{"profile": p.name},
		}, func() float64 {
			if p.session.State().State == "connected" {
				return 1
			}
			return 0
		}))
	}
}

// newFactories returns the runner of every allowed type.
func (d *Daemon) newFactories() map[hookctl.Type]runner.Factory {
	jids := d.cfg.ProfileJIDs()
	pyMemory, _ := hookctl.ParseMemory(d.cfg.PythonMemory) // checked by config
	py := python.NewFactory(python.Options{
		Memory:     pyMemory,
		Python:     d.cfg.Python,
		PythonPath: d.cfg.PythonPath,
		WorkDir:    d.cfg.DataDir,
		ProfileJID: func(p string) string { return jids[p] },
		Secrets:    d.secrets,
		Logger:     d.log,
	})
	all := map[hookctl.Type]runner.Factory{
		hookctl.TypePython:     py,
		hookctl.TypePythonFile: py,
		hookctl.TypePythonCode: py,
		hookctl.TypeExec:       execrunner.NewFactory(execrunner.Options{Secrets: d.secrets}),
		hookctl.TypeExpr:       exprrunner.NewFactory(exprrunner.Options{}),
		hookctl.TypeHTTP:       httprunner.NewFactory(httprunner.Options{Secrets: d.secrets}),
	}
	out := map[hookctl.Type]runner.Factory{}
	for t, f := range all {
		if d.cfg.Allowed(t) {
			out[t] = f
		}
	}
	return out
}

// Run opens the store, serves the control API, connects the profiles and
// runs hooks until ctx ends; then it shuts everything down in order and
// returns. An error means the backend could not start or failed.
func (d *Daemon) Run(ctx context.Context) (err error) {
	d.started = time.Now()
	if err := d.openCluster(ctx); err != nil {
		return err
	}
	ropts := registry.Options{Profiles: d.cfg.ProfileJIDs()}
	if d.cluster != nil {
		defer d.cluster.Close()
		ropts.Remote = d.cluster.Registry()
		d.registerClusterMetrics()
	}
	d.store, err = registry.Open(d.cfg.DataDir, ropts)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := d.store.Close(); cerr != nil && err == nil {
			err = fmt.Errorf("closing store: %w", cerr)
		}
	}()

	dopts := dispatch.Options{
		Factories:      d.factories,
		Host:           host{d},
		Logger:         d.log,
		DefaultTimeout: time.Duration(d.cfg.DefaultTimeout),
		Metrics:        d.metrics,
		HooksRoot:      d.cfg.HooksRoot,
		HookMetrics:    d.cfg.MetricsHookNames,
		CheckScript: func(path string, executable bool) error {
			return rules.ScriptFile(path, executable, d.cfg.AllowInsecureScripts)
		},
	}
	if err := d.openRunLog(&dopts); err != nil {
		return err
	}
	d.wireAlerts(&dopts)
	if d.cluster != nil {
		dopts.MayRun = d.mayRun
	}
	d.dispatcher = dispatch.New(dopts)
	d.catchup = catchup.New(d.nodeStore(), d.dispatcher.Dispatch, d.log, d.metrics)
	d.catchup.OnDuplicate(d.dispatcher.Duplicate)
	if d.cluster != nil {
		d.catchup.RunsHere(d.cluster.Holds)
	}
	if d.alerts != nil {
		d.catchup.OnGap(d.alertGap)
	}
	for _, p := range d.profiles {
		if err := p.openSubscriptions(d); err != nil {
			return fmt.Errorf("profile %s: %w", p.name, err)
		}
		d.metrics.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name:        "hookctl_subscriptions",
			Help:        "Nodes the profile's session is subscribed to in its current connection.",
			ConstLabels: prometheus.Labels{"profile": p.name},
		}, func() float64 { return float64(p.subs.Count()) }))
	}

	ls, err := d.listen()
	if err != nil {
		return err
	}

	// Everything below is owned by this WaitGroup and stops with runCtx.
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	errc := make(chan error, 11+2*len(d.profiles)) // one per goroutine: a failure never blocks
	goRun := func(name string, f func(context.Context) error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := f(runCtx); err != nil && !errors.Is(err, context.Canceled) {
				errc <- fmt.Errorf("%s: %w", name, err)
				cancel()
			}
		}()
	}

	server := api.NewServer(api.ServerOptions{Backend: d, Logger: d.log, Token: ls.token})
	goRun("control API", func(ctx context.Context) error { return server.Serve(ctx, ls.api, false) })
	if ls.tcp != nil {
		goRun("control API (tcp)", func(ctx context.Context) error { return server.Serve(ctx, ls.tcp, true) })
	}
	if ls.metrics != nil {
		goRun("metrics", func(ctx context.Context) error { return d.serveMetrics(ctx, ls.metrics) })
	}
	goRun("hook sync", d.syncHooks)
	goRun("catch-up marks", d.catchup.Run)
	if d.runlog != nil {
		goRun("run history", d.runlog.Run)
	}
	if d.cluster != nil {
		goRun("cluster", d.cluster.Run)
		goRun("shared registry", d.store.Follow)
	}
	for _, p := range d.profiles {
		if d.cluster != nil {
			goRun("profile "+p.name, func(ctx context.Context) error { return d.holdProfile(ctx, p) })
			continue
		}
		goRun("profile "+p.name, p.session.Run)
		goRun("subscriptions "+p.name, p.subs.Run)
	}
	if len(d.watch.Paths) > 0 {
		goRun("watch", d.runWatch)
	}
	if d.alerts != nil {
		goRun("alerts", d.alerts.Run)
	}
	d.log.Info("backend started", "socket", d.cfg.Socket, "data_dir", d.cfg.DataDir, "profiles", len(d.profiles))

	<-runCtx.Done()
	d.log.Info("backend stopping")
	cancel()
	wg.Wait()
	d.drain()
	close(errc)
	var errs []error
	for e := range errc {
		errs = append(errs, e)
	}
	return errors.Join(errs...)
}

// listeners are the backend's sockets: the control API on its Unix socket
// and, when configured, on TCP (with its token) and the metrics endpoint.
type listeners struct {
	api, tcp, metrics net.Listener
	token             string
}

// listen opens every listener, or none: on an error those already open
// are closed.
func (d *Daemon) listen() (ls listeners, err error) {
	defer func() {
		if err != nil {
			for _, l := range []net.Listener{ls.api, ls.tcp, ls.metrics} {
				if l != nil {
					l.Close()
				}
			}
		}
	}()
	if err := api.CheckSocketDir(d.cfg.Socket); err != nil {
		return ls, err
	}
	if d.cfg.APIListen != "" {
		b, err := config.ReadSecretFile("api_token_file", d.cfg.APITokenFile)
		if err != nil {
			return ls, err
		}
		ls.token = strings.TrimSpace(b)
		if ls.token == "" {
			return ls, fmt.Errorf("api token file %s is empty", d.cfg.APITokenFile)
		}
		if ls.tcp, err = api.ListenTCP(d.cfg.APIListen, d.cfg.APITLSCert, d.cfg.APITLSKey); err != nil {
			return ls, err
		}
	}
	if d.cfg.Listen != "" {
		if ls.metrics, err = net.Listen("tcp", d.cfg.Listen); err != nil {
			return ls, fmt.Errorf("metrics listener: %w", err)
		}
	}
	// The Unix socket last: clients (and the tests) take its appearance
	// as the sign that every door is open.
	if ls.api, err = api.ListenUnix(d.cfg.Socket); err != nil {
		return ls, err
	}
	if err := api.ShareSocket(d.cfg.Socket, d.cfg.SocketGroup); err != nil {
		return ls, err
	}
	return ls, nil
}

// drain ends the runs still queued, with a bounded grace period after
// which they are cancelled, and records the marks of those that ended.
func (d *Daemon) drain() {
	shutdownCtx, stop := context.WithTimeout(context.Background(), 10*time.Second)
	defer stop()
	if err := d.dispatcher.Close(shutdownCtx); err != nil {
		d.log.Warn("closing dispatcher", "err", err)
	}
	d.catchup.Flush() // marks of runs that ended during the shutdown
	if d.runlog != nil {
		d.runlog.Flush() // and their records
	}
}

// syncHooks keeps the dispatcher and the subscriptions in step with the
// registry: on start and after every change.
func (d *Daemon) syncHooks(ctx context.Context) error {
	changes, cancel := d.store.Changes()
	defer cancel()
	for {
		hooks, rev := d.store.Snapshot()
		d.dispatcher.SetHooks(d.effectiveHooks(hooks)) // suspend.go
		if d.alerts != nil {
			d.alerts.Hooks(hooks) // a failing hook removed: its alert ends
		}
		d.catchup.SetHooks(hooks)
		for _, p := range d.profiles {
			p.subs.SetHooks(hooks)
		}
		d.synced.advance(rev)
		select {
		case <-ctx.Done():
			return nil
		case <-changes:
		}
	}
}

func (d *Daemon) serveMetrics(ctx context.Context, l net.Listener) error {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(d.metrics, promhttp.HandlerOpts{}))
	var watch http.Handler // serve --watch: its JSON health, as hookctl watch serves it
	if len(d.watch.Paths) > 0 {
		watch = d.watcher().Handler(nil)
	}
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		if watch != nil {
			watch.ServeHTTP(w, r)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		if d.cluster != nil && !d.cluster.Valid() {
			http.Error(w, "cluster: this replica's lease is not valid (etcd unreachable?)", http.StatusServiceUnavailable)
			return
		}
		for _, p := range d.profiles {
			if d.cluster != nil && !d.cluster.Holds(p.name) {
				continue // held by another replica
			}
			if st := p.session.State(); st.State != "connected" {
				http.Error(w, fmt.Sprintf("profile %s is %s", p.name, st.State), http.StatusServiceUnavailable)
				return
			}
		}
		if watch != nil {
			watch.ServeHTTP(w, r)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	srv := api.NewHTTPServer(api.RefuseBody(mux), d.log)
	l = api.LimitListener(l, api.MaxConns)
	go func() {
		<-ctx.Done()
		shutdownCtx, stop := context.WithTimeout(context.Background(), 3*time.Second)
		defer stop()
		_ = srv.Shutdown(shutdownCtx)
	}()
	if err := srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// hookErrors merges the dispatcher's problems (load, filter) with
// subscription problems.
func (d *Daemon) hookErrors() []api.HookError {
	var out []api.HookError
	if d.dispatcher != nil {
		out = d.dispatcher.HookErrors()
	}
	for _, p := range d.profiles {
		out = append(out, p.subs.Errors()...)
	}
	return out
}

// onSkip records an item that arrived but could not be decoded (too
// large, nested too deep) as an error run of each hook of its node.
func (d *Daemon) onSkip(ev hookctl.Event, why error) { d.dispatcher.Skipped(ev, why) }

// host is what hooks may ask of the backend while they run.
type host struct{ d *Daemon }

func (h host) Publish(ctx context.Context, profile, service, node, itemID, payloadXML string) (string, error) {
	res, err := h.d.PubSub(ctx, api.PubSubRequest{Op: api.OpPublish, Profile: profile, Service: service, Node: node, ItemID: itemID, Payload: payloadXML})
	return res.ItemID, err
}

func (h host) Logger() *slog.Logger { return h.d.log }

// runWatch keeps the registry matching the hooks files (serve --watch), with
// the same loop as the `hookctl watch` sidecar.
func (d *Daemon) runWatch(ctx context.Context) error { return d.watcher().Run(ctx) }

// watcher returns the serve --watch loop, built once.
func (d *Daemon) watcher() *reconcile.Watcher {
	d.watchOnce.Do(func() {
		w := d.watch.Watcher
		if w == nil {
			w = &reconcile.Watcher{
				Paths:     d.watch.Paths,
				Recursive: d.watch.Recursive,
				Load:      reconcile.SpecLoader(d.watch.Paths, d.watch.Recursive),
				Interval:  d.watch.Interval,
				Drift:     d.watch.Drift,
				Source:    reconcile.SourceOf(context.Background(), d.watch.Paths),
				Partial:   reconcile.PartialLoader(d.watch.Paths, d.watch.Recursive),
			}
		}
		w.Registry = watchRegistry{d} // its changes are audited as the watcher's
		w.JIDs = func(context.Context) (map[string]string, error) { return d.cfg.ProfileJIDs(), nil }
		w.Logger = d.log.With("component", "watch")
		w.Metrics = reconcile.NewMetrics(d.metrics)
		if d.alerts != nil {
			w.OnRound = d.alertRound
		}
		d.watchLoop = w
	})
	return d.watchLoop
}

// watchRoot is the hooks root that serve --watch PATH implies: the
// directory watched, or a file's own directory, as spec takes it for the
// files' relative script paths.
func watchRoot(path string) string {
	abs, err := filepath.Abs(path)
	if err != nil {
		return ""
	}
	if fi, err := os.Stat(abs); err == nil && !fi.IsDir() {
		return filepath.Dir(abs)
	}
	return abs
}
