package exprrunner_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"hookctl.dev/hookctl"
	"hookctl.dev/hookctl/filter"
	"hookctl.dev/hookctl/runner"
	"hookctl.dev/hookctl/runner/exprrunner"
	"hookctl.dev/hookctl/runner/runnertest"
)

func hook(src string) hookctl.Hook {
	return hookctl.Hook{Key: hookctl.Key{Type: hookctl.TypeExpr, Arg: src}}
}

func newRunner(t testing.TB, opts exprrunner.Options, src string, host runner.Host) runner.Runner {
	t.Helper()
	r, err := exprrunner.NewFactory(opts).New(hook(src), host)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = r.Close() })
	return r
}

func TestLogAndPublish(t *testing.T) {
	var logs runnertest.SyncBuffer
	host := runnertest.NewHost(&logs)
	prog := `
log("got", event.kind, item.id, 42, event.catchup);
let id = publish("pubsub.example.org", "mirror", item.payload, "copy-" + item.id);
let gen = publish(event.service, "other", "<x xmlns='urn:x'/>");
log("published", id, gen)`
	r := newRunner(t, exprrunner.Options{}, prog, host)

	ev := runnertest.Event()
	res := runnertest.Run(t, r, 10*time.Second, ev)
	if res.Outcome != runner.OK || res.Err != nil || res.ExitCode != -1 {
		t.Fatalf("result = %+v, want ok", res)
	}
	if want := "got publish post-1 42 false\npublished copy-post-1 generated-2\n"; res.Output != want {
		t.Errorf("output = %q, want %q", res.Output, want)
	}
	want := []runnertest.Published{
		{Profile: "default", Service: "pubsub.example.org", Node: "mirror", ItemID: "copy-post-1", Payload: ev.Payload},
		{Profile: "default", Service: "pubsub.example.org", Node: "other", Payload: "<x xmlns='urn:x'/>"},
	}
	if diff := cmp.Diff(want, host.Published()); diff != "" {
		t.Errorf("publications (-want +got):\n%s", diff)
	}
	if !strings.Contains(logs.String(), `msg="published copy-post-1 generated-2"`) {
		t.Errorf("host log lacks the line:\n%s", logs.String())
	}
	// The line is what Logger.Info with the hook's attributes writes.
	var ref bytes.Buffer
	slog.New(slog.NewTextHandler(&ref, nil)).Info("got publish post-1 42 false", "hook", hook(prog).Key.String(), "name", "", "set", "",
		"node", ev.Node, "item_id", ev.ItemID)
	noTime := func(s string) string { _, rest, _ := strings.Cut(s, " "); return rest }
	if got, want := noTime(strings.SplitAfter(logs.String(), "\n")[0]), noTime(ref.String()); got != want {
		t.Errorf("log line = %q, want %q", got, want)
	}
}

func TestFilterEnvironment(t *testing.T) {
	host := runnertest.NewHost(nil)
	r := newRunner(t, exprrunner.Options{}, `log(event.profile, event.service, event.node, event.item_id, item.publisher, item.payload contains "Atom")`, host)
	ev := runnertest.Event()
	ev.Catchup = true
	res := runnertest.Run(t, r, 10*time.Second, ev)
	if want := "default pubsub.example.org urn:xmpp:microblog:0 post-1 alice@example.org true\n"; res.Output != want {
		t.Errorf("output = %q, want %q (result %+v)", res.Output, want, res)
	}
}

func TestPublishFailureFailsRun(t *testing.T) {
	host := runnertest.NewHost(nil)
	host.Err = fmt.Errorf("session: %w", hookctl.ErrUnavailable)
	r := newRunner(t, exprrunner.Options{}, `log("before"); publish("svc", "node", "<p/>"); log("after")`, host)
	res := runnertest.Run(t, r, 10*time.Second, runnertest.Event())
	if res.Outcome != runner.Failed || !errors.Is(res.Err, hookctl.ErrUnavailable) {
		t.Fatalf("result = %+v, want failed wrapping ErrUnavailable", res)
	}
	if res.Output != "before\n" {
		t.Errorf("output = %q", res.Output)
	}
	if strings.Contains(res.Err.Error(), "\n") {
		t.Errorf("error spans lines: %q", res.Err)
	}
}

func TestAddKeepsSemantics(t *testing.T) {
	r := newRunner(t, exprrunner.Options{}, `
log(1 + 2, 1.5 + 1, "a" + "b", 1 + 2 == 3);
log(("x" + item.id) startsWith "xpost", upper("p" + "q"), duration("1s") + duration("2s"));
log(reduce(1..3, #acc + #, 0), reduce(["a", "b"], #acc + #, ""))`, runnertest.NewHost(nil))
	res := runnertest.Run(t, r, 10*time.Second, runnertest.Event())
	if want := "3 2.5 ab true\ntrue PQ 3s\n6 ab\n"; res.Output != want || res.Outcome != runner.OK {
		t.Errorf("result = %+v, want output %q", res, want)
	}
}

func TestStringBudgetOption(t *testing.T) {
	r := newRunner(t, exprrunner.Options{StringBudget: 10}, `log("12345" + "6789"); log("12" + "3")`, runnertest.NewHost(nil))
	res := runnertest.Run(t, r, 10*time.Second, runnertest.Event())
	if res.Outcome != runner.Failed || res.Output != "123456789\n" || !strings.Contains(res.Err.Error(), "string budget exceeded") {
		t.Errorf("result = %+v, want failed on the second +", res)
	}
}

func TestRuntimeErrorFailsRun(t *testing.T) {
	r := newRunner(t, exprrunner.Options{}, `int(item.id) > 3`, runnertest.NewHost(nil))
	res := runnertest.Run(t, r, 10*time.Second, runnertest.Event())
	if res.Outcome != runner.Failed || res.Err == nil {
		t.Fatalf("result = %+v, want failed", res)
	}
}

func TestCompileErrors(t *testing.T) {
	f := exprrunner.NewFactory(exprrunner.Options{})
	for src, wantLine := range map[string]int{
		"":                         0,
		"log(event.nope)":          1,
		"log(1)\n&& publish(1, 2)": 2,
		`repeat("x", 3)`:           1,
		`publish("s")`:             1,
		`log("x") && missing_fn()`: 1,
		`log("x"); event.kind = 1`: 1,
	} {
		err := f.Check(context.Background(), hook(src))
		if !errors.Is(err, hookctl.ErrInvalid) {
			t.Errorf("Check(%q) = %v, want ErrInvalid", src, err)
			continue
		}
		var fe *filter.Error
		if wantLine > 0 && (!errors.As(err, &fe) || fe.Line != wantLine) {
			t.Errorf("Check(%q) = %v, want a filter.Error on line %d", src, err, wantLine)
		}
		if _, err := f.New(hook(src), runnertest.NewHost(nil)); !errors.Is(err, hookctl.ErrInvalid) {
			t.Errorf("New(%q) = %v, want ErrInvalid", src, err)
		}
	}
	if err := f.Check(context.Background(), hook(`event.kind == "publish" && publish("s", "n", item.payload) != ""`)); err != nil {
		t.Errorf("valid program: %v", err)
	}
}

func TestRunawayHitsBudget(t *testing.T) {
	host := runnertest.NewHost(nil)
	for _, src := range []string{
		`all(1..1000, {all(1..1000, {all(1..1000, {true})})})`,
		`len(1..1000000000) > 0`,
		`len(reduce(1..64, {#acc + #acc}, "xy")) > 0`,
		`let s = "xxxxxxxxxxxxxxxx"; let s2 = s + s + s + s + s + s + s + s; len(reduce(1..100000, {#acc + s2}, "")) > 0`,
	} {
		r := newRunner(t, exprrunner.Options{}, src, host)
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		res := runnertest.Run(t, r, 20*time.Second, runnertest.Event())
		runtime.ReadMemStats(&after)
		if res.Outcome != runner.Failed || res.Err == nil {
			t.Errorf("%s: result = %+v, want failed", src, res)
			continue
		}
		if !strings.Contains(res.Err.Error(), "memory budget exceeded") && !strings.Contains(res.Err.Error(), "string budget exceeded") {
			t.Errorf("%s: err = %v, want a budget error", src, res.Err)
		}
		if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 64<<20 {
			t.Errorf("%s: allocated %d bytes", src, alloc)
		}
	}
}

func TestTimeoutWhileBlocked(t *testing.T) {
	goroutines := runtime.NumGoroutine()
	host := runnertest.NewHost(nil)
	host.Block = make(chan struct{})
	f := exprrunner.NewFactory(exprrunner.Options{})
	r, err := f.New(hook(`log("start"); publish("s", "n", "<p/>"); log("never")`), host)
	if err != nil {
		t.Fatal(err)
	}
	res := runnertest.Run(t, r, 100*time.Millisecond, runnertest.Event())
	if res.Outcome != runner.Timeout || !errors.Is(res.Err, context.DeadlineExceeded) || res.Output != "start\n" {
		t.Fatalf("result = %+v, want timeout after start", res)
	}
	closed := make(chan struct{})
	go func() { _ = r.Close(); close(closed) }()
	select {
	case <-closed:
		t.Fatal("Close returned while an evaluation still ran")
	case <-time.After(50 * time.Millisecond):
	}
	close(host.Block)
	<-closed
	runnertest.Settle(t, goroutines)
}

func TestCancelIsFailed(t *testing.T) {
	host := runnertest.NewHost(nil)
	host.Block = make(chan struct{})
	defer close(host.Block)
	r := newRunner(t, exprrunner.Options{}, `publish("s", "n", "<p/>")`, host)
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(20*time.Millisecond, cancel)
	res := r.Run(ctx, runnertest.Event())
	if res.Outcome != runner.Failed || !errors.Is(res.Err, context.Canceled) {
		t.Fatalf("result = %+v, want failed by cancel", res)
	}
}

func TestConcurrentRunsDoNotShareState(t *testing.T) {
	host := runnertest.NewHost(nil)
	r := newRunner(t, exprrunner.Options{}, `log(item.id); publish("s", "n", item.payload, item.id); log(item.id)`, host)
	var wg sync.WaitGroup
	for i := range 32 {
		wg.Go(func() {
			ev := runnertest.Event()
			ev.ItemID = fmt.Sprint("id-", i)
			res := runnertest.Run(t, r, 10*time.Second, ev)
			if want := ev.ItemID + "\n" + ev.ItemID + "\n"; res.Outcome != runner.OK || res.Output != want {
				t.Errorf("run %d: %+v, want output %q", i, res, want)
			}
		})
	}
	wg.Wait()
	if n := len(host.Published()); n != 32 {
		t.Errorf("%d publications, want 32", n)
	}
}

func TestOutputIsBounded(t *testing.T) {
	r := newRunner(t, exprrunner.Options{}, `all(1..2000, {log("line", #)})`, runnertest.NewHost(nil))
	res := runnertest.Run(t, r, 10*time.Second, runnertest.Event())
	if res.Outcome != runner.OK || len(res.Output) > runner.OutputTail || !strings.HasSuffix(res.Output, "line 2000\n") {
		t.Errorf("result: %v, %d bytes ending %q", res.Outcome, len(res.Output), res.Output[max(0, len(res.Output)-20):])
	}
}

func TestNoGoroutineLeak(t *testing.T) {
	r := newRunner(t, exprrunner.Options{}, `log(item.id)`, runnertest.NewHost(nil))
	goroutines := runtime.NumGoroutine()
	for range 50 {
		runnertest.Run(t, r, 10*time.Second, runnertest.Event())
	}
	runnertest.Settle(t, goroutines)
}

// TestEvaluatorsEndOnClose: the evaluator goroutines kept between runs
// end when the runner closes, without waiting for their idle time, and a
// run while one evaluation is blocked gets an evaluator of its own.
func TestEvaluatorsEndOnClose(t *testing.T) {
	goroutines := runtime.NumGoroutine()
	host := runnertest.NewHost(nil)
	host.Block = make(chan struct{})
	r, err := exprrunner.NewFactory(exprrunner.Options{}).New(hook(`item.id == "block" ? publish("s", "n", "<p/>") : log(item.id)`), host)
	if err != nil {
		t.Fatal(err)
	}
	ev := runnertest.Event()
	for range 20 {
		if res := runnertest.Run(t, r, 10*time.Second, ev); res.Outcome != runner.OK {
			t.Fatalf("result = %+v", res)
		}
	}
	blocked := ev
	blocked.ItemID = "block"
	if res := runnertest.Run(t, r, 50*time.Millisecond, blocked); res.Outcome != runner.Timeout {
		t.Fatalf("blocked run: %+v, want timeout", res)
	}
	if res := runnertest.Run(t, r, 10*time.Second, ev); res.Outcome != runner.OK || res.Output != ev.ItemID+"\n" {
		t.Fatalf("run beside a blocked evaluation: %+v", res)
	}
	close(host.Block)
	start := time.Now()
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 500*time.Millisecond {
		t.Errorf("Close took %s: idle evaluators waited for their idle time", d)
	}
	runnertest.Settle(t, goroutines)
}

func BenchmarkExprRun(b *testing.B) {
	r := newRunner(b, exprrunner.Options{}, `event.kind == "publish" && log("got", item.id)`, runnertest.NewHost(nil))
	ev := runnertest.Event()
	ctx, cancel := context.WithTimeout(context.Background(), time.Hour)
	defer cancel()
	b.ReportAllocs()
	for b.Loop() {
		if res := r.Run(ctx, ev); res.Outcome != runner.OK {
			b.Fatal(res)
		}
	}
}
