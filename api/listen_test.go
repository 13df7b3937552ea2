package api_test

import (
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"hookctl.dev/hookctl/api"
)

// The socket is 0600 whatever the umask, and a missing directory is made
// 0700. Not parallel: it changes the process umask.
func TestListenUnixMode(t *testing.T) {
	old := syscall.Umask(0)
	defer syscall.Umask(old)

	sock := filepath.Join(filepath.Dir(socketPath(t)), "sub", "hookctl.sock")
	l, err := api.ListenUnix(sock)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	fi, err := os.Lstat(sock)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Type() != fs.ModeSocket || fi.Mode().Perm() != 0o600 {
		t.Errorf("socket mode = %v, want socket 0600", fi.Mode())
	}
	di, err := os.Stat(filepath.Dir(sock))
	if err != nil {
		t.Fatal(err)
	}
	if di.Mode().Perm() != 0o700 {
		t.Errorf("socket directory mode = %v, want 0700", di.Mode().Perm())
	}
}

// A socket file left by a backend that died is replaced, and the new
// socket serves.
func TestListenUnixStaleSocket(t *testing.T) {
	sock := socketPath(t)
	old, err := net.ListenUnix("unix", &net.UnixAddr{Name: sock, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	old.SetUnlinkOnClose(false) // as after a crash
	old.Close()
	if fi, err := os.Lstat(sock); err != nil || fi.Mode().Type() != fs.ModeSocket {
		t.Fatalf("stale socket not in place: %v", err)
	}

	e := startWith(t, &testBackend{Store: openStore(t)}, sock)
	if err := e.client.Ping(t.Context()); err != nil {
		t.Errorf("Ping on the replacing socket: %v", err)
	}
}

// A socket someone answers on is left alone.
func TestListenUnixLiveSocket(t *testing.T) {
	e := start(t)
	_, err := api.ListenUnix(e.sock)
	if err == nil || err.Error() != "another backend is listening on "+e.sock {
		t.Fatalf("ListenUnix on a live socket: %v", err)
	}
	if err := e.client.Ping(t.Context()); err != nil {
		t.Errorf("the live backend stopped answering: %v", err)
	}
}

// A path that is not a socket is never removed.
func TestListenUnixNotSocket(t *testing.T) {
	sock := socketPath(t)
	if err := os.WriteFile(sock, []byte("precious"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := api.ListenUnix(sock)
	if err == nil || !strings.Contains(err.Error(), "is not a socket") {
		t.Fatalf("ListenUnix on a regular file: %v", err)
	}
	if b, err := os.ReadFile(sock); err != nil || string(b) != "precious" {
		t.Errorf("the file was touched: %q, %v", b, err)
	}
}
