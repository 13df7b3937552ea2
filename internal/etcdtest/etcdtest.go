// Package etcdtest starts a private, real etcd server (the Debian package's
// /usr/bin/etcd) for tests: its own data dir in a temp dir, loopback, free
// ports. Without etcd the test is skipped, except under CI=true, where a
// missing server fails it.
package etcdtest

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
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
	bin        string
	dir        string
	clientPort int
	peerPort   int
	opts       Options
	cmd        *exec.Cmd
	done       chan struct{}
	log        *os.File
}

// Options configure the server.
type Options struct {
	// TLS serves clients over TLS with this certificate and key (PEM
	// files); ClientCA also requires client certificates from this CA.
	CertFile, KeyFile, ClientCA string
}

// Start starts a single-member etcd cluster and waits until it is healthy.
func Start(t testing.TB) *Server { return StartWith(t, Options{}) }

// StartWith is Start with options.
func StartWith(t testing.TB, opts Options) *Server {
	t.Helper()
	if _, err := exec.LookPath("etcd"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("etcd is not installed (apt-get install etcd-server): %v", err)
		}
		t.Skipf("etcd is not installed: %v", err)
	}
	s, err := StartProcess(t.TempDir(), opts)
	if s != nil {
		t.Cleanup(s.Stop)
	}
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// StartProcess starts etcd with its data in dir, for callers without a
// testing.TB (the CLI scripts); the caller stops it.
func StartProcess(dir string, opts Options) (*Server, error) {
	bin, err := exec.LookPath("etcd")
	if err != nil {
		return nil, fmt.Errorf("etcd is not installed (apt-get install etcd-server): %w", err)
	}
	ports, err := servertest.FreePorts(2)
	if err != nil {
		return nil, err
	}
	s := &Server{bin: bin, dir: dir, clientPort: ports[0], peerPort: ports[1], opts: opts}
	return s, s.start()
}

// Endpoint is the client URL, http://127.0.0.1:PORT (https with TLS).
func (s *Server) Endpoint() string {
	scheme := "http"
	if s.opts.CertFile != "" {
		scheme = "https"
	}
	return fmt.Sprintf("%s://127.0.0.1:%d", scheme, s.clientPort)
}

// Addr is HOST:PORT of the client listener.
func (s *Server) Addr() string { return fmt.Sprintf("127.0.0.1:%d", s.clientPort) }

func (s *Server) start() error {
	peer := fmt.Sprintf("http://127.0.0.1:%d", s.peerPort)
	log, err := os.OpenFile(filepath.Join(s.dir, "etcd.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	args := []string{
		"--data-dir", filepath.Join(s.dir, "data"), "--name", "n1",
		"--listen-client-urls", s.Endpoint(), "--advertise-client-urls", s.Endpoint(),
		"--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
		"--initial-cluster", "n1=" + peer,
		// Small and quick: a test cluster of one member on loopback.
		"--heartbeat-interval", "50", "--election-timeout", "500",
		"--quota-backend-bytes", fmt.Sprint(256 << 20),
		// Room for a registry batch of 10,000 hooks in one transaction
		// (docs/CLUSTER.md).
		"--max-txn-ops", "25000", "--max-request-bytes", fmt.Sprint(32 << 20),
	}
	if s.opts.CertFile != "" {
		args = append(args, "--cert-file", s.opts.CertFile, "--key-file", s.opts.KeyFile)
	}
	if s.opts.ClientCA != "" {
		args = append(args, "--client-cert-auth", "--trusted-ca-file", s.opts.ClientCA)
	}
	cmd := exec.Command(s.bin, args...)
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
	if s.opts.CertFile != "" {
		// A readiness probe of the test's own server: trust it.
		client.Transport = &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}} // #nosec G402
		if s.opts.ClientCA != "" {
			return s.waitTCP(deadline) // /health needs a client certificate
		}
	}
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

// waitTCP waits until the client port accepts connections, then a
// little for etcd to elect itself.
func (s *Server) waitTCP(deadline time.Time) error {
	for time.Now().Before(deadline) {
		c, err := net.DialTimeout("tcp", s.Addr(), time.Second)
		if err == nil {
			c.Close()
			time.Sleep(time.Second)
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("etcd not listening after %s: %s", startTimeout, s.tail())
}

// Restart stops the server and starts it again on the same ports and data.
func (s *Server) Restart() error {
	s.Stop()
	return s.start()
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
