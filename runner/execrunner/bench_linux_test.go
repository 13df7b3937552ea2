//go:build linux

package execrunner_test

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"hookctl.dev/hookctl"
	"hookctl.dev/hookctl/runner"
	"hookctl.dev/hookctl/runner/execrunner"
	"hookctl.dev/hookctl/runner/runnertest"
)

// BenchmarkKeeperVsLoop runs the program of the end-to-end bench (a shell
// script appending $HOOK_ITEM_ID to a file) through the exec runner, with
// its keeper, and through a plain os/exec loop that does what
// hookctl-bench's baseline does (event JSON on stdin, HOOK_* environment,
// own process group, output captured): the gap between the two is what a
// run through the keeper adds (BENCHMARKS.md, issue 14 goal 3).
//
//	go test -run '^$' -bench KeeperVsLoop -benchtime 2000x ./runner/execrunner/
//
// Besides ns/op it reports CPU per run: cpu-ns/op is this process and
// every reaped descendant (the keeper with its programs, or the loop's
// programs); self-ns/op is this process alone; keeper-ns/op is the
// keeper's own CPU, not its programs'.
func BenchmarkKeeperVsLoop(b *testing.B) {
	dir := b.TempDir()
	prog := runnertest.Script(b, dir, "append.sh", `echo "$HOOK_ITEM_ID" >> items.txt`)
	ev := runnertest.Event()
	b.Run("keeper", func(b *testing.B) {
		h := hookctl.Hook{Key: hookctl.Key{Type: hookctl.TypeExec, Arg: prog}}
		r, err := execrunner.NewFactory(execrunner.Options{}).New(h, nil)
		if err != nil {
			b.Fatal(err)
		}
		ctx := context.Background()
		// A first run starts the keeper: its start is not a run's cost.
		if res := r.Run(ctx, ev); res.Outcome != runner.OK {
			b.Fatal(res)
		}
		keeper := runnertest.Children(b)
		before := cpuNow()
		keeperBefore, progsBefore := procCPU(keeper)
		i := 0
		for b.Loop() {
			ev.ItemID = "i" + strconv.Itoa(i)
			i++
			if res := r.Run(ctx, ev); res.Outcome != runner.OK {
				b.Fatal(res)
			}
		}
		keeperAfter, progsAfter := procCPU(keeper)
		_ = r.Close() // reaps the keeper: its CPU and its programs' count as children
		cpuNow().sub(before).report(b, i)
		b.ReportMetric(float64(keeperAfter-keeperBefore)/float64(i), "keeper-ns/op")
		b.ReportMetric(float64(progsAfter-progsBefore)/float64(i), "progs-ns/op")
	})
	b.Run("loop", func(b *testing.B) {
		env := execrunner.DefaultEnv()
		before := cpuNow()
		i := 0
		for b.Loop() {
			ev.ItemID = "i" + strconv.Itoa(i)
			i++
			input, err := runner.EventJSON(ev)
			if err != nil {
				b.Fatal(err)
			}
			cmd := exec.Command(prog)
			cmd.Dir = filepath.Dir(prog)
			cmd.Env = append(env[:len(env):len(env)], "HOOK_PROFILE="+ev.Profile, "HOOK_SERVICE="+ev.Service,
				"HOOK_NODE="+ev.Node, "HOOK_EVENT="+string(ev.Kind), "HOOK_ITEM_ID="+ev.ItemID)
			cmd.Stdin = bytes.NewReader(input)
			var out bytes.Buffer
			cmd.Stdout, cmd.Stderr = &out, &out
			cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
			if err := cmd.Run(); err != nil {
				b.Fatal(err, out.String())
			}
		}
		c := cpuNow().sub(before)
		c.report(b, i)
		b.ReportMetric(float64(c.children)/float64(i), "progs-ns/op")
	})
}

// cpu is the CPU time used so far by this process and by its reaped
// descendants.
type cpu struct{ self, children time.Duration }

func cpuNow() cpu {
	var s, c syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &s)
	_ = syscall.Getrusage(syscall.RUSAGE_CHILDREN, &c)
	tv := func(r *syscall.Rusage) time.Duration {
		return time.Duration(r.Utime.Nano() + r.Stime.Nano())
	}
	return cpu{self: tv(&s), children: tv(&c)}
}

func (c cpu) sub(o cpu) cpu { return cpu{c.self - o.self, c.children - o.children} }

func (c cpu) report(b *testing.B, n int) {
	b.ReportMetric(float64(c.self+c.children)/float64(n), "cpu-ns/op")
	b.ReportMetric(float64(c.self)/float64(n), "self-ns/op")
}

// procCPU is the CPU time of the processes pids themselves (utime +
// stime in /proc/PID/stat) and of their reaped children (cutime + cstime).
func procCPU(pids []int) (own, children time.Duration) {
	var ticks [4]int64
	for _, pid := range pids {
		b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
		if err != nil {
			continue
		}
		f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
		// After "(comm)": state is f[0], utime f[11], stime, cutime, cstime.
		for j, s := range f[11:15] {
			v, _ := strconv.ParseInt(s, 10, 64)
			ticks[j] += v
		}
	}
	const tick = 10 * time.Millisecond // USER_HZ is 100 on Linux
	return time.Duration(ticks[0]+ticks[1]) * tick, time.Duration(ticks[2]+ticks[3]) * tick
}
