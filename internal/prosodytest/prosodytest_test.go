package prosodytest

import (
	"net"
	"os"
	"strings"
	"syscall"
	"testing"
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
