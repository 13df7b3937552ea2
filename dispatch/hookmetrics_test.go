package dispatch

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"hookctl.dev/hookctl"
)

// TestHookMetricsAreOptIn: per-hook series exist only when asked for, and
// only for named hooks (their cardinality is the user's to bound).
func TestHookMetricsAreOptIn(t *testing.T) {
	for _, on := range []bool{false, true} {
		reg := prometheus.NewRegistry()
		d := newTest(t, &fakeFactory{}, Options{Metrics: reg, HookMetrics: on})
		named, unnamed := testHook("n", "/a"), testHook("n", "/b")
		named.Owner, named.Name = "blog", "rebuild"
		d.SetHooks([]hookctl.Hook{named, unnamed})
		dispatchWait(t, d, testEvent("n", hookctl.EventPublish, "1"))
		waitFor(t, "2 runs", func() bool { return len(d.Runs(hookctl.RunQuery{})) == 2 })
		n, err := testutil.GatherAndCount(reg, "hookctl_hook_runs_total")
		if err != nil {
			t.Fatal(err)
		}
		if want := map[bool]int{false: 0, true: 1}[on]; n != want {
			t.Errorf("HookMetrics=%v: %d hookctl_hook_runs_total series, want %d (the named hook only)", on, n, want)
		}
	}
}
