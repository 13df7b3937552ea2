package daemon

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"hookctl.dev/hookctl"
	"hookctl.dev/hookctl/api"
	"hookctl.dev/hookctl/internal/xmpptest"
)

// TestRunHistorySurvivesKill9: runs recorded before the backend is killed
// with SIGKILL are listed after a restart, newest first, with their event;
// run IDs go on from the stored ones.
func TestRunHistorySurvivesKill9(t *testing.T) {
	srv := xmpptest.Start(t, xmpptest.Prosody, xmpptest.Options{Admins: []string{"pub@localhost"}})
	srv.Register(t, "pub", "pw")
	cfg := testConfig(t, srv, "bot")
	createNode(t, srv, "pub", "h", 64)
	pub := newPublisher(t, srv, "pub")
	dir := t.TempDir()
	out := filepath.Join(dir, "out")
	prog := recordScript(t, dir, out, "")

	p := startBackendProc(t, cfg)
	ctx := context.Background()
	h := hookctl.Hook{Key: hookctl.Key{Profile: "default", Service: srv.PubSub, Node: "h", Type: hookctl.TypeExec, Arg: prog},
		Name: "recorder", Persistent: true, Events: []hookctl.EventKind{hookctl.EventPublish}}
	if _, err := p.client.Create(ctx, h); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, 10*time.Second, "subscribed", func() (bool, string) {
		st, err := p.client.Status(ctx)
		return err == nil && st.Profiles[0].Subscriptions == 1, fmt.Sprint(err)
	})
	items := ids("h", 0, 20)
	for _, id := range items {
		if !pub.publish("h", id, 10*time.Second) {
			t.Fatalf("publishing %s failed", id)
		}
	}
	// The hook's own record says the runs ended; the history is not
	// asked before the kill (a query would write the pending batch).
	waitTally(t, out, items, 20*time.Second)
	time.Sleep(300 * time.Millisecond) // past the history's 50 ms batch window
	p.kill()

	p = startBackendProc(t, cfg)
	runs, err := p.client.Runs(ctx, api.RunQuery{Profile: "default", Hook: "recorder", Limit: 100})
	if err != nil {
		t.Fatal(err)
	}
	if len(runs) != len(items) {
		t.Fatalf("after kill -9 and restart: %d runs in the history, want %d", len(runs), len(items))
	}
	for i, r := range runs {
		want := items[len(items)-1-i] // newest first
		if r.ItemID != want || r.Outcome != "ok" || r.Set != "" || r.Input != nil {
			t.Errorf("run %d: item %s outcome %s input %v, want item %s ok, no input in a list", i, r.ItemID, r.Outcome, r.Input != nil, want)
		}
		if i > 0 && r.ID >= runs[i-1].ID {
			t.Errorf("run IDs not decreasing: %d after %d", r.ID, runs[i-1].ID)
		}
	}
	full, err := p.client.GetRun(ctx, runs[0].ID)
	if err != nil {
		t.Fatal(err)
	}
	if full.Input == nil || !strings.Contains(full.Input.ItemXML, items[len(items)-1]) || full.Attempt != 1 {
		t.Errorf("run in full: input %+v attempt %d, want the item's XML and attempt 1", full.Input, full.Attempt)
	}

	// New runs get new IDs, above the stored ones.
	if !pub.publish("h", "h-after", 10*time.Second) {
		t.Fatal("publishing h-after failed")
	}
	waitTally(t, out, []string{"h-after"}, 20*time.Second)
	var after []hookctl.Run
	waitUntil(t, 10*time.Second, "the new run recorded", func() (bool, string) {
		after, err = p.client.Runs(ctx, api.RunQuery{Profile: "default", Limit: 1})
		return err == nil && len(after) == 1 && after[0].ItemID == "h-after", fmt.Sprint(err, after)
	})
	if after[0].ID <= runs[0].ID {
		t.Errorf("run ID after restart %d, not above the last stored %d", after[0].ID, runs[0].ID)
	}
	since, err := p.client.Runs(ctx, api.RunQuery{Profile: "default", Since: after[0].Started})
	if err != nil || len(since) != 1 {
		t.Errorf("--since the last run: %d runs (%v), want 1", len(since), err)
	}
}
