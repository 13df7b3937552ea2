package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"hookctl.dev/hookctl"
	"hookctl.dev/hookctl/api"
	"hookctl.dev/hookctl/config"
	"hookctl.dev/hookctl/internal/xmpptest"
)

// backend is a daemon running against a real Prosody, driven through the
// real control API over its Unix socket.
type backend struct {
	t      *testing.T
	cfg    config.Config
	client *api.Client
	cancel context.CancelFunc
	done   chan error
}

// testConfig returns a config with one profile per user, each connecting to
// srv over plain TCP. Users are registered with password "pw".
func testConfig(t *testing.T, srv *xmpptest.Server, users ...string) config.Config {
	t.Helper()
	dir, err := os.MkdirTemp("", "hkd")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	pw := filepath.Join(dir, "pw")
	if err := os.WriteFile(pw, []byte("pw\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := config.Config{DataDir: filepath.Join(dir, "data"), Profiles: map[string]config.Profile{}}
	for i, u := range users {
		srv.Register(t, u, "pw")
		name := "default"
		if i > 0 {
			name = u
		}
		cfg.Profiles[name] = config.Profile{JID: u + "@localhost", PasswordFile: pw, Server: srv.Addr, TLS: config.TLSNone}
	}
	cfg.Defaults()
	return cfg
}

// startBackend runs a daemon with cfg until the test ends (or stop).
func startBackend(t *testing.T, cfg config.Config) *backend {
	t.Helper()
	return startBackendWith(t, Options{Config: cfg})
}

// startBackendWith is startBackend with more options.
func startBackendWith(t *testing.T, opts Options) *backend {
	t.Helper()
	cfg := opts.Config
	opts.Logger = testLogger(t)
	d, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	b := &backend{t: t, cfg: cfg, cancel: cancel, done: make(chan error, 1)}
	go func() { b.done <- d.Run(ctx) }()
	b.client, err = api.NewClient(api.ClientOptions{Socket: cfg.Socket})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.stop)
	// Ready: the API answers and every profile is connected.
	waitUntil(t, 15*time.Second, "backend ready", func() (bool, string) {
		st, err := b.client.Status(ctx)
		if err != nil {
			return false, err.Error()
		}
		for _, p := range st.Profiles {
			if p.State != "connected" {
				return false, fmt.Sprintf("profile %s is %s (%s)", p.Name, p.State, p.LastError)
			}
		}
		return true, ""
	})
	return b
}

func (b *backend) stop() {
	if b.cancel == nil {
		return
	}
	b.cancel()
	b.cancel = nil
	select {
	case err := <-b.done:
		if err != nil {
			b.t.Errorf("backend stopped with: %v", err)
		}
	case <-time.After(20 * time.Second):
		b.t.Error("backend did not stop within 20s")
	}
}

func testLogger(t *testing.T) *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

// waitUntil polls cond until it holds or the timeout passes.
func waitUntil(t *testing.T, timeout time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var last string
	for {
		ok, why := cond()
		if ok {
			return
		}
		last = why
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s: %s", what, timeout, last)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (b *backend) pubsub(profile string, r api.PubSubRequest) string {
	b.t.Helper()
	r.Profile = profile
	res, err := b.client.PubSub(context.Background(), r)
	if err != nil {
		b.t.Fatalf("pubsub %s: %v", r.Op, err)
	}
	return res.ItemID
}

func (b *backend) create(h hookctl.Hook) {
	b.t.Helper()
	if h.Profile == "" {
		h.Profile = "default"
	}
	if _, err := b.client.Create(context.Background(), h); err != nil {
		b.t.Fatalf("create %s: %v", h.Key, err)
	}
}

// waitSubscribed waits until the profile's session has subscribed to every
// node its hooks need.
func (b *backend) waitSubscribed(profile string, n int) {
	b.t.Helper()
	waitUntil(b.t, 10*time.Second, "subscriptions", func() (bool, string) {
		st, err := b.client.Status(context.Background())
		if err != nil {
			return false, err.Error()
		}
		for _, p := range st.Profiles {
			if p.Name == profile {
				return p.Subscriptions >= n, fmt.Sprintf("%d subscriptions, errors %v", p.Subscriptions, st.HookErrors)
			}
		}
		return false, "no profile " + profile
	})
}

// runs returns the runs of node, oldest first.
func (b *backend) runs(q api.RunQuery) []hookctl.Run {
	b.t.Helper()
	q.Limit = 10000
	runs, err := b.client.Runs(context.Background(), q)
	if err != nil {
		b.t.Fatal(err)
	}
	for i, j := 0, len(runs)-1; i < j; i, j = i+1, j-1 {
		runs[i], runs[j] = runs[j], runs[i]
	}
	return runs
}

func (b *backend) waitRuns(q api.RunQuery, n int) []hookctl.Run {
	b.t.Helper()
	var runs []hookctl.Run
	waitUntil(b.t, 20*time.Second, fmt.Sprintf("%d runs of %+v", n, q), func() (bool, string) {
		runs = b.runs(q)
		return len(runs) >= n, fmt.Sprintf("%d runs: %+v", len(runs), runs)
	})
	return runs
}

// script writes an executable shell script into dir.
func script(t *testing.T, dir, name, body string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte("#!/bin/sh\n"+body), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

const blogNS = "urn:example:blog"

func entry(text string) string { return fmt.Sprintf("<entry xmlns='%s'>%s</entry>", blogNS, text) }

func TestExecHookFiresOnPublishAndRetract(t *testing.T) {
	xmpptest.Each(t, testExecHookFiresOnPublishAndRetract)
}

func testExecHookFiresOnPublishAndRetract(t *testing.T, kind xmpptest.Kind) {
	srv := xmpptest.Start(t, kind, xmpptest.Options{Admins: []string{"bot@localhost"}})
	b := startBackend(t, testConfig(t, srv, "bot"))
	dir := t.TempDir()
	out := filepath.Join(dir, "out")
	prog := script(t, dir, "hook.sh", `{ echo "env $HOOK_PROFILE $HOOK_SERVICE $HOOK_NODE $HOOK_EVENT $HOOK_ITEM_ID"; echo "argv $*"; cat; echo; } >> `+out+"\n")

	b.pubsub("default", api.PubSubRequest{Op: api.OpNodeCreate, Service: srv.PubSub, Node: "blog"})
	b.create(hookctl.Hook{Key: hookctl.Key{Service: srv.PubSub, Node: "blog", Type: hookctl.TypeExec, Arg: prog}, Args: []string{"--flag"}})
	b.waitSubscribed("default", 1)

	b.pubsub("default", api.PubSubRequest{Op: api.OpPublish, Service: srv.PubSub, Node: "blog", ItemID: "post-1", Payload: entry("hello")})
	runs := b.waitRuns(api.RunQuery{Node: "blog"}, 1)
	if runs[0].Outcome != "ok" || runs[0].ItemID != "post-1" || runs[0].Event != hookctl.EventPublish {
		t.Fatalf("run = %+v", runs[0])
	}
	b.pubsub("default", api.PubSubRequest{Op: api.OpRetract, Service: srv.PubSub, Node: "blog", ItemID: "post-1"})
	runs = b.waitRuns(api.RunQuery{Node: "blog"}, 2)
	if runs[1].Event != hookctl.EventRetract || runs[1].Outcome != "ok" {
		t.Fatalf("second run = %+v", runs[1])
	}

	data, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	got := string(data)
	for _, want := range []string{
		"env default pubsub.localhost blog publish post-1",
		"env default pubsub.localhost blog retract post-1",
		"argv --flag",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("hook output lacks %q:\n%s", want, got)
		}
	}
	// The event JSON on stdin carries the payload, namespace kept.
	var ev hookctl.Event
	line := strings.Split(got, "\n")[2]
	if err := json.Unmarshal([]byte(line), &ev); err != nil {
		t.Fatalf("stdin JSON %q: %v", line, err)
	}
	if !strings.Contains(ev.Payload, blogNS) || !strings.Contains(ev.Payload, "hello") {
		t.Errorf("payload = %q, want the entry with its namespace", ev.Payload)
	}
	if strings.Contains(got, "argv --flag <entry") {
		t.Error("payload leaked into argv")
	}
}

func TestTypeNotAllowedIsRefused(t *testing.T) {
	srv := xmpptest.Start(t, xmpptest.Prosody, xmpptest.Options{})
	cfg := testConfig(t, srv, "bot")
	cfg.AllowTypes = []hookctl.Type{hookctl.TypeExpr}
	b := startBackend(t, cfg)
	_, err := b.client.Create(context.Background(), hookctl.Hook{Key: hookctl.Key{Profile: "default", Node: "n", Type: hookctl.TypeHTTP, Arg: "http://127.0.0.1:1/"}})
	if !errors.Is(err, hookctl.ErrTypeNotAllowed) {
		t.Fatalf("create http hook = %v, want ErrTypeNotAllowed", err)
	}
	hooks, _, err := b.client.List(context.Background(), "")
	if err != nil || len(hooks) != 0 {
		t.Fatalf("registry after refusal: %v, %v", hooks, err)
	}
}

func TestPubSubRefusalIsAClearClientError(t *testing.T) {
	xmpptest.Each(t, testPubSubRefusalIsAClearClientError)
}

func testPubSubRefusalIsAClearClientError(t *testing.T, kind xmpptest.Kind) {
	srv := xmpptest.Start(t, kind, xmpptest.Options{}) // no admins: nobody may create nodes
	b := startBackend(t, testConfig(t, srv, "bot"))
	_, err := b.client.PubSub(context.Background(), api.PubSubRequest{Op: api.OpNodeCreate, Profile: "default", Service: srv.PubSub, Node: "blog"})
	if !errors.Is(err, hookctl.ErrInvalid) || !strings.Contains(err.Error(), "forbidden") {
		t.Fatalf("node create as a non-admin = %v, want an invalid-request error naming forbidden", err)
	}
	_, err = b.client.PubSub(context.Background(), api.PubSubRequest{Op: api.OpNodeCreate, Profile: "nobody", Node: "blog"})
	if !errors.Is(err, hookctl.ErrNotFound) {
		t.Fatalf("unknown profile = %v, want ErrNotFound", err)
	}
}

// A hook is in force when create returns: an item published right after
// fires it, even on a node the profile already follows (no subscription,
// hence no catch-up, to cover a late start).
func TestHookFiresForAnItemPublishedRightAfterCreate(t *testing.T) {
	xmpptest.Each(t, testHookFiresForAnItemPublishedRightAfterCreate)
}

func testHookFiresForAnItemPublishedRightAfterCreate(t *testing.T, kind xmpptest.Kind) {
	srv := xmpptest.Start(t, kind, xmpptest.Options{Admins: []string{"bot@localhost"}, MemoryStorage: true})
	b := startBackend(t, testConfig(t, srv, "bot"))
	b.pubsub("default", api.PubSubRequest{Op: api.OpNodeCreate, Service: srv.PubSub, Node: "n"})
	b.create(hookctl.Hook{Name: "first", Key: hookctl.Key{Service: srv.PubSub, Node: "n", Type: hookctl.TypeExpr, Arg: `log("first")`}})
	b.waitSubscribed("default", 1)
	const rounds = 15
	for i := range rounds {
		name := fmt.Sprintf("h%d", i)
		b.create(hookctl.Hook{Name: name, Key: hookctl.Key{Service: srv.PubSub, Node: "n", Type: hookctl.TypeExpr, Arg: fmt.Sprintf("log(%d)", i)}})
		b.pubsub("default", api.PubSubRequest{Op: api.OpPublish, Service: srv.PubSub, Node: "n", ItemID: name, Payload: entry(name)})
	}
	b.waitRuns(api.RunQuery{Hook: "first"}, rounds)
	for i := range rounds {
		name := fmt.Sprintf("h%d", i)
		got := b.waitRuns(api.RunQuery{Hook: name}, 1)
		if got[0].ItemID != name {
			t.Errorf("hook %s first ran for %s, want the item published right after its creation", name, got[0].ItemID)
		}
	}
}
