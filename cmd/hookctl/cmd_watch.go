package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/spf13/cobra"

	"hookctl.dev/hookctl"
	"hookctl.dev/hookctl/api"
	"hookctl.dev/hookctl/reconcile"
)

// watchFlags are the flags of hookctl watch.
type watchFlags struct {
	pf                  planFlags
	interval, debounce  time.Duration
	jitter              time.Duration
	drift, listen       string
	once                bool
	logLevel, logFormat string
}

func newWatchCmd(g *globals) *cobra.Command {
	var wf watchFlags
	c := &cobra.Command{
		Use:   "watch -f PATH... [-R] [--interval 1m] [--drift correct|report] [--listen ADDR] [--once]",
		Short: "Keep the live registry matching the hooks files (the sidecar)",
		Long: `Watch the directories holding the hooks files and, after each burst of
changes, re-read the whole set, validate it, plan and apply it. Editors'
rename-into-place, git checkouts and Kubernetes ConfigMap volumes are
handled. An invalid edit keeps the last good hooks of its set applied (the
other sets' changes go ahead) and is reported (log,
hookctl_watch_reload_failures_total, /healthz files_error and set_errors). A resync every
--interval (plus jitter) corrects drift, such as a hook deleted by hand or
temporary hooks lost on a disconnect; --drift report only reports it. The
backend is asked every 2s who it is: after a restart the files are applied
at once (temporary hooks come back).

When the files are in a git work tree, they are read from the committed
tree of --git-ref (HEAD), never from the work tree: an uncommitted or
half-written file is not applied (--git=false reads the work tree). Each
set is applied on its own: a set refused by a guard or claimed by another
source waits, and /healthz names it (set_errors); the others go ahead.

--listen serves /healthz (200 while running, the state as JSON), /readyz
(200 while the registry matches the files: 503 while the last round
failed, a set is refused, the files are invalid or the backend does not
answer) and /metrics. --once reconciles once and exits: 0 done, 1 conflicts left,
2 error (invalid files, backend unreachable).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error { return wf.run(cmd, g) },
	}
	wf.pf.bind(c)
	f := c.Flags()
	f.DurationVar(&wf.interval, "interval", reconcile.DefaultInterval, "resync period that finds drift (0 = default, negative = off)")
	f.DurationVar(&wf.jitter, "jitter", 0, "random extra delay up to this per resync (default interval/10)")
	f.DurationVar(&wf.debounce, "debounce", reconcile.DefaultDebounce, "quiet time after a file change before reloading")
	f.StringVar(&wf.drift, "drift", reconcile.DriftCorrect, "on drift: correct it, or only report it")
	f.StringVar(&wf.listen, "listen", "", "address for /healthz, /readyz and /metrics, e.g. 127.0.0.1:9091")
	f.BoolVar(&wf.once, "once", false, "reconcile once and exit (for CI)")
	f.StringVar(&wf.logLevel, "log-level", "info", "debug, info, warn or error")
	f.StringVar(&wf.logFormat, "log-format", "text", "text or json")
	return c
}

// run checks the flags, builds the watcher on the control API and runs it
// (once, or until the command's context ends).
func (wf *watchFlags) run(cmd *cobra.Command, g *globals) error {
	w, err := wf.pf.watcher(cmd, wf.drift)
	if err != nil {
		return err
	}
	logger, err := newLogger(cmd, wf.logLevel, wf.logFormat)
	if err != nil {
		return exitCode(2, err)
	}
	client, err := g.client()
	if err != nil {
		return exitCode(2, err)
	}
	defer client.Close()
	prom := prometheus.NewRegistry()
	prom.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	w.Registry = watchSource{client, wf.pf.files} // cmd_events.go: audited with its commit
	w.JIDs = func(ctx context.Context) (map[string]string, error) { return profileJIDs(ctx, client) }
	w.Epoch = func(ctx context.Context) (string, error) {
		st, err := client.Status(ctx)
		return st.Started.String(), err
	}
	w.Interval, w.Jitter, w.Debounce = wf.interval, wf.jitter, wf.debounce
	w.Logger, w.Metrics = logger, reconcile.NewMetrics(prom)
	wf.pf.logMode(logger, w)
	if wf.once {
		return watchOnce(cmd, w)
	}
	return wf.serve(cmd.Context(), w, prom, logger)
}

// watcher builds the watcher the plan flags describe, without its
// registry (watch and serve --watch share it): files read from the
// committed tree when they are in a git work tree (unless --git=false),
// the inventory source, the guards.
func (p *planFlags) watcher(cmd *cobra.Command, drift string) (*reconcile.Watcher, error) {
	if drift != reconcile.DriftCorrect && drift != reconcile.DriftReport {
		return nil, exitCode(2, fmt.Errorf("%w: --drift %q (want correct or report)", hookctl.ErrInvalid, drift))
	}
	if err := p.check(); err != nil {
		return nil, err
	}
	ctx := cmd.Context()
	if !cmd.Flags().Changed("git") {
		p.git = reconcile.InGitWorkTree(ctx, p.files)
	}
	w := &reconcile.Watcher{
		Paths:     p.files,
		Recursive: p.recursive,
		Load:      p.loader(),
		Options:   reconcile.ApplyOptions{Options: p.options(nil)},
		Drift:     drift,
		Source:    p.sourceName(ctx),
	}
	if p.git {
		w.WatchDirs = reconcile.GitWatchDirs(ctx, p.files)
	} else {
		w.Partial = reconcile.PartialLoader(p.files, p.recursive)
	}
	return w, nil
}

// logMode says where the files are read from and the source they are
// recorded under, so that a checkout inside another repository (etckeeper's
// /etc) that hides uncommitted files is seen at once.
func (p *planFlags) logMode(logger *slog.Logger, w *reconcile.Watcher) {
	if p.git {
		logger.Info("reading hooks files from the committed tree (--git=false reads the work tree)", "ref", p.gitRef, "source", w.Source)
		return
	}
	logger.Info("reading hooks files from the file system", "source", w.Source)
}

// watchOnce reconciles once (--once): exit 1 when conflicts are left.
func watchOnce(cmd *cobra.Command, w *reconcile.Watcher) error {
	r, err := w.Reconcile(cmd.Context())
	if err != nil && r.Result.Refused == nil {
		return exitCode(2, err)
	}
	cnt := r.Result.Plan.Counts()
	fmt.Fprintf(cmd.OutOrStdout(), "%s applied=%v revision=%d\n", r.Result.Plan.Summary(), r.Result.Applied, r.Result.Revision)
	if err != nil {
		return exitCode(2, err)
	}
	if cnt.Conflict > 0 {
		return exitCode(1, fmt.Errorf("%d desired hook(s) not applied: in conflict", cnt.Conflict))
	}
	return nil
}

// serve runs the watcher until ctx ends, with the health and metrics
// server of --listen beside it.
func (wf *watchFlags) serve(ctx context.Context, w *reconcile.Watcher, prom *prometheus.Registry, logger *slog.Logger) error {
	var srvDone chan error
	var srv *http.Server
	if wf.listen != "" {
		ln, err := net.Listen("tcp", wf.listen)
		if err != nil {
			return exitCode(2, fmt.Errorf("--listen: %w", err))
		}
		srv = api.NewHTTPServer(api.RefuseBody(w.Handler(prom)), logger)
		srvDone = make(chan error, 1)
		go func() { srvDone <- srv.Serve(api.LimitListener(ln, api.MaxConns)) }()
		logger.Info("serving health and metrics", "addr", ln.Addr().String())
	}
	runErr := w.Run(ctx)
	if srv != nil {
		// The run context is gone: shut down with a fresh deadline.
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_ = srv.Shutdown(sctx)
		cancel()
		if err := <-srvDone; err != nil && !errors.Is(err, http.ErrServerClosed) {
			logger.Error("health server", "err", err)
		}
	}
	if runErr != nil {
		return exitCode(2, runErr)
	}
	return nil
}
