package api_test

import (
	"context"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"

	"hookctl.dev/hookctl"
	"hookctl.dev/hookctl/api"
)

// callerBackend records the caller the server gives each suspend request.
type callerBackend struct {
	*testBackend
	mu      sync.Mutex
	callers []string
}

func (b *callerBackend) Suspend(ctx context.Context, r api.SuspendRequest) (api.SuspendResult, error) {
	b.mu.Lock()
	b.callers = append(b.callers, api.Caller(ctx))
	b.mu.Unlock()
	return api.SuspendResult{Name: r.Name}, nil
}

func (b *callerBackend) Suspensions(context.Context) ([]hookctl.Suspension, error) { return nil, nil }

func (b *callerBackend) last() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.callers[len(b.callers)-1]
}

// TestCallerIdentity: over the Unix socket the caller is the peer's uid
// as the kernel gives it, over TCP "token"; a client's claimed source is
// added after it, unless it is not short printable text.
func TestCallerIdentity(t *testing.T) {
	b := &callerBackend{testBackend: &testBackend{Store: openStore(t)}}
	srv := api.NewServer(api.ServerOptions{Backend: b, Token: "tok"})
	sock := socketPath(t)
	ul, err := api.ListenUnix(sock)
	if err != nil {
		t.Fatal(err)
	}
	tl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { srv.Serve(ctx, ul, false) })
	wg.Go(func() { srv.Serve(ctx, tl, true) })
	defer func() { cancel(); wg.Wait() }()

	uc, err := api.NewClient(api.ClientOptions{Socket: sock})
	if err != nil {
		t.Fatal(err)
	}
	defer uc.Close()
	tc, err := api.NewClient(api.ClientOptions{Server: "http://" + tl.Addr().String(), Token: "tok"})
	if err != nil {
		t.Fatal(err)
	}
	defer tc.Close()
	req := api.SuspendRequest{Kind: "set", Name: "s", Suspend: true}

	uid := "uid " + strconv.Itoa(os.Getuid())
	if _, err := uc.Suspend(ctx, req); err != nil || !strings.HasPrefix(b.last(), uid) {
		t.Errorf("over the socket: caller %q (%v), want %s…", b.last(), err, uid)
	}
	if _, err := tc.Suspend(ctx, req); err != nil || b.last() != "token" {
		t.Errorf("over TCP: caller %q (%v), want token", b.last(), err)
	}
	if _, err := uc.Suspend(api.WithSource(ctx, "watch hooks.d (commit abc)"), req); err != nil || !strings.HasSuffix(b.last(), " via watch hooks.d (commit abc)") || !strings.HasPrefix(b.last(), uid) {
		t.Errorf("with a source: caller %q (%v)", b.last(), err)
	}
	for _, bad := range []string{"a\x1b[2Jb", strings.Repeat("x", 600)} {
		if _, err := uc.Suspend(api.WithSource(ctx, bad), req); err != nil || strings.Contains(b.last(), "via") {
			t.Errorf("with source %q: caller %q (%v), want the source ignored", bad[:min(len(bad), 20)], b.last(), err)
		}
	}
}
