package api_test

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"hookctl.dev/hookctl"
	"hookctl.dev/hookctl/api"
)

// A TCP listener serves only requests carrying the token.
func TestTCPToken(t *testing.T) {
	b := &testBackend{Store: openStore(t)}
	srv := api.NewServer(api.ServerOptions{Backend: b, Token: "s3cret"})
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, l, true) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	}()
	url := "http://" + l.Addr().String()

	tokenFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokenFile, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, o := range []api.ClientOptions{{Server: url, Token: "s3cret"}, {Server: url, TokenFile: tokenFile}} {
		c, err := api.NewClient(o)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.Create(t.Context(), hook("n", "/bin/"+o.TokenFile)); err != nil {
			t.Errorf("Create over TCP with %+v: %v", o, err)
		}
		c.Close()
	}
	if hooks, _, _ := b.List(t.Context(), ""); len(hooks) != 2 {
		t.Errorf("%d hooks created over TCP, want 2", len(hooks))
	}

	for _, tok := range []string{"wrong", "s3cre", "s3cret2"} {
		c, err := api.NewClient(api.ClientOptions{Server: url, Token: tok})
		if err != nil {
			t.Fatal(err)
		}
		_, _, err = c.List(t.Context(), "")
		if !errors.Is(err, api.ErrUnauthorized) || apiError(t, err).Status != http.StatusUnauthorized {
			t.Errorf("List with token %q: %v, want 401 ErrUnauthorized", tok, err)
		}
		c.Close()
	}

	// No header at all, or another scheme.
	for _, auth := range []string{"", "Basic czNjcmV0", "s3cret", "Bearer  s3cret"} {
		req, _ := http.NewRequest("GET", url+"/v1/hooks", nil)
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		r := readRaw(t, resp)
		resp.Body.Close()
		if r.status != 401 || r.code != api.CodeUnauthorized || r.header.Get("WWW-Authenticate") == "" {
			t.Errorf("Authorization %q: %d %s, want 401 unauthorized with WWW-Authenticate", auth, r.status, r.code)
		}
	}
}

// Without a token the server refuses to serve a TCP listener at all.
func TestTCPNeedsToken(t *testing.T) {
	srv := api.NewServer(api.ServerOptions{Backend: &testBackend{Store: openStore(t)}})
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	if err := srv.Serve(t.Context(), l, true); err == nil {
		t.Fatal("Serve of a TCP listener without a token succeeded")
	}
	if c, err := net.Dial("tcp", addr); err == nil {
		c.Close()
		t.Error("the refused listener still accepts connections")
	}
}

// Ending Serve's context closes the socket at once but lets a request in
// flight finish.
func TestGracefulShutdown(t *testing.T) {
	b := &testBackend{Store: openStore(t), applyEntered: make(chan struct{}), applyRelease: make(chan struct{})}
	sock := socketPath(t)
	l, err := api.ListenUnix(sock)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- api.NewServer(api.ServerOptions{Backend: b}).Serve(ctx, l, false) }()
	c, err := api.NewClient(api.ClientOptions{Socket: sock})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()

	type result struct {
		rev uint64
		err error
	}
	applied := make(chan result, 1)
	go func() {
		rev, err := c.Apply(context.Background(), hookctl.Batch{Revision: b.Revision(), Create: []hookctl.Hook{hook("n", "/bin/true")}})
		applied <- result{rev, err}
	}()
	<-b.applyEntered
	cancel()

	// The socket goes away while the request is still held.
	for {
		if _, err := os.Lstat(sock); errors.Is(err, fs.ErrNotExist) {
			break
		}
		select {
		case err := <-done:
			t.Fatalf("Serve returned (%v) with a request in flight", err)
		case <-time.After(5 * time.Millisecond):
		}
	}
	select {
	case err := <-done:
		t.Fatalf("Serve returned (%v) with a request in flight", err)
	default:
	}

	close(b.applyRelease)
	r := <-applied
	if r.err != nil {
		t.Fatalf("in-flight Apply: %v", r.err)
	}
	if r.rev != b.Revision() {
		t.Errorf("Apply returned revision %d, registry is at %d", r.rev, b.Revision())
	}
	if err := <-done; err != nil {
		t.Errorf("Serve after shutdown: %v", err)
	}
	if err := c.Ping(context.Background()); !errors.Is(err, hookctl.ErrUnavailable) {
		t.Errorf("Ping after shutdown: %v, want ErrUnavailable", err)
	}
}

// BenchmarkListOverSocket10000 lists 10,000 hooks from the real store
// through the client over the Unix socket.
func BenchmarkListOverSocket10000(b *testing.B) {
	e := start(b)
	const n = 10000
	batch := hookctl.Batch{Revision: e.backend.Revision()}
	for i := range n {
		h := hook(fmt.Sprintf("urn:xmpp:node:%d", i%100), "/usr/local/bin/hook-"+strconv.Itoa(i))
		h.Name = "hook-" + strconv.Itoa(i)
		h.Events = []hookctl.EventKind{hookctl.EventPublish}
		h.Filter = `item.id startsWith "post-"`
		h.Timeout = hookctl.Duration(30 * time.Second)
		h.Owner = "bench"
		batch.Create = append(batch.Create, h)
	}
	if _, err := e.backend.Apply(b.Context(), batch); err != nil {
		b.Fatal(err)
	}
	ctx := b.Context()
	b.ReportAllocs()
	for b.Loop() {
		hooks, _, err := e.client.List(ctx, "default")
		if err != nil {
			b.Fatal(err)
		}
		if len(hooks) != n {
			b.Fatalf("listed %d hooks, want %d", len(hooks), n)
		}
	}
}
