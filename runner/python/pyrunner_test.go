package python

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"hookctl.dev/hookctl"
	"hookctl.dev/hookctl/runner"
	"hookctl.dev/hookctl/runner/runnertest"
)

// fakeHost records publishes and collects host.log lines. It stands in for
// the backend, whose session is tested elsewhere.
type fakeHost struct {
	mu        sync.Mutex
	published []publishCall
	err       error
	logBuf    *runnertest.SyncBuffer
	logger    *slog.Logger
}

type publishCall struct{ Profile, Service, Node, ItemID, Payload string }

func newHost() *fakeHost {
	buf := &runnertest.SyncBuffer{}
	return &fakeHost{logBuf: buf, logger: slog.New(slog.NewTextHandler(buf, &slog.HandlerOptions{Level: slog.LevelDebug}))}
}

func (h *fakeHost) Publish(ctx context.Context, profile, service, node, itemID, payload string) (string, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.err != nil {
		return "", h.err
	}
	h.published = append(h.published, publishCall{profile, service, node, itemID, payload})
	if itemID == "" {
		itemID = fmt.Sprintf("gen-%d", len(h.published))
	}
	return itemID, nil
}

func (h *fakeHost) Logger() *slog.Logger { return h.logger }

func requirePython(tb testing.TB) {
	tb.Helper()
	if _, err := exec.LookPath("python3"); err != nil {
		tb.Skip("python3 not installed")
	}
}

func writeFile(tb testing.TB, path, text string) string {
	tb.Helper()
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		tb.Fatal(err)
	}
	return path
}

const (
	nsEvent = "http://jabber.org/protocol/pubsub#event"
	nsAtom  = "http://www.w3.org/2005/Atom"
)

func publishEvent(id string) hookctl.Event {
	return hookctl.Event{
		Profile:   "default",
		Service:   "pubsub.example.org",
		Node:      "urn:xmpp:microblog:0",
		Kind:      hookctl.EventPublish,
		ItemID:    id,
		Publisher: "alice@example.org",
		ItemXML:   `<item xmlns="` + nsEvent + `" id="` + id + `"><entry xmlns="` + nsAtom + `"><title>Hi ` + id + `</title></entry></item>`,
		Received:  time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC),
	}
}

// newRunner makes a runner for h and closes it at the end of the test.
func newRunner(tb testing.TB, opts Options, h hookctl.Hook, host runner.Host) runner.Runner {
	tb.Helper()
	if h.Profile == "" {
		h.Profile = "default"
	}
	r, err := NewFactory(opts).New(h, host)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { r.Close() })
	return r
}

func run(tb testing.TB, r runner.Runner, ev hookctl.Event) runner.Result {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	return r.Run(ctx, ev)
}

func wantOK(tb testing.TB, res runner.Result) {
	tb.Helper()
	if res.Outcome != runner.OK {
		tb.Fatalf("outcome %s, err %v, output:\n%s", res.Outcome, res.Err, res.Output)
	}
}

// seeBody is a hook body that prints, as JSON, what the hook sees.
const seeBody = `
    import json
    print(json.dumps({
        "tag": item.tag,
        "id": item.get("id"),
        "title": item.findtext("{http://www.w3.org/2005/Atom}entry/{http://www.w3.org/2005/Atom}title"),
        "node_attr": item.get("node"),
        "profile": client.profile,
        "jid": client.jid,
        "service": client.event.service,
        "node": client.event.node,
        "kind": client.event.kind,
        "item_id": client.event.item_id,
        "publisher": client.event.publisher,
        "received": client.event.received,
        "cwd": os.getcwd(),
        "host": type(host).__name__,
    }))
`

type seen struct {
	Tag       string  `json:"tag"`
	ID        *string `json:"id"`
	Title     *string `json:"title"`
	NodeAttr  *string `json:"node_attr"`
	Profile   string  `json:"profile"`
	JID       string  `json:"jid"`
	Service   string  `json:"service"`
	Node      string  `json:"node"`
	Kind      string  `json:"kind"`
	ItemID    string  `json:"item_id"`
	Publisher string  `json:"publisher"`
	Received  string  `json:"received"`
	Cwd       string  `json:"cwd"`
	Host      string  `json:"host"`
}

func parseSeen(tb testing.TB, out string) seen {
	tb.Helper()
	var s seen
	if err := json.Unmarshal([]byte(strings.TrimSpace(out)), &s); err != nil {
		tb.Fatalf("output %q: %v", out, err)
	}
	return s
}

func ptr(s string) *string { return &s }

func TestTypesSeeItemAndClient(t *testing.T) {
	requirePython(t)
	dir := t.TempDir()
	modDir := filepath.Join(dir, "mods")
	os.Mkdir(modDir, 0o755)
	fn := "import os\n\ndef hook(host, client, item):" + seeBody
	writeFile(t, filepath.Join(modDir, "seemod.py"), fn)
	file := writeFile(t, filepath.Join(dir, "see.py"), fn)
	code := "import os\nif True:" + seeBody
	work := t.TempDir()
	opts := Options{PythonPath: []string{modDir}, WorkDir: work, ProfileJID: func(p string) string { return p + "@example.org" }}

	for _, tc := range []struct {
		typ     hookctl.Type
		arg     string
		wantCwd string
	}{
		{hookctl.TypePythonFile, file, dir},
		{hookctl.TypePython, "seemod", work},
		{hookctl.TypePythonCode, code, work},
	} {
		t.Run(string(tc.typ), func(t *testing.T) {
			h := hookctl.Hook{Key: hookctl.Key{Type: tc.typ, Arg: tc.arg}}
			if err := NewFactory(opts).Check(context.Background(), h); err != nil {
				t.Fatalf("Check: %v", err)
			}
			r := newRunner(t, opts, h, newHost())
			res := run(t, r, publishEvent("post-1"))
			wantOK(t, res)
			want := seen{
				Tag: "{" + nsEvent + "}item", ID: ptr("post-1"), Title: ptr("Hi post-1"),
				Profile: "default", JID: "default@example.org",
				Service: "pubsub.example.org", Node: "urn:xmpp:microblog:0", Kind: "publish",
				ItemID: "post-1", Publisher: "alice@example.org", Received: "2025-01-02T03:04:05Z",
				Cwd: tc.wantCwd, Host: "Host",
			}
			if diff := cmp.Diff(want, parseSeen(t, res.Output)); diff != "" {
				t.Errorf("what the hook saw (-want +got):\n%s", diff)
			}

			ev := publishEvent("post-1")
			ev.Kind = hookctl.EventRetract
			ev.ItemXML = `<retract xmlns="` + nsEvent + `" id="post-1"/>`
			res = run(t, r, ev)
			wantOK(t, res)
			got := parseSeen(t, res.Output)
			if got.Tag != "{"+nsEvent+"}retract" || got.ID == nil || *got.ID != "post-1" || got.Kind != "retract" {
				t.Errorf("retract seen as %+v", got)
			}

			ev = hookctl.Event{Profile: "default", Service: "pubsub.example.org", Node: "n1", Kind: hookctl.EventPurge}
			res = run(t, r, ev)
			wantOK(t, res)
			got = parseSeen(t, res.Output)
			if got.Tag != "{"+nsEvent+"}purge" || got.NodeAttr == nil || *got.NodeAttr != "n1" || got.ID != nil || got.Received != "" {
				t.Errorf("purge seen as %+v", got)
			}
		})
	}
}

func TestHostLogAndPublish(t *testing.T) {
	requirePython(t)
	dir := t.TempDir()
	file := writeFile(t, filepath.Join(dir, "pub.py"), `
import xml.etree.ElementTree as ET

def hook(host, client, item):
    host.log("seen", item.get("id"), level="warning")
    el = ET.Element("{urn:example}note")
    el.text = "copy of " + item.get("id")
    got = host.publish("pubsub.example.org", "copies", el)
    host.log("published as", got)
    got2 = host.publish(None, "copies", "<x xmlns='urn:x'/>", item_id="fixed")
    print("second", got2)
`)
	host := newHost()
	r := newRunner(t, Options{}, hookctl.Hook{Key: hookctl.Key{Type: hookctl.TypePythonFile, Arg: file}}, host)
	res := run(t, r, publishEvent("p7"))
	wantOK(t, res)
	if want := "seen p7\npublished as gen-1\nsecond fixed\n"; res.Output != want {
		t.Errorf("output %q, want %q", res.Output, want)
	}
	want := []publishCall{
		{"default", "pubsub.example.org", "copies", "", `<ns0:note xmlns:ns0="urn:example">copy of p7</ns0:note>`},
		{"default", "", "copies", "fixed", `<x xmlns='urn:x'/>`},
	}
	if diff := cmp.Diff(want, host.published); diff != "" {
		t.Errorf("publishes (-want +got):\n%s", diff)
	}
	if logs := host.logBuf.String(); !strings.Contains(logs, "level=WARN msg=\"seen p7\" hook=\"default (pep)  python_file") ||
		!strings.Contains(logs, `msg="published as gen-1"`) || !strings.Contains(logs, "node=urn:xmpp:microblog:0 item_id=p7") {
		t.Errorf("backend log lacks the hook's lines:\n%s", logs)
	}

	// A refused publish raises RuntimeError in the hook.
	host.err = errors.New("forbidden by the service")
	res = run(t, r, publishEvent("p8"))
	if res.Outcome != runner.Failed || !strings.Contains(res.Output, "RuntimeError: publish to pubsub.example.org copies: forbidden by the service") {
		t.Errorf("refused publish: %s %v\n%s", res.Outcome, res.Err, res.Output)
	}
}

func TestReloadOnEdit(t *testing.T) {
	requirePython(t)
	dir := t.TempDir()
	file := writeFile(t, filepath.Join(dir, "h.py"), "count = 0\ndef hook(host, client, item):\n    global count\n    count += 1\n    print('v1', count)\n")
	r := newRunner(t, Options{}, hookctl.Hook{Key: hookctl.Key{Type: hookctl.TypePythonFile, Arg: file}}, newHost())
	for i, want := range []string{"v1 1\n", "v1 2\n"} { // loaded once: state survives
		if res := run(t, r, publishEvent("a")); res.Output != want {
			t.Fatalf("run %d: %s %q, want %q", i, res.Outcome, res.Output, want)
		}
	}
	writeFile(t, file, "def hook(host, client, item):\n    print('v2 edited')\n")
	time.Sleep(settle + 10*time.Millisecond) // a change is loaded once stable
	res := run(t, r, publishEvent("b"))
	wantOK(t, res)
	if res.Output != "v2 edited\n" {
		t.Errorf("after edit: %q", res.Output)
	}
	// Replaced by rename, as editors do.
	tmp := writeFile(t, filepath.Join(dir, "h.py.new"), "def hook(host, client, item):\n    print('v3 renamed')\n")
	if err := os.Rename(tmp, file); err != nil {
		t.Fatal(err)
	}
	time.Sleep(settle + 10*time.Millisecond)
	if res := run(t, r, publishEvent("c")); res.Output != "v3 renamed\n" {
		t.Errorf("after rename: %s %q", res.Outcome, res.Output)
	}
}

func TestExceptionThenOK(t *testing.T) {
	requirePython(t)
	dir := t.TempDir()
	file := writeFile(t, filepath.Join(dir, "boom.py"), `
def helper(n):
    return 1 / n

def hook(host, client, item):
    print("before")
    if item.get("id") == "bad":
        helper(0)
    print("fine")
`)
	r := newRunner(t, Options{}, hookctl.Hook{Key: hookctl.Key{Type: hookctl.TypePythonFile, Arg: file}}, newHost())
	res := run(t, r, publishEvent("bad"))
	if res.Outcome != runner.Failed || res.Err == nil || res.Err.Error() != "hook raised ZeroDivisionError: division by zero" {
		t.Fatalf("got %s %v", res.Outcome, res.Err)
	}
	for _, want := range []string{"before\nTraceback (most recent call last):\n", `File "` + file + `", line 8, in hook`, "in helper", "ZeroDivisionError: division by zero"} {
		if !strings.Contains(res.Output, want) {
			t.Errorf("output lacks %q:\n%s", want, res.Output)
		}
	}
	if strings.Contains(res.Output, "hookctl-shim") || strings.Contains(res.Output, "<stdin>") {
		t.Errorf("traceback shows the shim:\n%s", res.Output)
	}
	res = run(t, r, publishEvent("good"))
	wantOK(t, res)
	if res.Output != "before\nfine\n" {
		t.Errorf("next run output %q", res.Output)
	}
}

func TestWorkerDeathRestarts(t *testing.T) {
	requirePython(t)
	dir := t.TempDir()
	file := writeFile(t, filepath.Join(dir, "die.py"), `
import os, sys
def hook(host, client, item):
    if item.get("id") == "die":
        os.write(2, b"last words\n")
        os._exit(3)
    print("alive", os.getpid())
`)
	r := newRunner(t, Options{}, hookctl.Hook{Key: hookctl.Key{Type: hookctl.TypePythonFile, Arg: file}}, newHost())
	wantOK(t, run(t, r, publishEvent("x")))
	res := run(t, r, publishEvent("die"))
	if res.Outcome != runner.Failed || res.ExitCode != 3 || res.Err == nil || !strings.Contains(res.Err.Error(), "exit status 3") {
		t.Fatalf("got %s exit %d %v", res.Outcome, res.ExitCode, res.Err)
	}
	if !strings.Contains(res.Output, "last words") {
		t.Errorf("output %q lacks the worker's stderr", res.Output)
	}
	for range 2 { // restarted after each death; the second restart waits 100ms
		wantOK(t, run(t, r, publishEvent("x")))
		if res := run(t, r, publishEvent("die")); res.Outcome != runner.Failed {
			t.Fatalf("got %s", res.Outcome)
		}
	}
	wantOK(t, run(t, r, publishEvent("x")))
}

func TestBackoff(t *testing.T) {
	want := []time.Duration{0, 0, 100 * time.Millisecond, 200 * time.Millisecond, 400 * time.Millisecond, 800 * time.Millisecond,
		1600 * time.Millisecond, 3200 * time.Millisecond, 5 * time.Second, 5 * time.Second, 5 * time.Second}
	for n, w := range want {
		if got := backoff(n); got != w {
			t.Errorf("backoff(%d) = %v, want %v", n, got, w)
		}
	}
	if got := backoff(1000); got != 5*time.Second {
		t.Errorf("backoff(1000) = %v", got)
	}
}

func TestTimeoutKillsAndRestarts(t *testing.T) {
	requirePython(t)
	dir := t.TempDir()
	pidFile := filepath.Join(dir, "child.pid")
	file := writeFile(t, filepath.Join(dir, "slow.py"), `
import subprocess, time
def hook(host, client, item):
    if item.get("id") == "slow":
        p = subprocess.Popen(["sleep", "60"])
        open(`+strconv.Quote(pidFile)+`, "w").write(str(p.pid))
        time.sleep(60)
    print("quick")
`)
	r := newRunner(t, Options{}, hookctl.Hook{Key: hookctl.Key{Type: hookctl.TypePythonFile, Arg: file}}, newHost())
	wantOK(t, run(t, r, publishEvent("warm-up"))) // so that the deadline is not spent starting Python
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	res := r.Run(ctx, publishEvent("slow"))
	cancel()
	if res.Outcome != runner.Timeout || !errors.Is(res.Err, context.DeadlineExceeded) {
		t.Fatalf("got %s %v", res.Outcome, res.Err)
	}
	b, err := os.ReadFile(pidFile)
	if err != nil {
		t.Fatal(err)
	}
	child, _ := strconv.Atoi(string(b))
	waitGone(t, child) // the hook's child went with the process group
	res = run(t, r, publishEvent("next"))
	wantOK(t, res)
	if res.Output != "quick\n" {
		t.Errorf("output %q", res.Output)
	}
}

func TestOutputDoesNotBreakProtocol(t *testing.T) {
	requirePython(t)
	code := `
import sys, os
print("to stdout", item.get("id"))
sys.stderr.write("to stderr\n")
sys.stdout.write('{"op":"done","ok":false}\n')
print("no newline", end="")
`
	r := newRunner(t, Options{}, hookctl.Hook{Key: hookctl.Key{Type: hookctl.TypePythonCode, Arg: code}}, newHost())
	for _, id := range []string{"a", "b"} {
		res := run(t, r, publishEvent(id))
		wantOK(t, res)
		want := "to stdout " + id + "\nto stderr\n{\"op\":\"done\",\"ok\":false}\nno newline"
		if res.Output != want {
			t.Errorf("output %q, want %q", res.Output, want)
		}
	}
	// Writes that bypass sys.stdout land on the worker's fd 1: still the
	// run's output, never the protocol.
	code2 := "import os\nos.write(1, b'raw fd write\\n')\nsys.__stdout__.write('dunder stdout\\n')\nsys.__stdout__.flush()\n"
	r2 := newRunner(t, Options{}, hookctl.Hook{Key: hookctl.Key{Type: hookctl.TypePythonCode, Arg: "import sys\n" + code2}}, newHost())
	// They arrive asynchronously (a pipe read by another goroutine), so
	// which run's output shows them is not asserted; the runs must stay OK.
	wantOK(t, run(t, r2, publishEvent("c")))
	wantOK(t, run(t, r2, publishEvent("d")))

	// Output is bounded, keeping the end.
	r3 := newRunner(t, Options{}, hookctl.Hook{Key: hookctl.Key{Type: hookctl.TypePythonCode, Arg: "print('x' * 100000)\nprint('END')"}}, newHost())
	res := run(t, r3, publishEvent("e"))
	wantOK(t, res)
	if len(res.Output) > runner.OutputTail || !strings.HasSuffix(res.Output, "x\nEND\n") {
		t.Errorf("output of %d bytes ending %q", len(res.Output), res.Output[max(0, len(res.Output)-20):])
	}
}

func TestCheckHonoursDeadline(t *testing.T) {
	requirePython(t)
	dir := t.TempDir()
	file := writeFile(t, filepath.Join(dir, "hang.py"), "import time\ntime.sleep(60)\ndef hook(host, client, item):\n    pass\n")
	// Long enough for python3 to start on a busy machine, and reach the import.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	err := NewFactory(Options{}).Check(ctx, hookctl.Hook{Key: hookctl.Key{Type: hookctl.TypePythonFile, Arg: file}})
	if !errors.Is(err, hookctl.ErrInvalid) || !strings.Contains(err.Error(), "loading did not finish within") ||
		!strings.Contains(err.Error(), `stuck at "`+file+`", line 2 in <module>`) {
		t.Errorf("Check of a hook that hangs at load: %v\n%s", err, func() string {
			var le *LoadError
			if errors.As(err, &le) {
				return le.Traceback
			}
			return ""
		}())
	}
}

func TestManyRunsInOrder(t *testing.T) {
	requirePython(t)
	dir := t.TempDir()
	out := filepath.Join(dir, "ids.txt")
	file := writeFile(t, filepath.Join(dir, "append.py"), `
def hook(host, client, item):
    with open(`+strconv.Quote(out)+`, "a") as f:
        f.write(item.get("id") + "\n")
`)
	r := newRunner(t, Options{}, hookctl.Hook{Key: hookctl.Key{Type: hookctl.TypePythonFile, Arg: file}}, newHost())
	var want strings.Builder
	for i := range 500 {
		id := fmt.Sprintf("item-%03d", i)
		want.WriteString(id + "\n")
		if res := run(t, r, publishEvent(id)); res.Outcome != runner.OK {
			t.Fatalf("run %d: %s %v %s", i, res.Outcome, res.Err, res.Output)
		}
	}
	got, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want.String(), string(got)); diff != "" {
		t.Errorf("ids (-want +got):\n%s", diff)
	}
}

func TestLoadErrors(t *testing.T) {
	requirePython(t)
	dir := t.TempDir()
	syntax := writeFile(t, filepath.Join(dir, "y.py"), "def hook(host, client, item):\n    pass\nx = = 1\n")
	nohook := writeFile(t, filepath.Join(dir, "nohook.py"), "def other(host, client, item):\n    pass\n")
	raises := writeFile(t, filepath.Join(dir, "raises.py"), "import missing_dependency_xyz\ndef hook(host, client, item):\n    pass\n")
	for _, tc := range []struct {
		typ hookctl.Type
		arg string
		msg string
	}{
		{hookctl.TypePythonFile, syntax, "python_file " + syntax + ": SyntaxError: invalid syntax (y.py, line 3)"},
		{hookctl.TypePythonFile, nohook, "python_file " + nohook + ": no hook(host, client, item) function"},
		{hookctl.TypePythonFile, raises, "python_file " + raises + ": ModuleNotFoundError: No module named 'missing_dependency_xyz'"},
		{hookctl.TypePython, "no_such_module_xyz", "python no_such_module_xyz: ModuleNotFoundError: No module named 'no_such_module_xyz'"},
		{hookctl.TypePythonCode, "print(", "python_code: SyntaxError: '(' was never closed (<python_code>, line 1)"},
	} {
		t.Run(filepath.Base(tc.arg), func(t *testing.T) {
			h := hookctl.Hook{Key: hookctl.Key{Profile: "default", Type: tc.typ, Arg: tc.arg}}
			err := NewFactory(Options{}).Check(context.Background(), h)
			var le *LoadError
			if !errors.As(err, &le) || err.Error() != tc.msg || !errors.Is(err, hookctl.ErrInvalid) {
				t.Fatalf("Check: %v, want %q", err, tc.msg)
			}
			r := newRunner(t, Options{}, h, newHost())
			for range 2 {
				res := run(t, r, publishEvent("a"))
				if res.Outcome != runner.Error || res.Err == nil || res.Err.Error() != tc.msg || res.Output == "" {
					t.Fatalf("Run: %s %v %q", res.Outcome, res.Err, res.Output)
				}
			}
		})
	}
	// Fixing the file makes the next run load it.
	h := hookctl.Hook{Key: hookctl.Key{Type: hookctl.TypePythonFile, Arg: syntax}}
	r := newRunner(t, Options{}, h, newHost())
	if res := run(t, r, publishEvent("a")); res.Outcome != runner.Error {
		t.Fatalf("got %s", res.Outcome)
	}
	writeFile(t, syntax, "def hook(host, client, item):\n    print('fixed')\n")
	if res := run(t, r, publishEvent("a")); res.Outcome != runner.OK || res.Output != "fixed\n" {
		t.Fatalf("after fix: %s %v %q", res.Outcome, res.Err, res.Output)
	}
	// Problems found without Python.
	for _, h := range []hookctl.Hook{
		{Key: hookctl.Key{Type: hookctl.TypePythonFile, Arg: filepath.Join(dir, "absent.py")}},
		{Key: hookctl.Key{Type: hookctl.TypePythonFile, Arg: dir}},
		{Key: hookctl.Key{Type: hookctl.TypeExec, Arg: "/bin/true"}},
	} {
		if err := NewFactory(Options{}).Check(context.Background(), h); !errors.Is(err, hookctl.ErrInvalid) {
			t.Errorf("Check(%s): %v", h.Key, err)
		}
	}
	// A missing interpreter is an error too, not a hang.
	h = hookctl.Hook{Key: hookctl.Key{Type: hookctl.TypePythonCode, Arg: "pass"}}
	if err := NewFactory(Options{Python: "/nonexistent/python3"}).Check(context.Background(), h); err == nil {
		t.Error("Check with a missing interpreter: nil error")
	}
	r = newRunner(t, Options{Python: "/nonexistent/python3"}, h, newHost())
	if res := run(t, r, publishEvent("a")); res.Outcome != runner.Error {
		t.Errorf("Run with a missing interpreter: %s", res.Outcome)
	}
}

// pidOf runs a hook that prints its worker's pid.
func pidOf(tb testing.TB, r runner.Runner) int {
	tb.Helper()
	res := run(tb, r, publishEvent("pid"))
	wantOK(tb, res)
	pid, err := strconv.Atoi(strings.TrimSpace(res.Output))
	if err != nil {
		tb.Fatalf("output %q", res.Output)
	}
	return pid
}

func TestIdleStopAndRestart(t *testing.T) {
	requirePython(t)
	h := hookctl.Hook{Key: hookctl.Key{Type: hookctl.TypePythonCode, Arg: "import os\nprint(os.getpid())"}}
	r := newRunner(t, Options{IdleTimeout: 200 * time.Millisecond}, h, newHost())
	first := pidOf(t, r)
	if again := pidOf(t, r); again != first {
		t.Fatalf("second run in pid %d, first in %d: the worker was not reused", again, first)
	}
	waitGone(t, first)
	if second := pidOf(t, r); second == first {
		t.Errorf("pid %d reused after idle stop", second)
	}
}

func TestCloseKillsWorkers(t *testing.T) {
	requirePython(t)
	code := "import os, subprocess\np = subprocess.Popen(['sleep', '60'])\nprint(os.getpid(), p.pid)\n"
	h := hookctl.Hook{Key: hookctl.Key{Type: hookctl.TypePythonCode, Arg: code}, Concurrency: 2}
	r, err := NewFactory(Options{}).New(h, newHost())
	if err != nil {
		t.Fatal(err)
	}
	res := run(t, r, publishEvent("a"))
	wantOK(t, res)
	var worker, child int
	if _, err := fmt.Sscan(res.Output, &worker, &child); err != nil {
		t.Fatalf("output %q", res.Output)
	}
	if !runnertest.Alive(worker) {
		t.Fatal("worker not running before Close")
	}
	waitGone(t, child) // what a run started ends with the run
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if runnertest.Alive(worker) {
		t.Errorf("worker %d alive after Close", worker)
	}
	if res := run(t, r, publishEvent("b")); res.Outcome != runner.Error {
		t.Errorf("Run after Close: %s", res.Outcome)
	}
}

func TestConcurrencyUsesSeveralWorkers(t *testing.T) {
	requirePython(t)
	dir := t.TempDir()
	// Each run marks its arrival and waits for the other's: with one worker
	// the first would wait forever (and time out).
	file := writeFile(t, filepath.Join(dir, "barrier.py"), `
import os, time
def hook(host, client, item):
    d = `+strconv.Quote(dir)+`
    open(os.path.join(d, item.get("id") + ".here"), "w").close()
    other = {"a": "b", "b": "a"}[item.get("id")]
    for _ in range(1000):
        if os.path.exists(os.path.join(d, other + ".here")):
            print("met", other)
            return
        time.sleep(0.01)
    raise RuntimeError("alone")
`)
	r := newRunner(t, Options{}, hookctl.Hook{Key: hookctl.Key{Type: hookctl.TypePythonFile, Arg: file}, Concurrency: 2}, newHost())
	var wg sync.WaitGroup
	results := make([]runner.Result, 2)
	for i, id := range []string{"a", "b"} {
		wg.Go(func() { results[i] = run(t, r, publishEvent(id)) })
	}
	wg.Wait()
	for _, res := range results {
		wantOK(t, res)
	}
}

// waitGone waits until pid has exited, failing after a few seconds.
func waitGone(tb testing.TB, pid int) {
	tb.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for runnertest.Alive(pid) {
		if time.Now().After(deadline) {
			tb.Fatalf("process %d still running", pid)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func cpuTime() time.Duration {
	var self, kids syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &self)
	syscall.Getrusage(syscall.RUSAGE_CHILDREN, &kids)
	tv := func(t syscall.Timeval) time.Duration { return time.Duration(t.Nano()) }
	return tv(self.Utime) + tv(self.Stime) + tv(kids.Utime) + tv(kids.Stime)
}

// workerCPU reads the CPU time of a live process (RUSAGE_CHILDREN only
// counts reaped children).
func workerCPU(tb testing.TB, pid int) time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		tb.Fatal(err)
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	ut, _ := strconv.Atoi(f[11])
	st, _ := strconv.Atoi(f[12])
	return time.Duration(ut+st) * time.Second / 100 // USER_HZ is 100 on Linux
}

// BenchmarkPythonFileRun measures one run of a python_file hook that
// appends the item id to a file, worker already started. cpu-ms/op counts
// this process and the worker.
func BenchmarkPythonFileRun(b *testing.B) {
	requirePython(b)
	dir := b.TempDir()
	out := filepath.Join(dir, "ids.txt")
	file := writeFile(b, filepath.Join(dir, "append.py"), `
import os
def hook(host, client, item):
    with open(`+strconv.Quote(out)+`, "a") as f:
        f.write(item.get("id") + "\n")
    if item.get("id") == "pid":
        print(os.getpid())
`)
	r := newRunner(b, Options{}, hookctl.Hook{Key: hookctl.Key{Type: hookctl.TypePythonFile, Arg: file}}, newHost())
	pid := pidOf(b, r)
	ev := publishEvent("item-0")
	ctx := context.Background()
	cpu0, wcpu0 := cpuTime(), workerCPU(b, pid)
	b.ResetTimer()
	for b.Loop() {
		if res := r.Run(ctx, ev); res.Outcome != runner.OK {
			b.Fatalf("%s %v", res.Outcome, res.Err)
		}
	}
	b.StopTimer()
	goCPU, pyCPU := cpuTime()-cpu0, workerCPU(b, pid)-wcpu0
	perOp := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 / float64(b.N) }
	b.ReportMetric(perOp(goCPU+pyCPU), "cpu-ms/op")
	b.ReportMetric(perOp(goCPU), "go-cpu-ms/op")
	b.ReportMetric(perOp(pyCPU), "py-cpu-ms/op")
}

func TestCloseDuringRun(t *testing.T) {
	requirePython(t)
	dir := t.TempDir()
	marker := filepath.Join(dir, "started")
	code := "import time\nopen(" + strconv.Quote(marker) + ", 'w').close()\ntime.sleep(60)\n"
	r, err := NewFactory(Options{}).New(hookctl.Hook{Key: hookctl.Key{Type: hookctl.TypePythonCode, Arg: code}}, newHost())
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan runner.Result)
	go func() { done <- run(t, r, publishEvent("a")) }()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if _, err := os.Stat(marker); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("hook never started")
		}
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if res := <-done; res.Outcome != runner.Failed || res.Err == nil {
		t.Errorf("run cut by Close: %s %v", res.Outcome, res.Err)
	}
}

func TestCleanEnvironment(t *testing.T) {
	requirePython(t)
	modDir, backendDir := t.TempDir(), t.TempDir()
	writeFile(t, filepath.Join(backendDir, "envmod.py"), "import json, os\ndef hook(host, client, item):\n    print(json.dumps(dict(os.environ)))\n")
	t.Setenv("PYTHONPATH", backendDir)
	t.Setenv("HOME", "/home/hookctl-test")
	t.Setenv("HOOKCTL_TEST_SECRET", "must not leak")
	r := newRunner(t, Options{PythonPath: []string{modDir}}, hookctl.Hook{Key: hookctl.Key{Type: hookctl.TypePython, Arg: "envmod"}}, newHost())
	res := run(t, r, publishEvent("a"))
	wantOK(t, res)
	var got map[string]string
	if err := json.Unmarshal([]byte(res.Output), &got); err != nil {
		t.Fatalf("output %q: %v", res.Output, err)
	}
	want := map[string]string{
		"PATH":                    "/usr/local/bin:/usr/bin:/bin",
		"HOME":                    "/home/hookctl-test",
		"LANG":                    "C.UTF-8",
		"PYTHONPATH":              modDir + ":" + backendDir,
		"PYTHONDONTWRITEBYTECODE": "1",
		"PYTHONUNBUFFERED":        "1",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("worker environment (-want +got):\n%s", diff)
	}
}
