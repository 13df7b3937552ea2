package daemon

import (
	"context"
	"sync"
	"testing"
	"time"

	"hookctl.dev/hookctl"
	"hookctl.dev/hookctl/api"
	"hookctl.dev/hookctl/internal/xmpptest"
)

// TestManualRunsGoThroughTheHookQueue: trigger and replay run in the
// hook's own queue: they never overlap its other runs (concurrency 1) and
// are bounded by its timeout.
func TestManualRunsGoThroughTheHookQueue(t *testing.T) {
	srv := xmpptest.Start(t, xmpptest.Prosody, xmpptest.Options{Admins: []string{"bot@localhost"}, MemoryStorage: true})
	cfg := testConfig(t, srv, "bot")
	b := startBackend(t, cfg)
	ctx := context.Background()
	b.pubsub("default", api.PubSubRequest{Op: api.OpNodeCreate, Service: srv.PubSub, Node: "q"})
	dir := t.TempDir()
	// Sleeps 0.3s, or 10s for the item "slow" (past the 1s timeout).
	prog := script(t, dir, "slow.sh", `read -r ev || true
case "$HOOK_ITEM_ID" in slow) sleep 10;; *) sleep 0.3;; esac
echo "done $HOOK_ITEM_ID"
`)
	b.create(hookctl.Hook{Name: "queued", Persistent: true, Timeout: hookctl.Duration(time.Second),
		Key: hookctl.Key{Service: srv.PubSub, Node: "q", Type: hookctl.TypeExec, Arg: prog}})
	b.waitSubscribed("default", 1)
	b.publish("default", srv.PubSub, "q", "a", entry("a"))
	b.publish("default", srv.PubSub, "q", "slow", entry("slow"))

	// Three manual runs at once, while the live ones are queued or running.
	var wg sync.WaitGroup
	for range 3 {
		wg.Go(func() {
			r, err := b.client.Trigger(ctx, api.TriggerRequest{Hook: "queued", ItemID: "a"})
			if err != nil || r.Outcome != "ok" || r.Manual != "trigger" {
				t.Errorf("trigger: %+v, %v", r, err)
			}
		})
	}
	wg.Wait()
	runs := b.waitRunsOf("queued", 5) // oldest first
	for i := 1; i < len(runs); i++ {
		prevEnd := runs[i-1].Started.Add(time.Duration(runs[i-1].Duration))
		if runs[i].Started.Before(prevEnd) {
			t.Errorf("run %d (%s %s) started %v before run %d ended: the hook's concurrency 1 was not kept",
				runs[i].ID, runs[i].ItemID, runs[i].Manual, prevEnd.Sub(runs[i].Started), runs[i-1].ID)
		}
	}
	// The timeout holds for a replay too.
	var slow hookctl.Run
	for _, r := range runs {
		if r.ItemID == "slow" {
			slow = r
		}
	}
	if slow.Outcome != "timeout" {
		t.Fatalf("live run of slow: %+v, want timeout", slow)
	}
	start := time.Now()
	r, err := b.client.Replay(ctx, slow.ID)
	if err != nil || r.Outcome != "timeout" || time.Since(start) > 5*time.Second {
		t.Errorf("replay of the slow run: %+v, %v after %v; want a timeout after about 1s", r, err, time.Since(start))
	}
}
