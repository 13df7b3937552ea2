package spec_test

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"hookctl.dev/hookctl"
	"hookctl.dev/hookctl/spec"
)

// writeFiles creates files (path relative to dir: content) in dir; a
// content ending in "#!x" is made executable.
func writeFiles(t testing.TB, dir string, files map[string]string) {
	t.Helper()
	for name, content := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		mode := os.FileMode(0o644)
		if strings.HasPrefix(content, "#!") {
			mode = 0o755
		}
		if err := os.WriteFile(p, []byte(content), mode); err != nil {
			t.Fatal(err)
		}
	}
}

// errLines returns the diagnostics of err, one per element; it fails the
// test if err is not a Diagnostics wrapping ErrInvalid.
func errLines(t testing.TB, set *spec.Set, err error) []string {
	t.Helper()
	if err == nil {
		t.Fatalf("no error; hooks %v", set.Hooks)
	}
	if set != nil {
		t.Errorf("a set returned with an error")
	}
	var ds spec.Diagnostics
	if !errors.As(err, &ds) || !errors.Is(err, hookctl.ErrInvalid) {
		t.Fatalf("error %T %v is not Diagnostics wrapping ErrInvalid", err, err)
	}
	return strings.Split(err.Error(), "\n")
}

func TestExample(t *testing.T) {
	set, err := spec.Load([]string{"../examples/hooks.yaml"}, spec.DefaultOptions())
	if err != nil {
		t.Fatal(err)
	}
	src := "../examples/hooks.yaml:"
	want := []hookctl.Hook{{
		Key:        hookctl.Key{Profile: "default", Service: "pubsub.localhost", Node: "blog", Type: hookctl.TypeExec, Arg: "hooks/notify.sh"},
		Args:       []string{"--verbose"},
		Env:        map[string]string{"NOTIFY_CHANNEL": "blog"},
		Persistent: true, Owner: "blog", Name: "notify", Source: src + "29",
		Events: []hookctl.EventKind{"publish", "retract", "purge", "delete"},
		Filter: "event.kind in [\"publish\", \"retract\"]\n  && not event.catchup\n",
	}, {
		Key:        hookctl.Key{Profile: "default", Service: "pubsub.localhost", Node: "blog", Type: hookctl.TypeExpr, Arg: `log("got " + event.item_id)`},
		Persistent: false, Owner: "blog", Name: "log-items", Catchup: hookctl.CatchupNone, Source: src + "44",
	}, {
		Key:        hookctl.Key{Profile: "default", Service: "pubsub.localhost", Node: "blog", Type: hookctl.TypeHTTP, Arg: "http://127.0.0.1:8080/hook"},
		Headers:    map[string]string{"Authorization": "Bearer ${HOOK_TOKEN}"},
		Persistent: true, Owner: "blog", Name: "webhook", Source: src + "56",
		Timeout: hookctl.Duration(10 * time.Second), Concurrency: 4,
	}, {
		Key:        hookctl.Key{Profile: "default", Service: "pubsub.localhost", Node: "blog", Type: hookctl.TypePythonFile, Arg: "hooks/rebuild.py"},
		Persistent: true, Owner: "blog", Name: "rebuild", Source: src + "15",
		Events:  []hookctl.EventKind{"publish"},
		Filter:  `event.kind == "publish" && item.id startsWith "post-"`,
		Timeout: hookctl.Duration(30 * time.Second), Concurrency: 1,
	}}
	if diff := cmp.Diff(want, set.Hooks); diff != "" {
		t.Errorf("hooks (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"blog"}, set.Sets); diff != "" {
		t.Errorf("sets (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"../examples/hooks.yaml"}, set.Files); diff != "" {
		t.Errorf("files (-want +got):\n%s", diff)
	}
}

func TestDefaults(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{
		"hooks.yaml": "version: 1\nhooks:\n  - node: n\n    service: PubSub.Example.ORG\n    arg: s.py\n  - node: m\n    service: \"\"\n    arg: s.py\n    catchup: new\n",
		"s.py":       "def hook(host, client, item): pass\n",
	})
	name := filepath.Join(dir, "hooks.yaml")
	set, err := spec.Load([]string{name}, spec.DefaultOptions())
	if err != nil {
		t.Fatal(err)
	}
	script := "s.py" // relative to the files' root: the same wherever checked out
	want := []hookctl.Hook{{
		Key:        hookctl.Key{Profile: "default", Node: "m", Type: hookctl.TypePythonFile, Arg: script},
		Persistent: true, Owner: "default", Source: name + ":6",
	}, {
		Key:        hookctl.Key{Profile: "default", Service: "pubsub.example.org", Node: "n", Type: hookctl.TypePythonFile, Arg: script},
		Persistent: true, Owner: "default", Source: name + ":3",
	}}
	if diff := cmp.Diff(want, set.Hooks); diff != "" {
		t.Errorf("hooks (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"default"}, set.Sets); diff != "" {
		t.Errorf("sets (-want +got):\n%s", diff)
	}
}

// TestPaths checks that relative paths resolve against the file's own
// directory (not the working directory) and are stored relative to the
// root given (-f), that ~ expands and absolute paths stay, and that a path
// leaving the root is refused.
func TestPaths(t *testing.T) {
	dir := t.TempDir()
	home := filepath.Join(dir, "home")
	t.Setenv("HOME", home)
	writeFiles(t, dir, map[string]string{
		"conf/hooks/a.yaml": "version: 1\nhooks:\n  - {node: a, arg: ../scripts/x.py}\n  - {node: b, arg: ~/h.py}\n  - {node: c, type: exec, arg: run.sh, args: [-v]}\n  - {node: d, arg: " + filepath.Join(dir, "conf/scripts/x.py") + "}\n",
		"conf/hooks/run.sh": "#!/bin/sh\n",
		"conf/scripts/x.py": "def hook(host, client, item): pass\n",
		"home/h.py":         "def hook(host, client, item): pass\n",
		"other/hooks/x.py":  "not this one\n",
	})
	t.Chdir(filepath.Join(dir, "other"))
	set, err := spec.Load([]string{"../conf"}, spec.Options{Recursive: true, CheckPaths: true})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, h := range set.Hooks {
		got = append(got, h.Node+" "+h.Arg)
	}
	want := []string{
		"a scripts/x.py",
		"b " + filepath.Join(home, "h.py"),
		"c hooks/run.sh",
		"d " + filepath.Join(dir, "conf/scripts/x.py"),
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("args (-want +got):\n%s", diff)
	}
	// The file alone: its directory is the root, and ../scripts leaves it.
	_, err = spec.Load([]string{"../conf/hooks/a.yaml"}, spec.DefaultOptions())
	if err == nil || !strings.Contains(err.Error(), `hooks[0].arg: "../scripts/x.py" is outside the hooks root`) {
		t.Errorf("Load(file) = %v, want the path refused as outside the root", err)
	}
}

// TestArgsByType checks that only path types are resolved: a module name,
// Python source, an expression or a URL is kept as written.
func TestArgsByType(t *testing.T) {
	src := `version: 1
hooks:
  - {node: a, type: python, arg: pkg.mod_1}
  - {node: b, type: python_code, arg: "print(item)"}
  - {node: c, type: expr, arg: 'event.kind == "publish"'}
  - {node: d, type: http, arg: "https://127.0.0.1:8443/x?y=1"}
`
	set, err := spec.Parse(filepath.Join(t.TempDir(), "h.yaml"), []byte(src), spec.DefaultOptions())
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, h := range set.Hooks {
		got = append(got, string(h.Type)+" "+h.Arg)
	}
	want := []string{"python pkg.mod_1", "python_code print(item)", `expr event.kind == "publish"`, "http https://127.0.0.1:8443/x?y=1"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("args (-want +got):\n%s", diff)
	}
}

func TestCheckPathsOff(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{"h.yaml": "version: 1\nhooks:\n  - {node: a, arg: missing.py}\n  - {node: b, type: exec, arg: nope}\n"})
	set, err := spec.Load([]string{filepath.Join(dir, "h.yaml")}, spec.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := set.Hooks[1].Arg, "nope"; got != want {
		t.Errorf("arg = %q, want %q", got, want)
	}
	// The same file with paths checked fails, so the option is what made
	// the difference.
	_, err = spec.Load([]string{filepath.Join(dir, "h.yaml")}, spec.DefaultOptions())
	if got := len(errLines(t, nil, err)); got != 2 {
		t.Errorf("%d diagnostics with CheckPaths, want 2: %v", got, err)
	}
}

func TestDirectory(t *testing.T) {
	dir := t.TempDir()
	hook := func(node string) string {
		return "version: 1\nset: s\nhooks:\n  - {node: " + node + ", type: expr, arg: 'true'}\n"
	}
	writeFiles(t, dir, map[string]string{
		"b.yaml":         hook("b"),
		"a.yml":          hook("a"),
		".hidden.yaml":   hook("hidden"),
		"notes.txt":      "not yaml",
		"sub/c.yaml":     hook("c"),
		".git/x.yaml":    hook("git"),
		"sub/.h/d.yaml":  hook("d"),
		"sub/deep/e.yml": hook("e"),
	})
	t.Chdir(dir)
	for _, tc := range []struct {
		name      string
		paths     []string
		recursive bool
		want      []string
	}{
		{"flat", []string{"."}, false, []string{"a.yml", "b.yaml"}},
		{"recursive", []string{"."}, true, []string{"a.yml", "b.yaml", "sub/c.yaml", "sub/deep/e.yml"}},
		{"explicit files are read whatever their name", []string{".hidden.yaml", "./sub/../a.yml"}, false, []string{".hidden.yaml", "a.yml"}},
		{"a file named twice is read once", []string{"a.yml", ".", "a.yml", filepath.Join(dir, "b.yaml")}, false, []string{"a.yml", "b.yaml"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			set, err := spec.Load(tc.paths, spec.Options{Recursive: tc.recursive})
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, set.Files); diff != "" {
				t.Errorf("files (-want +got):\n%s", diff)
			}
			if len(set.Hooks) != len(tc.want) {
				t.Errorf("%d hooks, want %d", len(set.Hooks), len(tc.want))
			}
		})
	}
}

// TestConfigMapVolume reads a directory laid out as Kubernetes mounts a
// ConfigMap: visible symlinks into a hidden "..data" directory.
func TestConfigMapVolume(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{
		"..2024_01_01/hooks.yaml": "version: 1\nset: k8s\nhooks:\n  - {node: n, type: http, arg: 'http://127.0.0.1:8080/'}\n",
	})
	for _, l := range [][2]string{{"..2024_01_01", "..data"}, {"..data/hooks.yaml", "hooks.yaml"}} {
		if err := os.Symlink(l[0], filepath.Join(dir, l[1])); err != nil {
			t.Fatal(err)
		}
	}
	for _, recursive := range []bool{false, true} {
		set, err := spec.Load([]string{dir}, spec.Options{Recursive: recursive})
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff([]string{filepath.Join(dir, "hooks.yaml")}, set.Files); diff != "" {
			t.Errorf("recursive=%v: files (-want +got):\n%s", recursive, diff)
		}
		if len(set.Hooks) != 1 || set.Hooks[0].Owner != "k8s" {
			t.Errorf("recursive=%v: hooks %v", recursive, set.Hooks)
		}
	}
}

// TestSymlinkDirs follows symlinked directories with -R, once, even when
// they loop.
func TestSymlinkDirs(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{
		"real/a.yaml": "version: 1\nhooks:\n  - {node: a, type: expr, arg: 'true'}\n",
	})
	if err := os.Symlink("real", filepath.Join(dir, "link")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("..", filepath.Join(dir, "real", "loop")); err != nil {
		t.Fatal(err)
	}
	t.Chdir(dir)
	// (link/loop leads outside the tree read: only with the opt-in.)
	set, err := spec.Load([]string{"link"}, spec.Options{Recursive: true, FollowExternalSymlinks: true})
	if err != nil {
		t.Fatal(err)
	}
	// link/a.yaml, then link/loop (= dir) holds link (visited) and real
	// (visited, by its real path): each file once.
	if diff := cmp.Diff([]string{"link/a.yaml"}, set.Files); diff != "" {
		t.Errorf("files (-want +got):\n%s", diff)
	}
}

func TestPathProblems(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{
		"empty/notes.txt":   "",
		"nested/sub/a.yaml": "version: 1\n",
	})
	if err := os.Symlink("gone.yaml", filepath.Join(dir, "nested", "broken.yaml")); err != nil {
		t.Fatal(err)
	}
	t.Chdir(dir)
	_, err := spec.Load([]string{"missing.yaml", "empty", "nested"}, spec.DefaultOptions())
	want := []string{
		"empty: no hooks files (*.yaml, *.yml) in directory",
		"missing.yaml: no such file or directory",
		"nested: no hooks files (*.yaml, *.yml) in directory (use -R for subdirectories)",
		"nested/broken.yaml: no such file or directory",
	}
	if diff := cmp.Diff(want, errLines(t, nil, err)); diff != "" {
		t.Errorf("diagnostics (-want +got):\n%s", diff)
	}
	_, err = spec.Load(nil, spec.DefaultOptions())
	if diff := cmp.Diff([]string{"no hooks files given"}, errLines(t, nil, err)); diff != "" {
		t.Errorf("diagnostics (-want +got):\n%s", diff)
	}
}

func TestAcrossFiles(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{
		"a.yaml":  "version: 1\nset: blog\nhooks:\n  - node: n\n    type: expr\n    arg: 'true'\n",
		"b.yaml":  "version: 1\nset: blog\nhooks:\n  - node: m\n    type: expr\n    arg: 'true'\n",
		"c.yaml":  "version: 1\nset: other\nhooks:\n",
		"dup.yml": "version: 1\nset: other\nhooks:\n  - {node: x, type: expr, arg: 'true'}\n  - {node: n, type: expr, arg: 'true'}\n",
	})
	t.Chdir(dir)
	// A set may span files; a file without hooks still declares its set.
	set, err := spec.Load([]string{"a.yaml", "b.yaml", "c.yaml"}, spec.DefaultOptions())
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"blog", "other"}, set.Sets); diff != "" {
		t.Errorf("sets (-want +got):\n%s", diff)
	}
	if got := []string{set.Hooks[0].Node, set.Hooks[1].Node}; got[0] != "m" || got[1] != "n" {
		t.Errorf("hooks not in key order: %v", got)
	}
	// The same key in two files, even of different sets, is an error
	// naming both places; other files' problems are reported with it.
	writeFiles(t, dir, map[string]string{"c.yaml": "version: 1\nset: other\nhooks:\n  - {node: q, arg: none.py}\n"})
	_, err = spec.Load([]string{"."}, spec.DefaultOptions())
	want := []string{
		"c.yaml:4:20: hooks[0].arg: " + filepath.Join(dir, "none.py") + " is not a file (no such file or directory)",
		"dup.yml:5:5: hooks[1]: duplicate hook: same profile, service, node, type and arg as hooks[0] at a.yaml:4",
	}
	if diff := cmp.Diff(want, errLines(t, nil, err)); diff != "" {
		t.Errorf("diagnostics (-want +got):\n%s", diff)
	}
}

func TestTooLarge(t *testing.T) {
	dir := t.TempDir()
	// Exactly the limit is read: a valid file padded with a comment.
	head := "version: 1\nset: big\n#"
	ok := head + strings.Repeat("x", spec.MaxFileSize-len(head)-1) + "\n"
	writeFiles(t, dir, map[string]string{"ok.yaml": ok, "big.yaml": ok + "\n"})
	set, err := spec.Load([]string{filepath.Join(dir, "ok.yaml")}, spec.DefaultOptions())
	if err != nil {
		t.Fatal(err)
	}
	if set.Sets[0] != "big" {
		t.Errorf("sets = %v", set.Sets)
	}
	_, err = spec.Load([]string{filepath.Join(dir, "big.yaml")}, spec.DefaultOptions())
	want := []string{filepath.Join(dir, "big.yaml") + ": file is larger than 4 MiB (4194305 bytes)"}
	if diff := cmp.Diff(want, errLines(t, nil, err)); diff != "" {
		t.Errorf("Load diagnostics (-want +got):\n%s", diff)
	}
	_, err = spec.Parse("big.yaml", []byte(ok+"\n"), spec.DefaultOptions())
	want = []string{"big.yaml: file is larger than 4 MiB (4194305 bytes)"}
	if diff := cmp.Diff(want, errLines(t, nil, err)); diff != "" {
		t.Errorf("Parse diagnostics (-want +got):\n%s", diff)
	}
}

func TestDiagnosticString(t *testing.T) {
	for _, tc := range []struct {
		d    spec.Diagnostic
		want string
	}{
		{spec.Diagnostic{File: "h.yaml", Line: 3, Column: 5, Path: "hooks[0].node", Message: "is required"}, "h.yaml:3:5: hooks[0].node: is required"},
		{spec.Diagnostic{File: "h.yaml", Line: 3, Message: "syntax"}, "h.yaml:3: syntax"},
		{spec.Diagnostic{File: "h.yaml", Message: "too big"}, "h.yaml: too big"},
		{spec.Diagnostic{Message: "no hooks files given"}, "no hooks files given"},
	} {
		if got := tc.d.String(); got != tc.want {
			t.Errorf("String() = %q, want %q", got, tc.want)
		}
	}
	ds := spec.Diagnostics{
		{File: "b.yaml", Line: 1, Column: 1, Message: "x"},
		{File: "a.yaml", Line: 10, Column: 1, Message: "y"},
		{File: "a.yaml", Line: 2, Column: 7, Message: "z"},
		{File: "a.yaml", Line: 2, Column: 3, Message: "w"},
	}
	want := "a.yaml:2:3: w\na.yaml:2:7: z\na.yaml:10:1: y\nb.yaml:1:1: x"
	if got := ds.Error(); got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
	if ds[0].File != "b.yaml" {
		t.Errorf("Error() reordered its receiver")
	}
}

// TestManyFilters has enough filters to be compiled in parallel: every
// failing one is reported at its place, and only the valid hooks would load.
func TestManyFilters(t *testing.T) {
	var sb strings.Builder
	sb.WriteString("version: 1\nhooks:\n")
	var want []string
	for i := range 100 {
		f := fmt.Sprintf(`item.id == "%d"`, i)
		if i%33 == 7 {
			f = fmt.Sprintf(`item.idd == "%d"`, i)
			// Each hook takes 4 lines from line 3; the filter is its 4th,
			// and "idd" starts at column 18.
			want = append(want, fmt.Sprintf("h.yaml:%d:18: hooks[%d].filter: type filter.ItemEnv has no field idd", 3+4*i+3, i))
		}
		fmt.Fprintf(&sb, "  - node: n%d\n    type: expr\n    arg: 'true'\n    filter: %s\n", i, f)
	}
	_, err := spec.Parse("h.yaml", []byte(sb.String()), spec.DefaultOptions())
	if diff := cmp.Diff(want, errLines(t, nil, err)); diff != "" {
		t.Errorf("diagnostics (-want +got):\n%s", diff)
	}
	valid := strings.ReplaceAll(sb.String(), "item.idd", "item.id")
	set, err := spec.Parse("h.yaml", []byte(valid), spec.DefaultOptions())
	if err != nil {
		t.Fatal(err)
	}
	if len(set.Hooks) != 100 || set.Hooks[0].Filter != `item.id == "0"` {
		t.Errorf("%d hooks, first filter %q", len(set.Hooks), set.Hooks[0].Filter)
	}
}

// TestSymlinkOutsideTheTree: a symlink in a hooks directory leading to a
// file outside it (a token) is refused, and its content never appears in
// a message; inside the tree (ConfigMap ..data links) links are read.
func TestSymlinkOutsideTheTree(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{
		"secret/token":      "s3cr3t-token-value\n",
		"hooks/a.yaml":      "version: 1\nhooks:\n  - {node: a, type: expr, arg: 'true'}\n",
		"hooks/..v1/b.yaml": "version: 1\nhooks:\n  - {node: b, type: expr, arg: 'true'}\n",
	})
	os.Symlink("..v1/b.yaml", filepath.Join(dir, "hooks", "b.yaml"))
	os.Symlink("../secret/token", filepath.Join(dir, "hooks", "token.yaml"))
	_, err := spec.Load([]string{filepath.Join(dir, "hooks")}, spec.DefaultOptions())
	if err == nil || !strings.Contains(err.Error(), "token.yaml: symlink leads outside the hooks tree") {
		t.Fatalf("Load = %v, want the outside link refused", err)
	}
	// With the opt-in it is read, and still its value is not echoed.
	_, err = spec.Load([]string{filepath.Join(dir, "hooks")}, spec.Options{FollowExternalSymlinks: true})
	if err == nil || strings.Contains(err.Error(), "s3cr3t") || !strings.Contains(err.Error(), "must be a mapping (got a string)") {
		t.Fatalf("Load(follow) = %v, want a refusal without the file's content", err)
	}
	os.Remove(filepath.Join(dir, "hooks", "token.yaml"))
	set, err := spec.Load([]string{filepath.Join(dir, "hooks")}, spec.DefaultOptions())
	if err != nil || len(set.Hooks) != 2 {
		t.Fatalf("Load = %v, %v; want both hooks (a link inside the tree is read)", set, err)
	}
}
