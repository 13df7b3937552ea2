package main

import (
	"bufio"
	"bytes"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/rogpeppe/go-internal/testscript"
)

// flood ADDR N slow|idle [PATH]: open N connections to ADDR (loopback
// only) as a hostile client would. slow sends a POST's headers announcing
// a 200,000-byte body without a token, then nothing; idle sends nothing.
// The connections stay open until the script ends. With slow, every
// connection must get an HTTP answer within 10s (the server refuses
// before reading the body); it prints how many did and how fast.
func cmdFlood(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) < 3 || len(args) > 4 {
		ts.Fatalf("usage: flood ADDR N slow|idle [PATH]")
	}
	addr, mode := args[0], args[2]
	if !strings.HasPrefix(addr, "127.0.0.1:") {
		ts.Fatalf("flood: %s is not a loopback address", addr)
	}
	n, err := strconv.Atoi(args[1])
	ts.Check(err)
	path := "/v1/batch"
	if len(args) == 4 {
		path = args[3]
	}
	conns := make([]net.Conn, 0, n)
	ts.Defer(func() {
		for _, c := range conns {
			c.Close()
		}
	})
	for range n {
		c, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			ts.Fatalf("flood: dial %d: %v", len(conns), err)
		}
		conns = append(conns, c)
		if mode == "slow" {
			fmt.Fprintf(c, "POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 200000\r\n\r\n", path)
		}
	}
	if mode == "idle" {
		fmt.Fprintf(ts.Stdout(), "flood: %d idle connections open\n", n)
		return
	}
	if mode != "slow" {
		ts.Fatalf("flood: unknown mode %q", mode)
	}
	start := time.Now()
	var (
		mu       sync.Mutex
		answered int
		slowest  time.Duration
		statuses = map[string]int{}
		wg       sync.WaitGroup
	)
	for _, c := range conns {
		wg.Go(func() {
			_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
			line, err := bufio.NewReader(c).ReadString('\n')
			if err != nil {
				return
			}
			mu.Lock()
			defer mu.Unlock()
			answered++
			slowest = max(slowest, time.Since(start))
			if f := strings.Fields(line); len(f) > 1 {
				statuses[f[1]]++
			}
		})
	}
	wg.Wait()
	fmt.Fprintf(ts.Stdout(), "flood: %d/%d answered within %v, statuses %v\n", answered, n, slowest.Round(time.Millisecond), statuses)
	if answered != n {
		ts.Fatalf("flood: %d of %d connections got no answer within 10s", n-answered, n)
	}
}

// backendfds MAX: the backend serving $HOOKCTL_SOCKET holds at most MAX
// open file descriptors (read from /proc); prints the count.
func cmdBackendFDs(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 1 {
		ts.Fatalf("usage: backendfds MAX")
	}
	limit, err := strconv.Atoi(args[0])
	ts.Check(err)
	pid := backendPID(ts)
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	ts.Check(err)
	fmt.Fprintf(ts.Stdout(), "backend %d holds %d fds\n", pid, len(ents))
	if (len(ents) > limit) != neg {
		ts.Fatalf("backend holds %d fds (limit %d)", len(ents), limit)
	}
}

// backendpid VAR: set VAR to the pid of the `hookctl serve` whose
// environment names $HOOKCTL_SOCKET.
func cmdBackendPID(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 1 {
		ts.Fatalf("usage: backendpid VAR")
	}
	ts.Setenv(args[0], strconv.Itoa(backendPID(ts)))
}

func backendPID(ts *testscript.TestScript) int {
	want := []byte("HOOKCTL_SOCKET=" + ts.Getenv("HOOKCTL_SOCKET") + "\x00")
	dirs, _ := filepath.Glob("/proc/[0-9]*")
	for _, d := range dirs {
		cmd, err := os.ReadFile(d + "/cmdline")
		if err != nil || !bytes.Contains(cmd, []byte("\x00serve")) {
			continue
		}
		env, err := os.ReadFile(d + "/environ")
		if err != nil || !bytes.Contains(env, want) {
			continue
		}
		pid, _ := strconv.Atoi(filepath.Base(d))
		return pid
	}
	ts.Fatalf("no hookctl serve process for %s", ts.Getenv("HOOKCTL_SOCKET"))
	return 0
}
