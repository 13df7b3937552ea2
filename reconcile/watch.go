package reconcile

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"maps"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/fsnotify/fsnotify"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"hookctl.dev/hookctl"
)

// Desired is a loaded, validated set of declared hooks.
type Desired struct {
	// Hooks have Owner set to their set and Source to "file:line".
	Hooks []hookctl.Hook
	// Sets are the set names declared, even by files without hooks.
	Sets []string
	// Files are the files read.
	Files []string
	// Revision is the files' revision as the inventory records it: the
	// git commit read, or a digest of the files' contents.
	Revision string
}

// Loader reads and validates the desired hooks. An error means the files
// are unusable as a whole (the Watcher then keeps the last good set).
type Loader func(ctx context.Context) (Desired, error)

// Drift policies of a Watcher.
const (
	// DriftCorrect re-applies the files when the registry drifted.
	DriftCorrect = "correct"
	// DriftReport only logs and counts drift.
	DriftReport = "report"
)

// Defaults of a Watcher.
const (
	DefaultInterval = time.Minute
	DefaultDebounce = 150 * time.Millisecond
)

// Watcher keeps a registry matching the hooks files: it watches the
// directories holding them, and after a burst of changes settles
// (Debounce) it re-reads the whole set, validates it, plans and applies.
// A periodic resync (Interval plus up to Jitter) catches drift: hooks
// deleted by hand, temporary hooks lost on a disconnect or restart.
// An invalid set keeps the last good one in force.
//
// Set the exported fields, then call Run (or Reconcile once). The fields
// must not change afterwards.
type Watcher struct {
	// Paths are the hooks files and directories (as given to -f).
	Paths []string
	// Recursive reads and watches directories recursively.
	Recursive bool
	// Load reads the desired hooks; required (SpecLoader reads Paths).
	Load Loader
	// Registry is the live registry: the backend's store in process, or
	// the control API client in the sidecar.
	Registry hookctl.Registry
	// JIDs returns each profile's JID, to normalise own-PEP services
	// (NormalizeServices); nil when services need no normalising.
	JIDs func(ctx context.Context) (map[string]string, error)
	// Options are the plan and apply options (DryRun is ignored).
	Options ApplyOptions
	// Interval is the resync period (DefaultInterval if 0; negative turns
	// resync off). Jitter adds up to that much at random to each period
	// (Interval/10 if 0) so that many sidecars do not resync in step.
	Interval, Jitter time.Duration
	// Debounce is the quiet time after a file event before reloading
	// (DefaultDebounce if 0).
	Debounce time.Duration
	// Drift is DriftCorrect (default) or DriftReport.
	Drift string
	// Logger receives what the loop does; nil discards.
	Logger *slog.Logger
	// Metrics, if set, records the loop's metrics.
	Metrics *Metrics
	// Partial, if set, is used when the files are invalid: the sets whose
	// files are valid are applied, each set with an invalid file keeps
	// its last good hooks (PartialLoader). Without it, or when it cannot
	// tell the sets apart, the whole last good set stays in force.
	Partial Partial
	// WatchDirs are more directories whose changes start a round: a git
	// repository's git directory and refs when the files are read from
	// commits (GitWatchDirs).
	WatchDirs []string
	// Source names the files' source in the inventory (SourceOf); "" runs
	// without an inventory (no pruning of vanished sets, no claim check).
	Source string
	// Epoch, if set, returns the backend's identity (its start time): the
	// loop asks every EpochEvery (DefaultEpochEvery if 0) and reconciles at
	// once when it changed (a restart lost the temporary hooks) or the
	// backend stops answering (not ready).
	Epoch      func(ctx context.Context) (string, error)
	EpochEvery time.Duration
	// OnRound, if set, hears how each round of Run ended (nil: the files
	// applied), for alerts; it must not block.
	OnRound func(err error)

	mu         sync.Mutex
	health     Health
	lastGood   *Desired          // last valid load
	applied    []hookctl.Hook    // desired hooks of the last successful round
	hasApplied bool              // applied is meaningful
	held       map[string]string // sets held at their last good hooks, and why
	lastConf   int               // conflicts at the last round, to log changes only
	epoch      string            // the backend's identity at the last check
}

// DefaultEpochEvery is how often the loop checks that the backend is the
// same process and answers.
const DefaultEpochEvery = 2 * time.Second

// Health is the loop's state as /healthz and /readyz show it.
type Health struct {
	// Ready is true while the registry matches the files (or, while they
	// are invalid, the last good ones): the last round succeeded for every
	// set and the backend answers.
	Ready bool `json:"ready"`
	// LastSuccess and LastAttempt are the times of the last successful and
	// of the last reconcile round.
	LastSuccess time.Time `json:"last_success,omitzero"`
	LastAttempt time.Time `json:"last_attempt,omitzero"`
	// LastError is why the last round failed, "" if it succeeded.
	LastError string `json:"last_error,omitempty"`
	// FilesError holds the diagnostics of the hooks files while they are
	// invalid (the last good set stays in force), "" when they are valid.
	FilesError string `json:"files_error,omitempty"`
	// Sets and Hooks describe the set in force; Revision is the registry
	// revision after the last successful round.
	Sets     []string `json:"sets"`
	Hooks    int      `json:"hooks"`
	Revision uint64   `json:"revision"`
	// Conflicts is how many desired hooks are blocked by someone else's.
	Conflicts int `json:"conflicts"`
	// SetErrors says, by set, why the last round refused its changes
	// (the other sets were applied).
	SetErrors map[string]string `json:"set_errors,omitempty"`
	// Drift is how many differences the last round found while the files
	// had not changed and left in place (--drift report): 0 when the
	// registry matches. DriftDetail names them.
	Drift       int    `json:"drift"`
	DriftDetail string `json:"drift_detail,omitempty"`
	// LastCorrection is the last round that put drift back (--drift
	// correct).
	LastCorrection *Correction `json:"last_correction,omitempty"`
	// BackendError is why the backend did not answer the last check, ""
	// while it answers.
	BackendError string `json:"backend_error,omitempty"`
	// SourceRevision is the files' revision last applied (a git commit,
	// or a digest of the files).
	SourceRevision string `json:"source_revision,omitempty"`
}

// Correction is a round that corrected drift.
type Correction struct {
	Time    time.Time `json:"time"`
	Changes int       `json:"changes"`
	Detail  string    `json:"detail"`
}

// ready is the readiness rule: a round succeeded, the last one had no
// error (invalid files with the last good set applied are not one) and
// the backend answers.
func (h Health) ready() bool {
	return !h.LastSuccess.IsZero() && h.LastError == "" && h.BackendError == ""
}

// Health returns a snapshot of the loop's state.
func (w *Watcher) Health() Health {
	w.mu.Lock()
	defer w.mu.Unlock()
	h := w.health
	h.Sets = slices.Clone(h.Sets)
	h.SetErrors = maps.Clone(h.SetErrors)
	h.Ready = h.ready()
	return h
}

// setErrors says why each set waits: held at its last good hooks by an
// invalid file, or refused by the plan; nil when none does.
func setErrors(held map[string]string, p Changeset) map[string]string {
	var out map[string]string
	put := func(set, why string) {
		if out == nil {
			out = map[string]string{}
		}
		out[set] = why
	}
	for set, why := range held {
		put(set, "files invalid, its last good hooks stay: "+why)
	}
	for _, sp := range p.SetPlans {
		if sp.Err != nil {
			put(sp.Set, sp.Err.Error())
		}
	}
	return out
}

// Status is the loop's state in the backend's status (serve --watch).
func (w *Watcher) Status() hookctl.WatchStatus {
	h := w.Health()
	return hookctl.WatchStatus{Ready: h.Ready, Revision: h.SourceRevision, LastError: h.LastError,
		FilesError: h.FilesError, SetErrors: h.SetErrors, Drift: h.Drift}
}

// Round is what one reconcile round did.
type Round struct {
	// Result is the apply result (its Plan is the plan computed).
	Result Result
	// FilesChanged is true when the desired hooks differ from the last
	// successful round's (always true for the first).
	FilesChanged bool
	// Drift is true when the registry differed while the files had not
	// changed; with DriftReport it was left as is.
	Drift bool
	// LoadErr is the error of reading the files when the last good set
	// was used instead.
	LoadErr error
}

// Reconcile runs one round: read the files (falling back to the last good
// set if they are invalid), plan against the registry and apply, or only
// report drift under DriftReport. It returns an error if the round failed,
// or if the files were invalid (the round then used the last good set, or
// did nothing if there is none).
func (w *Watcher) Reconcile(ctx context.Context) (Round, error) {
	var r Round
	w.mu.Lock()
	w.health.LastAttempt = time.Now()
	w.mu.Unlock()
	w.Metrics.inc(func(m *Metrics) { m.reconciles.Inc() })

	d, err := w.load(ctx, &r)
	if err != nil {
		return r, err
	}
	desired := d.Hooks
	if w.JIDs != nil {
		jids, err := w.JIDs(ctx)
		if err != nil {
			return r, w.fail(ctx, r, fmt.Errorf("reading profiles: %w", err))
		}
		if desired, err = NormalizeServices(desired, jids); err != nil {
			return r, w.fail(ctx, r, err)
		}
	}

	w.mu.Lock()
	r.FilesChanged = !w.hasApplied || !reflect.DeepEqual(desired, w.applied)
	w.mu.Unlock()

	opts := w.Options
	if len(opts.Sets) == 0 {
		opts.Sets = d.Sets
	}
	opts.Source, opts.SourceRevision = w.Source, d.Revision
	report := w.Drift == DriftReport && !r.FilesChanged
	opts.DryRun = report
	res, err := Apply(ctx, w.Registry, desired, opts)
	r.Result = res
	refused := res.Refused
	if err != nil && err != refused {
		return r, w.fail(ctx, r, err)
	}
	// Drift is what the batch would change with the files unchanged;
	// a refused set's pending changes are its refusal, not drift.
	r.Drift = !r.FilesChanged && res.Plan.Sent().Changes() > 0
	w.logChanges(r, report)
	w.succeeded(d, desired, r, report)
	if refused != nil {
		// The other sets' changes are applied; these sets wait.
		return r, w.fail(ctx, r, refused)
	}
	if r.LoadErr != nil {
		return r, fmt.Errorf("reading hooks files (last good set kept): %w", r.LoadErr)
	}
	return r, nil
}

// load reads the hooks files; when they are invalid it records why in r
// and health and returns the last good set, or an error if there is none.
func (w *Watcher) load(ctx context.Context, r *Round) (Desired, error) {
	log := w.logger()
	d, err := w.Load(ctx)
	if err != nil && ctx.Err() != nil {
		return Desired{}, err // stopping
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if err == nil {
		w.lastGood, w.held = &d, nil
		w.health.FilesError = ""
		w.Metrics.inc(func(m *Metrics) { m.reloadFailing.Set(0) })
		return d, nil
	}
	r.LoadErr = err
	w.health.FilesError = err.Error()
	w.Metrics.inc(func(m *Metrics) { m.reloadFailures.Inc(); m.reloadFailing.Set(1) })
	if w.lastGood == nil {
		w.health.LastError = "reading hooks files: " + err.Error()
		log.Error("hooks files invalid, nothing applied yet", "err", err)
		return Desired{}, fmt.Errorf("reading hooks files: %w", err)
	}
	if w.Partial != nil {
		if pd, held, ok := w.Partial(ctx, err, w.lastGood); ok {
			// Every set in pd is good: read afresh, or held at its last
			// good hooks. It is the last good state of each set.
			w.held, w.lastGood = held, &pd
			log.Error("hooks files invalid, keeping the last good hooks of their sets", "sets", slices.Sorted(maps.Keys(held)), "err", err)
			return pd, nil
		}
	}
	w.held = nil
	log.Error("hooks files invalid, keeping the last good set", "err", err)
	return *w.lastGood, nil
}

// logChanges counts and logs what a successful round changed or found
// drifted (report: drift was only reported).
func (w *Watcher) logChanges(r Round, report bool) {
	log := w.logger()
	res := r.Result
	c := res.Plan.Sent()
	if r.Drift {
		w.Metrics.inc(func(m *Metrics) {
			m.drift.WithLabelValues(string(ActionCreate)).Add(float64(c.Create))
			m.drift.WithLabelValues(string(ActionUpdate)).Add(float64(c.Update))
			m.drift.WithLabelValues(string(ActionDelete)).Add(float64(c.Delete))
		})
		if report {
			log.Warn("registry drifted from the hooks files (reporting only)",
				"create", c.Create, "update", c.Update, "delete", c.Delete, "changes", driftSummary(res.Plan))
		} else {
			log.Warn("registry drifted from the hooks files, corrected",
				"create", c.Create, "update", c.Update, "delete", c.Delete, "changes", driftSummary(res.Plan))
		}
	}
	if res.Applied {
		w.Metrics.inc(func(m *Metrics) {
			m.changes.WithLabelValues(string(ActionCreate)).Add(float64(c.Create))
			m.changes.WithLabelValues(string(ActionUpdate)).Add(float64(c.Update))
			m.changes.WithLabelValues(string(ActionDelete)).Add(float64(c.Delete))
		})
		if !r.Drift {
			log.Info("applied hooks files", "create", c.Create, "update", c.Update, "delete", c.Delete,
				"revision", res.Revision, "attempts", res.Attempts)
		}
	}
}

// succeeded records a successful round in health and metrics.
func (w *Watcher) succeeded(d Desired, desired []hookctl.Hook, r Round, report bool) {
	res := r.Result
	c := res.Plan.Counts()
	w.mu.Lock()
	if c.Conflict != w.lastConf && c.Conflict > 0 {
		w.logger().Warn("desired hooks blocked by hooks of someone else", "conflicts", c.Conflict, "hooks", conflictSummary(res.Plan))
	}
	w.lastConf = c.Conflict
	if !report {
		w.applied, w.hasApplied = desired, true
	}
	w.health.SetErrors = setErrors(w.held, res.Plan)
	perSet := map[string]int{}
	for _, s := range d.Sets {
		perSet[s] = 0
	}
	for _, h := range desired {
		perSet[h.Owner]++
	}
	t := time.Now()
	w.health.LastSuccess = t
	if !report {
		w.health.SourceRevision = d.Revision
	}
	w.health.LastError = ""
	if res.Refused != nil {
		// Set now, with the set errors, so that /readyz never sees them
		// apart (fail counts and logs it next).
		w.health.LastError = res.Refused.Error()
	}
	w.health.Sets = slices.Clone(d.Sets)
	w.health.Hooks = len(desired)
	w.health.Revision = res.Revision
	w.health.Conflicts = c.Conflict
	w.health.Drift, w.health.DriftDetail = 0, ""
	switch {
	case r.Drift && report:
		w.health.Drift, w.health.DriftDetail = res.Plan.Sent().Changes(), driftSummary(res.Plan)
	case r.Drift && res.Applied:
		w.health.LastCorrection = &Correction{Time: t, Changes: res.Plan.Sent().Changes(), Detail: driftSummary(res.Plan)}
	}
	w.mu.Unlock()
	w.Metrics.inc(func(m *Metrics) {
		m.lastSuccess.Set(float64(t.UnixNano()) / 1e9)
		m.conflicts.Set(float64(c.Conflict))
		m.hooks.Reset()
		for s, n := range perSet {
			m.hooks.WithLabelValues(s).Set(float64(n))
		}
	})
}

func (w *Watcher) fail(ctx context.Context, r Round, err error) error {
	if ctx.Err() != nil {
		return err // stopping: not a failure of the files or the backend
	}
	w.mu.Lock()
	w.health.LastError = err.Error()
	w.mu.Unlock()
	w.Metrics.inc(func(m *Metrics) { m.failures.Inc() })
	w.logger().Error("reconcile failed", "err", err)
	return err
}

// Run watches the files and reconciles until ctx ends; it returns nil then.
// It reconciles once at start. Failures (invalid files, registry down) are
// logged, counted and retried: on the next file change, or after a short
// backoff capped by the resync interval.
func (w *Watcher) Run(ctx context.Context) error {
	if w.Load == nil || w.Registry == nil {
		return fmt.Errorf("%w: watcher needs Load and Registry", hookctl.ErrInvalid)
	}
	fw, err := fsnotify.NewWatcher()
	if err != nil {
		return fmt.Errorf("watching hooks files: %w", err)
	}
	defer fw.Close()
	dirs := w.addWatches(fw)
	if len(dirs) == 0 {
		return fmt.Errorf("%w: no directory to watch for %s", hookctl.ErrNotFound, strings.Join(w.Paths, ", "))
	}

	debounce := w.Debounce
	if debounce <= 0 {
		debounce = DefaultDebounce
	}
	// A stream of events (a long git checkout) delays the reload at most
	// this long, so that the loop is never starved.
	maxDelay := 20 * debounce

	quiet := time.NewTimer(0) // first round at once
	resync := time.NewTimer(time.Hour)
	resync.Stop()
	var burstStart time.Time
	backoff := time.Duration(0)
	epochC, stopEpoch := w.epochTicker()
	defer stopEpoch()

	for {
		select {
		case <-ctx.Done():
			quiet.Stop()
			resync.Stop()
			return nil
		case ev, ok := <-fw.Events:
			if !ok {
				return errors.New("file watcher closed")
			}
			if ev.Has(fsnotify.Create) && w.Recursive {
				if fi, err := os.Stat(ev.Name); err == nil && fi.IsDir() && !hidden(filepath.Base(ev.Name)) {
					w.watchTree(fw, ev.Name)
				}
			}
			now := time.Now()
			if burstStart.IsZero() {
				burstStart = now
			}
			delay := debounce
			if rest := maxDelay - now.Sub(burstStart); rest < delay {
				delay = max(rest, 0)
			}
			quiet.Reset(delay)
		case err, ok := <-fw.Errors:
			if !ok {
				return errors.New("file watcher closed")
			}
			// An overflow loses events: reload to be safe.
			w.logger().Warn("file watcher error, reloading", "err", err)
			quiet.Reset(debounce)
		case <-quiet.C:
			burstStart = time.Time{}
			backoff = w.round(ctx, fw, resync, backoff)
		case <-resync.C:
			backoff = w.round(ctx, fw, resync, backoff)
		case <-epochC:
			if w.backendChanged(ctx) {
				backoff = w.round(ctx, fw, resync, 0)
			}
		}
	}
}

// round reconciles, re-arms the resync timer and returns the next backoff.
func (w *Watcher) round(ctx context.Context, fw *fsnotify.Watcher, resync *time.Timer, backoff time.Duration) time.Duration {
	// Directories removed and re-created (a checkout replacing a tree) lost
	// their watch: add them again; Add on a watched directory is a no-op.
	w.addWatches(fw)
	_, err := w.Reconcile(ctx)
	if ctx.Err() != nil {
		return backoff
	}
	if w.OnRound != nil {
		w.OnRound(err)
	}
	interval := w.Interval
	if interval == 0 {
		interval = DefaultInterval
	}
	next := interval
	if err != nil && w.Health().LastError != "" {
		// The round failed outright (not just invalid files with the last
		// good set applied): retry sooner.
		backoff = min(max(2*backoff, 500*time.Millisecond), 30*time.Second)
		if interval < 0 || backoff < next {
			next = backoff
		}
	} else {
		backoff = 0
		if interval < 0 {
			resync.Stop()
			return backoff
		}
	}
	jitter := w.Jitter
	if jitter == 0 && next == interval {
		jitter = interval / 10
	}
	if jitter > 0 && next == interval {
		next += rand.N(jitter)
	}
	resync.Reset(next)
	return backoff
}

// epochTicker ticks when the backend should be asked who it is (never
// without Epoch).
func (w *Watcher) epochTicker() (<-chan time.Time, func()) {
	if w.Epoch == nil {
		return nil, func() {}
	}
	every := w.EpochEvery
	if every <= 0 {
		every = DefaultEpochEvery
	}
	t := time.NewTicker(every)
	return t.C, t.Stop
}

// backendChanged asks the backend who it is: true when it restarted (a new
// identity, or answering again after not answering), so that temporary
// hooks it lost come back at once. A backend that does not answer makes
// the loop not ready.
func (w *Watcher) backendChanged(ctx context.Context) bool {
	id, err := w.Epoch(ctx)
	if ctx.Err() != nil {
		return false
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if err != nil {
		if w.health.BackendError == "" {
			w.logger().Error("backend does not answer", "err", err)
		}
		w.health.BackendError = err.Error()
		w.epoch = ""
		return false
	}
	prevID, prevErr := w.epoch, w.health.BackendError
	w.epoch, w.health.BackendError = id, ""
	restarted := (prevID != "" && prevID != id) || prevErr != ""
	if restarted {
		w.logger().Info("backend restarted or answers again: reconciling", "backend", id)
	}
	return restarted
}

// addWatches watches the directories that hold Paths: a directory itself
// (and its subdirectories with Recursive), or a file's parent, since
// editors and ConfigMap volumes replace files by renaming. It returns the
// directories watched.
func (w *Watcher) addWatches(fw *fsnotify.Watcher) []string {
	var dirs []string
	for _, dir := range w.WatchDirs {
		if err := fw.Add(dir); err == nil {
			dirs = append(dirs, dir)
		}
	}
	for _, p := range w.Paths {
		dir := filepath.Dir(p)
		if fi, err := os.Stat(p); err == nil && fi.IsDir() {
			dir = p
			if w.Recursive {
				dirs = append(dirs, w.watchTree(fw, p)...)
				continue
			}
		}
		if err := fw.Add(dir); err != nil {
			w.logger().Warn("cannot watch directory", "dir", dir, "err", err)
			continue
		}
		dirs = append(dirs, dir)
	}
	return dirs
}

// watchTree watches root and every non-hidden directory below it.
func (w *Watcher) watchTree(fw *fsnotify.Watcher, root string) []string {
	var dirs []string
	_ = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.IsDir() {
			return nil
		}
		if p != root && hidden(d.Name()) {
			return filepath.SkipDir
		}
		if err := fw.Add(p); err != nil {
			w.logger().Warn("cannot watch directory", "dir", p, "err", err)
			return nil
		}
		dirs = append(dirs, p)
		return nil
	})
	return dirs
}

func hidden(name string) bool { return strings.HasPrefix(name, ".") }

func (w *Watcher) logger() *slog.Logger {
	if w.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return w.Logger
}

func (m *Metrics) inc(f func(*Metrics)) {
	if m != nil {
		f(m)
	}
}

func driftSummary(p Changeset) string {
	var parts []string
	for _, e := range p.Entries {
		if p.refused(e.Set) {
			continue
		}
		switch e.Action {
		case ActionCreate:
			parts = append(parts, "missing "+keyText(e.Key))
		case ActionUpdate:
			parts = append(parts, "changed "+keyText(e.Key))
		case ActionDelete:
			parts = append(parts, "extra "+keyText(e.Key))
		}
		if len(parts) == 5 {
			parts = append(parts, "…")
			break
		}
	}
	return strings.Join(parts, "; ")
}

func conflictSummary(p Changeset) string {
	var parts []string
	for _, e := range p.Entries {
		if e.Action == ActionConflict {
			parts = append(parts, keyText(e.Key)+" ("+e.Reason+")")
		}
	}
	return strings.Join(parts, "; ")
}

// Handler serves /healthz (200 while the loop runs, with the Health as
// JSON), /readyz (200 once a reconcile has succeeded, else 503) and, when
// gatherer is not nil, Prometheus /metrics.
func (w *Watcher) Handler(gatherer prometheus.Gatherer) http.Handler {
	mux := http.NewServeMux()
	write := func(rw http.ResponseWriter, code int) {
		rw.Header().Set("Content-Type", "application/json")
		rw.WriteHeader(code)
		_ = json.NewEncoder(rw).Encode(w.Health())
	}
	mux.HandleFunc("GET /healthz", func(rw http.ResponseWriter, _ *http.Request) { write(rw, http.StatusOK) })
	mux.HandleFunc("GET /readyz", func(rw http.ResponseWriter, _ *http.Request) {
		if w.Health().ready() {
			write(rw, http.StatusOK)
			return
		}
		write(rw, http.StatusServiceUnavailable)
	})
	if gatherer != nil {
		mux.Handle("GET /metrics", promhttp.HandlerFor(gatherer, promhttp.HandlerOpts{}))
	}
	return mux
}
