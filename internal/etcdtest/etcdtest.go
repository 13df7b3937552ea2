// Package etcdtest starts a private, real etcd server (the Debian package's
// /usr/bin/etcd) for tests: its own data dir in a temp dir, loopback, free
// ports. Without etcd the test is skipped, except under CI=true, where a
// missing server fails it.
package etcdtest

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"hookctl.dev/hookctl/internal/servertest"
)

// startTimeout bounds the wait for a started etcd to answer /health.
const startTimeout = 20 * time.Second

// Server is one running etcd, stopped at the test's end.
type Server struct {
	t          testing.TB
	bin        string
	dir        string
	clientPort int
	peerPort   int
	cmd        *exec.Cmd
	done       chan struct{}
	log        *os.File
}

// Start starts a single-member etcd cluster and waits until it is healthy.
func Start(t testing.TB) *Server {
	t.Helper()
	bin, err := exec.LookPath("etcd")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("etcd is not installed (apt-get install etcd-server): %v", err)
		}
		t.Skipf("etcd is not installed: %v", err)
	}
	ports, err := servertest.FreePorts(2)
	if err != nil {
		t.Fatal(err)
	}
	s := &Server{t: t, bin: bin, dir: t.TempDir(), clientPort: ports[0], peerPort: ports[1]}
	t.Cleanup(s.Stop)
	if err := s.start(); err != nil {
		t.Fatal(err)
	}
	return s
}

// Endpoint is the client URL, http://127.0.0.1:PORT.
func (s *Server) Endpoint() string { return fmt.Sprintf("http://127.0.0.1:%d", s.clientPort) }

// Addr is HOST:PORT of the client listener.
func (s *Server) Addr() string { return fmt.Sprintf("127.0.0.1:%d", s.clientPort) }

func (s *Server) start() error {
	peer := fmt.Sprintf("http://127.0.0.1:%d", s.peerPort)
	log, err := os.OpenFile(filepath.Join(s.dir, "etcd.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	cmd := exec.Command(s.bin,
		"--data-dir", filepath.Join(s.dir, "data"), "--name", "n1",
		"--listen-client-urls", s.Endpoint(), "--advertise-client-urls", s.Endpoint(),
		"--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
		"--initial-cluster", "n1="+peer,
		// Small and quick: a test cluster of one member on loopback.
		"--heartbeat-interval", "50", "--election-timeout", "500",
		"--quota-backend-bytes", fmt.Sprint(256<<20))
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		log.Close()
		return fmt.Errorf("starting etcd: %w", err)
	}
	s.cmd, s.log, s.done = cmd, log, make(chan struct{})
	go func(done chan struct{}) { cmd.Wait(); close(done) }(s.done) // the reaper
	return s.waitHealthy()
}

func (s *Server) waitHealthy() error {
	deadline := time.Now().Add(startTimeout)
	client := &http.Client{Timeout: time.Second}
	for time.Now().Before(deadline) {
		select {
		case <-s.done:
			return fmt.Errorf("etcd exited at start: %s", s.tail())
		default:
		}
		resp, err := client.Get(s.Endpoint() + "/health")
		if err == nil {
			var b [256]byte
			n, _ := resp.Body.Read(b[:])
			resp.Body.Close()
			if strings.Contains(string(b[:n]), `"health":"true"`) {
				return nil
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("etcd not healthy after %s: %s", startTimeout, s.tail())
}

// Stop stops the server (SIGTERM, then SIGKILL after 5 s) and waits for
// it. Stop is idempotent.
func (s *Server) Stop() {
	if s.cmd == nil {
		return
	}
	s.cmd.Process.Signal(syscall.SIGTERM)
	syscall.Kill(-s.cmd.Process.Pid, syscall.SIGCONT) // a paused server ends too
	select {
	case <-s.done:
	case <-time.After(5 * time.Second):
		syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL)
		<-s.done
	}
	s.log.Close()
	s.cmd = nil
}

// Restart stops the server and starts it again on the same ports and data.
func (s *Server) Restart() {
	s.t.Helper()
	s.Stop()
	if err := s.start(); err != nil {
		s.t.Fatal(err)
	}
}

// Pause stops the server's process (SIGSTOP) without closing its ports:
// clients see a server that no longer answers. Resume undoes it.
func (s *Server) Pause()  { syscall.Kill(-s.cmd.Process.Pid, syscall.SIGSTOP) }
func (s *Server) Resume() { syscall.Kill(-s.cmd.Process.Pid, syscall.SIGCONT) }

func (s *Server) tail() string {
	b, _ := os.ReadFile(filepath.Join(s.dir, "etcd.log"))
	if len(b) > 2000 {
		b = b[len(b)-2000:]
	}
	return string(b)
}

// Wait is a context with the test's usual deadline for etcd calls.
func Wait() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), 10*time.Second)
}
