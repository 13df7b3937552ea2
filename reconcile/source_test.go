package reconcile

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// gitRepo makes a git work tree in a temporary directory; run runs git in
// it.
func gitRepo(t testing.TB) (dir string, run func(args ...string)) {
	t.Helper()
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("no git")
	}
	dir = t.TempDir()
	run = func(args ...string) {
		t.Helper()
		cmd := exec.Command("git", args...)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@example.org",
			"GIT_COMMITTER_NAME=t", "GIT_COMMITTER_EMAIL=t@example.org", "GIT_CONFIG_NOSYSTEM=1", "HOME="+dir)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("git %v: %v\n%s", args, err, out)
		}
	}
	run("init", "-q", "-b", "main")
	return dir, run
}

func TestGitLoaderReadsCommitsOnly(t *testing.T) {
	ctx := context.Background()
	dir, git := gitRepo(t)
	hooks := filepath.Join(dir, "hooks")
	if err := os.MkdirAll(hooks, 0o755); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(hooks, "blog.yaml")
	writeFile(t, file, hooksYAML("blog", "a", "b"))
	git("add", ".")
	git("commit", "-q", "-m", "one")

	load := GitLoader([]string{hooks}, true, "")
	d, err := load(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(d.Hooks) != 2 || len(d.Revision) != 40 || d.Hooks[0].Source != file+":4" || !slices.Equal(d.Sets, []string{"blog"}) {
		t.Fatalf("loaded %+v", d)
	}
	// Half-written and uncommitted: not seen.
	writeFile(t, file, hooksYAML("blog", "a")[:30])
	if d2, err := load(ctx); err != nil || len(d2.Hooks) != 2 || d2.Revision != d.Revision {
		t.Fatalf("uncommitted edit seen: %+v, %v", d2, err)
	}
	// Committed: seen; an invalid commit names the file as given.
	writeFile(t, file, hooksYAML("blog", "a", "b", "c"))
	git("commit", "-q", "-am", "two")
	if d3, err := load(ctx); err != nil || len(d3.Hooks) != 3 || d3.Revision == d.Revision {
		t.Fatalf("commit not seen: %+v, %v", d3, err)
	}
	writeFile(t, file, strings.Replace(hooksYAML("blog", "a"), "node:", "nod:", 1))
	git("commit", "-q", "-am", "bad")
	if _, err := load(ctx); err == nil || !strings.Contains(err.Error(), file+":") || strings.Contains(err.Error(), "hookctl-git-") {
		t.Fatalf("invalid commit: %v", err)
	}
	// A named ref.
	if d4, err := GitLoader([]string{hooks}, true, "HEAD~2")(ctx); err != nil || d4.Revision != d.Revision {
		t.Fatalf("HEAD~2: %+v, %v", d4, err)
	}
	if src := SourceOf(ctx, []string{hooks}); !strings.HasPrefix(src, "git:") || !strings.HasSuffix(src, "//hooks") {
		t.Errorf("SourceOf = %q", src)
	}
}

// BenchmarkWatchGitCommitToRegistry measures the time from a one-line edit
// being written and committed to the registry holding it, through the
// watcher reading commits (default debounce).
func BenchmarkWatchGitCommitToRegistry(b *testing.B) {
	dir, git := gitRepo(b)
	hooks := filepath.Join(dir, "hooks")
	if err := os.MkdirAll(hooks, 0o755); err != nil {
		b.Fatal(err)
	}
	file := filepath.Join(hooks, "blog.yaml")
	writeFile(b, file, hooksYAML("blog", "edit-0"))
	git("add", ".")
	git("commit", "-q", "-m", "start")
	r := startWatcher(b, []string{hooks}, func(w *Watcher) {
		w.Debounce = DefaultDebounce
		w.Load = GitLoader([]string{hooks}, false, "")
		w.WatchDirs = GitWatchDirs(context.Background(), []string{hooks})
	})
	r.waitNodes(b, "edit-0")
	changes, cancel := r.store.Changes()
	defer cancel()
	var lat []time.Duration
	edit := 0
	for b.Loop() {
		for range 10 {
			edit++
			node := fmt.Sprintf("edit-%d", edit)
			start := time.Now()
			writeFile(b, file, hooksYAML("blog", node))
			git("commit", "-q", "-am", node)
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
