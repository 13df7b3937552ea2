package dispatch

import (
	"context"
	"errors"
	"sync"
	"testing"

	"hookctl.dev/hookctl"
)

// TestSuspendedHookSkipsWithoutARunner: a suspended hook's events are
// recorded as skipped (and count as handled for the completion callback),
// it keeps no runner, cannot be run by hand, and runs again once resumed.
func TestSuspendedHookSkipsWithoutARunner(t *testing.T) {
	f := &fakeFactory{}
	var mu sync.Mutex
	var durable []hookctl.Run
	d := newTest(t, f, Options{OnRun: func(r hookctl.Run) { mu.Lock(); durable = append(durable, r); mu.Unlock() }, LastRunID: 41})
	h := testHook("n", "/a")
	d.SetHooks([]hookctl.Hook{h})
	if n := dispatchWait(t, d, testEvent("n", hookctl.EventPublish, "1")); n != 1 {
		t.Fatalf("matched %d", n)
	}
	h.Suspended = true
	d.SetHooks([]hookctl.Hook{h})
	waitFor(t, "the runner closed", func() bool { return f.closedN.Load() == 1 })
	if n := dispatchWait(t, d, testEvent("n", hookctl.EventPublish, "2")); n != 1 {
		t.Fatalf("matched %d while suspended, want 1 (recorded as skipped)", n)
	}
	if _, err := d.RunNow(context.Background(), h.Key, testEvent("n", hookctl.EventPublish, "3"), "trigger"); !errors.Is(err, hookctl.ErrInvalid) {
		t.Errorf("RunNow of a suspended hook: %v", err)
	}
	h.Suspended = false
	d.SetHooks([]hookctl.Hook{h})
	r, err := d.RunNow(context.Background(), h.Key, testEvent("n", hookctl.EventPublish, "3"), "trigger")
	if err != nil || r.Outcome != "ok" || r.Manual != "trigger" || r.Input == nil || r.Input.ItemID != "3" {
		t.Fatalf("RunNow after resume: %+v, %v", r, err)
	}
	runs := d.Runs(hookctl.RunQuery{})
	if len(runs) != 3 || runs[1].Outcome != string(Skipped) || runs[0].ID != 44 || runs[2].ID != 42 {
		t.Errorf("runs (newest first) = %+v, want ok 42, skipped 43, trigger 44", runs)
	}
	if runs[0].Input != nil {
		t.Error("the memory ring keeps the event although the durable history has it")
	}
	mu.Lock()
	defer mu.Unlock()
	if len(durable) != 3 || durable[2].Input == nil {
		t.Errorf("OnRun got %d runs, the last with input %v", len(durable), durable[len(durable)-1].Input)
	}
	if f.made.Load() != 2 {
		t.Errorf("runners made: %d, want 2 (none while suspended)", f.made.Load())
	}
}
