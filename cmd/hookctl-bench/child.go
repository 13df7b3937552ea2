package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"syscall"
	"time"

	"hookctl.dev/hookctl/api"
	"hookctl.dev/hookctl/config"
	"hookctl.dev/hookctl/daemon"
)

// The scale and endurance modes run the backend in a child process (this
// binary again, with -backend-config), exactly as `hookctl serve` runs it
// (daemon.New + Run until SIGTERM), so that its RSS, CPU and open files are
// its own, not the publisher's.

// childProfileEnv names a file for a CPU profile of the child backend,
// from its start to its end (-backend-cpuprofile), and FILE.heap for its
// heap in use when told to stop.
const childProfileEnv = "HOOKCTL_BENCH_BACKEND_CPUPROFILE"

// childBurstProfileEnv names a file for a CPU profile of the child
// backend from SIGUSR1 to SIGUSR2 (-separate -cpuprofile: the burst only).
const childBurstProfileEnv = "HOOKCTL_BENCH_BURST_CPUPROFILE"

// childMemoryRunsEnv, when set, keeps the child's run history in memory
// (-runs memory).
const childMemoryRunsEnv = "HOOKCTL_BENCH_MEMORY_RUNS"

// serveChild is the child's main: the backend on the config in file, its
// log in logFile, until SIGTERM.
func serveChild(file, logFile string) error {
	data, err := os.ReadFile(file)
	if err != nil {
		return err
	}
	var cfg config.Config
	if err := json.Unmarshal(data, &cfg); err != nil {
		return fmt.Errorf("%s: %w", file, err)
	}
	lf, err := os.OpenFile(logFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	defer lf.Close()
	log := slog.New(slog.NewTextHandler(lf, &slog.HandlerOptions{Level: slog.LevelInfo}))
	d, err := daemon.New(daemon.Options{Config: cfg, Logger: log, Version: "bench", MemoryRuns: os.Getenv(childMemoryRunsEnv) != ""})
	if err != nil {
		return err
	}
	if prof := os.Getenv(childBurstProfileEnv); prof != "" {
		stop := profileOnSignal(prof)
		defer stop()
	}
	if prof := os.Getenv(childProfileEnv); prof != "" {
		f, err := os.Create(prof)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(sig)
	go func() { // ends with the signal or when Run returns
		select {
		case <-sig:
		case <-ctx.Done():
			return
		}
		if prof := os.Getenv(childProfileEnv); prof != "" {
			writeHeapProfile(prof + ".heap") // the heap in use while running
		}
		cancel()
	}()
	return d.Run(ctx)
}

// child is a backend process started by startChild.
type child struct {
	cmd    *exec.Cmd
	done   chan struct{}
	client *api.Client
	cfg    config.Config
	log    string
}

// startChild writes cfg (Defaults applied here) and starts the backend on
// it; the password of every profile is read from pwEnv. The child dies
// with this process (Pdeathsig). With profile set, it writes a CPU
// profile there.
func startChild(dir string, cfg config.Config, profile string) (*child, error) {
	var env []string
	if profile != "" {
		env = append(env, childProfileEnv+"="+profile)
	}
	return startChildEnv(dir, cfg, env)
}

// startChildEnv is startChild with env added to the child's environment.
func startChildEnv(dir string, cfg config.Config, env []string) (*child, error) {
	cfg.Defaults()
	data, err := json.Marshal(cfg)
	if err != nil {
		return nil, err
	}
	file := filepath.Join(dir, "backend.json")
	if err := os.WriteFile(file, data, 0o600); err != nil {
		return nil, err
	}
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	c := &child{cfg: cfg, log: filepath.Join(dir, "backend.log"), done: make(chan struct{})}
	c.cmd = exec.Command(self, "-backend-config", file, "-backend-log", c.log)
	c.cmd.Env = append(append(os.Environ(), pwEnv+"="+password), env...)
	c.cmd.Stdout, c.cmd.Stderr = os.Stderr, os.Stderr
	c.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	if err := c.cmd.Start(); err != nil {
		return nil, err
	}
	go func() { _ = c.cmd.Wait(); close(c.done) }() // owned by c: ends with the process, which stop ensures
	if c.client, err = api.NewClient(api.ClientOptions{Socket: cfg.Socket}); err != nil {
		c.stop()
		return nil, err
	}
	return c, nil
}

func (c *child) pid() int { return c.cmd.Process.Pid }

// stop ends the backend: SIGTERM, SIGKILL after 20 s.
func (c *child) stop() {
	if c.client != nil {
		c.client.Close()
	}
	_ = c.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-c.done:
	case <-time.After(20 * time.Second):
		_ = c.cmd.Process.Kill()
		<-c.done
	}
}

// exited reports whether the backend process has ended.
func (c *child) exited() bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

// rssMB is the resident set of pid in MB (VmRSS), 0 when unknown.
func rssMB(pid int) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for line := range strings.Lines(string(b)) {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			f := strings.Fields(rest)
			kb, _ := strconv.ParseFloat(f[0], 64)
			return kb / 1024
		}
	}
	return 0
}

// openFDs counts the open file descriptors of pid.
func openFDs(pid int) int {
	e, _ := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	return len(e)
}

// childrenOf lists the processes whose parent is pid.
func childrenOf(pid int) []int {
	entries, _ := os.ReadDir("/proc")
	var out []int
	for _, e := range entries {
		p, err := strconv.Atoi(e.Name())
		if err == nil && parentOf(p) == pid {
			out = append(out, p)
		}
	}
	return out
}

// fileMB is the size of a file in MB, 0 when missing.
func fileMB(path string) float64 {
	fi, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return float64(fi.Size()) / (1 << 20)
}

// writeHeapProfile writes the heap in use to file (after a GC).
func writeHeapProfile(file string) {
	f, err := os.Create(file)
	if err != nil {
		return
	}
	defer f.Close()
	runtime.GC()
	_ = pprof.WriteHeapProfile(f)
}

// profileOnSignal writes a CPU profile to file from SIGUSR1 to SIGUSR2;
// the returned stop ends the goroutine it starts (and the profile, if
// one is running).
func profileOnSignal(file string) (stop func()) {
	sig := make(chan os.Signal, 2)
	signal.Notify(sig, syscall.SIGUSR1, syscall.SIGUSR2)
	quit, done := make(chan struct{}), make(chan struct{})
	go func() { // owned by stop
		defer close(done)
		var f *os.File
		end := func() {
			if f != nil {
				pprof.StopCPUProfile()
				f.Close()
				f = nil
			}
		}
		defer end()
		for {
			select {
			case s := <-sig:
				if s == syscall.SIGUSR1 && f == nil {
					var err error
					if f, err = os.Create(file); err == nil && pprof.StartCPUProfile(f) != nil {
						f.Close()
						f = nil
					}
				} else if s == syscall.SIGUSR2 {
					end()
				}
			case <-quit:
				return
			}
		}
	}()
	return func() { signal.Stop(sig); close(quit); <-done }
}
