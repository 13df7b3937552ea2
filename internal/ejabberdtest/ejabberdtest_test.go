package ejabberdtest

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// procsIn lists the processes whose working directory is dir: the VM and
// its helpers (erl_child_setup, inet_gethost) all start there.
func procsIn(dir string) []string {
	var found []string
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		if cwd, err := os.Readlink(filepath.Join("/proc", e.Name(), "cwd")); err == nil && cwd == dir {
			comm, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "comm"))
			found = append(found, e.Name()+" "+strings.TrimSpace(string(comm)))
		}
	}
	return found
}

func TestStartRegisterRestart(t *testing.T) {
	s := Start(t, Options{Admins: []string{"admin@localhost"}})
	t.Logf("ejabberd startup: %v", s.StartupTime)
	if got := s.Register(t, "alice", "pw"); got != "alice@localhost" {
		t.Fatalf("Register = %q, want alice@localhost", got)
	}
	s.Register(t, "alice", "pw2") // again: resets the password, as prosodyctl does
	cfg, err := os.ReadFile(s.Config)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(cfg), `- "admin@localhost"`) {
		t.Errorf("config lacks the admin:\n%s", cfg)
	}
	pid := s.PID()
	if pid == 0 {
		t.Fatal("no PID after Start")
	}
	s.Restart(t)
	t.Logf("ejabberd restart: %v", s.StartupTime)
	if s.PID() == pid || s.PID() == 0 {
		t.Fatalf("PID after Restart = %d (before %d)", s.PID(), pid)
	}
	if err := s.probe(); err != nil {
		t.Fatalf("login after restart: %v", err)
	}
	s.Kill()
	if _, err := net.Dial("tcp", s.Addr); err == nil {
		t.Fatal("port still accepts after Kill")
	}
	if err := syscall.Kill(pid, 0); err == nil {
		t.Fatalf("old process %d still alive", pid)
	}
	s.Restart(t)
	dir := s.Dir
	s.Stop()
	s.Stop() // idempotent
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Fatalf("dir %s not removed: %v", dir, err)
	}
	// The VM's helpers exit with it: nothing is left running there.
	deadline := time.Now().Add(5 * time.Second)
	for left := procsIn(dir); len(left) > 0; left = procsIn(dir) {
		if time.Now().After(deadline) {
			t.Fatalf("processes left after Stop: %v", left)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Two servers run side by side: no shared epmd, node name or port.
func TestTwoServersAtOnce(t *testing.T) {
	a := Start(t, Options{})
	b := Start(t, Options{})
	if a.Addr == b.Addr {
		t.Fatalf("same address %s", a.Addr)
	}
	for _, s := range []*Server{a, b} {
		if err := s.probe(); err != nil {
			t.Errorf("%s: %v", s.Addr, err)
		}
	}
	if out, err := exec.Command("pgrep", "-x", "epmd").Output(); err == nil {
		for _, p := range strings.Fields(string(out)) {
			if cwd, _ := os.Readlink("/proc/" + p + "/cwd"); cwd == a.Dir || cwd == b.Dir {
				t.Errorf("epmd %s started by a test server", p)
			}
		}
	}
}

func TestStartTLS(t *testing.T) {
	s := Start(t, Options{TLS: true})
	if err := s.probe(); err != nil {
		t.Fatalf("STARTTLS login: %v", err)
	}
}

// A server must not outlive a test binary that dies without cleanup.
func TestServerDiesWithTestBinary(t *testing.T) {
	if os.Getenv("EJABBERDTEST_CHILD") == "1" {
		s := Start(t, Options{})
		fmt.Printf("DIR=%s\nPID=%d\n", s.Dir, s.PID())
		select {} // wait to be killed
	}
	if err := Installed(); err != nil {
		t.Skip(err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestServerDiesWithTestBinary$", "-test.v")
	cmd.Env = append(os.Environ(), "EJABBERDTEST_CHILD=1")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Wait()
	var pid int
	var dir string
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		if d, ok := strings.CutPrefix(sc.Text(), "DIR="); ok {
			dir = d
			t.Cleanup(func() { os.RemoveAll(d) })
		}
		if _, err := fmt.Sscanf(sc.Text(), "PID=%d", &pid); err == nil {
			break
		}
	}
	if pid == 0 {
		cmd.Process.Kill()
		t.Fatal("child printed no PID")
	}
	if err := syscall.Kill(pid, 0); err != nil {
		t.Fatalf("server %d not running: %v", pid, err)
	}
	cmd.Process.Kill()
	deadline := time.Now().Add(5 * time.Second)
	for syscall.Kill(pid, 0) == nil || len(procsIn(dir)) > 0 {
		if time.Now().After(deadline) {
			syscall.Kill(pid, syscall.SIGKILL)
			t.Fatalf("server %d (or its helpers %v) still alive after its test binary died", pid, procsIn(dir))
		}
		time.Sleep(20 * time.Millisecond)
	}
}
