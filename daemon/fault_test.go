package daemon

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"hookctl.dev/hookctl"
	"hookctl.dev/hookctl/api"
	"hookctl.dev/hookctl/config"
	"hookctl.dev/hookctl/internal/xmpptest"
)

// faultConfigEnv names the config file of a backend run as a child process
// by TestFaultBackendProcess, so that a test can kill it with SIGKILL.
const faultConfigEnv = "HOOKCTL_FAULT_BACKEND_CONFIG"

// TestFaultBackendProcess is not a test: re-executed with faultConfigEnv
// set, the test binary becomes a backend process.
func TestFaultBackendProcess(t *testing.T) {
	path := os.Getenv(faultConfigEnv)
	if path == "" {
		t.Skip("helper process for the fault tests")
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var cfg config.Config
	if err := json.Unmarshal(b, &cfg); err != nil {
		t.Fatal(err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	d, err := New(Options{Config: cfg, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Run(ctx); err != nil {
		t.Fatal(err)
	}
}

// backendProc is a backend in a child process.
type backendProc struct {
	cmd    *exec.Cmd
	client *api.Client
}

func startBackendProc(t *testing.T, cfg config.Config) *backendProc {
	t.Helper()
	b, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(filepath.Dir(cfg.DataDir), "config.json")
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestFaultBackendProcess$")
	cmd.Env = append(os.Environ(), faultConfigEnv+"="+path)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &backendProc{cmd: cmd}
	t.Cleanup(func() { p.kill() })
	if p.client, err = api.NewClient(api.ClientOptions{Socket: cfg.Socket}); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, 20*time.Second, "backend process ready", func() (bool, string) {
		st, err := p.client.Status(context.Background())
		if err != nil {
			return false, err.Error()
		}
		for _, ps := range st.Profiles {
			if ps.State != "connected" || ps.Subscriptions < ps.Hooks {
				return false, fmt.Sprintf("profile %s: %s, %d subscriptions", ps.Name, ps.State, ps.Subscriptions)
			}
		}
		return true, ""
	})
	return p
}

// kill ends the backend with SIGKILL: no shutdown code runs.
func (p *backendProc) kill() {
	if p.cmd.ProcessState != nil {
		return
	}
	p.cmd.Process.Kill()
	p.cmd.Wait()
}

// TestKill9WhileHooksRun: the backend is killed with SIGKILL while hooks
// run and items wait in its queues, and items keep coming while it is
// down; after a restart every item runs at least once.
func TestKill9WhileHooksRun(t *testing.T) { xmpptest.Each(t, testKill9WhileHooksRun) }

func testKill9WhileHooksRun(t *testing.T, kind xmpptest.Kind) {
	srv := xmpptest.Start(t, kind, xmpptest.Options{Admins: []string{"pub@localhost"}})
	srv.Register(t, "pub", "pw")
	cfg := testConfig(t, srv, "bot")
	createNode(t, srv, "pub", "k", 256)
	pub := newPublisher(t, srv, "pub")
	dir := t.TempDir()
	out := filepath.Join(dir, "out")
	prog := recordScript(t, dir, out, "0.01")

	p := startBackendProc(t, cfg)
	if _, err := p.client.Create(context.Background(), hookctl.Hook{Key: hookctl.Key{Profile: "default", Service: srv.PubSub, Node: "k", Type: hookctl.TypeExec, Arg: prog}, Persistent: true, Events: []hookctl.EventKind{hookctl.EventPublish}}); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, 10*time.Second, "subscribed", func() (bool, string) {
		st, err := p.client.Status(context.Background())
		return err == nil && st.Profiles[0].Subscriptions == 1, fmt.Sprint(err)
	})

	items := ids("k", 0, 200)
	killed := false
	for i, id := range items {
		if !pub.publish("k", id, 10*time.Second) {
			t.Fatalf("publishing %s failed", id)
		}
		// Kill once some have run and more are queued (the hook is slower
		// than the publisher).
		if !killed && i >= 100 {
			tl := readTally(t, out)
			t.Logf("killing the backend: %d published, %d run", i+1, len(tl.order))
			p.kill()
			killed = true
		}
	}
	p = startBackendProc(t, cfg)
	tl := waitTally(t, out, items, 60*time.Second)
	lost, dups, unknown := tl.check(items)
	t.Logf("published %d, run %d (%d runs), caught up %d, duplicates %d, lost %d", len(items), len(tl.order), len(tl.order)+dups, tl.catchup, dups, lost)
	if lost != 0 || len(unknown) != 0 {
		t.Errorf("lost %d, unknown %v", lost, unknown)
	}
	if tl.catchup == 0 {
		t.Error("nothing was caught up: the kill did not interrupt anything")
	}
}
