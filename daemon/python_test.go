package daemon

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"hookctl.dev/hookctl"
	"hookctl.dev/hookctl/api"
	"hookctl.dev/hookctl/internal/xmpptest"
)

// pyEnv is one real Prosody and one backend shared by the Python hook
// tests (starting them costs more than the tests themselves).
type pyEnv struct {
	t    *testing.T
	srv  *xmpptest.Server
	b    *backend
	dir  string // hook files and their output
	libs string // the backend's python_path
	subs int    // nodes subscribed so far: waitSubscribed counts them all
}

// TestPythonHooks proves the Python hook types end to end: real Prosody,
// real backend driven over its control API, real python3 workers.
func TestPythonHooks(t *testing.T) { xmpptest.Each(t, testPythonHooks) }

func testPythonHooks(t *testing.T, kind xmpptest.Kind) {
	srv := xmpptest.Start(t, kind, xmpptest.Options{Admins: []string{"bot@localhost", "pub@localhost"}, MemoryStorage: true})
	cfg := testConfig(t, srv, "bot", "pub")
	e := &pyEnv{t: t, srv: srv, dir: t.TempDir(), libs: t.TempDir()}
	cfg.PythonPath = []string{e.libs}
	e.b = startBackend(t, cfg)
	parent := t

	run := func(name string, f func(*testing.T)) {
		t.Run(name, func(t *testing.T) {
			// The shared helpers fail the subtest, not its parent.
			e.t, e.b.t = t, t
			defer func() { e.t, e.b.t = parent, parent }()
			f(t)
		})
	}
	run("TypesFireOnPublishAndRetract", e.typesFire)
	run("HostPublish", e.hostPublish)
	run("FileEditedBetweenItems", e.fileEdited)
	run("FailuresLeaveTheNextItemRunning", e.failures)
	run("BurstInArrivalOrder", e.burst)
	run("LoadErrors", e.loadErrors)
	run("OwnPEPNodeCreatedAfterTheHook", e.ownPEP)
	run("NodeCreatedLaterByAnother", e.nodeLater)
	run("READMEExample", e.readmeExample)
	run("InPlaceSavesDuringBurst", e.inPlaceSaves)
	run("NeighbourModuleReload", e.neighbourReload)
	run("CrashAndTimeoutKeepOutput", e.crashAndTimeoutOutput)
	run("CreateRefusesWhatCannotRun", e.createRefusals)
	run("EachRunStartsClean", e.cleanState)
	run("SelfPublishIsNotALoop", e.selfPublish)
	run("MemoryLimit", e.memoryLimit)
	run("DuplicateItemRecordedSkipped", e.duplicateRecorded)
	run("LiberviaStyleHook", e.liberviaStyle)
	// Last: the node it deletes keeps a hook whose subscription then fails.
	run("DeleteCarriesItsNamespace", e.deleteElement)
}

// hook creates the node on the PubSub component (when the hook is on it)
// and the hook, and waits
// until the backend is subscribed.
func (e *pyEnv) hook(t *testing.T, h hookctl.Hook) {
	t.Helper()
	if h.Service == e.srv.PubSub {
		e.b.pubsub("default", api.PubSubRequest{Op: api.OpNodeCreate, Service: h.Service, Node: h.Node})
	}
	e.b.create(h)
	e.subs++
	e.b.waitSubscribed("default", e.subs)
}

func (e *pyEnv) publish(node, id, payload string) {
	e.b.pubsub("default", api.PubSubRequest{Op: api.OpPublish, Service: e.srv.PubSub, Node: node, ItemID: id, Payload: payload})
}

// write writes a file in the test's directory and returns its path.
func (e *pyEnv) write(name, text string) string {
	e.t.Helper()
	p := filepath.Join(e.dir, name)
	if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
		e.t.Fatal(err)
	}
	return p
}

func readLines(t *testing.T, path string) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
}

// recorder is the body of a hook that appends one line per item to OUT:
// the event, the element it got (tag, id, children with namespaces) and
// what client carries.
const recorder = `
    ev = client.event
    kids = " ".join("%s=%s" % (c.tag, "".join(c.itertext())) for c in item)
    with open(OUT, "a") as f:
        f.write("%s %s %s [%s] %s %s %s %s\n" % (ev.kind, item.tag, item.get("id"), kids,
                client.profile, client.jid, ev.service, ev.node))
    host.log("recorded", item.get("id"))
`

func (e *pyEnv) typesFire(t *testing.T) {
	for _, typ := range []hookctl.Type{hookctl.TypePythonFile, hookctl.TypePython, hookctl.TypePythonCode} {
		t.Run(string(typ), func(t *testing.T) {
			node := "types-" + string(typ)
			out := filepath.Join(e.dir, node+".out")
			var arg string
			switch typ {
			case hookctl.TypePythonFile:
				arg = e.write(node+".py", fmt.Sprintf("OUT = %q\ndef hook(host, client, item):%s", out, recorder))
			case hookctl.TypePython:
				// A module found on the backend's python_path.
				if err := os.WriteFile(filepath.Join(e.libs, "hk_types_mod.py"), fmt.Appendf(nil, "OUT = %q\ndef hook(host, client, item):%s", out, recorder), 0o644); err != nil {
					t.Fatal(err)
				}
				arg = "hk_types_mod"
			case hookctl.TypePythonCode:
				// Executed with host, client and item as globals.
				arg = fmt.Sprintf("OUT = %q\nif True:%s", out, recorder)
			}
			e.hook(t, hookctl.Hook{Key: hookctl.Key{Service: e.srv.PubSub, Node: node, Type: typ, Arg: arg}})

			e.publish(node, "p1", entry("hello <b>world</b>"))
			runs := e.b.waitRuns(api.RunQuery{Node: node}, 1)
			e.b.pubsub("default", api.PubSubRequest{Op: api.OpRetract, Service: e.srv.PubSub, Node: node, ItemID: "p1"})
			runs = e.b.waitRuns(api.RunQuery{Node: node}, 2)
			for i, want := range []hookctl.EventKind{hookctl.EventPublish, hookctl.EventRetract} {
				r := runs[i]
				if r.Event != want || r.ItemID != "p1" || r.Outcome != "ok" || !strings.Contains(r.Output, "recorded p1") {
					t.Errorf("run %d = %+v, want ok %s of p1 with the host.log line", i, r, want)
				}
			}
			got := readLines(t, out)
			const ev = "{http://jabber.org/protocol/pubsub#event}"
			want := []string{
				"publish " + ev + "item p1 [{" + blogNS + "}entry=hello world] default bot@localhost pubsub.localhost " + node,
				"retract " + ev + "retract p1 [] default bot@localhost pubsub.localhost " + node,
			}
			if !slices.Equal(got, want) {
				t.Errorf("hook saw:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
			}
		})
	}
}

func (e *pyEnv) hostPublish(t *testing.T) {
	out := filepath.Join(e.dir, "relay.out")
	src := e.write("relay.py", `import xml.etree.ElementTree as ET

def hook(host, client, item):
    if client.event.kind != "publish":
        return
    entry = item[0]
    copy = ET.Element("{urn:example:copy}copy", {"of": item.get("id")})
    copy.text = "".join(entry.itertext()).upper()
    got = host.publish(client.event.service, "relay-dst", copy, item_id="copy-" + item.get("id"))
    host.log("published", got)
`)
	e.hook(t, hookctl.Hook{Key: hookctl.Key{Service: e.srv.PubSub, Node: "relay-src", Type: hookctl.TypePythonFile, Arg: src}})
	// The copy is seen as any item is: through Prosody's notification.
	e.hook(t, hookctl.Hook{Key: hookctl.Key{Service: e.srv.PubSub, Node: "relay-dst", Type: hookctl.TypePythonCode,
		Arg: fmt.Sprintf("with open(%q, 'a') as f:\n    f.write('%%s %%s %%s\\n' %% (item.get('id'), item[0].tag, item[0].text))\n", out)}})

	e.publish("relay-src", "r1", entry("shout"))
	runs := e.b.waitRuns(api.RunQuery{Node: "relay-src"}, 1)
	if runs[0].Outcome != "ok" || !strings.Contains(runs[0].Output, "published copy-r1") {
		t.Fatalf("relay run = %+v", runs[0])
	}
	e.b.waitRuns(api.RunQuery{Node: "relay-dst"}, 1)
	if got, want := readLines(t, out), []string{"copy-r1 {urn:example:copy}copy SHOUT"}; !slices.Equal(got, want) {
		t.Errorf("relay-dst hook saw %q, want %q", got, want)
	}
}

func (e *pyEnv) fileEdited(t *testing.T) {
	out := filepath.Join(e.dir, "edit.out")
	version := func(v string) string {
		return fmt.Sprintf("V = %q\ndef hook(host, client, item):\n    open(%q, 'a').write(V + ' ' + item.get('id') + '\\n')\n", v, out)
	}
	path := e.write("edit.py", version("v1"))
	e.hook(t, hookctl.Hook{Key: hookctl.Key{Service: e.srv.PubSub, Node: "edit", Type: hookctl.TypePythonFile, Arg: path}})

	e.publish("edit", "e1", entry("one"))
	e.b.waitRuns(api.RunQuery{Node: "edit"}, 1)
	e.write("edit.py", version("version-2"))
	waitSettled() // a changed file is loaded once it has stopped changing
	e.publish("edit", "e2", entry("two"))
	runs := e.b.waitRuns(api.RunQuery{Node: "edit"}, 2)
	if got, want := readLines(t, out), []string{"v1 e1", "version-2 e2"}; !slices.Equal(got, want) {
		t.Errorf("hook wrote %q, want %q (runs %+v)", got, want, runs)
	}
}

func (e *pyEnv) failures(t *testing.T) {
	out := filepath.Join(e.dir, "rough.out")
	path := e.write("rough.py", fmt.Sprintf(`import os, sys, time

def hook(host, client, item):
    i = item.get("id")
    with open(%q, "a") as f:
        f.write(i + "\n")
    if i == "raise":
        raise ValueError("boom")
    if i == "crash":
        os._exit(3)
    if i == "sleep":
        time.sleep(60)
    if i == "print":
        print("printed to stdout")
        sys.stdout.write("written to stdout\n")
`, out))
	e.hook(t, hookctl.Hook{
		Key: hookctl.Key{Service: e.srv.PubSub, Node: "rough", Type: hookctl.TypePythonFile, Arg: path},
		// 3 s: a worker started again after the crash loads within the
		// same timeout, which takes over a second on a loaded machine.
		Timeout: hookctl.Duration(3 * time.Second),
	})
	ids := []string{"raise", "after-raise", "crash", "after-crash", "sleep", "after-sleep", "print", "after-print"}
	for _, id := range ids {
		e.publish("rough", id, entry(id))
	}
	runs := e.b.waitRuns(api.RunQuery{Node: "rough"}, len(ids))
	check := func(i int, outcome string, ok func(hookctl.Run) bool) {
		t.Helper()
		if r := runs[i]; r.ItemID != ids[i] || r.Outcome != outcome || !ok(r) {
			t.Errorf("run of %s = %+v, want %s", ids[i], r, outcome)
		}
	}
	anyRun := func(hookctl.Run) bool { return true }
	check(0, "failed", func(r hookctl.Run) bool {
		return strings.Contains(r.Error, "ValueError: boom") && strings.Contains(r.Output, "rough.py\", line 8, in hook")
	})
	check(2, "failed", func(r hookctl.Run) bool { return r.ExitCode == 3 })
	check(4, "timeout", func(r hookctl.Run) bool { return r.Duration < hookctl.Duration(5*time.Second) })
	check(6, "ok", func(r hookctl.Run) bool {
		return strings.Contains(r.Output, "printed to stdout\nwritten to stdout")
	})
	for _, i := range []int{1, 3, 5, 7} {
		check(i, "ok", anyRun)
	}
	if got := readLines(t, out); !slices.Equal(got, ids) {
		t.Errorf("hook saw %q, want %q", got, ids)
	}
}

func (e *pyEnv) burst(t *testing.T) {
	const n = 500
	out := filepath.Join(e.dir, "burst.out")
	path := e.write("burst.py", fmt.Sprintf(`import time

OUT = open(%q, "a", buffering=1)

def hook(host, client, item):
    OUT.write(item.get("id") + "\n")
    time.sleep(0.002)
`, out))
	e.hook(t, hookctl.Hook{Key: hookctl.Key{Service: e.srv.PubSub, Node: "burst", Type: hookctl.TypePythonFile, Arg: path}})

	// One publisher: Prosody notifies in publish order, which is thus the
	// arrival order. The hook is slower than the publisher, so the items
	// queue up in the backend.
	want := make([]string, n)
	start := time.Now()
	for i := range want {
		want[i] = fmt.Sprintf("b%03d", i)
		e.publish("burst", want[i], entry(want[i]))
	}
	t.Logf("published %d items in %s; %d runs done by then", n, time.Since(start).Round(time.Millisecond), len(e.b.runs(api.RunQuery{Node: "burst"})))
	runs := e.b.waitRuns(api.RunQuery{Node: "burst"}, n)
	var order []string
	var busy time.Duration
	for _, r := range runs {
		busy += time.Duration(r.Duration)
		if r.Outcome != "ok" {
			t.Fatalf("run = %+v", r)
		}
		order = append(order, r.ItemID)
	}
	t.Logf("%d runs done %s after the first publish; mean run %s (the hook sleeps 2ms)", len(runs), time.Since(start).Round(time.Millisecond), (busy / time.Duration(len(runs))).Round(time.Microsecond))
	if !slices.Equal(order, want) {
		t.Errorf("runs are not in arrival order: %q", order)
	}
	if got := readLines(t, out); !slices.Equal(got, want) {
		t.Errorf("hook saw items out of arrival order: %q", got)
	}
}

func (e *pyEnv) loadErrors(t *testing.T) {
	ctx := context.Background()
	for _, c := range []struct {
		typ  hookctl.Type
		arg  string
		want string
	}{
		{hookctl.TypePythonFile, e.write("syntax.py", "def hook(host, client, item)\n    pass\n"), "SyntaxError"},
		{hookctl.TypePythonFile, e.write("nohook.py", "def other(host, client, item):\n    pass\n"), "no hook(host, client, item) function"},
		{hookctl.TypePythonFile, e.write("raises.py", "import hk_no_such_module\n"), "ModuleNotFoundError: No module named 'hk_no_such_module'"},
		{hookctl.TypePython, "hk_no_such_module", "ModuleNotFoundError"},
		{hookctl.TypePythonCode, "def (:\n", "SyntaxError"},
	} {
		_, err := e.b.client.Create(ctx, hookctl.Hook{Key: hookctl.Key{Profile: "default", Service: e.srv.PubSub, Node: "never", Type: c.typ, Arg: c.arg}})
		if !errors.Is(err, hookctl.ErrInvalid) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("create %s %q = %v, want ErrInvalid with %q", c.typ, c.arg, err, c.want)
		}
	}
	hooks, _, err := e.b.client.List(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range hooks {
		if h.Node == "never" {
			t.Errorf("refused hook was stored: %v", h.Key)
		}
	}

	// A file that breaks after the hook was created: the previous version
	// keeps running (no item fails because of an edit), status shows the
	// load error, and the fixed version takes over.
	out := filepath.Join(e.dir, "breaks.out")
	good := fmt.Sprintf("def hook(host, client, item):\n    open(%q, 'a').write(item.get('id') + '\\n')\n", out)
	path := e.write("breaks.py", good)
	e.hook(t, hookctl.Hook{Key: hookctl.Key{Service: e.srv.PubSub, Node: "breaks", Type: hookctl.TypePythonFile, Arg: path}})
	e.publish("breaks", "k1", entry("1"))
	e.b.waitRuns(api.RunQuery{Node: "breaks"}, 1)
	e.write("breaks.py", "raise RuntimeError('cannot load this')\n")
	waitSettled()
	e.publish("breaks", "k2", entry("2"))
	e.b.waitRuns(api.RunQuery{Node: "breaks"}, 2)
	if got := e.problems("breaks"); len(got) != 1 || !strings.Contains(got[0], "RuntimeError: cannot load this") || !strings.Contains(got[0], "previous version keeps running") {
		t.Errorf("status problems of the broken hook = %q, want its load error", got)
	}
	e.write("breaks.py", strings.Replace(good, "item.get('id')", "'fixed ' + item.get('id')", 1))
	waitSettled()
	e.publish("breaks", "k3", entry("3"))
	runs := e.b.waitRuns(api.RunQuery{Node: "breaks"}, 3)
	for _, r := range runs {
		if r.Outcome != "ok" {
			t.Errorf("run %s = %s %s, want ok", r.ItemID, r.Outcome, r.Error)
		}
	}
	if got, want := readLines(t, out), []string{"k1", "k2", "fixed k3"}; !slices.Equal(got, want) {
		t.Errorf("hook wrote %q, want %q", got, want)
	}
	if got := e.problems("breaks"); len(got) != 0 {
		t.Errorf("status problems after the fix = %q, want none", got)
	}
}

// waitSettled waits until a file just written counts as stable: the Python
// runner loads a changed file once it has not changed for 100 ms.
func waitSettled() { time.Sleep(150 * time.Millisecond) }

// problems returns the status's hook problems on node.
func (e *pyEnv) problems(node string) []string {
	e.t.Helper()
	st, err := e.b.client.Status(context.Background())
	if err != nil {
		e.t.Fatal(err)
	}
	var out []string
	for _, he := range st.HookErrors {
		if he.Hook.Node == node {
			out = append(out, he.Error)
		}
	}
	return out
}

// ownPEP: a hook on the account's own PEP node created before the node
// exists. Subscribing fails (item-not-found) and status says so; the first
// publish, through the backend, creates the node and wakes the
// subscription loop at once; catch-up then delivers that first item, and
// the next one comes live.
func (e *pyEnv) ownPEP(t *testing.T) {
	const node = "urn:xmpp:microblog:0"
	out := filepath.Join(e.dir, "pep.out")
	path := e.write("pep.py", fmt.Sprintf("OUT = %q\ndef hook(host, client, item):%s", out, recorder))
	e.b.create(hookctl.Hook{Key: hookctl.Key{Node: node, Type: hookctl.TypePythonFile, Arg: path}})
	waitUntil(t, 10*time.Second, "item-not-found reported", func() (bool, string) {
		st, err := e.b.client.Status(context.Background())
		if err != nil {
			return false, err.Error()
		}
		for _, he := range st.HookErrors {
			if he.Hook.Node == node && strings.Contains(he.Error, "item-not-found") {
				return true, ""
			}
		}
		return false, fmt.Sprintf("hook errors %+v", st.HookErrors)
	})
	own := func(id string) {
		e.b.pubsub("default", api.PubSubRequest{Op: api.OpPublish, Node: node, ItemID: id, Payload: entry(id)})
	}
	own("m1") // creates the node
	start := time.Now()
	e.subs++
	e.b.waitSubscribed("default", e.subs)
	t.Logf("subscribed %s after the node was created", time.Since(start).Round(time.Millisecond))
	own("m2")
	// m1 was published after the hook was created: catch-up delivers it once
	// the subscription exists (the item element may then be the fetched
	// one, in the pubsub namespace), before m2, each once.
	// On ejabberd the owner also gets a copy of each own-PEP item (to the
	// bare JID): m1's came before the subscription and runs live; the
	// copies after it are recorded as skipped duplicates.
	// Wait for two runs besides those skipped copies (a copy of m2 may be
	// recorded before m2 itself runs).
	var all, runs []hookctl.Run
	waitUntil(t, 20*time.Second, "runs of m1 and m2", func() (bool, string) {
		all, runs = e.b.runs(api.RunQuery{Node: node}), nil
		for _, r := range all {
			if r.Outcome == "skipped" && e.srv.Quirks().EchoesOwnPEP {
				continue
			}
			runs = append(runs, r)
		}
		return len(runs) >= 2, fmt.Sprintf("%d runs: %+v", len(all), all)
	})
	if len(runs) != 2 || runs[0].ItemID != "m1" || runs[1].ItemID != "m2" || runs[0].Outcome != "ok" || runs[1].Outcome != "ok" {
		t.Errorf("runs = %+v, want ok m1 then ok m2", all)
	}
	got := readLines(t, out)
	tail := " [{" + blogNS + "}entry=%s] default bot@localhost bot@localhost " + node
	if len(got) != 2 || !strings.HasSuffix(got[0], "}item m1"+fmt.Sprintf(tail, "m1")) ||
		got[1] != "publish {http://jabber.org/protocol/pubsub#event}item m2"+fmt.Sprintf(tail, "m2") {
		t.Errorf("hook saw:\n%s", strings.Join(got, "\n"))
	}
}

// nodeLater: a hook on a node that another account creates later. The
// subscription fails (item-not-found) and is retried with a backoff (1s,
// 2s, 4s…), so the hook fires within seconds of the node's creation.
func (e *pyEnv) nodeLater(t *testing.T) {
	const node = "later"
	out := filepath.Join(e.dir, "later.out")
	path := e.write("later.py", fmt.Sprintf("OUT = %q\ndef hook(host, client, item):%s", out, recorder))
	e.b.create(hookctl.Hook{Key: hookctl.Key{Service: e.srv.PubSub, Node: node, Type: hookctl.TypePythonFile, Arg: path}})
	waitUntil(t, 10*time.Second, "item-not-found reported", func() (bool, string) {
		got := e.problems(node)
		return len(got) == 1 && strings.Contains(got[0], "item-not-found"), fmt.Sprintf("problems %q", got)
	})
	// Another profile of the same backend: its publishes do not wake the
	// bot's subscription loop, only the retry does.
	e.b.pubsub("pub", api.PubSubRequest{Op: api.OpNodeCreate, Service: e.srv.PubSub, Node: node})
	start := time.Now()
	e.subs++
	e.b.waitSubscribed("default", e.subs)
	t.Logf("subscribed %s after the node was created", time.Since(start).Round(time.Millisecond))
	if got := e.problems(node); len(got) != 0 {
		t.Errorf("problems after subscribing: %q", got)
	}
	e.b.pubsub("pub", api.PubSubRequest{Op: api.OpPublish, Service: e.srv.PubSub, Node: node, ItemID: "l1", Payload: entry("l1")})
	runs := e.b.waitRuns(api.RunQuery{Node: node}, 1)
	if r := runs[0]; r.ItemID != "l1" || r.Outcome != "ok" {
		t.Errorf("run = %+v, want ok of l1", r)
	}
}

// readmeExample runs the complete hook of the README's "Python hooks"
// section, so that the documented example keeps working.
func (e *pyEnv) readmeExample(t *testing.T) {
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(readme), "\n## Python hooks\n")
	m := regexp.MustCompile("(?s)```python\n(.*?)```").FindStringSubmatch(section)
	if !ok || m == nil {
		t.Fatal("README: no python block in the Python hooks section")
	}
	code := strings.ReplaceAll(m[1], "pubsub.example.org", e.srv.PubSub)
	sub := filepath.Join(e.dir, "readme")
	if err := os.Mkdir(sub, 0o755); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(sub, "do_something_neat.py")
	if err := os.WriteFile(path, []byte(code), 0o644); err != nil {
		t.Fatal(err)
	}
	notes := filepath.Join(e.dir, "notes.out")
	e.hook(t, hookctl.Hook{Key: hookctl.Key{Service: e.srv.PubSub, Node: "announcements", Type: hookctl.TypePythonCode,
		Arg: fmt.Sprintf("with open(%q, 'a') as f:\n    f.write('%%s %%s\\n' %% (item[0].get('of'), item[0].text))\n", notes)}})
	e.hook(t, hookctl.Hook{Key: hookctl.Key{Service: e.srv.PubSub, Node: "readme-blog", Type: hookctl.TypePythonFile, Arg: path}})

	for _, id := range []string{"r1", "r2"} {
		e.publish("readme-blog", id, "<entry xmlns='http://www.w3.org/2005/Atom'><title>Title "+id+"</title></entry>")
	}
	runs := e.b.waitRuns(api.RunQuery{Node: "readme-blog"}, 2)
	for i, r := range runs {
		if want := fmt.Sprintf("new post r%d 'Title r%d' (%d this run of the worker)", i+1, i+1, i+1); r.Outcome != "ok" || !strings.Contains(r.Output, want) {
			t.Errorf("run %d = %+v, want ok with %q", i, r, want)
		}
	}
	e.b.waitRuns(api.RunQuery{Node: "announcements"}, 2)
	if got, want := readLines(t, filepath.Join(sub, "titles.log")), []string{"r1 bot@localhost Title r1", "r2 bot@localhost Title r2"}; !slices.Equal(got, want) {
		t.Errorf("titles.log = %q, want %q", got, want)
	}
	if got, want := readLines(t, notes), []string{"r1 Title r1", "r2 Title r2"}; !slices.Equal(got, want) {
		t.Errorf("announcements = %q, want %q", got, want)
	}
}
