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
)

type batchRun struct {
	started time.Time
	res     runner.Result
}

// runBatch runs evs through r's RunBatch and checks that every item got
// exactly one result, in order.
func runBatch(tb testing.TB, r runner.Runner, timeout time.Duration, evs ...hookctl.Event) []batchRun {
	tb.Helper()
	ptrs := make([]*hookctl.Event, len(evs))
	for i := range evs {
		ptrs[i] = &evs[i]
	}
	var got []batchRun
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	n := r.(*pyRunner).RunBatch(ctx, timeout, ptrs, func(i int, started time.Time, res runner.Result) {
		if i != len(got) {
			tb.Errorf("result for item %d after %d results", i, len(got))
		}
		got = append(got, batchRun{started, res})
	})
	if n != len(evs) || len(got) != len(evs) {
		tb.Fatalf("RunBatch returned %d, %d results, for %d items", n, len(got), len(evs))
	}
	return got
}

func events(ids ...string) []hookctl.Event {
	evs := make([]hookctl.Event, len(ids))
	for i, id := range ids {
		evs[i] = publishEvent(id)
	}
	return evs
}

// A burst goes through in order, each item its own run with its own
// output, in one worker.
func TestBatchKeepsOrderAndOutputs(t *testing.T) {
	requirePython(t)
	dir := t.TempDir()
	out := filepath.Join(dir, "ids.txt")
	file := writeFile(t, filepath.Join(dir, "append.py"), `
import os
OUT = open(`+strconv.Quote(out)+`, "a", buffering=1)
def hook(host, client, item):
    OUT.write(item.get("id") + "\n")
    print(item.get("id"), client.event.item_id, os.getpid())
`)
	r := newRunner(t, Options{}, hookctl.Hook{Key: hookctl.Key{Type: hookctl.TypePythonFile, Arg: file}}, newHost())
	var ids []string
	for i := range 300 {
		ids = append(ids, fmt.Sprintf("item-%03d", i))
	}
	got := runBatch(t, r, 20*time.Second, events(ids...)...)
	pid := ""
	for i, g := range got {
		wantOK(t, g.res)
		f := strings.Fields(g.res.Output)
		if len(f) != 3 || f[0] != ids[i] || f[1] != ids[i] {
			t.Fatalf("run %d output %q", i, g.res.Output)
		}
		if pid == "" {
			pid = f[2]
		} else if f[2] != pid {
			t.Errorf("run %d in worker %s, the others in %s", i, f[2], pid)
		}
		if i > 0 && g.started.Before(got[i-1].started) {
			t.Errorf("run %d started before run %d", i, i-1)
		}
	}
	if n := r.(*pyRunner).pipelined.Load(); n < 250 {
		t.Errorf("%d runs pipelined behind another, want most of 300", n)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if string(b) != strings.Join(ids, "\n")+"\n" {
		t.Errorf("ids written out of order or not once each:\n%s", b)
	}
}

// Items too big to go together (their frames, with JSON's escaping of
// the XML's quotes, exceed what the write may hold) go one write each,
// in order.
func TestBatchBigItems(t *testing.T) {
	requirePython(t)
	code := "print(item.get('id'), len(item.get('big')))\n"
	r := newRunner(t, Options{}, hookctl.Hook{Key: hookctl.Key{Type: hookctl.TypePythonCode, Arg: code}}, newHost())
	big := strings.Repeat(`"q"`, 5000) // 15 KB of XML, 25 KB as JSON
	evs := events("b1", "b2", "b3", "b4")
	for i := range evs {
		evs[i].ItemXML = `<item xmlns="` + nsEvent + `" id="` + evs[i].ItemID + `" big='` + big + `'/>`
	}
	got := runBatch(t, r, 20*time.Second, evs...)
	for i, g := range got {
		wantOK(t, g.res)
		if want := fmt.Sprintf("b%d %d\n", i+1, len(big)); g.res.Output != want {
			t.Errorf("run %d output %q, want %q", i, g.res.Output, want)
		}
	}
	if n := r.(*pyRunner).pipelined.Load(); n != 0 {
		t.Errorf("%d runs of 25 KB frames pipelined behind another (32 KiB at most in one write)", n)
	}
}

// An exception in the middle of a batch fails that run only, with its
// traceback; the worker goes on with the next item.
func TestBatchFailureInMiddle(t *testing.T) {
	requirePython(t)
	code := "import os\nprint(item.get('id'), os.getpid())\nif item.get('id') == 'bad':\n    raise ValueError('bad item')\n"
	r := newRunner(t, Options{}, hookctl.Hook{Key: hookctl.Key{Type: hookctl.TypePythonCode, Arg: code}}, newHost())
	got := runBatch(t, r, 20*time.Second, events("a", "b", "bad", "c", "d")...)
	var pids []string
	for i, g := range got {
		id := []string{"a", "b", "bad", "c", "d"}[i]
		if !strings.HasPrefix(g.res.Output, id+" ") {
			t.Errorf("run %s output %q", id, g.res.Output)
		}
		pids = append(pids, strings.Fields(g.res.Output)[1])
		if id != "bad" {
			wantOK(t, g.res)
			continue
		}
		if g.res.Outcome != runner.Failed || !strings.Contains(g.res.Err.Error(), "ValueError: bad item") ||
			!strings.Contains(g.res.Output, "Traceback") || !strings.HasSuffix(g.res.Output, "ValueError: bad item\n") {
			t.Errorf("bad: %s %v\n%s", g.res.Outcome, g.res.Err, g.res.Output)
		}
	}
	for _, p := range pids {
		if p != pids[0] {
			t.Errorf("worker restarted: pids %v", pids)
		}
	}
}

// A run past its timeout in a batch is a Timeout saying where it was; its
// worker is killed with what it started, and the items after it, which
// had not started, run on a new worker, each once, with a timeout of
// their own.
func TestBatchTimeoutInMiddle(t *testing.T) {
	requirePython(t)
	dir := t.TempDir()
	out := filepath.Join(dir, "ids.txt")
	file := writeFile(t, filepath.Join(dir, "slow.py"), `
import os, time
def hook(host, client, item):
    with open(`+strconv.Quote(out)+`, "a") as f:
        f.write(item.get("id") + "\n")
    if item.get("id") == "slow":
        time.sleep(60)
    print(item.get("id"), os.getpid())
`)
	r := newRunner(t, Options{}, hookctl.Hook{Key: hookctl.Key{Type: hookctl.TypePythonFile, Arg: file}}, newHost())
	wantOK(t, run(t, r, publishEvent("warm-up")))
	got := runBatch(t, r, time.Second, events("a", "slow", "c", "d")...)
	wantOK(t, got[0].res)
	slow := got[1].res
	if slow.Outcome != runner.Timeout || !errors.Is(slow.Err, context.DeadlineExceeded) ||
		!strings.Contains(slow.Err.Error(), "timeout of 1s") || !strings.Contains(slow.Err.Error(), `slow.py", line 7`) {
		t.Errorf("slow: %s %v\n%s", slow.Outcome, slow.Err, slow.Output)
	}
	if d := got[1].started.Sub(got[0].started); d < 0 || d > time.Second {
		t.Errorf("slow started %s after a", d)
	}
	pidA := strings.Fields(got[0].res.Output)[1]
	for i, id := range []string{"c", "d"} {
		g := got[2+i]
		wantOK(t, g.res)
		if f := strings.Fields(g.res.Output); len(f) != 2 || f[0] != id || f[1] == pidA {
			t.Errorf("%s: output %q (first worker %s)", id, g.res.Output, pidA)
		}
	}
	if got[2].started.Sub(got[1].started) < time.Second {
		t.Errorf("c started %s after slow, before slow's timeout", got[2].started.Sub(got[1].started))
	}
	b, _ := os.ReadFile(out)
	if string(b) != "warm-up\na\nslow\nc\nd\n" {
		t.Errorf("items run:\n%s", b)
	}
}

// A worker that dies in the middle of a batch fails that run (with its
// exit status); the items after it run on a new worker, none is lost.
func TestBatchWorkerCrashMidBatch(t *testing.T) {
	requirePython(t)
	code := "import os, sys\nprint(item.get('id'), os.getpid())\nsys.stdout.flush()\nif item.get('id') == 'crash':\n    os._exit(3)\n"
	r := newRunner(t, Options{}, hookctl.Hook{Key: hookctl.Key{Type: hookctl.TypePythonCode, Arg: code}}, newHost())
	ids := []string{"a", "b", "crash", "c", "d", "e"}
	got := runBatch(t, r, 20*time.Second, events(ids...)...)
	var before, after string
	for i, g := range got {
		id := ids[i]
		f := strings.Fields(g.res.Output)
		if len(f) != 2 || f[0] != id {
			t.Errorf("%s: output %q", id, g.res.Output)
			continue
		}
		switch {
		case id == "crash":
			if g.res.Outcome != runner.Failed || !strings.Contains(g.res.Err.Error(), "python worker exited") ||
				!strings.Contains(g.res.Err.Error(), "exit status 3") {
				t.Errorf("crash: %s %v", g.res.Outcome, g.res.Err)
			}
			before = f[1]
		case i < 2:
			wantOK(t, g.res)
		default:
			wantOK(t, g.res)
			if after == "" {
				after = f[1]
			}
			if f[1] == before || f[1] != after {
				t.Errorf("%s ran in worker %s (crashed %s, restarted %s)", id, f[1], before, after)
			}
		}
	}
}

// host.publish in pipelined runs: the answers reach the right run while
// the next runs' frames are already waiting in the worker.
func TestBatchPublish(t *testing.T) {
	requirePython(t)
	code := "got = host.publish('svc', 'other', '<x xmlns=\"urn:x\">%s</x>' % item.get('id'))\nprint(item.get('id'), got)\n"
	host := newHost()
	r := newRunner(t, Options{}, hookctl.Hook{Key: hookctl.Key{Type: hookctl.TypePythonCode, Arg: code}}, host)
	ids := []string{"p1", "p2", "p3", "p4"}
	got := runBatch(t, r, 20*time.Second, events(ids...)...)
	for i, g := range got {
		wantOK(t, g.res)
		if want := fmt.Sprintf("%s gen-%d\n", ids[i], i+1); g.res.Output != want {
			t.Errorf("run %d output %q, want %q", i, g.res.Output, want)
		}
	}
	if n := r.(*pyRunner).pipelined.Load(); n < 2 {
		t.Errorf("%d runs pipelined", n)
	}
	host.mu.Lock()
	defer host.mu.Unlock()
	for i, p := range host.published {
		if !strings.Contains(p.Payload, ">"+ids[i]+"<") {
			t.Errorf("publish %d: %q", i, p.Payload)
		}
	}
}

// The worker's reused parser gives the tree ET.fromstring gives, and
// refuses what it refuses with the same error; the next item parses.
func TestItemParserAsFromstring(t *testing.T) {
	requirePython(t)
	code := "print(item.tag, sorted(item.attrib.items()), item.tail, [c.tag for c in item])\n"
	r := newRunner(t, Options{}, hookctl.Hook{Key: hookctl.Key{Type: hookctl.TypePythonCode, Arg: code}}, newHost())
	cases := []struct{ xml, out, err string }{
		{`<a x="1"><b/>t</a>`, "a [('x', '1')] None ['b']\n", ""},
		{" \n<a/>\n ", "a [] None []\n", ""},
		{`<?xml version="1.0"?><a/>`, "a [] None []\n", ""},
		{"<!-- c --><a/>", "a [] None []\n", ""},
		{"<a/>junk", "", "ParseError: junk after document element: line 1, column 4"},
		{"junk<a/>", "", "ParseError: not well-formed (invalid token): line 1, column 4"},
		{"<a/><b/>", "", "ParseError: junk after document element: line 1, column 4"},
		{"<a>", "", "ParseError: no element found: line 1, column 3"},
		{"<a><b></a>", "", "ParseError: mismatched tag: line 1, column 8"},
		{"<x:a/>", "", "ParseError: unbound prefix: line 1, column 0"},
		{`<a xmlns="urn:q"><b/></a>`, "{urn:q}a [] None ['{urn:q}b']\n", ""},
	}
	for _, c := range cases {
		for range 2 { // and again once the parser was made again
			ev := publishEvent("i")
			ev.ItemXML = c.xml
			res := run(t, r, ev)
			if c.err == "" {
				wantOK(t, res)
				if res.Output != c.out {
					t.Errorf("%q: output %q, want %q", c.xml, res.Output, c.out)
				}
				continue
			}
			if res.Outcome != runner.Failed || res.Err == nil || !strings.Contains(res.Err.Error(), c.err) {
				t.Errorf("%q: %s %v, want %s", c.xml, res.Outcome, res.Err, c.err)
			}
		}
	}
}

// BenchmarkPythonFileRunBatch runs the bench's hook (appending the item
// id to a file it keeps open) on items handed over one at a time (Run's
// path) or 32 at a time (RunBatch, pipelined), as the dispatcher does when
// they queue up. One op is one item.
func BenchmarkPythonFileRunBatch(b *testing.B) {
	for _, size := range []int{1, 32} {
		b.Run(fmt.Sprintf("batch=%d", size), func(b *testing.B) { benchmarkBatch(b, size) })
	}
}

func benchmarkBatch(b *testing.B, size int) {
	requirePython(b)
	dir := b.TempDir()
	out := filepath.Join(dir, "ids.txt")
	file := writeFile(b, filepath.Join(dir, "append.py"), `
import os
OUT = open(`+strconv.Quote(out)+`, "a", buffering=1)
def hook(host, client, item):
    OUT.write(item.get("id") + "\n")
    if item.get("id") == "pid":
        print(os.getpid())
`)
	r := newRunner(b, Options{}, hookctl.Hook{Key: hookctl.Key{Type: hookctl.TypePythonFile, Arg: file}}, newHost())
	pid := pidOf(b, r)
	evs := make([]hookctl.Event, size)
	ptrs := make([]*hookctl.Event, len(evs))
	for i := range evs {
		evs[i] = publishEvent(fmt.Sprintf("item-%d", i))
		ptrs[i] = &evs[i]
	}
	ctx := context.Background()
	failed := func(i int, _ time.Time, res runner.Result) {
		if res.Outcome != runner.OK {
			b.Fatalf("%s %v", res.Outcome, res.Err)
		}
	}
	cpu0, wcpu0 := cpuTime(), workerCPU(b, pid)
	b.ResetTimer()
	n := 0
	for n < b.N {
		k := min(len(ptrs), b.N-n)
		r.(*pyRunner).RunBatch(ctx, 10*time.Second, ptrs[:k], failed)
		n += k
	}
	b.StopTimer()
	goCPU, pyCPU := cpuTime()-cpu0, workerCPU(b, pid)-wcpu0
	perOp := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 / float64(b.N) }
	b.ReportMetric(perOp(goCPU+pyCPU), "cpu-ms/op")
	b.ReportMetric(perOp(goCPU), "go-cpu-ms/op")
	b.ReportMetric(perOp(pyCPU), "py-cpu-ms/op")
}
