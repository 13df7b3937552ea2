// Package httprunner runs http hooks: the event, encoded as the
// hookctl.Event JSON (the same document exec hooks read on stdin), is POSTed
// to the hook's URL.
//
// A 2xx answer is OK; network errors and 5xx answers are retried with
// exponential backoff and jitter, within the run's deadline; any other
// status is Failed at once. Redirects are not followed (a 3xx is Failed), so
// the body is never re-sent somewhere the hook did not name. Header values
// may name secrets as ${NAME}, expanded at each run, so that secrets live
// with the backend rather than in hook files. Only the secrets the
// backend's config declares (secrets:, see Options.Secrets) can be named:
// a hook cannot read the backend's environment (its XMPP password, cloud
// keys) and send it anywhere. Their values never appear in errors.
package httprunner

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strings"
	"time"

	"hookctl.dev/hookctl"
	"hookctl.dev/hookctl/config"
	"hookctl.dev/hookctl/rules"
	"hookctl.dev/hookctl/runner"
)

// Defaults for Options.
const (
	DefaultAttempts = 3
	DefaultBackoff  = 200 * time.Millisecond
	DefaultMaxBody  = 64 << 10
)

// Options configure the http Factory.
type Options struct {
	// Client sends the requests; nil means a client of its own that does
	// not follow redirects. Its Timeout should be zero: the run's context
	// carries the deadline.
	Client *http.Client
	// Attempts is how many times a request is tried in all; zero means
	// DefaultAttempts.
	Attempts int
	// Backoff is the wait before the first retry, doubled before each
	// next one, plus up to half of it as jitter; zero means DefaultBackoff.
	Backoff time.Duration
	// MaxBody is how much of a response body is read; zero means
	// DefaultMaxBody. The run's Output is the tail of what was read.
	MaxBody int64
	// Secrets are what ${NAME} in header values may name: a hook naming
	// anything else is refused at create; nil allows no ${NAME} at all.
	Secrets SecretSource
}

// SecretSource is the allow-list of secrets hooks may name, and their
// values (config.Secrets).
type SecretSource = runner.SecretSource

// NewFactory returns the Factory of http hooks.
func NewFactory(opts Options) runner.Factory {
	if opts.Client == nil {
		opts.Client = &http.Client{
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		}
	}
	if opts.Attempts <= 0 {
		opts.Attempts = DefaultAttempts
	}
	if opts.Backoff <= 0 {
		opts.Backoff = DefaultBackoff
	}
	if opts.MaxBody <= 0 {
		opts.MaxBody = DefaultMaxBody
	}
	return &factory{opts: opts}
}

type factory struct{ opts Options }

var _ runner.Factory = (*factory)(nil)

// Check reports whether h.Arg is an absolute http or https URL and the
// header names and ${NAME} references are well formed. Whether the
// variables are set is checked at each run, when they are read.
func (f *factory) Check(_ context.Context, h hookctl.Hook) error {
	if _, err := parseURL(h.Arg); err != nil {
		return err
	}
	for name, value := range h.Headers {
		if !rules.ValidHeaderName(name) {
			return fmt.Errorf("%w: header name %q is not a valid token", hookctl.ErrInvalid, name)
		}
		if _, err := config.ExpandSecrets(value, f.declared); err != nil {
			return fmt.Errorf("%w: header %s: %w", hookctl.ErrInvalid, name, err)
		}
	}
	return nil
}

// declared accepts a ${NAME} at create time when the config declares
// NAME; the value is read only at run time.
func (f *factory) declared(name string) (string, error) {
	if f.opts.Secrets == nil || !f.opts.Secrets.Has(name) {
		return "", fmt.Errorf("${%s} names no secret of this backend: only the secrets its config declares "+
			"(secrets: {%s: {file: …}} or {env: …}) may be used, never its environment", name, name)
	}
	return "", nil
}

// lookup reads a secret's value at run time.
func (f *factory) lookup(name string) (string, error) {
	if f.opts.Secrets == nil {
		return f.declared(name)
	}
	return f.opts.Secrets.Read(name)
}

func parseURL(s string) (*url.URL, error) {
	u, err := url.Parse(s)
	if err != nil {
		return nil, fmt.Errorf("%w: http hook URL: %w", hookctl.ErrInvalid, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, fmt.Errorf("%w: http hook URL %q: scheme must be http or https", hookctl.ErrInvalid, u.Redacted())
	}
	if u.Host == "" {
		return nil, fmt.Errorf("%w: http hook URL %q has no host", hookctl.ErrInvalid, u.Redacted())
	}
	return u, nil
}

// New checks h and returns its Runner.
func (f *factory) New(h hookctl.Hook, _ runner.Host) (runner.Runner, error) {
	if err := f.Check(context.Background(), h); err != nil {
		return nil, err
	}
	headers := make(map[string]string, len(h.Headers))
	for k, v := range h.Headers {
		headers[k] = v
	}
	return &Runner{url: h.Arg, headers: headers, opts: f.opts, lookup: f.lookup, timeout: time.Duration(h.Timeout)}, nil
}

// Runner runs one http hook; safe for concurrent use.
type Runner struct {
	url     string
	headers map[string]string // values unexpanded
	opts    Options
	lookup  func(string) (string, error)
	timeout time.Duration // used only when ctx has no deadline
}

var _ runner.Runner = (*Runner)(nil)

// Close does nothing: connections belong to the Factory's client.
func (r *Runner) Close() error { return nil }

// Run POSTs ev, retrying as the package doc says.
func (r *Runner) Run(ctx context.Context, ev hookctl.Event) runner.Result {
	ctx, cancel := runner.WithDeadline(ctx, r.timeout)
	defer cancel()
	header := make(http.Header, len(r.headers)+2)
	header.Set("Content-Type", "application/json")
	header.Set("User-Agent", "hookctl")
	for name, value := range r.headers {
		v, err := config.ExpandSecrets(value, r.lookup)
		if err != nil {
			return runner.Result{Outcome: runner.Error, ExitCode: -1, Err: fmt.Errorf("header %s: %w", name, err)}
		}
		if strings.ContainsAny(v, "\r\n\x00") {
			return runner.Result{Outcome: runner.Error, ExitCode: -1, Err: fmt.Errorf("header %s: value has a control character", name)}
		}
		header.Set(name, v)
	}
	body, err := runner.EventJSON(ev)
	if err != nil {
		return runner.Result{Outcome: runner.Error, ExitCode: -1, Err: fmt.Errorf("encoding event: %w", err)}
	}

	res := runner.Result{ExitCode: -1}
	backoff := r.opts.Backoff
	for attempt := 1; ; attempt++ {
		var retry bool
		res, retry = r.post(ctx, header, body, res.ExitCode)
		if !retry || attempt == r.opts.Attempts {
			return res
		}
		wait := backoff + rand.N(backoff/2+1)
		backoff *= 2
		if deadline, _ := ctx.Deadline(); time.Until(deadline) < wait {
			return res // no time left for another try: report this one
		}
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return runner.Stopped(ctx, res)
		}
	}
}

// post makes one attempt and says whether it may be retried. lastStatus is
// kept in the result when this attempt gets no answer.
func (r *Runner) post(ctx context.Context, header http.Header, body []byte, lastStatus int) (runner.Result, bool) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, r.url, bytes.NewReader(body))
	if err != nil {
		return runner.Result{Outcome: runner.Error, ExitCode: -1, Err: fmt.Errorf("making request: %w", err)}, false
	}
	req.Header = header.Clone()
	resp, err := r.opts.Client.Do(req)
	if err != nil {
		res := runner.Result{Outcome: runner.Failed, ExitCode: lastStatus, Err: err}
		if ctx.Err() != nil {
			return runner.Stopped(ctx, res), false
		}
		return res, true
	}
	defer resp.Body.Close()
	got, readErr := io.ReadAll(io.LimitReader(resp.Body, r.opts.MaxBody))
	// Drain a little more so the connection can be reused; a larger body
	// is cut off with the connection.
	_, _ = io.CopyN(io.Discard, resp.Body, 4<<10)

	res := runner.Result{ExitCode: resp.StatusCode, Output: tailString(got)}
	switch {
	case readErr != nil && ctx.Err() != nil:
		return runner.Stopped(ctx, res), false
	case resp.StatusCode >= 200 && resp.StatusCode < 300:
		res.Outcome = runner.OK
		return res, false
	case resp.StatusCode >= 500:
		res.Outcome = runner.Failed
		res.Err = fmt.Errorf("http status %s", resp.Status)
		return res, true
	default:
		res.Outcome = runner.Failed
		res.Err = fmt.Errorf("http status %s", resp.Status)
		return res, false
	}
}

func tailString(b []byte) string {
	return runner.Tail(string(b), runner.OutputTail)
}
