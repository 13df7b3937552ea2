package python

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"hookctl.dev/hookctl"
	"hookctl.dev/hookctl/runner"
	"hookctl.dev/hookctl/runner/runnertest"
)

// Each run starts in the worker's directory with the sys.path of the load,
// whatever the previous run did to them.
func TestRunStartsClean(t *testing.T) {
	requirePython(t)
	dir := t.TempDir()
	file := writeFile(t, filepath.Join(dir, "roam.py"), `
import os, sys
def hook(host, client, item):
    print(os.getcwd(), sys.path.count("/nowhere"))
    os.chdir("/")
    sys.path.insert(0, "/nowhere")
    sys.stdout = open(os.devnull, "w")
`)
	r := newRunner(t, Options{}, hookctl.Hook{Key: hookctl.Key{Type: hookctl.TypePythonFile, Arg: file}}, newHost())
	for _, id := range []string{"a", "b", "c"} {
		res := run(t, r, publishEvent(id))
		wantOK(t, res)
		if want := dir + " 0\n"; res.Output != want {
			t.Errorf("run %s: output %q, want %q", id, res.Output, want)
		}
	}
}

// What a hook printed before it crashed or was stopped at its deadline is
// in the run, and a timeout says which limit and where the hook was.
func TestCrashAndTimeoutKeepOutput(t *testing.T) {
	requirePython(t)
	dir := t.TempDir()
	file := writeFile(t, filepath.Join(dir, "rough.py"), `
import os, sys, time
def spin():
    while True:
        time.sleep(0.01)
def hook(host, client, item):
    print("before", item.get("id"))
    sys.stderr.write("err line\n")
    if item.get("id") == "crash":
        os._exit(3)
    spin()
`)
	r := newRunner(t, Options{}, hookctl.Hook{Key: hookctl.Key{Type: hookctl.TypePythonFile, Arg: file}}, newHost())
	res := run(t, r, publishEvent("crash"))
	if res.Outcome != runner.Failed || res.ExitCode != 3 || res.Output != "before crash\nerr line\n" {
		t.Errorf("crash: %s exit %d %v, output %q", res.Outcome, res.ExitCode, res.Err, res.Output)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 1500*time.Millisecond)
	defer cancel()
	res = r.Run(ctx, publishEvent("stuck"))
	if res.Outcome != runner.Timeout || !strings.HasPrefix(res.Output, "before stuck\nerr line\n") {
		t.Fatalf("timeout: %s %v, output %q", res.Outcome, res.Err, res.Output)
	}
	msg := res.Err.Error()
	if !strings.Contains(msg, "timed out while running: its timeout of 1.5s passed") ||
		!strings.Contains(msg, `stuck at "`+file+`", line 5 in spin`) {
		t.Errorf("timeout error %q: want the limit and where the hook was", msg)
	}
	if !strings.Contains(res.Output, "in spin") || !strings.Contains(res.Output, "in hook") {
		t.Errorf("timeout output lacks the stack dump:\n%s", res.Output)
	}
}

// What can never run is refused at load, with the reason.
func TestLoadRefusesWhatCannotRun(t *testing.T) {
	requirePython(t)
	dir := t.TempDir()
	f := NewFactory(Options{})
	for _, c := range []struct {
		typ       hookctl.Type
		arg, want string
	}{
		{hookctl.TypePythonFile, writeFile(t, filepath.Join(dir, "two.py"), "def hook(host, client):\n    pass\n"),
			"def hook(host, client) cannot be called as hook(host, client, item): too many positional arguments"},
		{hookctl.TypePythonFile, writeFile(t, filepath.Join(dir, "kw.py"), "def hook(host, client, item, *, must):\n    pass\n"),
			"cannot be called as hook(host, client, item): missing a required argument: 'must'"},
		{hookctl.TypePythonFile, writeFile(t, filepath.Join(dir, "gen.py"), "def hook(host, client, item):\n    yield 1\n"),
			"hook is a generator function"},
		{hookctl.TypePythonCode, "import hk_missing_module\nprint(1)\n", "ModuleNotFoundError: No module named 'hk_missing_module'"},
		{hookctl.TypePythonCode, "from os import no_such_name\n", "cannot import name 'no_such_name' from 'os'"},
	} {
		err := f.Check(context.Background(), hookctl.Hook{Key: hookctl.Key{Type: c.typ, Arg: c.arg}})
		if !errors.Is(err, hookctl.ErrInvalid) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Check %s %.40q = %v, want %q", c.typ, c.arg, err, c.want)
		}
	}
	// Accepted: optional imports, extra defaulted parameters, *args.
	for _, code := range []string{
		"try:\n    import hk_missing_module\nexcept ImportError:\n    pass\n",
		"import json, os.path\nfrom xml.etree import ElementTree\n",
	} {
		if err := f.Check(context.Background(), hookctl.Hook{Key: hookctl.Key{Type: hookctl.TypePythonCode, Arg: code}}); err != nil {
			t.Errorf("Check %q: %v", code, err)
		}
	}
	for _, sig := range []string{"host, client, item, extra=1", "*args", "host, *rest, **kw"} {
		file := writeFile(t, filepath.Join(dir, "ok.py"), "def hook("+sig+"):\n    pass\n")
		if err := f.Check(context.Background(), hookctl.Hook{Key: hookctl.Key{Type: hookctl.TypePythonFile, Arg: file}}); err != nil {
			t.Errorf("Check hook(%s): %v", sig, err)
		}
	}
}

// async def hook, and python_code with a top-level await, run to the end.
func TestAsyncHooksRun(t *testing.T) {
	requirePython(t)
	dir := t.TempDir()
	file := writeFile(t, filepath.Join(dir, "async.py"), `
import asyncio
async def hook(host, client, item):
    await asyncio.sleep(0.01)
    print("async done", item.get("id"))
`)
	r := newRunner(t, Options{}, hookctl.Hook{Key: hookctl.Key{Type: hookctl.TypePythonFile, Arg: file}}, newHost())
	for _, id := range []string{"a", "b"} {
		res := run(t, r, publishEvent(id))
		wantOK(t, res)
		if res.Output != "async done "+id+"\n" {
			t.Errorf("output %q", res.Output)
		}
	}
	// An exception inside the coroutine fails the run.
	file2 := writeFile(t, filepath.Join(dir, "async_fail.py"), "async def hook(host, client, item):\n    raise ValueError('inside')\n")
	r2 := newRunner(t, Options{}, hookctl.Hook{Key: hookctl.Key{Type: hookctl.TypePythonFile, Arg: file2}}, newHost())
	if res := run(t, r2, publishEvent("x")); res.Outcome != runner.Failed || !strings.Contains(res.Err.Error(), "ValueError: inside") {
		t.Errorf("failing coroutine: %s %v", res.Outcome, res.Err)
	}
	code := "import asyncio\nawait asyncio.sleep(0)\nprint('awaited', item.get('id'))\n"
	r3 := newRunner(t, Options{}, hookctl.Hook{Key: hookctl.Key{Type: hookctl.TypePythonCode, Arg: code}}, newHost())
	if res := run(t, r3, publishEvent("y")); res.Outcome != runner.OK || res.Output != "awaited y\n" {
		t.Errorf("top-level await: %s %v %q", res.Outcome, res.Err, res.Output)
	}
}

// sys.stdout and sys.stderr are text files; host.publish takes bytes.
func TestStdoutAndPublishBytes(t *testing.T) {
	requirePython(t)
	code := `
import sys, xml.etree.ElementTree as ET
print(sys.stdout.encoding, sys.stderr.encoding, sys.stdout.fileno(), sys.stderr.fileno(), sys.stdout.isatty())
sys.stdout.buffer.write(b"bytes\n")
sys.stdout.flush()
sys.stdout.write("é\n")
el = ET.Element("{urn:b}b")
el.text = "x"
host.publish("svc", "other", ET.tostring(el))
host.publish("svc", "other", ET.tostring(el, encoding="utf-8"))
host.publish("svc", "other", bytearray(b"<c xmlns='urn:c'/>"))
`
	host := newHost()
	r := newRunner(t, Options{}, hookctl.Hook{Key: hookctl.Key{Type: hookctl.TypePythonCode, Arg: code}}, host)
	res := run(t, r, publishEvent("a"))
	wantOK(t, res)
	if want := "utf-8 utf-8 1 2 False\nbytes\né\n"; res.Output != want {
		t.Errorf("output %q, want %q", res.Output, want)
	}
	var got []string
	for _, p := range host.published {
		got = append(got, p.Payload)
	}
	want := []string{`<ns0:b xmlns:ns0="urn:b">x</ns0:b>`, `<ns0:b xmlns:ns0="urn:b">x</ns0:b>`, `<c xmlns='urn:c'/>`}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("published %q, want %q", got, want)
	}
}

// An item a hook publishes on the node that triggered it does not run the
// hook again (outcome skipped, with why), unless it asked with loop=True.
func TestSelfPublishIsSkipped(t *testing.T) {
	requirePython(t)
	code := `
n = int(item.get("id").split("-")[1])
if not item.get("id").startswith("gen"):
    host.publish(client.event.service, client.event.node, "<x xmlns='urn:x'/>", item_id="gen-%d" % (n + 1), loop=item.get("id").startswith("loop"))
    host.publish(client.event.service, client.event.node, "<x xmlns='urn:x'/>")
`
	host := newHost()
	r := newRunner(t, Options{}, hookctl.Hook{Key: hookctl.Key{Type: hookctl.TypePythonCode, Arg: code}}, host)
	wantOK(t, run(t, r, publishEvent("item-0")))
	if len(host.published) != 2 || host.published[1].ItemID == "" {
		t.Fatalf("published %+v: want 2, the second with an id chosen before sending", host.published)
	}
	for _, p := range host.published {
		res := run(t, r, publishEvent(p.ItemID))
		if res.Outcome != runner.Skipped || !strings.Contains(res.Err.Error(), "published by this hook itself") {
			t.Errorf("own item %s: %s %v, want skipped", p.ItemID, res.Outcome, res.Err)
		}
	}
	// Republished by someone else later: it runs.
	wantOK(t, run(t, r, publishEvent("gen-1")))
	// loop=True: the item comes back to the hook.
	host.published = nil
	wantOK(t, run(t, r, publishEvent("loop-1")))
	if res := run(t, r, publishEvent("gen-2")); res.Outcome != runner.OK {
		t.Errorf("item published with loop=True: %s %v", res.Outcome, res.Err)
	}
}

// Processes a run started are gone when it ends, also those that left
// the worker's process group and lost their parent (setsid, double fork).
func TestRunLeavesNoProcess(t *testing.T) {
	requirePython(t)
	dir := t.TempDir()
	pids := filepath.Join(dir, "pids")
	// Arguments no other test uses: the processes are looked for in /proc,
	// where other packages' tests (harden_reaper runs "sleep 300") run too.
	secs := make([]string, 3)
	for i := range secs {
		secs[i] = fmt.Sprintf("30%d.%d", i, os.Getpid())
	}
	code := fmt.Sprintf(`
import os, subprocess
a = subprocess.Popen(["sleep", %q])
b = subprocess.Popen(["setsid", "sleep", %q])
pid = os.fork()
if pid == 0:
    os.setsid()
    if os.fork() == 0:
        os.execvp("sleep", ["sleep", %q])
    os._exit(0)
os.waitpid(pid, 0)
import time
time.sleep(0.2)
open(%q, "w").write("%%d %%d" %% (a.pid, b.pid))
`, secs[0], secs[1], secs[2], pids)
	r := newRunner(t, Options{}, hookctl.Hook{Key: hookctl.Key{Type: hookctl.TypePythonCode, Arg: code}}, newHost())
	wantOK(t, run(t, r, publishEvent("a")))
	b, err := os.ReadFile(pids)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range strings.Fields(string(b)) {
		pid, _ := strconv.Atoi(f)
		if runnertest.Alive(pid) {
			t.Errorf("process %d of the run still running", pid)
		}
	}
	// Looked for in /proc, not in the runner's bookkeeping.
	for _, arg := range secs {
		if p := runnertest.FindProcess("sleep", arg); p != 0 {
			t.Errorf("sleep %s (pid %d) outlived the run", arg, p)
		}
	}
}

// A hook's memory is bounded: allocating 4 GB fails the run clearly, and
// the next item runs.
func TestMemoryLimit(t *testing.T) {
	requirePython(t)
	code := `
if item.get("id") == "big":
    data = bytearray(4 * 1024**3)
import os
print(os.getpid())
`
	r := newRunner(t, Options{Memory: 2 << 30}, hookctl.Hook{Key: hookctl.Key{Type: hookctl.TypePythonCode, Arg: code}, Memory: "256MiB"}, newHost())
	res := run(t, r, publishEvent("big"))
	if res.Outcome != runner.Failed || !strings.Contains(res.Err.Error(), "MemoryError") ||
		!strings.Contains(res.Err.Error(), "the hook's memory limit (256 MiB) was reached") {
		t.Errorf("4 GB allocation: %s %v\n%s", res.Outcome, res.Err, res.Output)
	}
	res = run(t, r, publishEvent("next"))
	wantOK(t, res)
	// The limit is the worker's own, not the runner's bookkeeping.
	pid := pidOf(t, r)
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/limits", pid))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), "Max address space         268435456            268435456") {
		t.Errorf("worker %d limits:\n%s", pid, b)
	}
	if err := NewFactory(Options{}).Check(context.Background(), hookctl.Hook{Key: hookctl.Key{Type: hookctl.TypePythonCode, Arg: "pass"}, Memory: "1MiB"}); !errors.Is(err, hookctl.ErrInvalid) {
		t.Errorf("memory 1MiB: %v, want ErrInvalid", err)
	}
}
