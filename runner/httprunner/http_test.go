package httprunner_test

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"hookctl.dev/hookctl"
	"hookctl.dev/hookctl/config"
	"hookctl.dev/hookctl/runner"
	"hookctl.dev/hookctl/runner/httprunner"
	"hookctl.dev/hookctl/runner/runnertest"
)

// server is a loopback HTTP server that answers with the given statuses in
// turn (the last one repeated) and records the requests.
type server struct {
	*httptest.Server
	mu       sync.Mutex
	statuses []int
	body     string
	requests []recorded
}

type recorded struct {
	Method, ContentType, UserAgent, Auth, Literal string
	Body                                          string
}

func newServer(t *testing.T, body string, statuses ...int) *server {
	s := &server{statuses: statuses, body: body}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		s.mu.Lock()
		s.requests = append(s.requests, recorded{r.Method, r.Header.Get("Content-Type"), r.Header.Get("User-Agent"), r.Header.Get("Authorization"), r.Header.Get("X-Literal"), string(b)})
		status := s.statuses[min(len(s.requests), len(s.statuses))-1]
		s.mu.Unlock()
		w.WriteHeader(status)
		_, _ = io.WriteString(w, s.body)
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *server) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.requests)
}

func newRunner(t testing.TB, opts httprunner.Options, h hookctl.Hook) runner.Runner {
	t.Helper()
	h.Type = hookctl.TypeHTTP
	r, err := httprunner.NewFactory(opts).New(h, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = r.Close() })
	return r
}

func run(t testing.TB, r runner.Runner, timeout time.Duration) runner.Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return r.Run(ctx, runnertest.Event())
}

func hookFor(url string, headers map[string]string) hookctl.Hook {
	return hookctl.Hook{Key: hookctl.Key{Arg: url}, Headers: headers}
}

// testSecrets declares the secrets the tests name, read from the
// environment; nothing else may be named.
var testSecrets = (&config.Config{SecretDecls: map[string]config.Secret{
	"HOOKCTL_TEST_TOKEN":     {Env: "HOOKCTL_TEST_TOKEN"},
	"HOOKCTL_TEST_UNSET_VAR": {Env: "HOOKCTL_TEST_UNSET_VAR"},
	"TOKEN_1":                {Env: "TOKEN_1"},
}}).Secrets(os.Getenv)

var fast = httprunner.Options{Backoff: 5 * time.Millisecond, Secrets: testSecrets}

func TestPostWithHeaders(t *testing.T) {
	t.Setenv("HOOKCTL_TEST_TOKEN", "t0ken")
	s := newServer(t, "thanks", http.StatusAccepted)
	r := newRunner(t, fast, hookFor(s.URL+"/hook", map[string]string{
		"Authorization": "Bearer ${HOOKCTL_TEST_TOKEN}",
		"X-Literal":     "cost $5 {x}",
	}))
	res := run(t, r, 10*time.Second)
	if res.Outcome != runner.OK || res.ExitCode != http.StatusAccepted || res.Output != "thanks" || res.Err != nil {
		t.Fatalf("result = %+v, want ok 202", res)
	}
	body, _ := runner.EventJSON(runnertest.Event())
	want := []recorded{{"POST", "application/json", "hookctl", "Bearer t0ken", "cost $5 {x}", string(body)}}
	if diff := cmp.Diff(want, s.requests); diff != "" {
		t.Errorf("requests (-want +got):\n%s", diff)
	}
}

func TestRetryOn5xxThenSuccess(t *testing.T) {
	s := newServer(t, "", 500, 503, 200)
	res := run(t, newRunner(t, fast, hookFor(s.URL, nil)), 10*time.Second)
	if res.Outcome != runner.OK || res.ExitCode != 200 || s.count() != 3 {
		t.Fatalf("result = %+v after %d requests, want ok after 3", res, s.count())
	}
}

func TestRetriesExhausted(t *testing.T) {
	s := newServer(t, "down", 502)
	res := run(t, newRunner(t, fast, hookFor(s.URL, nil)), 10*time.Second)
	if res.Outcome != runner.Failed || res.ExitCode != 502 || res.Output != "down" || s.count() != httprunner.DefaultAttempts {
		t.Fatalf("result = %+v after %d requests", res, s.count())
	}
	if res.Err == nil || !strings.Contains(res.Err.Error(), "502") {
		t.Errorf("err = %v", res.Err)
	}
}

func TestNoRetryOn4xx(t *testing.T) {
	s := newServer(t, "no such hook", 404)
	res := run(t, newRunner(t, fast, hookFor(s.URL, nil)), 10*time.Second)
	if res.Outcome != runner.Failed || res.ExitCode != 404 || res.Output != "no such hook" || s.count() != 1 {
		t.Fatalf("result = %+v after %d requests, want failed 404 after 1", res, s.count())
	}
}

func TestRedirectNotFollowed(t *testing.T) {
	target := newServer(t, "", 200)
	s := httptest.NewServer(http.RedirectHandler(target.URL, http.StatusFound))
	defer s.Close()
	res := run(t, newRunner(t, fast, hookFor(s.URL, nil)), 10*time.Second)
	if res.Outcome != runner.Failed || res.ExitCode != http.StatusFound || target.count() != 0 {
		t.Fatalf("result = %+v, target hit %d times", res, target.count())
	}
}

func TestNetworkErrorRetried(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var accepted atomic.Int32
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted.Add(1)
			_ = c.Close() // hang up without answering
		}
	}()
	defer ln.Close()
	res := run(t, newRunner(t, fast, hookFor("http://"+ln.Addr().String()+"/", nil)), 10*time.Second)
	if res.Outcome != runner.Failed || res.ExitCode != -1 || res.Err == nil {
		t.Fatalf("result = %+v, want failed -1", res)
	}
	if n := accepted.Load(); n != httprunner.DefaultAttempts {
		t.Errorf("%d connections, want %d", n, httprunner.DefaultAttempts)
	}
}

func TestTimeout(t *testing.T) {
	release := make(chan struct{})
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-release:
		}
	}))
	defer s.Close()
	defer close(release)
	res := run(t, newRunner(t, fast, hookFor(s.URL, nil)), 200*time.Millisecond)
	if res.Outcome != runner.Timeout || !errors.Is(res.Err, context.DeadlineExceeded) || res.ExitCode != -1 {
		t.Fatalf("result = %+v, want timeout", res)
	}
}

func TestNoRetryPastDeadline(t *testing.T) {
	s := newServer(t, "", 500)
	r := newRunner(t, httprunner.Options{Backoff: time.Minute}, hookFor(s.URL, nil))
	res := run(t, r, 5*time.Second)
	if res.Outcome != runner.Failed || res.ExitCode != 500 || s.count() != 1 {
		t.Fatalf("result = %+v after %d requests, want the 500 at once", res, s.count())
	}
}

func TestMissingSecretIsError(t *testing.T) {
	t.Setenv("HOOKCTL_TEST_TOKEN", "t0ken")
	s := newServer(t, "", 200)
	r := newRunner(t, fast, hookFor(s.URL, map[string]string{
		"Authorization": "Bearer ${HOOKCTL_TEST_TOKEN}",
		"X-Other":       "${HOOKCTL_TEST_UNSET_VAR}",
	}))
	res := run(t, r, 10*time.Second)
	if res.Outcome != runner.Error || res.Err == nil || !strings.Contains(res.Err.Error(), "HOOKCTL_TEST_UNSET_VAR") {
		t.Fatalf("result = %+v, want error naming the variable", res)
	}
	if strings.Contains(res.Err.Error(), "t0ken") || s.count() != 0 {
		t.Errorf("err = %v, %d requests", res.Err, s.count())
	}
}

func TestControlCharInSecretIsError(t *testing.T) {
	t.Setenv("HOOKCTL_TEST_TOKEN", "a\r\nX-Injected: 1")
	s := newServer(t, "", 200)
	res := run(t, newRunner(t, fast, hookFor(s.URL, map[string]string{"Authorization": "${HOOKCTL_TEST_TOKEN}"})), 10*time.Second)
	if res.Outcome != runner.Error || s.count() != 0 || strings.Contains(res.Err.Error(), "Injected") {
		t.Fatalf("result = %+v after %d requests", res, s.count())
	}
}

func TestBodyBounded(t *testing.T) {
	s := newServer(t, strings.Repeat("z", 1<<20), 200)
	res := run(t, newRunner(t, fast, hookFor(s.URL, nil)), 10*time.Second)
	if res.Outcome != runner.OK || len(res.Output) != runner.OutputTail {
		t.Fatalf("result: %v with %d bytes of output", res.Outcome, len(res.Output))
	}
}

func TestCheck(t *testing.T) {
	f := httprunner.NewFactory(httprunner.Options{Secrets: testSecrets})
	good := []hookctl.Hook{
		hookFor("http://127.0.0.1:8080/x", nil),
		hookFor("https://example.org/hook?a=1", map[string]string{"Authorization": "Bearer ${TOKEN_1}", "X-A": "$plain"}),
	}
	for _, h := range good {
		if err := f.Check(context.Background(), h); err != nil {
			t.Errorf("Check(%q): %v", h.Arg, err)
		}
	}
	bad := []hookctl.Hook{
		hookFor("ftp://example.org/", nil),
		hookFor("/relative", nil),
		hookFor("http://", nil),
		hookFor("http://[::1", nil),
		hookFor("http://example.org/", map[string]string{"Bad Name": "x"}),
		hookFor("http://example.org/", map[string]string{"X-A": "${UNCLOSED"}),
		hookFor("http://example.org/", map[string]string{"X-A": "${1BAD}"}),
		// The backend's environment is not reachable: only declared secrets.
		hookFor("http://example.org/", map[string]string{"X-Pw": "${XMPP_PW}"}),
		hookFor("http://example.org/", map[string]string{"X-Home": "${HOME}"}),
	}
	for _, h := range bad {
		if err := f.Check(context.Background(), h); !errors.Is(err, hookctl.ErrInvalid) {
			t.Errorf("Check(%q, %v) = %v, want ErrInvalid", h.Arg, h.Headers, err)
		}
		if _, err := f.New(h, nil); !errors.Is(err, hookctl.ErrInvalid) {
			t.Errorf("New(%q, %v) = %v, want ErrInvalid", h.Arg, h.Headers, err)
		}
	}
	// The URL's password never shows in the error.
	if err := f.Check(context.Background(), hookFor("ftp://user:hunter2@example.org/", nil)); err == nil || strings.Contains(err.Error(), "hunter2") {
		t.Errorf("error shows the password: %v", err)
	}
}

func TestNoLeaks(t *testing.T) {
	s := newServer(t, "ok", 500, 200)
	tr := &http.Transport{}
	client := &http.Client{Transport: tr}
	r := newRunner(t, httprunner.Options{Client: client, Backoff: time.Millisecond}, hookFor(s.URL, nil))
	run(t, r, 10*time.Second)
	tr.CloseIdleConnections()
	s.CloseClientConnections()
	time.Sleep(50 * time.Millisecond)
	runnertest.Settle(t, runtime.NumGoroutine())
	fds, goroutines := runnertest.FDCount(t), runtime.NumGoroutine()
	for range 50 {
		if res := run(t, r, 10*time.Second); res.Outcome != runner.OK {
			t.Fatalf("result = %+v", res)
		}
	}
	tr.CloseIdleConnections()
	s.CloseClientConnections()
	runnertest.Settle(t, goroutines)
	deadline := time.Now().Add(5 * time.Second)
	for runnertest.FDCount(t) > fds && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond) // closed sockets are released asynchronously
	}
	if got := runnertest.FDCount(t); got > fds {
		t.Errorf("open fds: %d before, %d after", fds, got)
	}
}
