// Package ejabberdtest runs a private, throwaway ejabberd XMPP server on the
// loopback interface so that the integration tests run against a second
// real server besides Prosody (internal/prosodytest, whose API this one
// mirrors).
//
// The Erlang VM is started directly (not through ejabberdctl, which would
// re-run itself as the ejabberd user through su): it runs as the test's
// user, without Erlang distribution (node nonode@nohost), so it neither
// starts nor talks to an epmd and two servers never clash on a node name.
// Each server has its own config, Mnesia spool and free ports; accounts are
// registered through ejabberd's HTTP API (mod_http_api) on a loopback port,
// which takes milliseconds where each ejabberdctl call boots a VM. The
// server is tracked by PID, in its own process group, and dies with the
// test binary (Pdeathsig on Linux); the VM's helpers (erl_child_setup,
// inet_gethost) exit when it does.
package ejabberdtest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
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

// PubSubDomain is the address of the server's PubSub service.
const PubSubDomain = "pubsub.localhost"

// readyTimeout bounds how long Start waits for a working XMPP login. The
// VM takes 2–4 s to start, and much longer on a 2-CPU machine under load.
const readyTimeout = 60 * time.Second

// probeUser is the throwaway account used to prove the server is ready.
const (
	probeUser     = "readyprobe"
	probePassword = "readyprobe"
)

// Options choose how the server is configured; they mean what
// prosodytest.Options mean.
type Options struct {
	// TLS requires STARTTLS on c2s, with CertPEM/KeyPEM or else a
	// self-signed certificate for localhost. Without it the server speaks
	// plain TCP and accepts PLAIN auth.
	TLS bool
	// DirectTLS also opens a direct TLS (XEP-0368) c2s port, DirectTLSAddr.
	DirectTLS bool
	// NoStartTLS: the plain port does not offer STARTTLS at all (a
	// server, or a man in the middle, that strips it).
	NoStartTLS bool
	// CertPEM and KeyPEM are the server's certificate chain and key; when
	// empty and TLS or DirectTLS is set, a self-signed one is made.
	CertPEM, KeyPEM []byte
	// MemoryStorage is accepted for symmetry with Prosody; ejabberd keeps
	// PubSub items in Mnesia tables that are in memory already.
	MemoryStorage bool
	// Admins are bare JIDs allowed to create nodes on the PubSub service;
	// with none, nobody may (as with Prosody's component).
	Admins []string
}

// Server is a running private ejabberd.
type Server struct {
	// Addr is the c2s listener, "127.0.0.1:port".
	Addr string
	// DirectTLSAddr is the direct TLS c2s listener when Options.DirectTLS.
	DirectTLSAddr string
	// Domain is the virtual host ("localhost").
	Domain string
	// PubSub is the PubSub service's JID ("pubsub.localhost").
	PubSub string
	// Dir holds the config, spool and logs.
	Dir string
	// Config is the path of the ejabberd config file.
	Config string
	// Log is the path of ejabberd's log.
	Log string
	// StartupTime is how long the last start took until a login worked.
	StartupTime time.Duration

	api     string // "127.0.0.1:port" of mod_http_api
	opts    Options
	ownsDir bool

	mu      sync.Mutex
	cmd     *exec.Cmd
	done    chan struct{} // closed when cmd has been waited for
	outFile *os.File
	closed  bool
}

// erlLibs finds the directory holding ejabberd's Erlang applications
// (ERL_LIBS), e.g. /usr/lib/x86_64-linux-gnu on Debian.
func erlLibs() (string, error) {
	if _, err := exec.LookPath("erl"); err != nil {
		return "", fmt.Errorf("ejabberd not installed (no erl): %w", err)
	}
	m, _ := filepath.Glob("/usr/lib/*/ejabberd-*/ebin/ejabberd.app")
	if m2, _ := filepath.Glob("/usr/lib/ejabberd-*/ebin/ejabberd.app"); len(m2) > 0 {
		m = append(m, m2...)
	}
	if len(m) == 0 {
		return "", errors.New("ejabberd not installed (no ejabberd-*/ebin/ejabberd.app under /usr/lib)")
	}
	return filepath.Dir(filepath.Dir(filepath.Dir(m[0]))), nil
}

// Installed reports whether an ejabberd can be started here.
func Installed() error {
	_, err := erlLibs()
	return err
}

// Start runs a private ejabberd for the test and stops it when the test
// ends. When ejabberd is not installed the test is skipped, or fails when
// the CI environment variable is set.
func Start(tb testing.TB, opts Options) *Server {
	tb.Helper()
	if err := Installed(); err != nil {
		if os.Getenv("CI") != "" {
			tb.Fatalf("ejabberd is not installed (CI is set, so this is an error): %v", err)
		}
		tb.Skipf("ejabberd is not installed; install it (apt-get install ejabberd) to run this test: %v", err)
	}
	s, err := StartProcess("", opts)
	if err != nil {
		tb.Fatalf("starting ejabberd: %v", err)
	}
	tb.Cleanup(s.Stop)
	return s
}

// StartProcess runs a private ejabberd in dir (a new temporary directory
// when dir is empty, removed by Close) and waits until a client can log
// in. The caller must call Close.
func StartProcess(dir string, opts Options) (*Server, error) {
	if err := Installed(); err != nil {
		return nil, err
	}
	s := &Server{Domain: Domain, PubSub: PubSubDomain, opts: opts}
	if dir == "" {
		d, err := os.MkdirTemp("", "ej")
		if err != nil {
			return nil, err
		}
		dir, s.ownsDir = d, true
	}
	s.Dir = dir
	s.Config = filepath.Join(dir, "ejabberd.yml")
	s.Log = filepath.Join(dir, "logs", "ejabberd.log")
	fail := func(err error) (*Server, error) {
		s.Close()
		return nil, err
	}
	for _, d := range []string{"spool", "logs"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o750); err != nil {
			return fail(err)
		}
	}
	ports, err := servertest.FreePorts(3)
	if err != nil {
		return fail(fmt.Errorf("finding free ports: %w", err))
	}
	s.Addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(ports[0]))
	s.api = net.JoinHostPort("127.0.0.1", strconv.Itoa(ports[1]))
	if opts.DirectTLS {
		s.DirectTLSAddr = net.JoinHostPort("127.0.0.1", strconv.Itoa(ports[2]))
	}
	certFile := ""
	if opts.TLS || opts.DirectTLS {
		certFile = filepath.Join(dir, "cert.pem")
		if err := writeCert(certFile, opts.CertPEM, opts.KeyPEM); err != nil {
			return fail(fmt.Errorf("making certificate: %w", err))
		}
	}
	if err := os.WriteFile(s.Config, []byte(s.configText(ports, certFile)), 0o640); err != nil {
		return fail(err)
	}
	// On a loaded machine a fresh server sometimes answers every register
	// with internal_error until the deadline: start it again on a fresh
	// spool, once.
	if err = s.start(); err != nil {
		s.stopProcess(syscall.SIGKILL)
		first := err
		spool := filepath.Join(dir, "spool")
		if rmErr := os.RemoveAll(spool); rmErr != nil {
			return fail(errors.Join(first, rmErr))
		}
		if mkErr := os.MkdirAll(spool, 0o750); mkErr != nil {
			return fail(errors.Join(first, mkErr))
		}
		if err = s.start(); err != nil {
			return fail(fmt.Errorf("%w\n(first attempt: %v)", err, first))
		}
	}
	return s, nil
}

func (s *Server) configText(ports []int, certFile string) string {
	var b strings.Builder
	q := strconv.Quote // a YAML double-quoted scalar
	b.WriteString("# private test server made by ejabberdtest\n")
	level := "info"
	if l := os.Getenv("EJABBERDTEST_LOGLEVEL"); l != "" {
		level = l // debug logs every stanza
	}
	fmt.Fprintf(&b, "hosts: [%s]\nloglevel: %s\nhide_sensitive_log_data: false\n", q(Domain), level)
	if certFile != "" {
		fmt.Fprintf(&b, "certfiles: [%s]\n", q(certFile))
	} else {
		b.WriteString("certfiles: []\n")
	}
	b.WriteString("listen:\n")
	fmt.Fprintf(&b, "  - port: %d\n    ip: \"127.0.0.1\"\n    module: ejabberd_c2s\n", ports[0])
	switch {
	case s.opts.TLS && !s.opts.NoStartTLS:
		b.WriteString("    starttls: true\n    starttls_required: true\n")
	default:
		b.WriteString("    starttls: false\n")
	}
	if s.opts.DirectTLS {
		fmt.Fprintf(&b, "  - port: %d\n    ip: \"127.0.0.1\"\n    module: ejabberd_c2s\n    tls: true\n", ports[2])
	}
	fmt.Fprintf(&b, "  - port: %d\n    ip: \"127.0.0.1\"\n    module: ejabberd_http\n    request_handlers:\n      /api: mod_http_api\n", ports[1])
	b.WriteString(`auth_method: internal
api_permissions:
  "loopback":
    from: mod_http_api
    who:
      ip: 127.0.0.1/8
    what: "*"
acl:
  admin:
    user: "readyprobe@localhost"
`)
	if len(s.opts.Admins) > 0 {
		b.WriteString("  pubsub_admins:\n    user:\n")
		for _, a := range s.opts.Admins {
			fmt.Fprintf(&b, "      - %s\n", q(a))
		}
	}
	b.WriteString("access_rules:\n  local:\n    allow: all\n  c2s:\n    allow: all\n  pubsub_createnode:\n")
	if len(s.opts.Admins) > 0 {
		b.WriteString("    allow: pubsub_admins\n")
	} else {
		b.WriteString("    deny: all\n")
	}
	fmt.Fprintf(&b, `modules:
  mod_disco: {}
  mod_roster: {}
  mod_caps: {}
  mod_ping: {}
  mod_admin_extra: {}
  mod_pubsub:
    host: %s
    access_createnode: pubsub_createnode
    plugins: ["flat", "pep"]
`, q(PubSubDomain))
	return b.String()
}

// start launches the VM and waits for the API and a real login.
func (s *Server) start() error {
	libs, err := erlLibs()
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return errors.New("ejabberdtest: server closed")
	}
	began := time.Now()
	out, err := os.OpenFile(filepath.Join(s.Dir, "logs", "stdout.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o640)
	if err != nil {
		return err
	}
	cmd := exec.Command("erl", "-noinput", "-noshell",
		"-mnesia", "dir", strconv.Quote(filepath.Join(s.Dir, "spool")),
		"-s", "ejabberd")
	cmd.Dir = s.Dir
	cmd.Env = append(os.Environ(),
		"EJABBERD_CONFIG_PATH="+s.Config,
		"EJABBERD_LOG_PATH="+s.Log,
		"ERL_LIBS="+libs,
		"ERL_CRASH_DUMP_BYTES=0",
		"ERL_CRASH_DUMP="+filepath.Join(s.Dir, "logs", "erl_crash.dump"),
		"HOME="+s.Dir, // the VM writes .erlang.cookie there if asked
	)
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = sysProcAttr()
	if err := cmd.Start(); err != nil {
		out.Close()
		return fmt.Errorf("starting ejabberd: %w", err)
	}
	done := make(chan struct{})
	go func() {
		// Owned by the server: ends when the VM exits, which Stop and Kill
		// make sure of.
		_ = cmd.Wait()
		close(done)
	}()
	s.cmd, s.done, s.outFile = cmd, done, out

	deadline := time.Now().Add(readyTimeout)
	var lastErr error
	for time.Now().Before(deadline) {
		select {
		case <-done:
			return fmt.Errorf("ejabberd exited during start-up: %s\n--- log tail ---\n%s", cmd.ProcessState, s.logTail())
		default:
		}
		if lastErr = s.register(probeUser, probePassword); lastErr == nil {
			if lastErr = s.probe(); lastErr == nil {
				s.StartupTime = time.Since(began)
				return nil
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("ejabberd not ready after %s: %v\n--- log tail ---\n%s", readyTimeout, lastErr, s.logTail())
}

// call runs an ejabberd admin command through mod_http_api.
func (s *Server) call(command string, args map[string]string) (string, error) {
	body, err := json.Marshal(args)
	if err != nil {
		return "", err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+s.api+"/api/"+command, bytes.NewReader(body))
	if err != nil {
		return "", err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("ejabberd API %s: %s: %s", command, resp.Status, bytes.TrimSpace(out))
	}
	return string(out), nil
}

// Register creates an account on the server (or resets its password, as
// prosodyctl register does) and returns its bare JID.
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
	_, err := s.call("register", map[string]string{"user": user, "host": s.Domain, "password": password})
	if err != nil && strings.Contains(err.Error(), "already registered") {
		_, err = s.call("change_password", map[string]string{"user": user, "host": s.Domain, "newpass": password})
	}
	if err != nil {
		return fmt.Errorf("registering %s@%s: %w", user, s.Domain, err)
	}
	return nil
}

// probe logs in with the throwaway account, the only proof of readiness
// that counts.
func (s *Server) probe() error {
	return servertest.ProbeLogin(s.Addr, s.Domain, probeUser, probePassword, s.opts.TLS && !s.opts.NoStartTLS)
}

// logTail returns the last lines of the server's logs for failure messages.
func (s *Server) logTail() string {
	var all []string
	for _, f := range []string{filepath.Join(s.Dir, "logs", "stdout.log"), s.Log} {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
		// The first error lines say why; Erlang's stack traces that
		// follow them fill the tail.
		var errs []string
		for _, l := range lines {
			if strings.Contains(l, "[error]") && len(errs) < 5 {
				errs = append(errs, l)
			}
		}
		if len(lines) > 30 {
			lines = lines[len(lines)-30:]
		}
		all = append(all, "== "+filepath.Base(f)+" (first errors) ==")
		all = append(all, errs...)
		all = append(all, "== "+filepath.Base(f)+" (tail) ==")
		all = append(all, lines...)
	}
	return strings.Join(all, "\n")
}

// LogTail returns the last lines of the server's logs, for test failures.
func (s *Server) LogTail() string { return s.logTail() }

// PID returns the process id of the running VM, or 0.
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

// stopProcess ends the current VM with sig, then SIGKILL after 10 s
// (a graceful stop of ejabberd takes about 3 s). The whole process group
// is signalled.
func (s *Server) stopProcess(sig syscall.Signal) {
	s.mu.Lock()
	cmd, done, out := s.cmd, s.done, s.outFile
	s.cmd, s.done, s.outFile = nil, nil, nil
	s.mu.Unlock()
	if cmd == nil {
		return
	}
	pid := cmd.Process.Pid
	_ = syscall.Kill(-pid, sig)
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		_ = syscall.Kill(-pid, syscall.SIGKILL)
		<-done
	}
	_ = syscall.Kill(-pid, syscall.SIGKILL) // anything left in the group
	out.Close()
}

// Stop kills the server and removes its directory when Start made it.
// It is idempotent. (SIGKILL: the data is thrown away, so the 3 s of a
// graceful stop buy nothing.)
func (s *Server) Stop() { s.Close() }

// Close is Stop for non-test callers; it always returns nil.
func (s *Server) Close() error {
	s.stopProcess(syscall.SIGKILL)
	s.mu.Lock()
	already := s.closed
	s.closed = true
	s.mu.Unlock()
	if !already && s.ownsDir && s.Dir != "" && os.Getenv("EJABBERDTEST_KEEP") == "" {
		_ = os.RemoveAll(s.Dir) // EJABBERDTEST_KEEP=1 keeps it to read the log
	}
	return nil
}

// Kill ends the server abruptly with SIGKILL (for fault tests); Restart
// brings it back.
func (s *Server) Kill() { s.stopProcess(syscall.SIGKILL) }

// Restart stops the server gracefully and starts it again on the same
// ports with the same data, and waits until it accepts logins.
func (s *Server) Restart(tb testing.TB) {
	tb.Helper()
	if err := s.RestartProcess(); err != nil {
		tb.Fatal(err)
	}
}

// RestartProcess is Restart for non-test callers.
func (s *Server) RestartProcess() error {
	s.stopProcess(syscall.SIGTERM)
	var err error
	for i := 0; i < 3; i++ {
		if err = s.start(); err == nil {
			return nil
		}
		s.stopProcess(syscall.SIGKILL)
		time.Sleep(200 * time.Millisecond)
	}
	return fmt.Errorf("restarting ejabberd: %w", err)
}

// writeCert writes the certificate chain and key into one PEM file, as
// ejabberd's certfiles take them; with no certificate given it makes a
// self-signed one for localhost.
func writeCert(path string, certPEM, keyPEM []byte) error {
	certPEM, keyPEM, err := servertest.Certificate("ejabberdtest self-signed", certPEM, keyPEM, Domain, PubSubDomain)
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(append([]byte{}, certPEM...), keyPEM...), 0o600)
}
