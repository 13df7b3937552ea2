package daemon

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"hookctl.dev/hookctl"
	"hookctl.dev/hookctl/api"
	"hookctl.dev/hookctl/internal/xmpptest"
	"hookctl.dev/hookctl/runner/runnertest"
)

// The runtime tests: events from a real Prosody reach the hooks through the
// real daemon, and what the hooks did is read back through the control API
// and from their side effects. One Prosody and one backend serve many
// subtests; each subtest uses nodes of its own.

// runsOf returns the runs of the hook named name, oldest first.
func (b *backend) runsOf(name string) []hookctl.Run {
	b.t.Helper()
	return b.runs(api.RunQuery{Hook: name})
}

// waitRunsOf waits until the hook named name has at least n runs.
func (b *backend) waitRunsOf(name string, n int) []hookctl.Run {
	b.t.Helper()
	return b.waitRuns(api.RunQuery{Hook: name}, n)
}

func (b *backend) publish(profile, service, node, id, payload string) {
	b.t.Helper()
	b.pubsub(profile, api.PubSubRequest{Op: api.OpPublish, Service: service, Node: node, ItemID: id, Payload: payload})
}

func (b *backend) status() api.Status {
	b.t.Helper()
	st, err := b.client.Status(context.Background())
	if err != nil {
		b.t.Fatal(err)
	}
	return st
}

func (b *backend) profileStatus(name string) api.ProfileStatus {
	b.t.Helper()
	for _, p := range b.status().Profiles {
		if p.Name == name {
			return p
		}
	}
	b.t.Fatalf("no profile %q", name)
	return api.ProfileStatus{}
}

func itemIDs(runs []hookctl.Run) []string {
	out := make([]string, len(runs))
	for i, r := range runs {
		out[i] = string(r.Event) + ":" + r.ItemID
	}
	return out
}

func readPID(t *testing.T, path string) int {
	t.Helper()
	var pid int
	waitUntil(t, 10*time.Second, "pid file "+path, func() (bool, string) {
		b, err := os.ReadFile(path)
		if err != nil {
			return false, err.Error()
		}
		pid, err = strconv.Atoi(strings.TrimSpace(string(b)))
		return err == nil && pid > 0, fmt.Sprintf("%q", b)
	})
	return pid
}

func TestRuntime(t *testing.T) {
	srv := xmpptest.Start(t, xmpptest.Prosody, xmpptest.Options{Admins: []string{"bot@localhost"}, MemoryStorage: true})
	b := startBackend(t, testConfig(t, srv, "bot", "alice"))
	svc := srv.PubSub
	node := func(name string) string {
		b.pubsub("default", api.PubSubRequest{Op: api.OpNodeCreate, Service: svc, Node: name})
		return name
	}
	// hook creates h on svc and waits until its profile has subscribed to
	// every node of its hooks.
	subs := map[string]int{}
	hook := func(h hookctl.Hook) {
		t.Helper()
		if h.Profile == "" {
			h.Profile = "default"
		}
		h.Service = svc
		b.create(h)
		subs[h.Profile+" "+h.Node]++
		n := 0
		for k := range subs {
			if strings.HasPrefix(k, h.Profile+" ") {
				n++
			}
		}
		b.waitSubscribed(h.Profile, n)
	}

	t.Run("expr fires with the item", func(t *testing.T) {
		n := node("expr-fires")
		hook(hookctl.Hook{Name: "expr-fires", Key: hookctl.Key{Node: n, Type: hookctl.TypeExpr,
			Arg: `log(event.kind, event.profile, event.service, event.node, item.id, item.payload)`}})
		b.publish("default", svc, n, "p1", entry("hello expr"))
		r := b.waitRunsOf("expr-fires", 1)[0]
		want := "publish default pubsub.localhost expr-fires p1 <entry xmlns=\"" + blogNS + "\">hello expr</entry>"
		if r.Outcome != "ok" || r.ItemID != "p1" || r.Event != hookctl.EventPublish || !strings.Contains(r.Output, want) {
			t.Fatalf("run = %+v\nwant output containing %q", r, want)
		}
		// Retract reaches the same hook with the retracted item's id.
		b.pubsub("default", api.PubSubRequest{Op: api.OpRetract, Service: svc, Node: n, ItemID: "p1"})
		r = b.waitRunsOf("expr-fires", 2)[1]
		if r.Outcome != "ok" || r.Event != hookctl.EventRetract || r.ItemID != "p1" ||
			!strings.Contains(r.Output, "retract default pubsub.localhost expr-fires p1") {
			t.Fatalf("retract run = %+v", r)
		}
	})

	t.Run("http posts the event", func(t *testing.T) {
		n := node("http-fires")
		got := make(chan hookctl.Event, 4)
		hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			var ev hookctl.Event
			body, _ := io.ReadAll(r.Body)
			if err := json.Unmarshal(body, &ev); err != nil || r.Method != http.MethodPost {
				http.Error(w, fmt.Sprintf("%s %q: %v", r.Method, body, err), http.StatusBadRequest)
				return
			}
			got <- ev
			fmt.Fprint(w, "thanks")
		}))
		t.Cleanup(hs.Close)
		hook(hookctl.Hook{Name: "http-fires", Key: hookctl.Key{Node: n, Type: hookctl.TypeHTTP, Arg: hs.URL + "/hook"}})
		b.publish("default", svc, n, "h1", entry("hello http"))
		r := b.waitRunsOf("http-fires", 1)[0]
		if r.Outcome != "ok" || r.ExitCode != 200 || !strings.Contains(r.Output, "thanks") {
			t.Fatalf("run = %+v", r)
		}
		ev := <-got
		if ev.Kind != hookctl.EventPublish || ev.ItemID != "h1" || ev.Node != n || ev.Service != svc || ev.Profile != "default" ||
			ev.Payload != "<entry xmlns=\""+blogNS+"\">hello http</entry>" || !strings.Contains(ev.ItemXML, "h1") {
			t.Fatalf("posted event = %+v", ev)
		}
	})

	t.Run("filter and events select", func(t *testing.T) {
		n := node("select")
		// Each hook sees the marker's publish and/or retract last: a hook's
		// runs are recorded in order, so once its marker run is there, every
		// earlier event has been handled (or rejected) by that hook.
		hook(hookctl.Hook{Name: "sel-filter", Key: hookctl.Key{Node: n, Type: hookctl.TypeExpr, Arg: `log("f")`},
			Filter: `(item.id startsWith "keep-" && item.payload contains "yes") || item.id == "marker"`})
		hook(hookctl.Hook{Name: "sel-retract", Key: hookctl.Key{Node: n, Type: hookctl.TypeExpr, Arg: `log("r")`},
			Events: []hookctl.EventKind{hookctl.EventRetract}})
		b.publish("default", svc, n, "keep-1", entry("yes"))
		b.publish("default", svc, n, "drop-1", entry("yes"))
		b.publish("default", svc, n, "keep-2", entry("no"))
		b.publish("default", svc, n, "keep-3", entry("yes"))
		b.pubsub("default", api.PubSubRequest{Op: api.OpRetract, Service: svc, Node: n, ItemID: "drop-1"})
		b.publish("default", svc, n, "marker", entry("marker"))
		b.pubsub("default", api.PubSubRequest{Op: api.OpRetract, Service: svc, Node: n, ItemID: "marker"})

		// The filter hook selects publish and retract (the default); its
		// filter rejects drop-1 (id), keep-2 (payload) and drop-1's retract.
		want := []string{"publish:keep-1", "publish:keep-3", "publish:marker", "retract:marker"}
		if got := itemIDs(b.waitRunsOf("sel-filter", len(want))); !slices.Equal(got, want) {
			t.Errorf("filtered hook ran for %v, want %v", got, want)
		}
		want = []string{"retract:drop-1", "retract:marker"}
		if got := itemIDs(b.waitRunsOf("sel-retract", len(want))); !slices.Equal(got, want) {
			t.Errorf("retract-only hook ran for %v, want %v", got, want)
		}
	})

	t.Run("order kept under a burst", func(t *testing.T) {
		n := node("burst")
		dir := t.TempDir()
		out := filepath.Join(dir, "order")
		// A slow hook, so that events queue up behind the running one.
		prog := script(t, dir, "slow.sh", "sleep 0.01; echo \"$HOOK_ITEM_ID\" >> "+out+"\n")
		hook(hookctl.Hook{Name: prog, Key: hookctl.Key{Node: n, Type: hookctl.TypeExec, Arg: prog}})
		hook(hookctl.Hook{Name: "burst-expr", Key: hookctl.Key{Node: n, Type: hookctl.TypeExpr, Arg: `log(item.id)`}})
		const items = 40
		var want []string
		for i := range items {
			id := fmt.Sprintf("b%02d", i)
			want = append(want, id)
			b.publish("default", svc, n, id, entry(id))
		}
		for _, name := range []string{prog, "burst-expr"} {
			runs := b.waitRunsOf(name, items)
			var got []string
			for _, r := range runs {
				if r.Outcome != "ok" {
					t.Errorf("%s: run %+v", name, r)
				}
				got = append(got, r.ItemID)
			}
			if !slices.Equal(got, want) {
				t.Errorf("%s ran in order %v, want %v", name, got, want)
			}
			for i := 1; i < len(runs); i++ {
				if runs[i].Started.Before(runs[i-1].Started) {
					t.Errorf("%s: run %s started before run %s", name, runs[i].ItemID, runs[i-1].ItemID)
				}
			}
		}
		data, err := os.ReadFile(out)
		if err != nil {
			t.Fatal(err)
		}
		if got := strings.Fields(string(data)); !slices.Equal(got, want) {
			t.Errorf("exec hook wrote %v, want %v", got, want)
		}
	})

	t.Run("timeout kills the hook, others keep running", func(t *testing.T) {
		n := node("timeout")
		dir := t.TempDir()
		out := filepath.Join(dir, "out")
		// On "hang", the script starts a child and waits for it: the whole
		// process group must be killed at the timeout.
		prog := script(t, dir, "hang.sh", `if [ "$HOOK_ITEM_ID" = hang ]; then
  echo $$ > `+dir+`/sh.pid
  sleep 60 &
  echo $! > `+dir+`/child.pid
  wait
  echo late >> `+out+`
fi
echo "$HOOK_ITEM_ID" >> `+out+"\n")
		hook(hookctl.Hook{Name: prog, Key: hookctl.Key{Node: n, Type: hookctl.TypeExec, Arg: prog},
			Timeout: hookctl.Duration(700 * time.Millisecond)})
		hook(hookctl.Hook{Name: "timeout-other", Key: hookctl.Key{Node: n, Type: hookctl.TypeExpr, Arg: `log(item.id)`}})

		b.publish("default", svc, n, "hang", entry("hang"))
		shPID, childPID := readPID(t, filepath.Join(dir, "sh.pid")), readPID(t, filepath.Join(dir, "child.pid"))
		// While the exec hook hangs, the other hook on the node runs.
		other := b.waitRunsOf("timeout-other", 1)
		if other[0].ItemID != "hang" || other[0].Outcome != "ok" {
			t.Fatalf("other hook run = %+v", other[0])
		}
		b.publish("default", svc, n, "next", entry("next"))
		runs := b.waitRunsOf(prog, 2)
		if runs[0].ItemID != "hang" || runs[0].Outcome != "timeout" {
			t.Errorf("hanging run = %+v, want outcome timeout", runs[0])
		}
		if d := time.Duration(runs[0].Duration); d < 700*time.Millisecond || d > 5*time.Second {
			t.Errorf("hanging run took %s, want about its 700ms timeout", d)
		}
		if hungUntil := runs[0].Started.Add(time.Duration(runs[0].Duration)); !other[0].Started.Before(hungUntil) {
			t.Errorf("other hook ran at %s, after the hanging run ended at %s", other[0].Started, hungUntil)
		}
		if runs[1].ItemID != "next" || runs[1].Outcome != "ok" {
			t.Errorf("run after the timeout = %+v", runs[1])
		}
		waitUntil(t, 5*time.Second, "hook processes gone", func() (bool, string) {
			return !runnertest.Alive(shPID) && !runnertest.Alive(childPID), fmt.Sprintf("sh %d alive %v, child %d alive %v", shPID, runnertest.Alive(shPID), childPID, runnertest.Alive(childPID))
		})
		data, _ := os.ReadFile(out)
		if got := strings.Fields(string(data)); !slices.Equal(got, []string{"next"}) {
			t.Errorf("hook output %v, want only [next] (the hanging run must not go on)", got)
		}
		if len(b.waitRunsOf("timeout-other", 2)) != 2 {
			t.Error("other hook missed an event")
		}
	})

	t.Run("expr publish lands on the node", func(t *testing.T) {
		src, dst := node("copy-src"), node("copy-dst")
		hook(hookctl.Hook{Name: "copier", Key: hookctl.Key{Node: src, Type: hookctl.TypeExpr,
			Arg: `publish("` + svc + `", "` + dst + `", "<entry xmlns='` + blogNS + `'>copy of " + item.id + "</entry>", "copy-" + item.id)`},
			Events: []hookctl.EventKind{hookctl.EventPublish}})
		hook(hookctl.Hook{Name: "copy-seen", Key: hookctl.Key{Node: dst, Type: hookctl.TypeExpr, Arg: `log(item.payload)`}})
		b.publish("default", svc, src, "c1", entry("original"))
		if r := b.waitRunsOf("copier", 1)[0]; r.Outcome != "ok" {
			t.Fatalf("copier run = %+v", r)
		}
		r := b.waitRunsOf("copy-seen", 1)[0]
		if r.ItemID != "copy-c1" || !strings.Contains(r.Output, "<entry xmlns=\""+blogNS+"\">copy of c1</entry>") {
			t.Fatalf("run on the destination node = %+v", r)
		}
	})

	t.Run("two profiles on one node", func(t *testing.T) {
		n := node("shared")
		hook(hookctl.Hook{Name: "shared-bot", Key: hookctl.Key{Node: n, Type: hookctl.TypeExpr, Arg: `log(event.profile)`}})
		hook(hookctl.Hook{Name: "shared-alice", Key: hookctl.Key{Profile: "alice", Node: n, Type: hookctl.TypeExpr, Arg: `log(event.profile)`}})
		b.publish("default", svc, n, "s1", entry("one"))
		bot, al := b.waitRunsOf("shared-bot", 1), b.waitRunsOf("shared-alice", 1)
		if !strings.Contains(bot[0].Output, "default") || !strings.Contains(al[0].Output, "alice") || al[0].ItemID != "s1" {
			t.Fatalf("runs: bot %+v, alice %+v", bot[0], al[0])
		}
		removed, err := b.client.Remove(context.Background(), hookctl.Match{Profile: "alice", Service: svc, Node: n})
		if err != nil || removed != 1 {
			t.Fatalf("remove alice's hook = %d, %v", removed, err)
		}
		delete(subs, "alice "+n)
		// alice made the subscription, so she drops it with her last hook.
		waitUntil(t, 10*time.Second, "alice unsubscribed", func() (bool, string) {
			p := b.profileStatus("alice")
			return p.Subscriptions == 0, fmt.Sprintf("%d subscriptions", p.Subscriptions)
		})
		b.publish("default", svc, n, "s2", entry("two"))
		if got := itemIDs(b.waitRunsOf("shared-bot", 2)); !slices.Equal(got, []string{"publish:s1", "publish:s2"}) {
			t.Errorf("bot's hook ran for %v", got)
		}
		eventsBefore := b.profileStatus("alice").Events
		b.publish("default", svc, n, "s3", entry("three"))
		b.waitRunsOf("shared-bot", 3)
		if got := itemIDs(b.runsOf("shared-alice")); !slices.Equal(got, []string{"publish:s1"}) {
			t.Errorf("removed hook ran for %v", got)
		}
		if ev := b.profileStatus("alice").Events; ev != eventsBefore {
			t.Errorf("alice still receives events of the node: %d, then %d", eventsBefore, ev)
		}
	})

	t.Run("node X and Xy fire once each", func(t *testing.T) {
		x, xy := node("X"), node("Xy")
		hook(hookctl.Hook{Name: "hook-X", Key: hookctl.Key{Node: x, Type: hookctl.TypeExpr, Arg: `log(event.node)`}})
		hook(hookctl.Hook{Name: "hook-Xy", Key: hookctl.Key{Node: xy, Type: hookctl.TypeExpr, Arg: `log(event.node)`}})
		// Two hooks of the same profile on X, one subscription: still one run each.
		hook(hookctl.Hook{Name: "hook-X2", Key: hookctl.Key{Node: x, Type: hookctl.TypeExpr, Arg: `log("second " + event.node)`}})
		b.publish("default", svc, x, "x1", entry("x"))
		b.publish("default", svc, xy, "xy1", entry("xy"))
		// A last marker on each node: once a hook has run for it, every
		// earlier run of that hook is recorded (one hook's runs are in order).
		b.publish("default", svc, x, "marker", entry("x"))
		b.publish("default", svc, xy, "marker", entry("xy"))
		for name, want := range map[string][]string{
			"hook-X":  {"publish:x1", "publish:marker"},
			"hook-X2": {"publish:x1", "publish:marker"},
			"hook-Xy": {"publish:xy1", "publish:marker"},
		} {
			if got := itemIDs(b.waitRunsOf(name, len(want))); !slices.Equal(got, want) {
				t.Errorf("%s ran for %v, want %v", name, got, want)
			}
		}
	})

	t.Run("subscribe error is reported", func(t *testing.T) {
		k := hookctl.Key{Profile: "default", Service: svc, Node: "no-such-node", Type: hookctl.TypeExpr, Arg: `log(1)`}
		b.create(hookctl.Hook{Key: k})
		waitUntil(t, 10*time.Second, "subscribe error in status", func() (bool, string) {
			st := b.status()
			for _, he := range st.HookErrors {
				if he.Hook == k {
					return strings.Contains(he.Error, "item-not-found"), he.Error
				}
			}
			return false, fmt.Sprintf("hook errors %+v", st.HookErrors)
		})
		// Once the hook is gone, so is its error.
		if _, err := b.client.Remove(context.Background(), hookctl.Match{Profile: k.Profile, Service: k.Service, Node: k.Node}); err != nil {
			t.Fatal(err)
		}
		waitUntil(t, 10*time.Second, "error cleared", func() (bool, string) {
			st := b.status()
			return len(st.HookErrors) == 0, fmt.Sprintf("%+v", st.HookErrors)
		})
	})
}

// TestPersistentHooksSurviveBackendRestart: a persistent hook is stored and
// fires after the backend restarts; a temporary one is gone.
func TestPersistentHooksSurviveBackendRestart(t *testing.T) {
	srv := xmpptest.Start(t, xmpptest.Prosody, xmpptest.Options{Admins: []string{"bot@localhost"}, MemoryStorage: true})
	cfg := testConfig(t, srv, "bot")
	b := startBackend(t, cfg)
	b.pubsub("default", api.PubSubRequest{Op: api.OpNodeCreate, Service: srv.PubSub, Node: "persist"})
	keep := hookctl.Hook{Name: "keep", Persistent: true, Key: hookctl.Key{Service: srv.PubSub, Node: "persist", Type: hookctl.TypeExpr, Arg: `log("kept " + item.id)`}}
	temp := hookctl.Hook{Name: "temp", Key: hookctl.Key{Service: srv.PubSub, Node: "persist", Type: hookctl.TypeExpr, Arg: `log("temp " + item.id)`}}
	b.create(keep)
	b.create(temp)
	b.waitSubscribed("default", 1)
	b.publish("default", srv.PubSub, "persist", "before", entry("1"))
	b.waitRunsOf("keep", 1)
	b.waitRunsOf("temp", 1)
	b.stop()

	b = startBackend(t, cfg)
	hooks, _, err := b.client.List(context.Background(), "default")
	if err != nil || len(hooks) != 1 || hooks[0].Name != "keep" {
		t.Fatalf("hooks after restart = %+v, %v", hooks, err)
	}
	b.waitSubscribed("default", 1)
	b.publish("default", srv.PubSub, "persist", "after", entry("2"))
	// The run history is stored too: the run from before the restart is
	// still listed (runsOf lists oldest first).
	runs := b.waitRunsOf("keep", 2)
	if runs[1].ItemID != "after" || runs[1].Outcome != "ok" || !strings.Contains(runs[1].Output, "kept after") || runs[0].ItemID != "before" {
		t.Fatalf("runs after restart = %+v", runs)
	}
	if n := len(b.runsOf("temp")); n != 1 {
		t.Errorf("temporary hook: %d runs in the history, want only the one before the restart", n)
	}
}

// TestEventsResumeAfterProsodyRestart: when the server goes away and comes
// back, the session reconnects, re-subscribes, and hooks fire again.
func TestEventsResumeAfterProsodyRestart(t *testing.T) {
	xmpptest.Each(t, testEventsResumeAfterProsodyRestart)
}

func testEventsResumeAfterProsodyRestart(t *testing.T, kind xmpptest.Kind) {
	// File storage: the node and its items must outlive the server process.
	srv := xmpptest.Start(t, kind, xmpptest.Options{Admins: []string{"bot@localhost"}})
	b := startBackend(t, testConfig(t, srv, "bot"))
	b.pubsub("default", api.PubSubRequest{Op: api.OpNodeCreate, Service: srv.PubSub, Node: "resume"})
	b.create(hookctl.Hook{Name: "resume", Key: hookctl.Key{Service: srv.PubSub, Node: "resume", Type: hookctl.TypeExpr, Arg: `log(item.id)`}})
	b.waitSubscribed("default", 1)
	b.publish("default", srv.PubSub, "resume", "r1", entry("1"))
	b.waitRunsOf("resume", 1)

	srv.Restart(t)
	waitUntil(t, 20*time.Second, "reconnected", func() (bool, string) {
		p := b.profileStatus("default")
		return p.State == "connected" && p.Reconnects >= 1 && p.Subscriptions == 1,
			fmt.Sprintf("%s, %d reconnects, %d subscriptions, last error %q", p.State, p.Reconnects, p.Subscriptions, p.LastError)
	})
	b.publish("default", srv.PubSub, "resume", "r2", entry("2"))
	runs := b.waitRunsOf("resume", 2)
	if got := itemIDs(runs); !slices.Equal(got, []string{"publish:r1", "publish:r2"}) {
		t.Fatalf("runs = %v", got)
	}
}
