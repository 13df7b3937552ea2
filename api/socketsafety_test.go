package api

import (
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"hookctl.dev/hookctl"
)

func TestCheckSocketDir(t *testing.T) {
	private := t.TempDir()
	if err := CheckSocketDir(filepath.Join(private, "h.sock")); err != nil {
		t.Errorf("private dir: %v", err)
	}
	open := filepath.Join(t.TempDir(), "open")
	os.Mkdir(open, 0o755)
	os.Chmod(open, 0o1777) // like /tmp: sticky, but others can still squat the name
	err := CheckSocketDir(filepath.Join(open, "h.sock"))
	if !errors.Is(err, hookctl.ErrInvalid) || !strings.Contains(err.Error(), "writable by group or others") {
		t.Errorf("world-writable dir: %v, want refused", err)
	}
}

func TestCheckSocketOwner(t *testing.T) {
	dir := t.TempDir()
	sock := filepath.Join(dir, "h.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if err := CheckSocketOwner(sock); err != nil {
		t.Errorf("own socket: %v", err)
	}
	if os.Geteuid() != 0 {
		t.Skip("chown to another user needs root")
	}
	if err := os.Chown(sock, 65534, 65534); err != nil {
		t.Fatal(err)
	}
	if err := CheckSocketOwner(sock); !errors.Is(err, hookctl.ErrUnavailable) || !strings.Contains(err.Error(), "owned by uid 65534") {
		t.Errorf("another user's socket: %v, want refused", err)
	}
}

func TestShareSocket(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("giving a socket to another group needs root")
	}
	sock := filepath.Join(t.TempDir(), "h.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if err := ShareSocket(sock, "nogroup"); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(sock)
	if err != nil {
		t.Fatal(err)
	}
	if st := fi.Sys().(*syscall.Stat_t); fi.Mode().Perm() != 0o660 || st.Gid != 65534 {
		t.Errorf("socket mode %04o gid %d, want 0660 and nogroup (65534)", fi.Mode().Perm(), st.Gid)
	}
	if err := ShareSocket(sock, "no-such-group-here"); err == nil || !strings.Contains(err.Error(), "socket_group") {
		t.Errorf("unknown group: %v", err)
	}
}
