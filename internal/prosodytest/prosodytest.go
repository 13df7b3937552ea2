// Package prosodytest runs a private, throwaway Prosody XMPP server on the
// loopback interface so that tests and benchmarks talk to a real server.
//
// Each server gets its own config, data directory and free port; it is
// tracked by PID (the process is named lua5.4, never look it up by name)
// and dies with the test binary (Pdeathsig on Linux).
package prosodytest

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"hookctl.dev/hookctl/internal/servertest"
)

// Domain is the virtual host every test server serves.
const Domain = "localhost"

// PubSubDomain is the address of the server's PubSub component.
const PubSubDomain = "pubsub.localhost"

// readyTimeout bounds how long Start waits for a working XMPP login.
const readyTimeout = 10 * time.Second

// probeUser is the throwaway account used to prove the server is ready.
const (
	probeUser     = "readyprobe"
	probePassword = "readyprobe"
)

// Options choose how the server is configured.
type Options struct {
	// TLS gives the server a self-signed certificate and requires STARTTLS
	// on c2s. Without it the server speaks plain TCP and accepts PLAIN auth.
	TLS bool
	// DirectTLS also opens a direct TLS (XEP-0368) c2s port, DirectTLSAddr.
	DirectTLS bool
	// NoStartTLS: the plain port does not offer STARTTLS at all (mod_tls
	// off: a server, or a man in the middle, that strips it).
	NoStartTLS bool
	// CertPEM and KeyPEM are the server's certificate chain and key; when
	// empty and TLS or DirectTLS is set, a self-signed one is made.
	CertPEM, KeyPEM []byte
	// MemoryStorage keeps the PubSub component's items in memory (for
	// benchmarks: file storage rewrites the node on every publish).
	MemoryStorage bool
	// MemoryNodes keeps the PubSub component's nodes (configuration,
	// affiliations, subscribers) in memory too (for scale benchmarks: the
	// file store rewrites a node's file on every subscription). Nodes
	// then do not survive a restart of the server.
	MemoryNodes bool
	// Admins are bare JIDs allowed to create nodes on the PubSub component.
	Admins []string
}

// Server is a running private Prosody.
type Server struct {
	// Addr is the c2s listener, "127.0.0.1:port".
	Addr string
	// DirectTLSAddr is the direct TLS c2s listener when Options.DirectTLS.
	DirectTLSAddr string
	// Domain is the virtual host ("localhost").
	Domain string
	// PubSub is the PubSub component's JID ("pubsub.localhost").
	PubSub string
	// Dir holds the config, data, pidfile and log.
	Dir string
	// Config is the path of the Prosody config file.
	Config string
	// Log is the path of the server's console log.
	Log string

	opts    Options
	ownsDir bool

	mu      sync.Mutex
	cmd     *exec.Cmd
	done    chan struct{} // closed when cmd has been waited for
	logFile *os.File
	closed  bool
}

// Start runs a private Prosody for the test and stops it when the test
// ends. When prosody is not installed the test is skipped, or fails when
// the CI environment variable is set.
func Start(tb testing.TB, opts Options) *Server {
	tb.Helper()
	if _, err := exec.LookPath("prosody"); err != nil {
		if os.Getenv("CI") != "" {
			tb.Fatalf("prosody is not installed (CI is set, so this is an error): %v", err)
		}
		tb.Skipf("prosody is not installed; install it (apt-get install prosody) to run this test: %v", err)
	}
	s, err := StartProcess("", opts)
	if err != nil {
		tb.Fatalf("starting prosody: %v", err)
	}
	tb.Cleanup(s.Stop)
	return s
}

// StartProcess runs a private Prosody in dir (a new temporary directory
// when dir is empty, removed by Close) and waits until a client can log
// in. The caller must call Close.
func StartProcess(dir string, opts Options) (*Server, error) {
	if _, err := exec.LookPath("prosody"); err != nil {
		return nil, fmt.Errorf("prosody not installed: %w", err)
	}
	s := &Server{Domain: Domain, PubSub: PubSubDomain, opts: opts}
	if dir == "" {
		// A short path: Prosody's admin socket path must fit in sun_path.
		d, err := os.MkdirTemp("", "pt")
		if err != nil {
			return nil, err
		}
		dir, s.ownsDir = d, true
	}
	s.Dir = dir
	s.Config = filepath.Join(dir, "prosody.cfg.lua")
	s.Log = filepath.Join(dir, "prosody.log")
	fail := func(err error) (*Server, error) {
		s.Close()
		return nil, err
	}
	if err := os.MkdirAll(filepath.Join(dir, "data"), 0o750); err != nil {
		return fail(err)
	}
	port, err := freePort()
	if err != nil {
		return fail(fmt.Errorf("finding a free port: %w", err))
	}
	s.Addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	directPort := 0
	if opts.DirectTLS {
		if directPort, err = freePort(); err != nil {
			return fail(fmt.Errorf("finding a free port: %w", err))
		}
		s.DirectTLSAddr = net.JoinHostPort("127.0.0.1", strconv.Itoa(directPort))
	}
	if opts.TLS || opts.DirectTLS {
		if err := writeCert(filepath.Join(dir, "certs"), opts.CertPEM, opts.KeyPEM); err != nil {
			return fail(fmt.Errorf("making certificate: %w", err))
		}
	}
	if err := os.WriteFile(s.Config, []byte(s.configText(port, directPort)), 0o640); err != nil {
		return fail(err)
	}
	if err := s.register(probeUser, probePassword); err != nil {
		return fail(err)
	}
	if err := s.start(); err != nil {
		return fail(err)
	}
	return s, nil
}

func (s *Server) configText(port, directPort int) string {
	var b strings.Builder
	lua := func(v string) string { return strconv.Quote(v) }
	fmt.Fprintf(&b, "-- private test server made by prosodytest\n")
	if os.Geteuid() == 0 {
		b.WriteString("run_as_root = true\n")
	}
	fmt.Fprintf(&b, "daemonize = false\n")
	fmt.Fprintf(&b, "pidfile = %s\n", lua(filepath.Join(s.Dir, "prosody.pid")))
	fmt.Fprintf(&b, "data_path = %s\n", lua(filepath.Join(s.Dir, "data")))
	fmt.Fprintf(&b, "admin_socket = %s\n", lua(filepath.Join(s.Dir, "admin.sock")))
	b.WriteString(`interfaces = { "127.0.0.1" }
local_interfaces = { "127.0.0.1" }
`)
	fmt.Fprintf(&b, "c2s_ports = { %d }\n", port)
	b.WriteString(`s2s_ports = { }
http_ports = { }
https_ports = { }
component_ports = { }
network_settings = { nagle = false }
modules_disabled = { "s2s"; "offline" }
authentication = "internal_hashed"
log = { { levels = { min = "info" }, to = "console" } }
`)
	if directPort != 0 {
		fmt.Fprintf(&b, "c2s_direct_tls_ports = { %d }\n", directPort)
	} else {
		b.WriteString("c2s_direct_tls_ports = { }\n")
	}
	tlsModule := ` "tls";`
	if s.opts.NoStartTLS {
		tlsModule = ""
	}
	fmt.Fprintf(&b, "modules_enabled = { \"disco\"; \"roster\"; \"saslauth\";%s \"pep\"; \"ping\"; \"posix\" }\n", tlsModule)
	if s.opts.TLS || s.opts.DirectTLS {
		fmt.Fprintf(&b, "certificates = %s\n", lua(filepath.Join(s.Dir, "certs")))
	}
	if s.opts.TLS && !s.opts.NoStartTLS {
		b.WriteString("c2s_require_encryption = true\nallow_unencrypted_plain_auth = false\n")
	} else {
		b.WriteString("c2s_require_encryption = false\nallow_unencrypted_plain_auth = true\n")
	}
	fmt.Fprintf(&b, "\nVirtualHost %s\n", lua(Domain))
	fmt.Fprintf(&b, "\nComponent %s \"pubsub\"\n", lua(PubSubDomain))
	var admins []string
	for _, a := range s.opts.Admins {
		admins = append(admins, lua(a))
	}
	fmt.Fprintf(&b, "\tadmins = { %s }\n", strings.Join(admins, "; "))
	switch {
	case s.opts.MemoryStorage && s.opts.MemoryNodes:
		b.WriteString("\tstorage = { pubsub_data = \"memory\", pubsub_nodes = \"memory\" }\n")
	case s.opts.MemoryStorage:
		b.WriteString("\tstorage = { pubsub_data = \"memory\" }\n")
	case s.opts.MemoryNodes:
		b.WriteString("\tstorage = { pubsub_nodes = \"memory\" }\n")
	}
	return b.String()
}

// Register creates an account on the server and returns its bare JID.
func (s *Server) Register(tb testing.TB, user, password string) string {
	tb.Helper()
	if err := s.register(user, password); err != nil {
		tb.Fatal(err)
	}
	return user + "@" + s.Domain
}

// RegisterUser is Register for non-test callers.
func (s *Server) RegisterUser(user, password string) (string, error) {
	if err := s.register(user, password); err != nil {
		return "", err
	}
	return user + "@" + s.Domain, nil
}

func (s *Server) register(user, password string) error {
	cmd := exec.Command("prosodyctl", "--config", s.Config, "register", user, s.Domain, password)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("registering %s@%s: %w: %s", user, s.Domain, err, bytes.TrimSpace(out))
	}
	return nil
}

// start launches the process and waits for a real login to succeed.
func (s *Server) start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return errors.New("prosodytest: server closed")
	}
	lf, err := os.OpenFile(s.Log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o640)
	if err != nil {
		return err
	}
	cmd := exec.Command("prosody", "-F", "--config", s.Config)
	cmd.Dir = s.Dir
	cmd.Stdout, cmd.Stderr = lf, lf
	cmd.SysProcAttr = sysProcAttr()
	if err := cmd.Start(); err != nil {
		lf.Close()
		return fmt.Errorf("starting prosody: %w", err)
	}
	done := make(chan struct{})
	go func() {
		// Owned by the server: ends when the process exits, which Stop
		// and Kill make sure of.
		_ = cmd.Wait()
		close(done)
	}()
	s.cmd, s.done, s.logFile = cmd, done, lf

	deadline := time.Now().Add(readyTimeout)
	var lastErr error
	for time.Now().Before(deadline) {
		select {
		case <-done:
			return fmt.Errorf("prosody exited during start-up: %s\n--- log tail ---\n%s", cmd.ProcessState, s.logTail())
		default:
		}
		if lastErr = s.probe(); lastErr == nil {
			return nil
		}
		time.Sleep(25 * time.Millisecond)
	}
	return fmt.Errorf("prosody not ready after %s: %v\n--- log tail ---\n%s", readyTimeout, lastErr, s.logTail())
}

// probe logs in with the throwaway account, the only proof of readiness
// that counts (the port accepts connections before Prosody is ready).
func (s *Server) probe() error {
	return servertest.ProbeLogin(s.Addr, s.Domain, probeUser, probePassword, s.opts.TLS && !s.opts.NoStartTLS)
}

// logTail returns the last lines of the server's log for failure messages.
func (s *Server) logTail() string {
	b, err := os.ReadFile(s.Log)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > 30 {
		lines = lines[len(lines)-30:]
	}
	return strings.Join(lines, "\n")
}

// LogTail returns the last lines of the server's log, for test failures.
func (s *Server) LogTail() string { return s.logTail() }

// PID returns the process id of the running server, or 0.
func (s *Server) PID() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil || s.cmd.Process == nil {
		return 0
	}
	select {
	case <-s.done:
		return 0
	default:
		return s.cmd.Process.Pid
	}
}

// stopProcess ends the current process: SIGTERM, then SIGKILL after 5 s.
func (s *Server) stopProcess(sig syscall.Signal) {
	s.mu.Lock()
	cmd, done, lf := s.cmd, s.done, s.logFile
	s.cmd, s.done, s.logFile = nil, nil, nil
	s.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(sig)
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		_ = cmd.Process.Kill()
		<-done
	}
	lf.Close()
}

// Stop terminates the server (SIGTERM, SIGKILL after 5 s) and removes its
// directory when Start made it. It is idempotent.
func (s *Server) Stop() { s.Close() }

// Close is Stop for non-test callers; it always returns nil.
func (s *Server) Close() error {
	s.stopProcess(syscall.SIGTERM)
	s.mu.Lock()
	already := s.closed
	s.closed = true
	s.mu.Unlock()
	if !already && s.ownsDir && s.Dir != "" {
		_ = os.RemoveAll(s.Dir)
	}
	return nil
}

// Kill ends the server abruptly with SIGKILL (for fault tests); Restart
// brings it back.
func (s *Server) Kill() { s.stopProcess(syscall.SIGKILL) }

// Restart stops the server and starts it again on the same port with the
// same data, and waits until it accepts logins.
func (s *Server) Restart(tb testing.TB) {
	tb.Helper()
	if err := s.RestartProcess(); err != nil {
		tb.Fatal(err)
	}
}

// RestartProcess is Restart for non-test callers.
func (s *Server) RestartProcess() error {
	s.stopProcess(syscall.SIGTERM)
	// The port may linger briefly after the old process exits.
	var err error
	for i := 0; i < 3; i++ {
		if err = s.start(); err == nil {
			return nil
		}
		s.stopProcess(syscall.SIGKILL)
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("restarting prosody: %w", err)
}

func freePort() (int, error) {
	ports, err := servertest.FreePorts(1)
	if err != nil {
		return 0, err
	}
	return ports[0], nil
}

// writeCert writes the certificate chain and key in dir, named the way
// Prosody's certificate directory lookup expects; with none given it
// makes a self-signed one for localhost and the PubSub component.
func writeCert(dir string, certPEM, keyPEM []byte) error {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return err
	}
	certPEM, keyPEM, err := servertest.Certificate("prosodytest self-signed", certPEM, keyPEM, Domain, PubSubDomain)
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, Domain+".crt"), certPEM, 0o640); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, Domain+".key"), keyPEM, 0o600)
}
