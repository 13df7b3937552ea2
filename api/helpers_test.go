package api_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"hookctl.dev/hookctl"
	"hookctl.dev/hookctl/api"
	"hookctl.dev/hookctl/registry"
)

// testBackend is the real registry plus a small fake of the session side
// (status, runs, pubsub), which needs XMPP and is not under test here.
type testBackend struct {
	*registry.Store

	mu          sync.Mutex
	runQuery    api.RunQuery // last query seen by Runs
	pubsubReq   api.PubSubRequest
	pubsubErr   error // returned by PubSub when set
	pubsubPanic bool

	// When applyEntered is set, Apply signals it and waits for
	// applyRelease: a request held in flight.
	applyEntered chan struct{}
	applyRelease chan struct{}
}

func (b *testBackend) Status(ctx context.Context) (api.Status, error) {
	hooks, rev, err := b.List(ctx, "")
	if err != nil {
		return api.Status{}, err
	}
	return api.Status{
		Version:  "test",
		Revision: rev,
		Hooks:    len(hooks),
		Profiles: []api.ProfileStatus{{Name: "default", JID: "bot@localhost", State: "connected", Hooks: len(hooks)}},
	}, nil
}

func (b *testBackend) Runs(ctx context.Context, q api.RunQuery) ([]hookctl.Run, error) {
	b.mu.Lock()
	b.runQuery = q
	b.mu.Unlock()
	return []hookctl.Run{
		{ID: 2, Hook: hookctl.Key{Profile: q.Profile, Node: q.Node}, Event: hookctl.EventPublish, Outcome: "failed", ExitCode: 1},
		{ID: 1, Hook: hookctl.Key{Profile: q.Profile, Node: q.Node}, Event: hookctl.EventRetract, Outcome: "ok"},
	}, nil
}

func (b *testBackend) PubSub(ctx context.Context, r api.PubSubRequest) (api.PubSubResult, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.pubsubReq = r
	if b.pubsubPanic {
		panic("backend bug")
	}
	if b.pubsubErr != nil {
		return api.PubSubResult{}, b.pubsubErr
	}
	id := r.ItemID
	if id == "" {
		id = "generated-id"
	}
	return api.PubSubResult{ItemID: id}, nil
}

func (b *testBackend) Apply(ctx context.Context, batch hookctl.Batch) (uint64, error) {
	if b.applyEntered != nil {
		b.applyEntered <- struct{}{}
		<-b.applyRelease
	}
	return b.Store.Apply(ctx, batch)
}

// env is a backend served over a real Unix socket.
type env struct {
	sock    string
	backend *testBackend
	client  *api.Client
	cancel  context.CancelFunc
	done    chan error // Serve's result
}

// socketPath returns a socket path short enough for sun_path (t.TempDir()
// paths can exceed its ~108 bytes).
func socketPath(tb testing.TB) string {
	tb.Helper()
	dir, err := os.MkdirTemp("", "hk")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { os.RemoveAll(dir) })
	return filepath.Join(dir, "hookctl.sock")
}

func openStore(tb testing.TB) *registry.Store {
	tb.Helper()
	st, err := registry.Open(tb.TempDir(), registry.Options{Profiles: map[string]string{"default": "bot@localhost"}})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { st.Close() })
	return st
}

// start serves a fresh registry on a fresh socket until the test ends.
func start(tb testing.TB) *env {
	tb.Helper()
	return startWith(tb, &testBackend{Store: openStore(tb)}, socketPath(tb))
}

// startWith serves b on sock until the test ends, and checks then that
// Serve ended cleanly and removed its socket.
func startWith(tb testing.TB, b *testBackend, sock string) *env {
	tb.Helper()
	e := &env{sock: sock, backend: b, done: make(chan error, 1)}
	l, err := api.ListenUnix(e.sock)
	if err != nil {
		tb.Fatal(err)
	}
	srv := api.NewServer(api.ServerOptions{Backend: b})
	ctx, cancel := context.WithCancel(context.Background())
	e.cancel = cancel
	go func() { e.done <- srv.Serve(ctx, l, false) }()
	e.client, err = api.NewClient(api.ClientOptions{Socket: e.sock})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		e.client.Close()
		cancel()
		if err := <-e.done; err != nil {
			tb.Errorf("Serve: %v", err)
		}
		if _, err := os.Lstat(sock); !errors.Is(err, fs.ErrNotExist) {
			tb.Errorf("socket left behind after shutdown: %v", err)
		}
	})
	return e
}

// rawResult is an answer read without the client.
type rawResult struct {
	status  int
	code    string
	message string
	header  http.Header
	body    string
}

// raw sends a request over the socket by hand, for what the client would
// never send.
func (e *env) raw(tb testing.TB, method, path, contentType string, body io.Reader) rawResult {
	tb.Helper()
	hc := &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", e.sock)
		},
	}}
	defer hc.CloseIdleConnections()
	req, err := http.NewRequest(method, "http://hookctl"+path, body)
	if err != nil {
		tb.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := hc.Do(req)
	if err != nil {
		tb.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	return readRaw(tb, resp)
}

func readRaw(tb testing.TB, resp *http.Response) rawResult {
	tb.Helper()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		tb.Fatal(err)
	}
	r := rawResult{status: resp.StatusCode, header: resp.Header, body: string(b)}
	if got := resp.Header.Get("Content-Type"); got != "application/json" {
		tb.Errorf("Content-Type = %q, want application/json", got)
	}
	if resp.StatusCode >= 400 {
		var eb struct {
			Error struct {
				Code    string `json:"code"`
				Message string `json:"message"`
			} `json:"error"`
		}
		dec := json.NewDecoder(strings.NewReader(r.body))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&eb); err != nil {
			tb.Fatalf("error answer %q is not the error JSON: %v", r.body, err)
		}
		r.code, r.message = eb.Error.Code, eb.Error.Message
	}
	return r
}

// hook returns a valid persistent exec hook of profile default.
func hook(node, arg string) hookctl.Hook {
	return hookctl.Hook{
		Key:        hookctl.Key{Profile: "default", Node: node, Type: hookctl.TypeExec, Arg: arg},
		Persistent: true,
		Source:     "test",
	}
}

// apiError returns err as *api.Error or fails.
func apiError(tb testing.TB, err error) *api.Error {
	tb.Helper()
	var ae *api.Error
	if !errors.As(err, &ae) {
		tb.Fatalf("error %v (%T) is not an *api.Error", err, err)
	}
	return ae
}
