package execrunner_test

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"hookctl.dev/hookctl"
	"hookctl.dev/hookctl/runner"
	"hookctl.dev/hookctl/runner/execrunner"
	"hookctl.dev/hookctl/runner/runnertest"
)

func newRunner(t testing.TB, opts execrunner.Options, path string, args ...string) runner.Runner {
	t.Helper()
	h := hookctl.Hook{Key: hookctl.Key{Type: hookctl.TypeExec, Arg: path}, Args: args}
	r, err := execrunner.NewFactory(opts).New(h, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = r.Close() })
	return r
}

func TestEnvStdinArgs(t *testing.T) {
	t.Setenv("HOOKCTL_TEST_SECRET", "s3cret")
	dir := t.TempDir()
	prog := runnertest.Script(t, dir, "hook.sh", `
cat > stdin.json
env > env.txt
pwd > pwd.txt
for a in "$@"; do printf '%s\n' "$a"; done > args.txt
cat /proc/$$/cmdline > cmdline.bin
echo done`)
	r := newRunner(t, execrunner.Options{}, prog, "two words", "--flag")
	ev := runnertest.Event()
	ev.Catchup = true

	res := runnertest.Run(t, r, 10*time.Second, ev)
	if res.Outcome != runner.OK || res.ExitCode != 0 || res.Err != nil {
		t.Fatalf("result = %+v, want ok", res)
	}
	if res.Output != "done\n" {
		t.Errorf("output = %q", res.Output)
	}

	var got hookctl.Event
	if err := json.Unmarshal(readFile(t, dir, "stdin.json"), &got); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(ev, got); diff != "" {
		t.Errorf("stdin event (-want +got):\n%s", diff)
	}
	wantJSON, _ := runner.EventJSON(ev)
	if string(readFile(t, dir, "stdin.json")) != string(wantJSON) {
		t.Errorf("stdin is not the bare event JSON:\n%s", readFile(t, dir, "stdin.json"))
	}

	env := strings.Split(strings.TrimSpace(string(readFile(t, dir, "env.txt"))), "\n")
	for _, want := range []string{
		"PATH=/usr/local/bin:/usr/bin:/bin",
		"LANG=C.UTF-8",
		"HOOK_PROFILE=default",
		"HOOK_SERVICE=pubsub.example.org",
		"HOOK_NODE=urn:xmpp:microblog:0",
		"HOOK_EVENT=publish",
		"HOOK_ITEM_ID=post-1",
		"HOOK_CATCHUP=1",
	} {
		if !slices.Contains(env, want) {
			t.Errorf("environment lacks %s:\n%s", want, strings.Join(env, "\n"))
		}
	}
	if strings.Contains(strings.Join(env, "\n"), "s3cret") {
		t.Error("the backend's environment leaked into the hook's")
	}

	if got := strings.TrimSpace(string(readFile(t, dir, "pwd.txt"))); got != dir {
		t.Errorf("working dir = %q, want %q", got, dir)
	}
	if got := string(readFile(t, dir, "args.txt")); got != "two words\n--flag\n" {
		t.Errorf("args = %q", got)
	}
	// argv is exactly /bin/sh, the script and its args: no payload.
	argv := strings.Split(strings.TrimRight(string(readFile(t, dir, "cmdline.bin")), "\x00"), "\x00")
	if diff := cmp.Diff([]string{"/bin/sh", prog, "two words", "--flag"}, argv); diff != "" {
		t.Errorf("argv (-want +got):\n%s", diff)
	}
}

func TestNoCatchupVariableForLiveEvents(t *testing.T) {
	dir := t.TempDir()
	prog := runnertest.Script(t, dir, "hook.sh", `env`)
	res := runnertest.Run(t, newRunner(t, execrunner.Options{Env: []string{"PATH=/usr/bin:/bin", "X=1"}}, prog), 10*time.Second, runnertest.Event())
	if res.Outcome != runner.OK {
		t.Fatalf("result = %+v", res)
	}
	if strings.Contains(res.Output, "HOOK_CATCHUP") {
		t.Errorf("HOOK_CATCHUP set for a live event:\n%s", res.Output)
	}
	if !strings.Contains(res.Output, "X=1\n") || strings.Contains(res.Output, "LANG=") {
		t.Errorf("Options.Env not used as the base:\n%s", res.Output)
	}
}

func TestNonZeroExit(t *testing.T) {
	prog := runnertest.Script(t, t.TempDir(), "fail.sh", `echo out; echo oops >&2; exit 3`)
	res := runnertest.Run(t, newRunner(t, execrunner.Options{}, prog), 10*time.Second, runnertest.Event())
	if res.Outcome != runner.Failed || res.ExitCode != 3 {
		t.Fatalf("result = %+v, want failed with 3", res)
	}
	if res.Output != "out\noops\n" {
		t.Errorf("output = %q, want stdout and stderr in order", res.Output)
	}
	if res.Err == nil || !strings.Contains(res.Err.Error(), "exit status 3") {
		t.Errorf("err = %v", res.Err)
	}
}

func TestKilledBySignal(t *testing.T) {
	prog := runnertest.Script(t, t.TempDir(), "sig.sh", `kill -TERM $$`)
	res := runnertest.Run(t, newRunner(t, execrunner.Options{}, prog), 10*time.Second, runnertest.Event())
	if res.Outcome != runner.Failed || res.ExitCode != -1 {
		t.Fatalf("result = %+v, want failed with -1", res)
	}
	if res.Err == nil || !strings.Contains(res.Err.Error(), "terminated") {
		t.Errorf("err = %v, want the signal named", res.Err)
	}
}

func TestTimeoutKillsGroup(t *testing.T) {
	dir := t.TempDir()
	prog := runnertest.Script(t, dir, "hang.sh", `
echo $$ > shell.pid
sleep 100 &
echo $! > child.pid
echo started
sleep 100`)
	r := newRunner(t, execrunner.Options{}, prog)
	start := time.Now()
	res := runnertest.Run(t, r, 500*time.Millisecond, runnertest.Event())
	if res.Outcome != runner.Timeout || res.ExitCode != -1 || !errors.Is(res.Err, context.DeadlineExceeded) {
		t.Fatalf("result = %+v, want timeout", res)
	}
	if res.Output != "started\n" {
		t.Errorf("output = %q", res.Output)
	}
	if d := time.Since(start); d > 30*time.Second {
		t.Errorf("run took %v", d) // a sanity bound, not a performance test
	}
	runnertest.Gone(t, runnertest.ReadPID(t, filepath.Join(dir, "shell.pid")))
	runnertest.Gone(t, runnertest.ReadPID(t, filepath.Join(dir, "child.pid")))
}

func TestCancelIsFailed(t *testing.T) {
	dir := t.TempDir()
	prog := runnertest.Script(t, dir, "hang.sh", `echo $$ > shell.pid; sleep 100`)
	r := newRunner(t, execrunner.Options{}, prog)
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		runnertest.ReadPID(t, filepath.Join(dir, "shell.pid"))
		cancel()
	}()
	res := r.Run(ctx, runnertest.Event())
	if res.Outcome != runner.Failed || !errors.Is(res.Err, context.Canceled) {
		t.Fatalf("result = %+v, want failed by cancel", res)
	}
	runnertest.Gone(t, runnertest.ReadPID(t, filepath.Join(dir, "shell.pid")))
}

func TestChildOutlivingProgramIsKilled(t *testing.T) {
	dir := t.TempDir()
	// The child keeps the output pipe open: without the group kill, Wait
	// would block for the whole WaitDelay and the child would survive it.
	prog := runnertest.Script(t, dir, "fork.sh", `sleep 100 & echo $! > child.pid; echo bye`)
	r := newRunner(t, execrunner.Options{WaitDelay: 20 * time.Second}, prog)
	res := runnertest.Run(t, r, 10*time.Second, runnertest.Event())
	if res.Outcome != runner.OK || res.Output != "bye\n" {
		t.Fatalf("result = %+v, want ok", res)
	}
	runnertest.Gone(t, runnertest.ReadPID(t, filepath.Join(dir, "child.pid")))
}

func TestEscapedChildDoesNotBlockRun(t *testing.T) {
	dir := t.TempDir()
	// setsid leaves the process group, so the group kill misses it (the
	// shim kills it, see TestSetsidChildIsKilledAtRunEnd). WaitDelay
	// bounds the run whatever holds the output pipe.
	prog := runnertest.Script(t, dir, "escape.sh", `setsid sh -c 'echo $$ > escaped.pid; exec sleep 100' & sleep 0.2; echo bye`)
	r := newRunner(t, execrunner.Options{WaitDelay: 300 * time.Millisecond}, prog)
	res := runnertest.Run(t, r, 10*time.Second, runnertest.Event())
	pid := runnertest.ReadPID(t, filepath.Join(dir, "escaped.pid"))
	t.Cleanup(func() { _ = syscall.Kill(pid, syscall.SIGKILL) })
	if res.Outcome != runner.OK || res.Output != "bye\n" {
		t.Fatalf("result = %+v, want ok", res)
	}
}

// A descendant that left the process group (setsid) is killed when the
// run ends, by the run's shim, rather than outliving it.
func TestSetsidChildIsKilledAtRunEnd(t *testing.T) {
	dir := t.TempDir()
	prog := runnertest.Script(t, dir, "escape.sh", `setsid sh -c 'echo $$ > escaped.pid; exec sleep 100' & while [ ! -s escaped.pid ]; do sleep 0.01; done; echo bye`)
	res := runnertest.Run(t, newRunner(t, execrunner.Options{}, prog), 10*time.Second, runnertest.Event())
	pid := runnertest.ReadPID(t, filepath.Join(dir, "escaped.pid"))
	t.Cleanup(func() { _ = syscall.Kill(pid, syscall.SIGKILL) })
	if res.Outcome != runner.OK || res.Output != "bye\n" {
		t.Fatalf("result = %+v, want ok", res)
	}
	if err := syscall.Kill(pid, 0); err != syscall.ESRCH {
		t.Errorf("setsid child %d still exists after the run (kill 0: %v)", pid, err)
	}
}

// The same on a timeout: the shim kills the whole tree.
func TestSetsidChildIsKilledOnTimeout(t *testing.T) {
	dir := t.TempDir()
	prog := runnertest.Script(t, dir, "escape.sh", `setsid sh -c 'echo $$ > escaped.pid; exec sleep 100' & sleep 100`)
	res := runnertest.Run(t, newRunner(t, execrunner.Options{}, prog), 500*time.Millisecond, runnertest.Event())
	pid := runnertest.ReadPID(t, filepath.Join(dir, "escaped.pid"))
	t.Cleanup(func() { _ = syscall.Kill(pid, syscall.SIGKILL) })
	if res.Outcome != runner.Timeout {
		t.Fatalf("result = %+v, want timeout", res)
	}
	if err := syscall.Kill(pid, 0); err != syscall.ESRCH {
		t.Errorf("setsid child %d still exists after the timeout (kill 0: %v)", pid, err)
	}
}

func TestOutputFloodIsBounded(t *testing.T) {
	prog := runnertest.Script(t, t.TempDir(), "flood.sh", `yes | head -c 50000000; echo END`)
	r := newRunner(t, execrunner.Options{}, prog)
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	res := runnertest.Run(t, r, 30*time.Second, runnertest.Event())
	runtime.ReadMemStats(&after)
	if res.Outcome != runner.OK {
		t.Fatalf("result = %+v", res)
	}
	if len(res.Output) != runner.OutputTail || !strings.HasSuffix(res.Output, "y\ny\nEND\n") {
		t.Errorf("output: %d bytes ending %q", len(res.Output), res.Output[max(0, len(res.Output)-20):])
	}
	// 50 MB went through; what the run allocated must not scale with it.
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 8<<20 {
		t.Errorf("run allocated %d bytes for a 50 MB flood", alloc)
	}
}

func TestTailCutsAtRuneBoundary(t *testing.T) {
	// 4095 ASCII bytes then "é" (2 bytes) then more: the cut lands inside
	// no rune, and the output stays valid UTF-8 whatever the split.
	prog := runnertest.Script(t, t.TempDir(), "utf8.sh", `i=0; while [ $i -lt 3000 ]; do printf 'é'; i=$((i+1)); done; printf x`)
	res := runnertest.Run(t, newRunner(t, execrunner.Options{}, prog), 10*time.Second, runnertest.Event())
	if res.Outcome != runner.OK {
		t.Fatalf("result = %+v", res)
	}
	if !strings.HasPrefix(res.Output, "é") || !strings.HasSuffix(res.Output, "éx") || len(res.Output) > runner.OutputTail {
		t.Errorf("output starts %q, %d bytes", res.Output[:4], len(res.Output))
	}
}

func TestStartErrors(t *testing.T) {
	dir := t.TempDir()
	notExec := filepath.Join(dir, "plain.sh")
	if err := os.WriteFile(notExec, []byte("#!/bin/sh\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{filepath.Join(dir, "missing"), notExec, dir} {
		res := runnertest.Run(t, newRunner(t, execrunner.Options{}, path), 10*time.Second, runnertest.Event())
		if res.Outcome != runner.Error || res.ExitCode != -1 || res.Err == nil {
			t.Errorf("%s: result = %+v, want error", path, res)
		}
	}
}

func TestCheck(t *testing.T) {
	dir := t.TempDir()
	good := runnertest.Script(t, dir, "ok.sh", `exit 0`)
	notExec := filepath.Join(dir, "plain.sh")
	if err := os.WriteFile(notExec, []byte("#!/bin/sh\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	f := execrunner.NewFactory(execrunner.Options{})
	check := func(path string) error {
		return f.Check(context.Background(), hookctl.Hook{Key: hookctl.Key{Type: hookctl.TypeExec, Arg: path}})
	}
	if err := check(good); err != nil {
		t.Errorf("good program: %v", err)
	}
	for _, bad := range []string{"ok.sh", filepath.Join(dir, "missing"), dir, notExec} {
		if err := check(bad); !errors.Is(err, hookctl.ErrInvalid) {
			t.Errorf("Check(%q) = %v, want ErrInvalid", bad, err)
		}
	}
	if _, err := f.New(hookctl.Hook{Key: hookctl.Key{Arg: "rel.sh"}}, nil); !errors.Is(err, hookctl.ErrInvalid) {
		t.Errorf("New with a relative path: %v", err)
	}
}

// TestNoLeaks: runs of every outcome leave one keeper per runner (reused,
// not one per run), and closing the runners leaves no process, descriptor
// or goroutine behind.
func TestNoLeaks(t *testing.T) {
	dir := t.TempDir()
	ok := runnertest.Script(t, dir, "ok.sh", `cat >/dev/null; echo hi`)
	fail := runnertest.Script(t, dir, "fail.sh", `sleep 100 & exit 1`)
	hang := runnertest.Script(t, dir, "hang.sh", `sleep 100`)
	warm := newRunner(t, execrunner.Options{}, ok)
	runnertest.Run(t, warm, 10*time.Second, runnertest.Event()) // warm up lazily opened fds
	_ = warm.Close()
	runnertest.Settle(t, runtime.NumGoroutine())
	fds, goroutines := runnertest.FDCount(t), runtime.NumGoroutine()
	rOK := newRunner(t, execrunner.Options{}, ok)
	rFail := newRunner(t, execrunner.Options{}, fail)
	rHang := newRunner(t, execrunner.Options{}, hang)
	for i := range 50 {
		switch i % 10 {
		case 0:
			if res := runnertest.Run(t, rHang, 50*time.Millisecond, runnertest.Event()); res.Outcome != runner.Timeout {
				t.Fatalf("hang: %+v", res)
			}
		case 1:
			if res := runnertest.Run(t, rFail, 10*time.Second, runnertest.Event()); res.Outcome != runner.Failed {
				t.Fatalf("fail: %+v", res)
			}
		default:
			if res := runnertest.Run(t, rOK, 10*time.Second, runnertest.Event()); res.Outcome != runner.OK {
				t.Fatalf("ok: %+v", res)
			}
		}
	}
	if kids := runnertest.Children(t); len(kids) != 3 {
		t.Errorf("%d child processes between runs (%v), want 3: one keeper per runner", len(kids), kids)
	}
	for _, r := range []runner.Runner{rOK, rFail, rHang} {
		_ = r.Close()
	}
	if got := runnertest.FDCount(t); got != fds {
		t.Errorf("open fds: %d before, %d after", fds, got)
	}
	runnertest.Settle(t, goroutines)
	if kids := runnertest.Children(t); len(kids) != 0 {
		t.Errorf("child processes left: %v", kids)
	}
}

func readFile(t *testing.T, dir, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func BenchmarkExecRun(b *testing.B) {
	prog := runnertest.Script(b, b.TempDir(), "true.sh", `exit 0`)
	r := newRunner(b, execrunner.Options{}, prog)
	ev := runnertest.Event()
	ctx := context.Background()
	ctx, cancel := context.WithTimeout(ctx, time.Hour)
	defer cancel()
	b.ReportAllocs()
	for b.Loop() {
		if res := r.Run(ctx, ev); res.Outcome != runner.OK {
			b.Fatal(res)
		}
	}
}

func BenchmarkForkExecBaseline(b *testing.B) {
	prog := runnertest.Script(b, b.TempDir(), "true.sh", `exit 0`)
	b.ReportAllocs()
	for b.Loop() {
		if err := exec.Command(prog).Run(); err != nil {
			b.Fatal(err)
		}
	}
}

// A keeper that died while idle (killed, or its idle timeout) is replaced
// for the next run, which runs once; one killed during a run fails that
// run with a clear error, and the next run gets a new keeper.
func TestKeeperDeathIsSurvived(t *testing.T) {
	dir := t.TempDir()
	prog := runnertest.Script(t, dir, "count.sh", `echo x >> runs.txt; [ -z "$SLOW" ] || sleep 100`)
	r := newRunner(t, execrunner.Options{}, prog)
	if res := runnertest.Run(t, r, 10*time.Second, runnertest.Event()); res.Outcome != runner.OK {
		t.Fatalf("first run: %+v", res)
	}
	killChildren(t)
	if res := runnertest.Run(t, r, 10*time.Second, runnertest.Event()); res.Outcome != runner.OK {
		t.Fatalf("run after the idle keeper died: %+v", res)
	}
	if got := strings.Count(string(readFile(t, dir, "runs.txt")), "x"); got != 2 {
		t.Errorf("program ran %d times for 2 runs", got)
	}

	slow := runnertest.Script(t, dir, "slow.sh", `echo started; exec sleep 100`)
	rs := newRunner(t, execrunner.Options{}, slow)
	done := make(chan runner.Result, 1)
	go func() { done <- runnertest.Run(t, rs, 20*time.Second, runnertest.Event()) }()
	deadline := time.Now().Add(10 * time.Second)
	for len(runnertest.Children(t)) < 2 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond) // r's idle keeper and rs's busy one
	}
	time.Sleep(100 * time.Millisecond)
	killChildren(t)
	res := <-done
	if res.Outcome != runner.Error || !strings.Contains(res.Err.Error(), "exec keeper died during the run") {
		t.Fatalf("run whose keeper was killed: %+v, want error naming the keeper", res)
	}
	if res := runnertest.Run(t, r, 10*time.Second, runnertest.Event()); res.Outcome != runner.OK {
		t.Fatalf("run after a keeper was killed: %+v", res)
	}
}

// killChildren SIGKILLs this process's children (the keepers) and waits
// until they are reaped.
func killChildren(t *testing.T) {
	t.Helper()
	for _, pid := range runnertest.Children(t) {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	deadline := time.Now().Add(10 * time.Second)
	for len(runnertest.Children(t)) > 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
}

// Overlapping runs of a hook with concurrency N get a keeper each, and
// give them back for the next runs.
func TestConcurrentRunsShareKeepers(t *testing.T) {
	dir := t.TempDir()
	prog := runnertest.Script(t, dir, "nap.sh", `cat >/dev/null; sleep 0.2; echo "$HOOK_ITEM_ID"`)
	h := hookctl.Hook{Key: hookctl.Key{Type: hookctl.TypeExec, Arg: prog}, Concurrency: 4}
	r, err := execrunner.NewFactory(execrunner.Options{}).New(h, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	for round := range 2 {
		results := make(chan runner.Result, 4)
		for range 4 {
			go func() { results <- runnertest.Run(t, r, 10*time.Second, runnertest.Event()) }()
		}
		for range 4 {
			if res := <-results; res.Outcome != runner.OK {
				t.Fatalf("round %d: %+v", round, res)
			}
		}
		if kids := runnertest.Children(t); len(kids) > 4 {
			t.Errorf("round %d: %d keepers for concurrency 4", round, len(kids))
		}
	}
}

// An event larger than a pipe's buffer reaches the program whole (the
// rest is written as it reads); a program that does not read it still
// ends its run.
func TestLargeEventOnStdin(t *testing.T) {
	dir := t.TempDir()
	reads := runnertest.Script(t, dir, "reads.sh", `cat > stdin.json`)
	ignores := runnertest.Script(t, dir, "ignores.sh", `echo ignored`)
	ev := runnertest.Event()
	ev.Payload = "<big>" + strings.Repeat("x", 1<<20) + "</big>"
	want, err := runner.EventJSON(ev)
	if err != nil {
		t.Fatal(err)
	}
	if res := runnertest.Run(t, newRunner(t, execrunner.Options{}, reads), 10*time.Second, ev); res.Outcome != runner.OK {
		t.Fatalf("reading program: %+v", res)
	}
	if got := readFile(t, dir, "stdin.json"); string(got) != string(want) {
		t.Errorf("stdin: %d bytes, want the %d bytes of the event", len(got), len(want))
	}
	r := newRunner(t, execrunner.Options{}, ignores)
	for range 3 { // the keeper serves the next runs too
		if res := runnertest.Run(t, r, 10*time.Second, ev); res.Outcome != runner.OK || res.Output != "ignored\n" {
			t.Fatalf("program not reading stdin: %+v", res)
		}
	}
}
