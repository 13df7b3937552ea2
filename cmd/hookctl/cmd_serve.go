package main

import (
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"hookctl.dev/hookctl"
	"hookctl.dev/hookctl/config"
	"hookctl.dev/hookctl/daemon"
	"hookctl.dev/hookctl/reconcile"
)

// version is set at build time with -ldflags "-X main.version=…".
var version = "dev"

func newServeCmd(g *globals) *cobra.Command {
	var (
		dataDir, listen, logLevel, logFormat, drift string
		clusterURL, replica                         string
		watch                                       []string
		recursive                                   bool
		interval, debounce, jitter                  time.Duration
		pf                                          planFlags
	)
	c := &cobra.Command{
		Use:   "serve [--config FILE] [--data-dir DIR] [--socket PATH] [--watch PATH]...",
		Short: "Run the backend: the hook registry, XMPP sessions and the control API",
		Long: `Run the backend until SIGINT or SIGTERM (a second signal exits at once).
Settings come from the config file (--config or HOOKCTL_CONFIG), then the
environment (HOOKCTL_DATA_DIR, HOOKCTL_SOCKET), then flags. Without a config
it runs on the embedded defaults: data under ~/.local/state/hookctl, every hook
type allowed, no XMPP profile (hooks are kept but nothing fires).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkServeWatchFlags(drift, interval); err != nil {
				return exitCode(2, err)
			}
			cfg, err := config.Load(config.Find(g.configFile, os.Getenv))
			if err != nil {
				return exitCode(2, err)
			}
			cfg.ApplyEnv(os.Getenv)
			if dataDir != "" {
				cfg.DataDir = dataDir
			}
			if g.socket != "" {
				cfg.Socket = g.socket
			}
			if listen != "" {
				cfg.Listen = listen
			}
			if err := applyClusterFlags(&cfg, clusterURL, replica); err != nil {
				return exitCode(2, err)
			}
			cfg.Defaults()
			logger, err := newLogger(cmd, logLevel, logFormat)
			if err != nil {
				return exitCode(2, err)
			}
			wo := daemon.WatchOptions{Paths: watch, Recursive: recursive, Interval: interval, Drift: drift}
			if len(watch) > 0 {
				pf.files, pf.recursive = watch, recursive
				if wo.Watcher, err = pf.watcher(cmd, drift); err != nil {
					return err
				}
				wo.Watcher.Interval, wo.Watcher.Debounce, wo.Watcher.Jitter = interval, debounce, jitter
				pf.logMode(logger, wo.Watcher)
			}
			d, err := daemon.New(daemon.Options{
				Config:  cfg,
				Logger:  logger,
				Version: version,
				Watch:   wo,
			})
			if err != nil {
				return exitCode(2, err)
			}
			return d.Run(cmd.Context())
		},
	}
	f := c.Flags()
	f.StringVar(&dataDir, "data-dir", "", "directory of the store and default socket (env HOOKCTL_DATA_DIR)")
	f.StringVar(&listen, "listen", "", "address for /healthz, /readyz and /metrics, e.g. 127.0.0.1:9090")
	f.StringVar(&clusterURL, "cluster", "", "run as one replica of a cluster on etcd: etcd://HOST:PORT[,HOST:PORT…] (docs/CLUSTER.md)")
	f.StringVar(&replica, "replica", "", "with --cluster: this replica's name (default: the host name)")
	f.StringArrayVar(&watch, "watch", nil, "hooks file or directory to keep applied (repeatable)")
	f.BoolVarP(&recursive, "recursive", "R", false, "with --watch: read subdirectories too")
	// --interval, --debounce and --jitter as `hookctl watch` names them;
	// --watch-interval was serve's name for the first and still works.
	f.DurationVar(&interval, "interval", time.Minute, "with --watch: resync period that corrects drift")
	f.DurationVar(&interval, "watch-interval", time.Minute, "")
	_ = f.MarkHidden("watch-interval")
	f.DurationVar(&debounce, "debounce", 150*time.Millisecond, "with --watch: quiet time after a file change before reloading")
	f.DurationVar(&jitter, "jitter", 0, "with --watch: random extra delay up to this per resync (default interval/10)")
	f.StringVar(&drift, "drift", "correct", "with --watch: correct or report drift")
	pf.bindPlan(f) // with --watch: --prune, --adopt, --allow-empty, the guards, --git
	f.StringVar(&logLevel, "log-level", envOr("HOOKCTL_LOG_LEVEL", "info"), "debug, info, warn or error (env HOOKCTL_LOG_LEVEL)")
	f.StringVar(&logFormat, "log-format", envOr("HOOKCTL_LOG_FORMAT", "text"), "text or json (env HOOKCTL_LOG_FORMAT)")
	return c
}

// applyClusterFlags lets serve --cluster and --replica override the
// config's cluster section.
func applyClusterFlags(cfg *config.Config, clusterURL, replica string) error {
	if clusterURL != "" {
		eps, err := config.ParseClusterURL(clusterURL)
		if err != nil {
			return fmt.Errorf("%w: %v", hookctl.ErrInvalid, err)
		}
		cfg.Cluster.Endpoints = eps
	}
	if replica != "" {
		if !cfg.Cluster.Enabled() {
			return fmt.Errorf("%w: --replica needs --cluster (or a cluster section in the config)", hookctl.ErrInvalid)
		}
		if err := config.CheckReplicaName(replica); err != nil {
			return fmt.Errorf("%w: --replica %q: %v", hookctl.ErrInvalid, replica, err)
		}
		cfg.Cluster.Replica = replica
	}
	return nil
}

// checkServeWatchFlags refuses what serve --watch would otherwise take
// silently: a misspelt drift policy (it behaved as correct) and a resync
// period that is not positive.
func checkServeWatchFlags(drift string, interval time.Duration) error {
	if drift != reconcile.DriftCorrect && drift != reconcile.DriftReport {
		return fmt.Errorf("%w: --drift %q (want correct or report)", hookctl.ErrInvalid, drift)
	}
	if interval <= 0 {
		return fmt.Errorf("%w: --interval %v: want a positive duration", hookctl.ErrInvalid, interval)
	}
	return nil
}

// durationSeconds writes durations as seconds (a float) in JSON logs, as
// log pipelines expect, instead of slog's nanoseconds.
func durationSeconds(_ []string, a slog.Attr) slog.Attr {
	if a.Value.Kind() == slog.KindDuration {
		return slog.Float64(a.Key, a.Value.Duration().Seconds())
	}
	return a
}

func newLogger(cmd *cobra.Command, level, format string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level: %w", err)
	}
	opts := &slog.HandlerOptions{Level: lv}
	switch strings.ToLower(format) {
	case "text":
		return slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), opts)), nil
	case "json":
		opts.ReplaceAttr = durationSeconds
		return slog.New(slog.NewJSONHandler(cmd.ErrOrStderr(), opts)), nil
	}
	return nil, fmt.Errorf("--log-format: unknown format %q (want text or json)", format)
}

// envOr is the environment variable name, or def when it is unset.
func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}
