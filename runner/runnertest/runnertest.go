// Package runnertest holds helpers shared by the runner packages' tests:
// scripts written to disk, leak checks on file descriptors, goroutines and
// processes, and a recording Host.
package runnertest

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"hookctl.dev/hookctl"
	"hookctl.dev/hookctl/runner"
)

// Script writes an executable shell script named name into dir and returns
// its absolute path. body follows the "#!/bin/sh" line.
func Script(tb testing.TB, dir, name, body string) string {
	tb.Helper()
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, []byte("#!/bin/sh\n"+body+"\n"), 0o755); err != nil {
		tb.Fatal(err)
	}
	return path
}

// Event returns a representative publish event.
func Event() hookctl.Event {
	return hookctl.Event{
		Profile:   "default",
		Service:   "pubsub.example.org",
		Node:      "urn:xmpp:microblog:0",
		Kind:      hookctl.EventPublish,
		ItemID:    "post-1",
		Publisher: "alice@example.org",
		Payload:   `<entry xmlns="http://www.w3.org/2005/Atom"><title>Hi $(touch /tmp/pwned) ; "quoted"</title></entry>`,
		ItemXML:   `<item id="post-1"><entry xmlns="http://www.w3.org/2005/Atom"><title>Hi</title></entry></item>`,
		Received:  time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC),
	}
}

// FDCount returns how many file descriptors this process has open.
func FDCount(tb testing.TB) int {
	tb.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		tb.Fatal(err)
	}
	return len(ents)
}

// Settle waits until the goroutine count drops to at most want, or fails
// after a few seconds with the goroutine dump. Goroutines of the runtime
// and of net/http keep-alives take a moment to end, hence the polling.
func Settle(tb testing.TB, want int) {
	tb.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		n := runtime.NumGoroutine()
		if n <= want {
			return
		}
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			buf = buf[:runtime.Stack(buf, true)]
			tb.Fatalf("goroutines: %d, want at most %d\n%s", n, want, buf)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Alive reports whether process pid exists and is neither a zombie nor
// dead. Tests check with it, as ps would, that no hook process outlives
// its run or the backend.
func Alive(pid int) bool {
	if err := syscall.Kill(pid, 0); err != nil {
		return false
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// The state follows the parenthesised command name.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || i+2 >= len(s) || (s[i+2] != 'Z' && s[i+2] != 'X')
}

// FindProcess returns the pid of a live process whose command line is
// exactly name and arg, or 0.
func FindProcess(name, arg string) int {
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/cmdline")
		if err == nil && string(b) == name+"\x00"+arg+"\x00" && Alive(pid) {
			return pid
		}
	}
	return 0
}

// ReadPID waits for a script to write a pid into path and returns it.
func ReadPID(tb testing.TB, path string) int {
	tb.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		b, err := os.ReadFile(path)
		if err == nil {
			if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && pid > 0 {
				return pid
			}
		}
		if time.Now().After(deadline) {
			tb.Fatalf("no pid in %s", path)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Gone waits until process pid no longer runs, failing after a few seconds.
func Gone(tb testing.TB, pid int) {
	tb.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for Alive(pid) {
		if time.Now().After(deadline) {
			tb.Fatalf("process %d still runs", pid)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Published is one Publish call a Host received.
type Published struct {
	Profile, Service, Node, ItemID, Payload string
}

// Host is a runner.Host that records publications and log lines. Publish
// returns Err when set, else the given item id or "generated-N".
type Host struct {
	mu        sync.Mutex
	published []Published
	// Err, when set, is returned by every Publish.
	Err error
	// Block, when set, makes Publish wait for it to close, ignoring ctx, to
	// imitate a session that does not honour cancellation.
	Block chan struct{}
	log   *slog.Logger
}

// NewHost returns a Host whose logger writes to w (io.Discard when nil).
func NewHost(w io.Writer) *Host {
	if w == nil {
		w = io.Discard
	}
	return &Host{log: slog.New(slog.NewTextHandler(w, nil))}
}

// Publish records the call.
func (h *Host) Publish(_ context.Context, profile, service, node, itemID, payloadXML string) (string, error) {
	if h.Block != nil {
		<-h.Block
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.Err != nil {
		return "", h.Err
	}
	h.published = append(h.published, Published{profile, service, node, itemID, payloadXML})
	if itemID == "" {
		itemID = fmt.Sprintf("generated-%d", len(h.published))
	}
	return itemID, nil
}

// Logger returns the host's logger.
func (h *Host) Logger() *slog.Logger { return h.log }

// Published returns the calls recorded so far.
func (h *Host) Published() []Published {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]Published(nil), h.published...)
}

// SyncBuffer is a bytes buffer safe for concurrent writers, for loggers.
type SyncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

// Write appends p.
func (s *SyncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

// String returns what was written.
func (s *SyncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// Children returns the live (non-zombie) processes whose parent is this
// process, read from /proc.
func Children(tb testing.TB) []int {
	tb.Helper()
	ents, err := os.ReadDir("/proc")
	if err != nil {
		tb.Fatal(err)
	}
	self := os.Getpid()
	var out []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			continue // exited meanwhile
		}
		s := string(b)
		i := strings.LastIndexByte(s, ')')
		if i < 0 {
			continue
		}
		// After ") " come the state and the parent pid.
		f := strings.Fields(s[i+1:])
		if len(f) >= 2 && f[0] != "Z" && f[1] == strconv.Itoa(self) {
			out = append(out, pid)
		}
	}
	return out
}

// Run runs ev through r under a deadline of timeout, as the dispatcher
// would, and returns the result.
func Run(tb testing.TB, r runner.Runner, timeout time.Duration, ev hookctl.Event) runner.Result {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return r.Run(ctx, ev)
}
