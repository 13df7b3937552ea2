package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"hookctl.dev/hookctl"
	"hookctl.dev/hookctl/config"
	"hookctl.dev/hookctl/xmppsession"
)

// With -separate the backend and the bare subscriber each run in a child
// process of their own (this binary again), so that the CPU each one uses
// during the burst is its own, garbage collector and runtime included, and
// the two can be compared per item (issue 14 goal 1). In the default mode
// both share this process with the publisher, and only a CPU profile's
// labels (-cpuprofile, go tool pprof -tags) tell them apart, without the
// runtime's share (GC, scheduler), which no goroutine label carries.
//
// CPU is read from /proc/PID/task/*/schedstat (nanoseconds on the CPU,
// per thread) rather than /proc/PID/stat, whose clock ticks (10 ms) are too
// coarse for the bare subscriber's ~0.1 s of a burst. A thread that exits
// during the burst would be missed; Go parks its threads rather than ending
// them, and nothing on these paths locks a thread.

// bareSpec is the bare subscriber child's configuration (-bare-child).
type bareSpec struct {
	Addr   string `json:"addr"`
	JID    string `json:"jid"`
	PubSub string `json:"pubsub"`
	Items  int    `json:"items"`
}

// serveBare is the bare subscriber child's main: it subscribes to the
// node, prints "ready", records the arrival of each published item, and
// when it has spec.Items prints "done", then one "id unixnano" line per
// item in arrival order, then "end"; it exits when its stdin closes.
func serveBare(specJSON string) error {
	var spec bareSpec
	if err := json.Unmarshal([]byte(specJSON), &spec); err != nil {
		return err
	}
	var mu sync.Mutex
	ids := make([]string, 0, spec.Items)
	at := make([]int64, 0, spec.Items)
	all := make(chan struct{})
	onEvent := func(ev hookctl.Event) {
		now := time.Now().UnixNano()
		if ev.Kind != hookctl.EventPublish || ev.Node != node {
			return
		}
		mu.Lock()
		defer mu.Unlock()
		ids, at = append(ids, ev.ItemID), append(at, now)
		if len(ids) == spec.Items {
			close(all)
		}
	}
	s, err := xmppsession.New(xmppsession.Config{Profile: "bare", JID: spec.JID, Password: password,
		Server: spec.Addr, TLS: xmppsession.TLSNone, OnEvent: onEvent, Logger: discardLog(false)})
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	runDone := make(chan struct{})
	go func() { defer close(runDone); _ = s.Run(ctx) }()
	defer func() { cancel(); <-runDone }()
	stdinClosed := make(chan struct{})
	go func() { _, _ = io.Copy(io.Discard, os.Stdin); close(stdinClosed) }() // ends with stdin, which the parent closes
	wctx, wcancel := context.WithTimeout(ctx, 20*time.Second)
	defer wcancel()
	if err := s.WaitConnected(wctx); err != nil {
		return fmt.Errorf("connecting: %w", err)
	}
	if _, err := s.Subscribe(wctx, spec.PubSub, node); err != nil {
		return fmt.Errorf("subscribing: %w", err)
	}
	fmt.Println("ready")
	select {
	case <-all:
	case <-stdinClosed:
		return fmt.Errorf("stopped with %d of %d items", len(ids), spec.Items)
	}
	w := bufio.NewWriter(os.Stdout)
	fmt.Fprintln(w, "done")
	_ = w.Flush()
	mu.Lock()
	for i := range ids {
		fmt.Fprintf(w, "%s %d\n", ids[i], at[i])
	}
	mu.Unlock()
	fmt.Fprintln(w, "end")
	if err := w.Flush(); err != nil {
		return err
	}
	<-stdinClosed
	return nil
}

// startBareChild starts the bare subscriber in a child process and waits
// until it is subscribed. A goroutine (owned by the child: it ends with
// its stdout) fills b.bareIDs and b.bareAt, and closes b.bareDone, from
// what the child prints; barePID and its CPU at "done" are kept in b.
func (b *bench) startBareChild(ctx context.Context) error {
	if _, err := b.srv.RegisterUser("bare", password); err != nil {
		return err
	}
	spec, _ := json.Marshal(bareSpec{Addr: b.srv.Addr, JID: "bare@" + b.srv.Domain, PubSub: b.srv.PubSub, Items: b.o.items})
	self, err := os.Executable()
	if err != nil {
		return err
	}
	cmd := exec.Command(self, "-bare-child", string(spec))
	cmd.Stderr = os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return err
	}
	b.barePID = cmd.Process.Pid
	exited := make(chan struct{})
	ready := make(chan error, 1)
	go func() { // owned by the child: ends with its stdout
		ready <- b.readBare(bufio.NewScanner(stdout))
		_ = cmd.Wait()
		close(exited)
	}()
	b.onClose(func() {
		stdin.Close()
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
	})
	select {
	case err := <-ready:
		return err
	case <-time.After(30 * time.Second):
		return fmt.Errorf("bare subscriber child: not subscribed within 30s")
	case <-ctx.Done():
		return ctx.Err()
	}
}

// readBare reads the bare child's output: ready (sent on as nil), then,
// after the burst, done and the arrivals.
func (b *bench) readBare(sc *bufio.Scanner) (readyErr error) {
	if !sc.Scan() || sc.Text() != "ready" {
		return fmt.Errorf("bare subscriber child did not get ready (%q)", sc.Text())
	}
	go func() { // sends ready first; the rest arrives after the burst
		for sc.Scan() {
			line := sc.Text()
			switch line {
			case "done":
				b.bareCPU = procCPU(b.barePID)
				continue
			case "end":
				close(b.bareDone)
				continue
			}
			id, ns, _ := strings.Cut(line, " ")
			n, _ := strconv.ParseInt(ns, 10, 64)
			b.bareMu.Lock()
			b.bareIDs, b.bareAt = append(b.bareIDs, id), append(b.bareAt, time.Unix(0, n))
			b.bareMu.Unlock()
		}
	}()
	return nil
}

// startBackendChild runs the backend in a child process, as `hookctl
// serve` runs it, with its log at Info in a file, and waits until its
// profile is connected. With -cpuprofile the child writes a CPU profile
// of the burst alone (started and stopped by signals).
func (b *bench) startBackendChild(ctx context.Context) error {
	var env []string
	if b.o.runs == "memory" {
		env = append(env, childMemoryRunsEnv+"=1")
	}
	if b.o.cpuprofile != "" {
		env = append(env, childBurstProfileEnv+"="+b.o.cpuprofile)
	}
	ch, err := startChildEnv(b.dir, config.Config{
		DataDir:    filepath.Join(b.dir, "data"),
		AllowTypes: []hookctl.Type{b.typ},
		Profiles:   map[string]config.Profile{"default": {JID: "bot@localhost", PasswordEnv: pwEnv, Server: b.srv.Addr, TLS: config.TLSNone}},
	}, env)
	if err != nil {
		return err
	}
	b.onClose(ch.stop)
	b.client = ch.client
	b.backend = ch
	return waitConnected(ctx, ch.client, 1)
}

// procCPU is the CPU time process pid's threads have used so far, in
// seconds, from /proc/PID/task/*/schedstat; /proc/PID/stat's ticks where
// there is no schedstat.
func procCPU(pid int) float64 {
	tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if err != nil {
		return cpuSeconds(pid)
	}
	var ns int64
	for _, t := range tasks {
		data, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/schedstat", pid, t.Name()))
		if err != nil {
			if os.IsNotExist(err) {
				continue // the thread ended meanwhile
			}
			return cpuSeconds(pid)
		}
		f := strings.Fields(string(data))
		if len(f) == 0 {
			return cpuSeconds(pid)
		}
		v, _ := strconv.ParseInt(f[0], 10, 64)
		ns += v
	}
	return float64(ns) / 1e9
}

// childrenCPU is the CPU seconds so far of the running children of pid.
func childrenCPU(pid int) float64 {
	total := 0.0
	for _, c := range childrenOf(pid) {
		total += procCPU(c)
	}
	return total
}
