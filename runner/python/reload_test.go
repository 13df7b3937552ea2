package python

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"hookctl.dev/hookctl"
	"hookctl.dev/hookctl/runner"
)

// settled waits until files just written count as stable.
func settled() { time.Sleep(settle + 20*time.Millisecond) }

// A new version that does not load leaves the old one running, with the
// reason as the runner's problem; a version that loads replaces it.
func TestBrokenVersionKeepsOldOne(t *testing.T) {
	requirePython(t)
	dir := t.TempDir()
	file := writeFile(t, filepath.Join(dir, "h.py"), "def hook(host, client, item):\n    print('v1')\n")
	r := newRunner(t, Options{}, hookctl.Hook{Key: hookctl.Key{Type: hookctl.TypePythonFile, Arg: file}}, newHost())
	wantOK(t, run(t, r, publishEvent("a")))
	for _, broken := range []string{"def hook(host, client, item)\n", "", "raise RuntimeError('no')\n", "def hook(host):\n    pass\n"} {
		writeFile(t, file, broken)
		settled()
		res := run(t, r, publishEvent("b"))
		wantOK(t, res)
		if res.Output != "v1\n" {
			t.Errorf("with %q: output %q, want the old version's", broken, res.Output)
		}
		if p := r.(*pyRunner).Problem(); !strings.Contains(p, "previous version keeps running") {
			t.Errorf("with %q: problem %q", broken, p)
		}
	}
	writeFile(t, file, "def hook(host, client, item):\n    print('v2')\n")
	settled()
	if res := run(t, r, publishEvent("c")); res.Output != "v2\n" {
		t.Errorf("fixed: %s %q", res.Outcome, res.Output)
	}
	if p := r.(*pyRunner).Problem(); p != "" {
		t.Errorf("problem after the fix: %q", p)
	}
}

// A module the hook imports from its own directory is watched too; so is
// a python (module) hook's package.
func TestNeighbourAndModuleReload(t *testing.T) {
	requirePython(t)
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "nbhelper.py"), "V = 'nb-v1'\n")
	file := writeFile(t, filepath.Join(dir, "main.py"), "import nbhelper\ndef hook(host, client, item):\n    print('main-v1', nbhelper.V)\n")
	r := newRunner(t, Options{}, hookctl.Hook{Key: hookctl.Key{Type: hookctl.TypePythonFile, Arg: file}}, newHost())
	if res := run(t, r, publishEvent("a")); res.Output != "main-v1 nb-v1\n" {
		t.Fatalf("first: %s %v %q", res.Outcome, res.Err, res.Output)
	}
	writeFile(t, filepath.Join(dir, "nbhelper.py"), "V = 'nb-v2'\n")
	settled()
	if res := run(t, r, publishEvent("b")); res.Output != "main-v1 nb-v2\n" {
		t.Errorf("neighbour edited: %s %q", res.Outcome, res.Output)
	}

	libs := t.TempDir()
	pkg := filepath.Join(libs, "hkpkg")
	if err := os.Mkdir(pkg, 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(pkg, "__init__.py"), "")
	writeFile(t, filepath.Join(pkg, "util.py"), "V = 'util-v1'\n")
	writeFile(t, filepath.Join(pkg, "hook.py"), "from hkpkg import util\ndef hook(host, client, item):\n    print(util.V)\n")
	rm := newRunner(t, Options{PythonPath: []string{libs}}, hookctl.Hook{Key: hookctl.Key{Type: hookctl.TypePython, Arg: "hkpkg.hook"}}, newHost())
	if res := run(t, rm, publishEvent("a")); res.Output != "util-v1\n" {
		t.Fatalf("module hook: %s %v %q", res.Outcome, res.Err, res.Output)
	}
	writeFile(t, filepath.Join(pkg, "util.py"), "V = 'util-v2'\n")
	settled()
	if res := run(t, rm, publishEvent("b")); res.Output != "util-v2\n" {
		t.Errorf("module hook after editing its package: %s %q", res.Outcome, res.Output)
	}
}

// An editor saving in place (truncate, then write) every few milliseconds
// while items flow: every item runs, on a complete version.
func TestInPlaceSavesDuringBurst(t *testing.T) {
	requirePython(t)
	dir := t.TempDir()
	file := filepath.Join(dir, "edited.py")
	version := func(n int) string {
		// Long enough that a half-written file would not compile.
		return fmt.Sprintf("V = %d\n%s\ndef hook(host, client, item):\n    print('v', V)\n", n, strings.Repeat("# padding\n", 200))
	}
	writeFile(t, file, version(0))
	r := newRunner(t, Options{}, hookctl.Hook{Key: hookctl.Key{Type: hookctl.TypePythonFile, Arg: file}}, newHost())
	wantOK(t, run(t, r, publishEvent("warm")))

	ctx, stop := context.WithCancel(context.Background())
	var saves atomic.Int64
	var wg sync.WaitGroup
	wg.Go(func() {
		for n := 1; ctx.Err() == nil; n++ {
			f, err := os.OpenFile(file, os.O_WRONLY|os.O_TRUNC, 0)
			if err != nil {
				t.Error(err)
				return
			}
			text := version(n)
			// Two writes, as a buffered editor may do.
			f.WriteString(text[:len(text)/2])
			time.Sleep(time.Millisecond)
			f.WriteString(text[len(text)/2:])
			f.Close()
			saves.Add(1)
			time.Sleep(20 * time.Millisecond)
		}
	})
	bad := 0
	for i := range 200 {
		res := run(t, r, publishEvent(fmt.Sprint("i", i)))
		if res.Outcome != runner.OK {
			bad++
			t.Errorf("item %d during saves: %s %v\n%s", i, res.Outcome, res.Err, res.Output)
		}
		time.Sleep(2 * time.Millisecond)
	}
	stop()
	wg.Wait()
	settled()
	res := run(t, r, publishEvent("last"))
	wantOK(t, res)
	last := fmt.Sprintf("v %d\n", saves.Load())
	if res.Output != last {
		t.Errorf("after the saves stopped: %q, want the last version %q", res.Output, last)
	}
	t.Logf("%d saves during 200 items, %d not ok", saves.Load(), bad)
}
