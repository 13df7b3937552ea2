package reconcile

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"hookctl.dev/hookctl"
	"hookctl.dev/hookctl/registry"
)

// hooksYAML is a hooks file of set declaring one exec hook per node.
func hooksYAML(set string, nodes ...string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "version: 1\nset: %s\nhooks:\n", set)
	if len(nodes) == 0 {
		b.Reset()
		fmt.Fprintf(&b, "version: 1\nset: %s\nhooks: []\n", set)
	}
	for _, n := range nodes {
		fmt.Fprintf(&b, "  - node: %s\n    service: pubsub.localhost\n    type: exec\n    arg: /bin/true\n", n)
	}
	return b.String()
}

// writeAtomic replaces path the way editors do: write a temporary file in
// the same directory, then rename it over the target.
func writeAtomic(t testing.TB, path, content string) {
	t.Helper()
	tmp := filepath.Join(filepath.Dir(path), "."+filepath.Base(path)+".swp")
	if err := os.WriteFile(tmp, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

func writeFile(t testing.TB, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// syncBuffer is a log sink safe for the watcher goroutine.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

type rig struct {
	store   *registry.Store
	w       *Watcher
	metrics *Metrics
	prom    *prometheus.Registry
	logs    *syncBuffer
}

// startWatcher runs a Watcher on paths against a real registry until the
// test ends.
func startWatcher(t testing.TB, paths []string, configure func(*Watcher)) *rig {
	t.Helper()
	r := &rig{store: openStore(t), prom: prometheus.NewRegistry(), logs: &syncBuffer{}}
	r.metrics = NewMetrics(r.prom)
	r.w = &Watcher{
		Paths:    paths,
		Registry: r.store,
		JIDs: func(context.Context) (map[string]string, error) {
			return map[string]string{"default": "bot@localhost"}, nil
		},
		Debounce: 50 * time.Millisecond,
		Interval: time.Hour,
		Logger:   slog.New(slog.NewTextHandler(r.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Metrics:  r.metrics,
		Source:   "dir:test",
	}
	if configure != nil {
		configure(r.w)
	}
	if r.w.Load == nil {
		r.w.Load = SpecLoader(paths, r.w.Recursive)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.w.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(5 * time.Second):
			t.Error("Run did not return after cancel")
		}
		if t.Failed() {
			t.Logf("watcher log:\n%s", r.logs.String())
		}
	})
	return r
}

// nodes returns the sorted node names of the live hooks.
func (r *rig) nodes(t testing.TB) []string {
	var out []string
	for _, h := range listAll(t, r.store) {
		out = append(out, h.Node)
	}
	slices.Sort(out)
	return out
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (r *rig) waitNodes(t testing.TB, want ...string) {
	t.Helper()
	slices.Sort(want)
	waitFor(t, fmt.Sprintf("registry nodes %v", want), func() bool { return slices.Equal(r.nodes(t), want) })
}

func TestWatchRenameIntoPlace(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "hooks.yaml")
	writeFile(t, file, hooksYAML("blog", "a", "b"))
	r := startWatcher(t, []string{file}, nil)
	r.waitNodes(t, "a", "b")
	waitFor(t, "ready", func() bool { return r.w.Health().Ready })

	writeAtomic(t, file, hooksYAML("blog", "a", "c", "d"))
	r.waitNodes(t, "a", "c", "d")
	for _, h := range listAll(t, r.store) {
		if h.Owner != "blog" || !strings.HasPrefix(h.Source, file+":") {
			t.Errorf("hook %s: owner %q source %q", h.Node, h.Owner, h.Source)
		}
	}
	// A plain in-place write is seen too.
	writeFile(t, file, hooksYAML("blog", "a", "c", "e"))
	r.waitNodes(t, "a", "c", "e")
}

func TestWatchManyFilesAtOnce(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "00.yaml"), hooksYAML("blog", "seed"))
	r := startWatcher(t, []string{dir}, nil)
	r.waitNodes(t, "seed")
	before := value(t, r.metrics.reconciles)

	// A checkout: ten files appear, one disappears, in a burst.
	var want []string
	for i := range 10 {
		n := fmt.Sprintf("n%02d", i)
		want = append(want, n)
		writeFile(t, filepath.Join(dir, fmt.Sprintf("%02d-%s.yaml", i+1, n)), hooksYAML("blog", n))
	}
	if err := os.Remove(filepath.Join(dir, "00.yaml")); err != nil {
		t.Fatal(err)
	}
	r.waitNodes(t, want...)
	// The burst was coalesced: far fewer rounds than the 11 changes.
	if rounds := value(t, r.metrics.reconciles) - before; rounds >= 11 {
		t.Errorf("%v reconcile rounds for one burst of 11 file changes", rounds)
	}
}

func TestWatchRecursiveNewSubdirectory(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "top.yaml"), hooksYAML("blog", "top"))
	r := startWatcher(t, []string{dir}, func(w *Watcher) { w.Recursive = true })
	r.waitNodes(t, "top")

	sub := filepath.Join(dir, "team", "x")
	if err := os.MkdirAll(sub, 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(sub, "more.yaml"), hooksYAML("blog", "deep"))
	r.waitNodes(t, "deep", "top")
	// The new directory is watched: a later edit inside it is seen.
	writeAtomic(t, filepath.Join(sub, "more.yaml"), hooksYAML("blog", "deeper"))
	r.waitNodes(t, "deeper", "top")
}

// configMap lays out dir like a Kubernetes ConfigMap volume: the data in a
// timestamped directory, a "..data" symlink to it, and each file a symlink
// through "..data". Calling the returned func swaps in new contents the
// way the kubelet does: new directory, "..data_tmp" symlink, rename over
// "..data", old directory removed.
func configMap(t testing.TB, dir string, files map[string]string) (update func(map[string]string)) {
	t.Helper()
	gen := 0
	var cur string
	write := func(files map[string]string) {
		gen++
		name := fmt.Sprintf("..2026_01_01_00_00_%02d.%d", gen, gen)
		if err := os.Mkdir(filepath.Join(dir, name), 0o755); err != nil {
			t.Fatal(err)
		}
		for f, c := range files {
			writeFile(t, filepath.Join(dir, name, f), c)
			link := filepath.Join(dir, f)
			if _, err := os.Lstat(link); err != nil {
				if err := os.Symlink(filepath.Join("..data", f), link); err != nil {
					t.Fatal(err)
				}
			}
		}
		tmp := filepath.Join(dir, "..data_tmp")
		if err := os.Symlink(name, tmp); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, filepath.Join(dir, "..data")); err != nil {
			t.Fatal(err)
		}
		if cur != "" {
			if err := os.RemoveAll(filepath.Join(dir, cur)); err != nil {
				t.Fatal(err)
			}
		}
		cur = name
	}
	write(files)
	return write
}

func TestWatchConfigMapSwap(t *testing.T) {
	for _, mode := range []string{"dir", "file"} {
		t.Run(mode, func(t *testing.T) {
			dir := t.TempDir()
			update := configMap(t, dir, map[string]string{"hooks.yaml": hooksYAML("blog", "v1")})
			path := dir
			if mode == "file" {
				path = filepath.Join(dir, "hooks.yaml")
			}
			r := startWatcher(t, []string{path}, nil)
			r.waitNodes(t, "v1")
			update(map[string]string{"hooks.yaml": hooksYAML("blog", "v2a", "v2b")})
			r.waitNodes(t, "v2a", "v2b")
			update(map[string]string{"hooks.yaml": hooksYAML("blog", "v3")})
			r.waitNodes(t, "v3")
		})
	}
}

func TestWatchInvalidEditKeepsLastGood(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "hooks.yaml")
	writeFile(t, file, hooksYAML("blog", "a", "b"))
	r := startWatcher(t, []string{file}, func(w *Watcher) { w.Interval = 100 * time.Millisecond; w.Jitter = 10 * time.Millisecond })
	r.waitNodes(t, "a", "b")

	writeAtomic(t, file, hooksYAML("blog", "c")+"    bogus: 1\n")
	waitFor(t, "files error in health", func() bool { return r.w.Health().FilesError != "" })
	h := r.w.Health()
	if !strings.Contains(h.FilesError, "bogus") || !h.Ready {
		t.Errorf("health = %+v, want the diagnostics and still ready", h)
	}
	// Resyncs keep running with the last good set: let two pass.
	n := value(t, r.metrics.reconciles)
	waitFor(t, "two resync rounds", func() bool { return value(t, r.metrics.reconciles) >= n+2 })
	if got := r.nodes(t); !slices.Equal(got, []string{"a", "b"}) {
		t.Errorf("registry %v after invalid edit, want the last good [a b]", got)
	}
	if value(t, r.metrics.reloadFailures) < 1 || value(t, r.metrics.reloadFailing) != 1 {
		t.Error("reload failure not counted")
	}
	if !strings.Contains(r.logs.String(), "keeping the last good set") {
		t.Errorf("invalid edit not logged:\n%s", r.logs.String())
	}

	writeAtomic(t, file, hooksYAML("blog", "c"))
	r.waitNodes(t, "c")
	waitFor(t, "files error cleared", func() bool { return r.w.Health().FilesError == "" })
}

func TestWatchFirstLoadInvalid(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "hooks.yaml")
	writeFile(t, file, "version: 1\nhooks: [\n")
	r := startWatcher(t, []string{file}, nil)
	srv := httptest.NewServer(r.w.Handler(r.prom))
	defer srv.Close()

	waitFor(t, "first failure", func() bool { return value(t, r.metrics.reloadFailures) >= 1 })
	if code := get(t, srv.URL+"/readyz"); code != http.StatusServiceUnavailable {
		t.Errorf("/readyz = %d before any good set, want 503", code)
	}
	if code := get(t, srv.URL+"/healthz"); code != http.StatusOK {
		t.Errorf("/healthz = %d, want 200", code)
	}
	writeAtomic(t, file, hooksYAML("blog", "a"))
	r.waitNodes(t, "a")
	waitFor(t, "/readyz 200", func() bool { return get(t, srv.URL+"/readyz") == http.StatusOK })

	resp, err := http.Get(srv.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, m := range []string{"hookctl_watch_reconciles_total", "hookctl_watch_reload_failures_total 1",
		`hookctl_watch_hooks{set="blog"} 1`, "hookctl_watch_last_success_timestamp_seconds", `hookctl_watch_drift_total{kind="create"} 0`} {
		if !strings.Contains(string(body), m) {
			t.Errorf("/metrics lacks %q", m)
		}
	}
}

// value reads a counter or gauge.
func value(t testing.TB, m prometheus.Metric) float64 {
	t.Helper()
	var d dto.Metric
	if err := m.Write(&d); err != nil {
		t.Fatal(err)
	}
	if d.Counter != nil {
		return d.Counter.GetValue()
	}
	return d.Gauge.GetValue()
}

func get(t testing.TB, url string) int {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

func TestWatchCorrectsDrift(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "hooks.yaml")
	writeFile(t, file, hooksYAML("blog", "a", "b"))
	r := startWatcher(t, []string{file}, func(w *Watcher) { w.Interval = 200 * time.Millisecond; w.Jitter = 20 * time.Millisecond })
	r.waitNodes(t, "a", "b")

	ctx := context.Background()
	// A hook deleted by hand, and an extra one planted in the set.
	if n, err := r.store.Remove(ctx, hookctl.Match{Profile: "default", Service: "pubsub.localhost", Node: "a"}); err != nil || n != 1 {
		t.Fatalf("remove: %d %v", n, err)
	}
	if _, err := r.store.Create(ctx, hk("planted", "/bin/true", "blog")); err != nil {
		t.Fatal(err)
	}
	r.waitNodes(t, "a", "b")
	// The metric moves before the health detail (both in one round).
	waitFor(t, "drift counted in metrics, correction in health", func() bool {
		h := r.w.Health()
		return value(t, r.metrics.drift.WithLabelValues("create")) >= 1 &&
			value(t, r.metrics.drift.WithLabelValues("delete")) >= 1 &&
			h.LastCorrection != nil && h.LastCorrection.Changes == 2
	})
	// Corrected: no drift now.
	if h := r.w.Health(); h.Drift != 0 || !strings.Contains(h.LastCorrection.Detail, "missing default pubsub.localhost a") {
		t.Errorf("health after correction: drift %d, last correction %+v", h.Drift, h.LastCorrection)
	}
}

func TestWatchReportsDriftOnly(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "hooks.yaml")
	writeFile(t, file, hooksYAML("blog", "a", "b"))
	r := startWatcher(t, []string{file}, func(w *Watcher) {
		w.Interval = 100 * time.Millisecond
		w.Jitter = 10 * time.Millisecond
		w.Drift = DriftReport
	})
	r.waitNodes(t, "a", "b")
	if _, err := r.store.Remove(context.Background(), hookctl.Match{Profile: "default", Service: "pubsub.localhost", Node: "a"}); err != nil {
		t.Fatal(err)
	}
	// Counted, then logged, in one round.
	waitFor(t, "drift reported in metrics and log", func() bool {
		return value(t, r.metrics.drift.WithLabelValues("create")) >= 1 && strings.Contains(r.logs.String(), "reporting only")
	})
	if got := r.nodes(t); !slices.Equal(got, []string{"b"}) {
		t.Errorf("registry %v, want [b]: --drift report must not restore", got)
	}
	// The drift that is there now, not a running total.
	waitFor(t, "current drift in health", func() bool { h := r.w.Health(); return h.Drift == 1 && h.LastCorrection == nil })
	// A file change is applied even in report mode, and it brings the
	// registry back in line as a whole.
	writeAtomic(t, file, hooksYAML("blog", "a", "b", "c"))
	r.waitNodes(t, "a", "b", "c")
}

func TestWatchTemporaryHooksComeBackAfterDrop(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "hooks.yaml")
	writeFile(t, file, strings.Replace(hooksYAML("blog", "tmp"), "arg: /bin/true", "arg: /bin/true\n    persistent: false", 1))
	r := startWatcher(t, []string{file}, func(w *Watcher) { w.Interval = 200 * time.Millisecond })
	r.waitNodes(t, "tmp")
	// The profile disconnects: its temporary hooks are gone.
	if n, err := r.store.DropTemporary("default"); err != nil || n != 1 {
		t.Fatalf("DropTemporary = %d, %v", n, err)
	}
	r.waitNodes(t, "tmp")
}

func TestWatchRefusesEmptiedSet(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "hooks.yaml")
	writeFile(t, file, hooksYAML("blog", "a"))
	r := startWatcher(t, []string{file}, nil)
	r.waitNodes(t, "a")
	writeAtomic(t, file, hooksYAML("blog"))
	waitFor(t, "refusal", func() bool { return strings.Contains(r.w.Health().LastError, "--allow-empty") })
	if got := r.nodes(t); !slices.Equal(got, []string{"a"}) {
		t.Errorf("registry %v, want [a] kept", got)
	}
}

func TestReconcileOnce(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "hooks.yaml")
	writeFile(t, file, hooksYAML("blog", "a"))
	store := openStore(t)
	w := &Watcher{Paths: []string{file}, Load: SpecLoader([]string{file}, false), Registry: store}
	r, err := w.Reconcile(context.Background())
	if err != nil || !r.Result.Applied || !r.FilesChanged {
		t.Fatalf("Reconcile = %+v, %v", r, err)
	}
	r, err = w.Reconcile(context.Background())
	if err != nil || r.Result.Applied || r.FilesChanged || r.Drift {
		t.Fatalf("second Reconcile = %+v, %v; want nothing to do", r, err)
	}
	writeFile(t, file, "nope")
	if _, err := w.Reconcile(context.Background()); err == nil {
		t.Fatal("no error for invalid files")
	}
}

// BenchmarkWatchEditToRegistry measures the time from a hooks file being
// replaced to the registry holding the change, through the real watcher
// (default debounce) and the real registry, over 20 edits per iteration.
func BenchmarkWatchEditToRegistry(b *testing.B) {
	dir := b.TempDir()
	file := filepath.Join(dir, "hooks.yaml")
	writeFile(b, file, hooksYAML("blog", "edit-0"))
	r := startWatcher(b, []string{file}, func(w *Watcher) { w.Debounce = DefaultDebounce })
	r.waitNodes(b, "edit-0")
	changes, cancel := r.store.Changes()
	defer cancel()

	var lat []time.Duration
	edit := 0
	for b.Loop() {
		for range 20 {
			edit++
			node := fmt.Sprintf("edit-%d", edit)
			start := time.Now()
			writeAtomic(b, file, hooksYAML("blog", node))
			for !slices.Equal(r.nodes(b), []string{node}) {
				select {
				case <-changes:
				case <-time.After(5 * time.Second):
					b.Fatalf("edit %d not applied", edit)
				}
			}
			lat = append(lat, time.Since(start))
		}
	}
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Milliseconds()), "median-ms")
	b.ReportMetric(float64(lat[len(lat)-1].Milliseconds()), "max-ms")
	b.ReportMetric(0, "ns/op")
}

// TestWatchRefusedSetIsNotDrift: while one set is refused (emptied), the
// other set is applied, its drift is reported as drift, and the refused
// set's pending deletions are reported as its refusal, not as drift.
func TestWatchRefusedSetIsNotDrift(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "big.yaml"), hooksYAML("big", "b1", "b2"))
	writeFile(t, filepath.Join(dir, "small.yaml"), hooksYAML("small", "s1"))
	r := startWatcher(t, []string{dir}, func(w *Watcher) {
		w.Interval = 100 * time.Millisecond
		w.Jitter = 10 * time.Millisecond
		w.Drift = DriftReport
	})
	r.waitNodes(t, "b1", "b2", "s1")
	writeAtomic(t, filepath.Join(dir, "big.yaml"), hooksYAML("big"))
	writeAtomic(t, filepath.Join(dir, "small.yaml"), hooksYAML("small", "s1", "s2"))
	r.waitNodes(t, "b1", "b2", "s1", "s2")
	waitFor(t, "big refused", func() bool { return strings.Contains(r.w.Health().SetErrors["big"], "set big declares no hooks") })
	if h := r.w.Health(); h.Ready || h.Drift != 0 {
		t.Errorf("health %+v: want not ready, no drift", h)
	}
	if _, err := r.store.Remove(context.Background(), hookctl.Match{Profile: "default", Service: "pubsub.localhost", Node: "s1"}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "small's drift reported alone", func() bool {
		h := r.w.Health()
		return h.Drift == 1 && h.DriftDetail == "missing default pubsub.localhost s1 exec /bin/true" && h.SetErrors["big"] != ""
	})
	r.waitNodes(t, "b1", "b2", "s2")
}

// TestWatchInvalidFileHoldsItsSetOnly: an invalid file holds its own set at
// its last good hooks (even the set's valid files wait), while another
// set's change is applied; fixed, everything applies.
func TestWatchInvalidFileHoldsItsSetOnly(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "blog1.yaml"), hooksYAML("blog", "a"))
	writeFile(t, filepath.Join(dir, "blog2.yaml"), hooksYAML("blog", "b"))
	writeFile(t, filepath.Join(dir, "news.yaml"), hooksYAML("news", "n1"))
	r := startWatcher(t, []string{dir}, func(w *Watcher) { w.Partial = PartialLoader(w.Paths, false) })
	r.waitNodes(t, "a", "b", "n1")

	writeAtomic(t, filepath.Join(dir, "blog1.yaml"), hooksYAML("blog", "a", "c"))
	writeAtomic(t, filepath.Join(dir, "blog2.yaml"), strings.Replace(hooksYAML("blog", "b"), "node:", "nod:", 1))
	writeAtomic(t, filepath.Join(dir, "news.yaml"), hooksYAML("news", "n1", "n2"))
	r.waitNodes(t, "a", "b", "n1", "n2")
	waitFor(t, "blog held in health", func() bool {
		h := r.w.Health()
		return strings.Contains(h.SetErrors["blog"], "files invalid, its last good hooks stay: "+filepath.Join(dir, "blog2.yaml")+":4:5") &&
			strings.Contains(h.FilesError, "unknown field") && h.Ready
	})
	for _, h := range listAll(t, r.store) {
		if h.Node == "n2" && h.Source != filepath.Join(dir, "news.yaml")+":8" {
			t.Errorf("n2's source %q, want the file as given", h.Source)
		}
	}
	// A file broken past its set line: its set is known from the last
	// good hooks.
	writeAtomic(t, filepath.Join(dir, "news.yaml"), "vers")
	writeAtomic(t, filepath.Join(dir, "blog2.yaml"), hooksYAML("blog", "b"))
	r.waitNodes(t, "a", "b", "c", "n1", "n2")
	waitFor(t, "news held", func() bool { _, ok := r.w.Health().SetErrors["news"]; return ok })
	writeAtomic(t, filepath.Join(dir, "news.yaml"), hooksYAML("news", "n1"))
	r.waitNodes(t, "a", "b", "c", "n1")
	waitFor(t, "nothing held", func() bool { h := r.w.Health(); return h.SetErrors == nil && h.FilesError == "" })
}
