package main

import (
	"context"
	"errors"
	"fmt"
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

func newWatchCmd(g *globals) *cobra.Command {
	var (
		pf                  planFlags
		interval, debounce  time.Duration
		jitter              time.Duration
		drift, listen       string
		once, allowEmpty    bool
		logLevel, logFormat string
	)
	c := &cobra.Command{
		Use:   "watch -f PATH... [-R] [--interval 1m] [--drift correct|report] [--listen ADDR] [--once]",
		Short: "Keep the live registry matching the hooks files (the sidecar)",
		Long: `Watch the directories holding the hooks files and, after each burst of
changes, re-read the whole set, validate it, plan and apply it. Editors'
rename-into-place, git checkouts and Kubernetes ConfigMap volumes are
handled. An invalid edit keeps the last good set applied and is reported
(log, hookctl_watch_reload_failures_total, /healthz detail). A resync every
--interval (plus jitter) corrects drift, such as a hook deleted by hand or
temporary hooks lost on a disconnect; --drift report only reports it.

--listen serves /healthz (200 while running), /readyz (200 once a reconcile
succeeded; 503 while the first set is invalid or the backend unreachable)
and /metrics. --once reconciles once and exits: 0 done, 1 conflicts left,
2 error (invalid files, backend unreachable).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if drift != reconcile.DriftCorrect && drift != reconcile.DriftReport {
				return exitCode(2, fmt.Errorf("%w: --drift %q (want correct or report)", hookctl.ErrInvalid, drift))
			}
			if len(pf.files) == 0 {
				return exitCode(2, fmt.Errorf("%w: no hooks files: give -f PATH", hookctl.ErrInvalid))
			}
			logger, err := newLogger(cmd, logLevel, logFormat)
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
			w := &reconcile.Watcher{
				Paths:     pf.files,
				Recursive: pf.recursive,
				Load:      reconcile.SpecLoader(pf.files, pf.recursive),
				Registry:  client,
				JIDs:      func(ctx context.Context) (map[string]string, error) { return profileJIDs(ctx, client) },
				Options:   reconcile.ApplyOptions{Options: pf.options(nil), AllowEmpty: allowEmpty},
				Interval:  interval,
				Jitter:    jitter,
				Debounce:  debounce,
				Drift:     drift,
				Logger:    logger,
				Metrics:   reconcile.NewMetrics(prom),
			}
			ctx := cmd.Context()
			if once {
				r, err := w.Reconcile(ctx)
				if err != nil {
					return exitCode(2, err)
				}
				cnt := r.Result.Plan.Counts()
				fmt.Fprintf(cmd.OutOrStdout(), "%s applied=%v revision=%d\n", r.Result.Plan.Summary(), r.Result.Applied, r.Result.Revision)
				if cnt.Conflict > 0 {
					return exitCode(1, fmt.Errorf("%d desired hook(s) not applied: in conflict", cnt.Conflict))
				}
				return nil
			}

			var srvDone chan error
			var srv *http.Server
			if listen != "" {
				ln, err := net.Listen("tcp", listen)
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
		},
	}
	pf.bind(c)
	f := c.Flags()
	f.DurationVar(&interval, "interval", reconcile.DefaultInterval, "resync period that finds drift (0 = default, negative = off)")
	f.DurationVar(&jitter, "jitter", 0, "random extra delay up to this per resync (default interval/10)")
	f.DurationVar(&debounce, "debounce", reconcile.DefaultDebounce, "quiet time after a file change before reloading")
	f.StringVar(&drift, "drift", reconcile.DriftCorrect, "on drift: correct it, or only report it")
	f.StringVar(&listen, "listen", "", "address for /healthz, /readyz and /metrics, e.g. 127.0.0.1:9091")
	f.BoolVar(&once, "once", false, "reconcile once and exit (for CI)")
	f.BoolVar(&allowEmpty, "allow-empty", false, "let a set without hooks delete its live hooks")
	f.StringVar(&logLevel, "log-level", "info", "debug, info, warn or error")
	f.StringVar(&logFormat, "log-format", "text", "text or json")
	return c
}
