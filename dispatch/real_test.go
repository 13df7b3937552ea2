package dispatch

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"hookctl.dev/hookctl"
	"hookctl.dev/hookctl/runner"
	"hookctl.dev/hookctl/runner/execrunner"
	"hookctl.dev/hookctl/runner/exprrunner"
	"hookctl.dev/hookctl/runner/runnertest"
)

// TestRealRunners dispatches to real exec hooks (processes) and an expr
// hook: order, exit codes, output, timeouts and publishing go end to end.
func TestRealRunners(t *testing.T) {
	dir := t.TempDir()
	log := filepath.Join(dir, "order.log")
	appendID := runnertest.Script(t, dir, "append.sh", `echo "$HOOK_ITEM_ID" >> `+log+`
case "$HOOK_ITEM_ID" in
  fail) echo "failing on purpose" >&2; exit 7;;
  sleep) exec sleep 30;;
esac
echo "done $HOOK_ITEM_ID"`)
	host := runnertest.NewHost(io.Discard)
	d := New(Options{
		Factories: map[hookctl.Type]runner.Factory{
			hookctl.TypeExec: execrunner.NewFactory(execrunner.Options{}),
			hookctl.TypeExpr: exprrunner.NewFactory(exprrunner.Options{}),
		},
		Host: host,
	})
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := d.Close(ctx); err != nil {
			t.Errorf("Close: %v", err)
		}
	}()
	ex := testHook("blog", appendID)
	ex.Name = "append"
	ex.Timeout = hookctl.Duration(300 * time.Millisecond)
	ex.Filter = `item.id != "skip"`
	xp := hookctl.Hook{Key: hookctl.Key{Profile: testProfile, Service: testService, Node: "blog", Type: hookctl.TypeExpr,
		Arg: `log("saw", item.id) && publish("pubsub.example.org", "mirror", item.payload, item.id) != ""`}}
	d.SetHooks([]hookctl.Hook{ex, xp})
	if errs := d.HookErrors(); len(errs) != 0 {
		t.Fatalf("HookErrors: %+v", errs)
	}

	ids := []string{"1", "skip", "fail", "2", "sleep", "3"}
	var wg sync.WaitGroup
	matched := make([]int, len(ids))
	for i, id := range ids {
		wg.Add(1)
		ev := testEvent("blog", hookctl.EventPublish, id)
		ev.Payload = "<p>" + id + "</p>"
		d.Dispatch(ev, func(n int) { matched[i] = n; wg.Done() })
	}
	wg.Wait()
	if diff := cmp.Diff([]int{2, 1, 2, 2, 2, 2}, matched); diff != "" {
		t.Errorf("matches (-want +got):\n%s", diff)
	}
	got, err := os.ReadFile(log)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff("1\nfail\n2\nsleep\n3\n", string(got)); diff != "" {
		t.Errorf("exec runs in order (-want +got):\n%s", diff)
	}
	byItem := map[string]hookctl.Run{}
	for _, r := range d.Runs(hookctl.RunQuery{Hook: "append"}) {
		byItem[r.ItemID] = r
	}
	if r := byItem["fail"]; r.Outcome != "failed" || r.ExitCode != 7 || !strings.Contains(r.Output, "failing on purpose") {
		t.Errorf("failed run = %+v", r)
	}
	if r := byItem["sleep"]; r.Outcome != "timeout" || r.Duration > hookctl.Duration(5*time.Second) {
		t.Errorf("sleeping run = %+v", r)
	}
	if r := byItem["3"]; r.Outcome != "ok" || r.ExitCode != 0 || !strings.Contains(r.Output, "done 3") {
		t.Errorf("run after the timeout = %+v", r)
	}
	exprRuns := d.Runs(hookctl.RunQuery{Hook: xp.Arg})
	if len(exprRuns) != 6 {
		t.Fatalf("%d expr runs, want 6", len(exprRuns))
	}
	for _, r := range exprRuns {
		if r.Outcome != "ok" || !strings.Contains(r.Output, "saw "+r.ItemID) {
			t.Errorf("expr run = %+v", r)
		}
	}
	var published []string
	for _, p := range host.Published() {
		published = append(published, fmt.Sprint(p.Node, " ", p.Payload))
	}
	if len(published) != 6 || published[0] != "mirror <p>1</p>" {
		t.Errorf("published = %q", published)
	}
}
