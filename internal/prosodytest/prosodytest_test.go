package prosodytest

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestStartRegisterRestart(t *testing.T) {
	s := Start(t, Options{Admins: []string{"admin@localhost"}, MemoryStorage: true})
	if got := s.Register(t, "alice", "pw"); got != "alice@localhost" {
		t.Fatalf("Register = %q, want alice@localhost", got)
	}
	cfg, err := os.ReadFile(s.Config)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`admins = { "admin@localhost" }`, `pubsub_data = "memory"`, "nagle = false"} {
		if !strings.Contains(string(cfg), want) {
			t.Errorf("config lacks %q", want)
		}
	}
	pid := s.PID()
	if pid == 0 {
		t.Fatal("no PID after Start")
	}
	s.Restart(t)
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
	s.Stop()
	s.Stop() // idempotent
	if _, err := os.Stat(s.Dir); !os.IsNotExist(err) {
		t.Fatalf("dir %s not removed: %v", s.Dir, err)
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
	if os.Getenv("PROSODYTEST_CHILD") == "1" {
		s := Start(t, Options{})
		fmt.Printf("DIR=%s\nPID=%d\n", s.Dir, s.PID())
		select {} // wait to be killed
	}
	if _, err := exec.LookPath("prosody"); err != nil {
		t.Skip("prosody not installed")
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestServerDiesWithTestBinary$", "-test.v")
	cmd.Env = append(os.Environ(), "PROSODYTEST_CHILD=1")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Wait()
	var pid int
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		if dir, ok := strings.CutPrefix(sc.Text(), "DIR="); ok {
			t.Cleanup(func() { os.RemoveAll(dir) })
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
	for syscall.Kill(pid, 0) == nil {
		if time.Now().After(deadline) {
			syscall.Kill(pid, syscall.SIGKILL)
			t.Fatalf("server %d still alive after its test binary died", pid)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
