// Command devserver runs what a local try-out of hookctl needs: a private
// Prosody on loopback with a PubSub component and a registered account, a
// backend config pointing at it, and an HTTP receiver that prints what http
// hooks POST. It runs until SIGINT or SIGTERM, then removes what it made.
// `make demo` uses it; it is not part of the installed tool.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"hookctl.dev/hookctl/internal/prosodytest"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "devserver:", err)
		os.Exit(1)
	}
}

func run() error {
	dir := flag.String("dir", "", "directory for the backend config and the ready file (required)")
	httpAddr := flag.String("http", "127.0.0.1:8080", "address of the HTTP receiver for http hooks (empty: none)")
	flag.Parse()
	if *dir == "" {
		return errors.New("-dir is required")
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	srv, err := prosodytest.StartProcess("", prosodytest.Options{Admins: []string{"bot@localhost"}})
	if err != nil {
		return err
	}
	defer srv.Close()
	if _, err := srv.RegisterUser("bot", "demo-password"); err != nil {
		return err
	}
	pw := filepath.Join(*dir, "password")
	if err := os.WriteFile(pw, []byte("demo-password\n"), 0o600); err != nil {
		return err
	}
	cfg := fmt.Sprintf(`# Written by devserver: a backend for the private Prosody at %s.
data_dir: %s
secrets:        # what http hooks may name as ${NAME}: examples/hooks.yaml's webhook
  HOOK_TOKEN: {env: HOOK_TOKEN}
profiles:
  default:
    jid: bot@localhost
    password_file: %s
    server: %s
    tls: none   # loopback test server only
`, srv.Addr, filepath.Join(*dir, "data"), pw, srv.Addr)
	if err := os.WriteFile(filepath.Join(*dir, "backend.yaml"), []byte(cfg), 0o600); err != nil {
		return err
	}

	if *httpAddr != "" {
		l, err := net.Listen("tcp", *httpAddr)
		if err != nil {
			return fmt.Errorf("http receiver: %w", err)
		}
		hs := &http.Server{Handler: http.HandlerFunc(receive), ReadHeaderTimeout: 5 * time.Second}
		go hs.Serve(l) // stopped by Shutdown below
		defer func() {
			sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			hs.Shutdown(sctx)
		}()
	}
	// The ready file tells the caller that everything above is up.
	if err := os.WriteFile(filepath.Join(*dir, "ready"), []byte(srv.Addr+"\n"), 0o600); err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "devserver: Prosody at %s (account bot@localhost, PubSub %s), config %s\n",
		srv.Addr, srv.PubSub, filepath.Join(*dir, "backend.yaml"))
	<-ctx.Done()
	return nil
}

// receive prints each POST an http hook makes.
func receive(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(io.LimitReader(r.Body, 64<<10))
	fmt.Printf("http hook → %s %s (Authorization: %q)\n  %s\n", r.Method, r.URL.Path, r.Header.Get("Authorization"), body)
	w.WriteHeader(http.StatusNoContent)
}
