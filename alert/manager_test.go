package alert

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"hookctl.dev/hookctl"
)

// chanSink collects messages.
type chanSink chan Message

func (c chanSink) Send(_ context.Context, m Message) error { c <- m; return nil }

func run(t *testing.T, m *Manager) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { m.Run(ctx); close(done) }()
	return func() {
		cancel()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Fatal("manager did not stop within 5s")
		}
	}
}

func recv(t *testing.T, c chanSink) Message {
	t.Helper()
	select {
	case m := <-c:
		return m
	case <-time.After(5 * time.Second):
		t.Fatal("no message within 5s")
		return Message{}
	}
}

func failRun(key string) hookctl.Run {
	return hookctl.Run{Hook: hookctl.Key{Node: key}, HookName: key, Outcome: "failed", Error: "exit status 1: token s3cr3t-value"}
}

// Successes of hooks that never failed queue nothing; a failure, and
// then the success that recovers it, do; secrets are redacted.
func TestManagerHookRuns(t *testing.T) {
	sink := make(chanSink, 10)
	m := New(Options{Window: time.Hour, Routes: []Route{{Name: "c", Sink: sink}},
		Redact: func(s string) string { return strings.ReplaceAll(s, "s3cr3t-value", "[redacted]") }})
	for range 100 {
		m.HookRun(hookctl.Run{Hook: hookctl.Key{Node: "n"}, Outcome: "ok"})
	}
	m.HookRun(hookctl.Run{Hook: hookctl.Key{Node: "n"}, Outcome: "skipped"})
	if len(m.in) != 0 {
		t.Fatalf("%d signals queued for successes of a hook that never failed", len(m.in))
	}
	stop := run(t, m)
	defer stop()
	m.HookRun(failRun("n"))
	got := recv(t, sink)
	if got.State != Failing || got.Subject != `hook "n"` || strings.Contains(got.Text, "s3cr3t") || !strings.Contains(got.Text, "[redacted]") {
		t.Fatalf("first message = %+v", got)
	}
	m.HookRun(failRun("n"))
	m.HookRun(hookctl.Run{Hook: hookctl.Key{Node: "n"}, HookName: "n", Outcome: "ok", Output: "fine"})
	got = recv(t, sink)
	if got.State != Recovered || got.Total != 2 || !strings.HasPrefix(got.Text, `RECOVERED hook "n" succeeds again after 2 failures`) {
		t.Fatalf("second message = %+v", got)
	}
}

// A full queue drops signals, counted and told in the next message; the
// producer never waits.
func TestManagerDropsWhenFull(t *testing.T) {
	sink := make(chanSink, 10)
	m := New(Options{QueueSize: 2, Routes: []Route{{Name: "c", Sink: sink}}})
	for range 10 {
		m.Signal(Signal{Kind: FilesFailing, Subject: "hooks files"})
	}
	stop := run(t, m)
	defer stop()
	if got := recv(t, sink); got.Dropped != 8 || !strings.Contains(got.Text, "[8 alert signals dropped: queue full]") {
		t.Fatalf("message = %+v, want 8 dropped", got)
	}
}

// A sink that never answers: each send ends at its deadline, hook runs
// never wait, and Run stops at once.
func TestManagerStuckSink(t *testing.T) {
	var mu sync.Mutex
	var errs []error
	stuck := SinkFunc(func(ctx context.Context, m Message) error {
		<-ctx.Done()
		mu.Lock()
		errs = append(errs, ctx.Err())
		mu.Unlock()
		return ctx.Err()
	})
	m := New(Options{Window: time.Millisecond, Tick: time.Millisecond, SinkQueue: 2,
		Routes: []Route{{Name: "stuck", Sink: stuck, Timeout: 20 * time.Millisecond}}})
	stop := run(t, m)
	start := time.Now()
	for i := range 10000 {
		m.HookRun(failRun(string(rune('a' + i%20))))
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("10000 failing runs took %v to report", d)
	}
	time.Sleep(100 * time.Millisecond)
	stop()
	mu.Lock()
	defer mu.Unlock()
	if len(errs) == 0 || !errors.Is(errs[0], context.DeadlineExceeded) {
		t.Fatalf("sends ended with %v, want deadline exceeded", errs)
	}
}

// Kinds route messages to the sinks that take them.
func TestManagerRoutesKinds(t *testing.T) {
	hooks, files := make(chanSink, 10), make(chanSink, 10)
	m := New(Options{Routes: []Route{{Name: "h", Sink: hooks, Kinds: []Kind{HookFailure}}, {Name: "f", Sink: files, Kinds: []Kind{FilesFailing}}}})
	stop := run(t, m)
	defer stop()
	m.Signal(Signal{Kind: FilesFailing, Subject: "hooks files", Detail: "bad"})
	m.HookRun(failRun("x"))
	if got := recv(t, files); got.Kind != FilesFailing {
		t.Errorf("files sink got %v", got)
	}
	if got := recv(t, hooks); got.Kind != HookFailure {
		t.Errorf("hooks sink got %v", got)
	}
	select {
	case m := <-files:
		t.Errorf("files sink also got %v", m)
	case <-time.After(50 * time.Millisecond):
	}
}

// A session down past the threshold is told, then its recovery.
func TestManagerSessionDown(t *testing.T) {
	sink := make(chanSink, 10)
	var mu sync.Mutex
	up := false
	m := New(Options{SessionDownAfter: 50 * time.Millisecond, Tick: 10 * time.Millisecond, Routes: []Route{{Name: "c", Sink: sink}},
		Sessions: map[string]func() (bool, string){"main": func() (bool, string) { mu.Lock(); defer mu.Unlock(); return up, "connection refused" }}})
	stop := run(t, m)
	defer stop()
	if got := recv(t, sink); got.Kind != SessionDown || got.State != Failing || !strings.Contains(got.Text, "connection refused") {
		t.Fatalf("message = %+v", got)
	}
	mu.Lock()
	up = true
	mu.Unlock()
	if got := recv(t, sink); got.State != Recovered || !strings.Contains(got.Text, "RECOVERED profile main is connected again") {
		t.Fatalf("message = %+v", got)
	}
}

// The webhook sink against a real HTTP server on 127.0.0.1: JSON body,
// headers with secrets expanded at send, non-2xx and slow answers are
// errors within the deadline, redirects are not followed.
func TestWebhook(t *testing.T) {
	type req struct {
		auth string
		body Message
	}
	got := make(chan req, 4)
	mux := http.NewServeMux()
	mux.HandleFunc("POST /ok", func(w http.ResponseWriter, r *http.Request) {
		var m Message
		b, _ := io.ReadAll(r.Body)
		if err := json.Unmarshal(b, &m); err != nil {
			t.Errorf("body %s: %v", b, err)
		}
		got <- req{r.Header.Get("Authorization"), m}
	})
	mux.HandleFunc("POST /fail", func(w http.ResponseWriter, r *http.Request) { http.Error(w, "no", http.StatusBadGateway) })
	mux.HandleFunc("POST /slow", func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body) // then the server notices the client leaving
		select {
		case <-r.Context().Done():
		case <-time.After(5 * time.Second):
		}
	})
	mux.HandleFunc("POST /redirect", func(w http.ResponseWriter, r *http.Request) { http.Redirect(w, r, "/ok", http.StatusTemporaryRedirect) })
	srv := httptest.NewServer(mux)
	defer srv.Close()
	if !strings.HasPrefix(srv.URL, "http://127.0.0.1:") {
		t.Fatalf("server on %s, want loopback", srv.URL)
	}
	expand := func(s string) (string, error) { return strings.ReplaceAll(s, "${TOKEN}", "tok-1234"), nil }
	hook := func(path string) Webhook {
		return Webhook{URL: srv.URL + path, Headers: map[string]string{"Authorization": "Bearer ${TOKEN}"}, Expand: expand}
	}
	msg := Message{Kind: HookFailure, Subject: `hook "n"`, State: Failing, Count: 1, Total: 1, Text: "ALERT hook"}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := hook("/ok").Send(ctx, msg); err != nil {
		t.Fatal(err)
	}
	r := <-got
	if r.auth != "Bearer tok-1234" || r.body.Subject != msg.Subject || r.body.Text != msg.Text || r.body.State != Failing {
		t.Errorf("request = %+v", r)
	}
	if err := hook("/fail").Send(ctx, msg); err == nil || !strings.Contains(err.Error(), "502") {
		t.Errorf("502 answer: %v", err)
	}
	if err := hook("/redirect").Send(ctx, msg); err == nil || !strings.Contains(err.Error(), "307") {
		t.Errorf("redirect: %v, want it refused (not followed)", err)
	}
	sctx, scancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer scancel()
	start := time.Now()
	if err := hook("/slow").Send(sctx, msg); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("slow answer: %v", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("slow send took %v, want its 100ms deadline", d)
	}
	if len(got) != 0 {
		t.Errorf("redirect was followed")
	}
}

// A failing hook removed from the registry ends its condition: it would
// never succeed again.
func TestManagerHookRemoved(t *testing.T) {
	sink := make(chanSink, 10)
	m := New(Options{Window: time.Hour, Routes: []Route{{Name: "c", Sink: sink}}})
	stop := run(t, m)
	defer stop()
	kept := hookctl.Hook{Key: hookctl.Key{Node: "kept"}}
	m.HookRun(failRun("gone"))
	m.HookRun(failRun("gone"))
	m.HookRun(hookctl.Run{Hook: kept.Key, HookName: "kept", Outcome: "failed"})
	recv(t, sink)
	recv(t, sink)
	m.Hooks([]hookctl.Hook{kept})
	got := recv(t, sink)
	if got.Subject != `hook "gone"` || got.State != Recovered || got.Resolution != "was removed" ||
		!strings.HasPrefix(got.Text, `RECOVERED hook "gone" was removed after 2 failures since `) {
		t.Fatalf("message = %+v", got)
	}
	select {
	case m := <-sink:
		t.Errorf("unexpected message %+v", m)
	case <-time.After(50 * time.Millisecond):
	}
}

// A sink that is unavailable (the XMPP session down) keeps its messages,
// in order and at most maxHeld, until it is back; other failures drop.
func TestManagerHoldsWhileUnavailable(t *testing.T) {
	var mu sync.Mutex
	down := true
	got := make(chanSink, 100)
	sink := SinkFunc(func(ctx context.Context, m Message) error {
		mu.Lock()
		defer mu.Unlock()
		if down {
			return fmt.Errorf("profile p: not connected: %w", hookctl.ErrUnavailable)
		}
		return got.Send(ctx, m)
	})
	m := New(Options{Window: time.Hour, RetryEvery: 10 * time.Millisecond, Routes: []Route{{Name: "x", Sink: sink}}})
	stop := run(t, m)
	defer stop()
	for i := range maxHeld + 4 {
		m.Signal(Signal{Kind: HookFailure, Subject: fmt.Sprintf("hook %02d", i)})
	}
	time.Sleep(100 * time.Millisecond)
	select {
	case msg := <-got:
		t.Fatalf("sent while unavailable: %v", msg)
	default:
	}
	mu.Lock()
	down = false
	mu.Unlock()
	for i := 4; i < maxHeld+4; i++ {
		if msg := recv(t, got); msg.Subject != fmt.Sprintf("hook %02d", i) {
			t.Fatalf("message %d = %v, want the newest %d in order", i, msg, maxHeld)
		}
	}
}
