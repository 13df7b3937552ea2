package daemon

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"hookctl.dev/hookctl"
	"hookctl.dev/hookctl/api"
)

// inPlaceSaves edits a python_file the way editors save (truncate, then
// write) every 20 ms while 400 items flow: no run fails or errs because
// of a reload, and the last version is the one running at the end.
func (e *pyEnv) inPlaceSaves(t *testing.T) {
	out := filepath.Join(e.dir, "saves.out")
	version := func(n int) string {
		return fmt.Sprintf("V = %d\n%s\ndef hook(host, client, item):\n    open(%q, 'a').write('%%s %%s\\n' %% (V, item.get('id')))\n",
			n, strings.Repeat("# padding so that a half-written file does not compile\n", 50), out)
	}
	path := e.write("saved.py", version(0))
	e.hook(t, hookctl.Hook{Key: hookctl.Key{Service: e.srv.PubSub, Node: "saves", Type: hookctl.TypePythonFile, Arg: path}})

	ctx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer func() { stop(); wg.Wait() }()
	saves := 0
	wg.Go(func() {
		for n := 1; ctx.Err() == nil; n++ {
			f, err := os.OpenFile(path, os.O_WRONLY|os.O_TRUNC, 0)
			if err != nil {
				t.Error(err)
				return
			}
			text := version(n)
			f.WriteString(text[:len(text)/2])
			f.WriteString(text[len(text)/2:])
			f.Close()
			saves = n
			time.Sleep(20 * time.Millisecond)
		}
	})
	const n = 400
	for i := range n {
		e.publish("saves", fmt.Sprint("s", i), entry("x"))
	}
	runs := e.b.waitRuns(api.RunQuery{Node: "saves"}, n)
	stop()
	wg.Wait()
	bad := 0
	for _, r := range runs {
		if r.Outcome != "ok" {
			bad++
			if bad < 5 {
				t.Errorf("run of %s during in-place saves: %s %s\n%s", r.ItemID, r.Outcome, r.Error, r.Output)
			}
		}
	}
	lines := readLines(t, out)
	if len(lines) != n {
		t.Errorf("hook wrote %d lines for %d items", len(lines), n)
	}
	waitSettled()
	e.publish("saves", "final", entry("x"))
	e.b.waitRuns(api.RunQuery{Node: "saves"}, n+1)
	lines = readLines(t, out)
	if got, want := lines[len(lines)-1], fmt.Sprintf("%d final", saves); got != want {
		t.Errorf("after the saves: %q, want %q", got, want)
	}
	t.Logf("%d in-place saves during %d items: %d runs not ok", saves, n, bad)
}

// neighbourReload edits a python_file and the module it imports from its
// directory: the next item runs both new versions.
func (e *pyEnv) neighbourReload(t *testing.T) {
	sub := filepath.Join(e.dir, "nb")
	if err := os.Mkdir(sub, 0o755); err != nil {
		t.Fatal(err)
	}
	write := func(name, text string) string {
		p := filepath.Join(sub, name)
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	write("nbhelper.py", "V = 'nb-v1'\n")
	main := write("main.py", "import nbhelper\ndef hook(host, client, item):\n    print('main-v1', nbhelper.V)\n")
	e.hook(t, hookctl.Hook{Key: hookctl.Key{Service: e.srv.PubSub, Node: "nb", Type: hookctl.TypePythonFile, Arg: main}})
	e.publish("nb", "n1", entry("1"))
	e.b.waitRuns(api.RunQuery{Node: "nb"}, 1)
	write("nbhelper.py", "V = 'nb-v2'\n")
	write("main.py", "import nbhelper\ndef hook(host, client, item):\n    print('main-v2', nbhelper.V)\n")
	waitSettled()
	e.publish("nb", "n2", entry("2"))
	e.b.waitRuns(api.RunQuery{Node: "nb"}, 2)
	write("nbhelper.py", "V = 'nb-v3'\n")
	waitSettled()
	e.publish("nb", "n3", entry("3"))
	runs := e.b.waitRuns(api.RunQuery{Node: "nb"}, 3)
	for i, want := range []string{"main-v1 nb-v1\n", "main-v2 nb-v2\n", "main-v2 nb-v3\n"} {
		if r := runs[i]; r.Outcome != "ok" || r.Output != want {
			t.Errorf("run %s = %s %q, want %q", r.ItemID, r.Outcome, r.Output, want)
		}
	}
}

// crashAndTimeoutOutput: what a hook printed before os._exit or its
// timeout is in the run; the timeout says the limit and where it was.
func (e *pyEnv) crashAndTimeoutOutput(t *testing.T) {
	path := e.write("printthen.py", `import os, time
def wait_forever():
    while True:
        time.sleep(0.05)
def hook(host, client, item):
    print("started", item.get("id"))
    if item.get("id") == "crash":
        os._exit(3)
    wait_forever()
`)
	// 3 s: loading a worker is bounded by the same timeout, and takes over
	// a second on a loaded 2-CPU machine under -race.
	e.hook(t, hookctl.Hook{Key: hookctl.Key{Service: e.srv.PubSub, Node: "printthen", Type: hookctl.TypePythonFile, Arg: path},
		Timeout: hookctl.Duration(3 * time.Second)})
	e.publish("printthen", "crash", entry("1"))
	e.publish("printthen", "stuck", entry("2"))
	runs := e.b.waitRuns(api.RunQuery{Node: "printthen"}, 2)
	if r := runs[0]; r.Outcome != "failed" || r.ExitCode != 3 || !strings.HasPrefix(r.Output, "started crash\n") {
		t.Errorf("crash run = %+v, want failed, exit 3, with what it printed", r)
	}
	r := runs[1]
	if r.Outcome != "timeout" || !strings.HasPrefix(r.Output, "started stuck\n") || !strings.Contains(r.Output, "in wait_forever") {
		t.Errorf("timeout run = %+v, want timeout with what it printed and its stack", r)
	}
	if !strings.Contains(r.Error, "its timeout of 3s passed") || !strings.Contains(r.Error, `printthen.py", line 4 in wait_forever`) {
		t.Errorf("timeout error %q: want the limit and where the hook was", r.Error)
	}
}

// createRefusals: what can never run is refused at create, quickly;
// async def hook runs.
func (e *pyEnv) createRefusals(t *testing.T) {
	ctx := context.Background()
	for _, c := range []struct {
		typ     hookctl.Type
		arg     string
		timeout time.Duration
		want    string
	}{
		{hookctl.TypePythonFile, e.write("twoargs.py", "def hook(host, client):\n    pass\n"), 0, "cannot be called as hook(host, client, item)"},
		{hookctl.TypePythonCode, "import hk_not_installed\nprint(1)\n", 0, "No module named 'hk_not_installed'"},
		{hookctl.TypePythonFile, e.write("hangs.py", "import time\ntime.sleep(60)\n"), time.Second, "loading did not finish within 1s (the hook's timeout); stuck at"},
	} {
		start := time.Now()
		_, err := e.b.client.Create(ctx, hookctl.Hook{Key: hookctl.Key{Profile: "default", Service: e.srv.PubSub, Node: "refused", Type: c.typ, Arg: c.arg},
			Timeout: hookctl.Duration(c.timeout)})
		if !errors.Is(err, hookctl.ErrInvalid) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("create %s %q = %v, want ErrInvalid with %q", c.typ, c.arg, err, c.want)
		}
		if c.timeout > 0 && time.Since(start) > c.timeout+5*time.Second {
			t.Errorf("create of a hook hanging at import took %s with a timeout of %s", time.Since(start), c.timeout)
		}
	}
	out := filepath.Join(e.dir, "async.out")
	path := e.write("asynchook.py", fmt.Sprintf(`import asyncio
async def hook(host, client, item):
    await asyncio.sleep(0.01)
    open(%q, "a").write(item.get("id") + "\n")
`, out))
	e.hook(t, hookctl.Hook{Key: hookctl.Key{Service: e.srv.PubSub, Node: "asyncnode", Type: hookctl.TypePythonFile, Arg: path}})
	e.publish("asyncnode", "as1", entry("1"))
	if r := e.b.waitRuns(api.RunQuery{Node: "asyncnode"}, 1)[0]; r.Outcome != "ok" {
		t.Errorf("async hook run = %+v", r)
	}
	if got := readLines(t, out); len(got) != 1 || got[0] != "as1" {
		t.Errorf("async hook body wrote %q, want as1", got)
	}
}

// cleanState: a run that changes the working directory and sys.path does
// not change them for the next.
func (e *pyEnv) cleanState(t *testing.T) {
	path := e.write("roams.py", `import os, sys
def hook(host, client, item):
    print(os.getcwd(), "/nowhere" in sys.path)
    os.chdir("/")
    sys.path.append("/nowhere")
`)
	e.hook(t, hookctl.Hook{Key: hookctl.Key{Service: e.srv.PubSub, Node: "roams", Type: hookctl.TypePythonFile, Arg: path}})
	e.publish("roams", "c1", entry("1"))
	e.publish("roams", "c2", entry("2"))
	for _, r := range e.b.waitRuns(api.RunQuery{Node: "roams"}, 2) {
		if want := e.dir + " False\n"; r.Outcome != "ok" || r.Output != want {
			t.Errorf("run %s = %s %q, want %q", r.ItemID, r.Outcome, r.Output, want)
		}
	}
}

// selfPublish: a hook that publishes on its own node on every item runs
// once per item published by others; its own items are recorded skipped.
func (e *pyEnv) selfPublish(t *testing.T) {
	e.hook(t, hookctl.Hook{Key: hookctl.Key{Service: e.srv.PubSub, Node: "selfpub", Type: hookctl.TypePythonCode,
		Arg: "host.publish(client.event.service, client.event.node, b\"<again xmlns='urn:again'/>\")\n"}})
	e.publish("selfpub", "first", entry("1"))
	runs := e.b.waitRuns(api.RunQuery{Node: "selfpub"}, 2)
	time.Sleep(300 * time.Millisecond) // a loop would show by now
	runs = e.b.runs(api.RunQuery{Node: "selfpub"})
	if len(runs) != 2 || runs[0].Outcome != "ok" || runs[1].Outcome != "skipped" || !strings.Contains(runs[1].Error, "published by this hook itself") {
		t.Errorf("runs = %+v, want ok for first, then skipped for the hook's own item, and no more", runs)
	}
}

// memoryLimit: a hook that allocates 4 GB under a 256 MiB limit fails with
// a clear error, and the next item runs; a bad limit is refused at create.
func (e *pyEnv) memoryLimit(t *testing.T) {
	e.hook(t, hookctl.Hook{Key: hookctl.Key{Service: e.srv.PubSub, Node: "greedy", Type: hookctl.TypePythonCode,
		Arg: "if item.get('id') == 'big':\n    hoard = bytearray(4 * 1024**3)\nprint('fine')\n"}, Memory: "256MiB"})
	e.publish("greedy", "big", entry("1"))
	e.publish("greedy", "small", entry("2"))
	runs := e.b.waitRuns(api.RunQuery{Node: "greedy"}, 2)
	if r := runs[0]; r.Outcome != "failed" || !strings.Contains(r.Error, "MemoryError") || !strings.Contains(r.Error, "memory limit (256 MiB) was reached") {
		t.Errorf("4 GB allocation = %+v, want failed with the memory limit named", r)
	}
	if r := runs[1]; r.Outcome != "ok" || r.Output != "fine\n" {
		t.Errorf("next item = %+v, want ok", r)
	}
	_, err := e.b.client.Create(context.Background(), hookctl.Hook{Key: hookctl.Key{Profile: "default", Service: e.srv.PubSub, Node: "greedy2",
		Type: hookctl.TypePythonCode, Arg: "pass"}, Memory: "lots"})
	if !errors.Is(err, hookctl.ErrInvalid) || !strings.Contains(err.Error(), `memory: bad memory limit "lots"`) {
		t.Errorf("create with memory lots = %v, want ErrInvalid", err)
	}
}

// duplicateRecorded: an item published again with the same id and payload
// is not run again, and the skip is recorded with its reason.
func (e *pyEnv) duplicateRecorded(t *testing.T) {
	e.hook(t, hookctl.Hook{Key: hookctl.Key{Service: e.srv.PubSub, Node: "dups", Type: hookctl.TypePythonCode, Arg: "print('ran', item.get('id'))\n"}})
	e.publish("dups", "d1", entry("same"))
	e.b.waitRuns(api.RunQuery{Node: "dups"}, 1)
	e.publish("dups", "d1", entry("same"))
	e.publish("dups", "d1", entry("changed"))
	runs := e.b.waitRuns(api.RunQuery{Node: "dups"}, 3)
	want := []string{"ok", "skipped", "ok"}
	for i, r := range runs {
		if r.ItemID != "d1" || r.Outcome != want[i] {
			t.Errorf("run %d = %s %s %q, want %s", i, r.ItemID, r.Outcome, r.Error, want[i])
		}
	}
	if r := runs[1]; !strings.Contains(r.Error, "already handled with the same payload") {
		t.Errorf("skipped run's reason = %q", r.Error)
	}
}

// deleteElement: a hook taking delete events gets the notification's
// <delete> element in the pubsub#event namespace, as <item> is.
func (e *pyEnv) deleteElement(t *testing.T) {
	e.hook(t, hookctl.Hook{Key: hookctl.Key{Service: e.srv.PubSub, Node: "todelete", Type: hookctl.TypePythonCode,
		Arg: "print(item.tag, item.get('node'))\n"}, Events: []hookctl.EventKind{hookctl.EventDelete}})
	e.b.pubsub("default", api.PubSubRequest{Op: api.OpNodeDelete, Service: e.srv.PubSub, Node: "todelete"})
	r := e.b.waitRuns(api.RunQuery{Node: "todelete"}, 1)[0]
	if want := "{http://jabber.org/protocol/pubsub#event}delete todelete\n"; r.Event != hookctl.EventDelete || r.Outcome != "ok" || r.Output != want {
		t.Errorf("delete run = %+v, want output %q", r, want)
	}
}
