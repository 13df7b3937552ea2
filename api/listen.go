package api

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"hookctl.dev/hookctl/config"
)

// ListenUnix creates the control socket at path, readable and writable by
// the owner only (0600).
//
// The parent directory is created 0700 when missing. A socket file left
// behind by a backend that died is removed; one that a live process answers
// on is an error ("another backend is listening on PATH"), and a path that
// is not a socket is never removed.
func ListenUnix(path string) (net.Listener, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("creating the socket directory: %w", err)
	}
	if err := removeStaleSocket(path); err != nil {
		return nil, err
	}
	lc := net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
		// On Linux bind(2) gives the socket file the mode of the socket's
		// inode (less the umask): set it before bind so that the file is
		// never reachable by others, not even for an instant. The Chmod
		// below covers systems where this has no effect.
		var ferr error
		if err := c.Control(func(fd uintptr) { ferr = syscall.Fchmod(int(fd), 0o600) }); err != nil {
			return err
		}
		return ferr
	}}
	l, err := lc.Listen(context.Background(), "unix", path)
	if err != nil {
		return nil, fmt.Errorf("creating the control socket: %w", err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		l.Close()
		return nil, fmt.Errorf("setting the control socket's mode: %w", err)
	}
	return l, nil
}

// removeStaleSocket removes path if it is a socket nobody answers on.
func removeStaleSocket(path string) error {
	fi, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("checking the control socket: %w", err)
	}
	if fi.Mode().Type() != fs.ModeSocket {
		return fmt.Errorf("%s exists and is not a socket: refusing to replace it", path)
	}
	c, err := net.DialTimeout("unix", path, 2*time.Second)
	if err == nil {
		c.Close()
		return fmt.Errorf("another backend is listening on %s", path)
	}
	if !errors.Is(err, syscall.ECONNREFUSED) {
		// Not provably stale (e.g. no permission to dial): leave it alone.
		return fmt.Errorf("checking the control socket %s: %w", path, err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("removing the stale control socket: %w", err)
	}
	return nil
}

// ListenTCP listens on addr for the TCP control API, over TLS when
// certFile and keyFile are set. The key file must be private to its owner
// (see config.ReadSecretFile).
func ListenTCP(addr, certFile, keyFile string) (net.Listener, error) {
	var cfg *tls.Config
	if certFile != "" {
		certPEM, err := os.ReadFile(certFile)
		if err != nil {
			return nil, fmt.Errorf("api_tls_cert: %w", err)
		}
		keyPEM, err := config.ReadSecretFile("api_tls_key", keyFile)
		if err != nil {
			return nil, err
		}
		cert, err := tls.X509KeyPair(certPEM, []byte(keyPEM))
		if err != nil {
			return nil, fmt.Errorf("control API TLS certificate %s: %w", certFile, err)
		}
		cfg = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("control API: %w", err)
	}
	if cfg != nil {
		l = tls.NewListener(l, cfg)
	}
	return l, nil
}
