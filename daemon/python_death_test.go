package daemon

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"hookctl.dev/hookctl"
	"hookctl.dev/hookctl/api"
	"hookctl.dev/hookctl/internal/xmpptest"
	"hookctl.dev/hookctl/runner/runnertest"
)

// TestKill9LeavesNoPythonProcess: the backend is killed with SIGKILL while
// a Python hook runs, having started a child, a child that called setsid
// and a double-forked daemon: none of them, nor the worker, outlives the
// backend. Checked in /proc, not with the runner's bookkeeping.
func TestKill9LeavesNoPythonProcess(t *testing.T) {
	srv := xmpptest.Start(t, xmpptest.Prosody, xmpptest.Options{Admins: []string{"bot@localhost"}, MemoryStorage: true})
	cfg := testConfig(t, srv, "bot")
	dir := t.TempDir()
	started := filepath.Join(dir, "started")
	// Odd durations name this test's processes in /proc.
	code := fmt.Sprintf(`import os, subprocess, time
subprocess.Popen(["sleep", "303.25"])
subprocess.Popen(["setsid", "sleep", "304.25"])
pid = os.fork()
if pid == 0:
    os.setsid()
    if os.fork() == 0:
        os.execvp("sleep", ["sleep", "305.25"])
    os._exit(0)
os.waitpid(pid, 0)
time.sleep(0.3)
open(%q, "w").write(str(os.getpid()))
time.sleep(120)
`, started)
	p := startBackendProc(t, cfg)
	ctx := context.Background()
	if _, err := p.client.PubSub(ctx, api.PubSubRequest{Op: api.OpNodeCreate, Profile: "default", Service: srv.PubSub, Node: "death"}); err != nil {
		t.Fatal(err)
	}
	if _, err := p.client.Create(ctx, hookctl.Hook{Key: hookctl.Key{Profile: "default", Service: srv.PubSub, Node: "death", Type: hookctl.TypePythonCode, Arg: code},
		Timeout: hookctl.Duration(3 * time.Minute)}); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, 10*time.Second, "subscribed", func() (bool, string) {
		st, err := p.client.Status(ctx)
		return err == nil && st.Profiles[0].Subscriptions == 1, fmt.Sprint(err)
	})
	if _, err := p.client.PubSub(ctx, api.PubSubRequest{Op: api.OpPublish, Profile: "default", Service: srv.PubSub, Node: "death", ItemID: "d1", Payload: entry("x")}); err != nil {
		t.Fatal(err)
	}
	var worker int
	waitUntil(t, 20*time.Second, "hook started its processes", func() (bool, string) {
		b, err := os.ReadFile(started)
		worker, _ = strconv.Atoi(string(b))
		return err == nil && worker > 0, fmt.Sprint(err)
	})
	sleeps := []string{"303.25", "304.25", "305.25"}
	for _, arg := range sleeps {
		if runnertest.FindProcess("sleep", arg) == 0 {
			t.Fatalf("sleep %s not running before the kill", arg)
		}
	}
	p.kill()
	waitUntil(t, 10*time.Second, "hook processes gone", func() (bool, string) {
		var left []string
		for _, arg := range sleeps {
			if pid := runnertest.FindProcess("sleep", arg); pid != 0 {
				left = append(left, fmt.Sprintf("sleep %s (pid %d)", arg, pid))
			}
		}
		if runnertest.Alive(worker) {
			left = append(left, fmt.Sprintf("python worker (pid %d)", worker))
		}
		return len(left) == 0, strings.Join(left, ", ")
	})
}
