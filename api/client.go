package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"hookctl.dev/hookctl"
	"hookctl.dev/hookctl/config"
)

// maxResponse bounds what the client reads of one answer: far above any
// real registry, low enough that a confused peer cannot exhaust memory.
const maxResponse = 512 << 20

// ClientOptions says which backend a Client talks to.
type ClientOptions struct {
	// Socket is the control socket's path; used when Server is empty.
	Socket string
	// Server is the base URL of a TCP control API, e.g.
	// http://127.0.0.1:9091; it needs a token.
	Server string
	// TokenFile holds the bearer token for Server; Token gives it directly
	// and wins over TokenFile.
	TokenFile string
	Token     string
	// Timeout bounds each call whose context has no deadline of its own;
	// 0 means DefaultClientTimeout.
	Timeout time.Duration
}

// DefaultClientTimeout bounds a call when neither its context nor
// ClientOptions.Timeout does: above the backend's own deadlines (30s for
// an XMPP request, 10s waiting for a session), so that those report first.
const DefaultClientTimeout = 2 * time.Minute

// Client is the Go client of the control API. It implements
// hookctl.Registry, so that the reconciler runs the same against a remote
// backend as against a local store, and Backend. It is safe for concurrent
// use. A call ends with its context or after ClientOptions.Timeout.
type Client struct {
	base    string // URL without the trailing slash
	timeout time.Duration
	token   string
	where   string // what the errors name: the socket path or the server URL
	http    *http.Client
	transp  *http.Transport
}

var (
	_ hookctl.Registry = (*Client)(nil)
	_ Backend          = (*Client)(nil)
)

// NewClient returns a client for the backend opts names: the TCP API at
// opts.Server with its token when set, else the Unix socket opts.Socket. It
// does not connect; the first call does.
func NewClient(opts ClientOptions) (*Client, error) {
	c := &Client{timeout: opts.Timeout}
	if c.timeout <= 0 {
		c.timeout = DefaultClientTimeout
	}
	dialer := &net.Dialer{Timeout: 10 * time.Second}
	var network, addr string
	if opts.Server != "" {
		u, err := url.Parse(opts.Server)
		if err != nil {
			return nil, fmt.Errorf("%w: server URL %q: %v", hookctl.ErrInvalid, opts.Server, err)
		}
		if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
			return nil, fmt.Errorf("%w: server URL %q: want http://HOST:PORT", hookctl.ErrInvalid, opts.Server)
		}
		tok := opts.Token
		if tok == "" && opts.TokenFile != "" {
			b, err := config.ReadSecretFile("token file", opts.TokenFile)
			if err != nil {
				return nil, err
			}
			tok = strings.TrimSpace(b)
			if tok == "" {
				return nil, fmt.Errorf("%w: token file %s is empty", hookctl.ErrInvalid, opts.TokenFile)
			}
		}
		if tok == "" {
			return nil, fmt.Errorf("%w: a TCP control API needs a token (--token-file)", hookctl.ErrInvalid)
		}
		c.base = strings.TrimRight(u.String(), "/")
		c.token = tok
		c.where = c.base
		network = "tcp"
	} else {
		if opts.Socket == "" {
			return nil, fmt.Errorf("%w: no control socket given", hookctl.ErrInvalid)
		}
		// The host is a label only: every connection goes to the socket.
		c.base = "http://hookctl"
		c.where = opts.Socket
		network, addr = "unix", opts.Socket
	}
	c.transp = &http.Transport{
		Proxy: nil, // a proxy from the environment has no business here
		DialContext: func(ctx context.Context, _, hostport string) (net.Conn, error) {
			target := addr
			if network == "tcp" {
				target = hostport
			}
			conn, err := dialer.DialContext(ctx, network, target)
			if err != nil && ctx.Err() == nil {
				return nil, &unreachableError{where: c.where, err: err}
			}
			return conn, err
		},
		MaxIdleConns:        4,
		MaxIdleConnsPerHost: 4,
		IdleConnTimeout:     60 * time.Second,
		DisableCompression:  true,
	}
	c.http = &http.Client{Transport: c.transp}
	return c, nil
}

// Close releases the client's idle connections.
func (c *Client) Close() error {
	c.transp.CloseIdleConnections()
	return nil
}

// unreachableError is a failure to connect to the backend at all.
type unreachableError struct {
	where string
	err   error
}

func (e *unreachableError) Error() string {
	return fmt.Sprintf("cannot reach the hookctl backend at %s: is `hookctl serve` running? (%v)", e.where, e.err)
}

func (e *unreachableError) Unwrap() []error { return []error{hookctl.ErrUnavailable, e.err} }

// Ping checks that the backend answers; it is the readiness check.
func (c *Client) Ping(ctx context.Context) error {
	var out struct {
		OK bool `json:"ok"`
	}
	return c.do(ctx, http.MethodGet, "/v1/ping", nil, nil, &out)
}

// List returns the hooks of profile (every profile when empty) and the
// revision they were read at.
func (c *Client) List(ctx context.Context, profile string) ([]hookctl.Hook, uint64, error) {
	q := url.Values{}
	if profile != "" {
		q.Set("profile", profile)
	}
	var out listResponse
	if err := c.do(ctx, http.MethodGet, "/v1/hooks", q, nil, &out); err != nil {
		return nil, 0, err
	}
	return out.Hooks, out.Revision, nil
}

// Create adds one hook and returns it as stored.
func (c *Client) Create(ctx context.Context, h hookctl.Hook) (hookctl.Hook, error) {
	var out createResponse
	if err := c.do(ctx, http.MethodPost, "/v1/hooks", nil, h, &out); err != nil {
		return hookctl.Hook{}, err
	}
	return out.Hook, nil
}

// Remove deletes the hooks matching m and returns how many it removed.
func (c *Client) Remove(ctx context.Context, m hookctl.Match) (int, error) {
	var out removeResponse
	if err := c.do(ctx, http.MethodPost, "/v1/hooks/remove", nil, m, &out); err != nil {
		return 0, err
	}
	return out.Removed, nil
}

// Apply applies a batch atomically and returns the new revision; a batch
// planned against an old revision fails with an error wrapping
// hookctl.ErrStale.
func (c *Client) Apply(ctx context.Context, b hookctl.Batch) (uint64, error) {
	var out revisionResponse
	if err := c.do(ctx, http.MethodPost, "/v1/batch", nil, b, &out); err != nil {
		return 0, err
	}
	return out.Revision, nil
}

// Inventory returns the set records the backend keeps and the revision
// they were read at.
func (c *Client) Inventory(ctx context.Context) ([]hookctl.SetRecord, uint64, error) {
	var out inventoryResponse
	if err := c.do(ctx, http.MethodGet, "/v1/inventory", nil, nil, &out); err != nil {
		return nil, 0, err
	}
	return out.Sets, out.Revision, nil
}

// Status describes the backend and its sessions.
func (c *Client) Status(ctx context.Context) (Status, error) {
	var out Status
	err := c.do(ctx, http.MethodGet, "/v1/status", nil, nil, &out)
	return out, err
}

// Runs returns recent runs matching q, newest first.
func (c *Client) Runs(ctx context.Context, q RunQuery) ([]hookctl.Run, error) {
	v := url.Values{}
	for k, s := range map[string]string{"profile": q.Profile, "node": q.Node, "hook": q.Hook} {
		if s != "" {
			v.Set(k, s)
		}
	}
	if q.FailedOnly {
		v.Set("failed", "true")
	}
	if q.Limit != 0 {
		v.Set("limit", strconv.Itoa(q.Limit))
	}
	addRunQuery(v, q)
	var out runsResponse
	if err := c.do(ctx, http.MethodGet, "/v1/runs", v, nil, &out); err != nil {
		return nil, err
	}
	return out.Runs, nil
}

// PubSub performs a PubSub operation through a profile's session.
func (c *Client) PubSub(ctx context.Context, r PubSubRequest) (PubSubResult, error) {
	var out PubSubResult
	// JSON would carry invalid bytes as U+FFFD: a changed payload.
	for what, v := range map[string]string{"payload": r.Payload, "item id": r.ItemID, "node": r.Node, "service": r.Service} {
		if !utf8.ValidString(v) {
			return out, fmt.Errorf("%w: %s is not valid UTF-8 (XML cannot carry it)", hookctl.ErrInvalid, what)
		}
	}
	err := c.do(ctx, http.MethodPost, "/v1/pubsub", nil, r, &out)
	return out, err
}

// do sends one request and decodes a 2xx answer into out, or returns the
// answer's *Error.
func (c *Client) do(ctx context.Context, method, path string, q url.Values, in, out any) error {
	u := c.base + path
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return fmt.Errorf("encoding the request: %w", err)
		}
		if int64(len(b)) > bodyLimit(path) {
			if batch, ok := in.(hookctl.Batch); ok {
				return CheckBatchSize(batch)
			}
			return fmt.Errorf("%w: request of %d bytes is over the control API's limit of %d", ErrTooLarge, len(b), bodyLimit(path))
		}
		body = bytes.NewReader(b)
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.timeout)
		defer cancel()
	}
	req, err := http.NewRequestWithContext(ctx, method, u, body)
	if err != nil {
		return fmt.Errorf("%w: building the request: %v", hookctl.ErrInvalid, err)
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", "hookctl")
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	if src := sourceOf(ctx); validSource(src) {
		req.Header.Set(sourceHeader, src) // caller.go
	}
	resp, err := c.http.Do(req)
	if err != nil {
		var ue *unreachableError
		if errors.As(err, &ue) {
			return ue
		}
		return c.lostError(ctx, method, path, err)
	}
	defer func() {
		// Drain a little so that the connection can be reused.
		_, _ = io.CopyN(io.Discard, resp.Body, 4<<10)
		resp.Body.Close()
	}()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return readError(resp)
	}
	dec := json.NewDecoder(io.LimitReader(resp.Body, maxResponse))
	if err := dec.Decode(out); err != nil {
		if ctx.Err() != nil {
			return c.lostError(ctx, method, path, err)
		}
		return fmt.Errorf("reading the answer of %s %s: %w", method, path, err)
	}
	return nil
}

// readError turns an error answer into *Error. An answer that is not the
// API's error JSON (a proxy's page, say) keeps its status and some text.
func readError(resp *http.Response) error {
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	var eb errorBody
	if err := json.Unmarshal(b, &eb); err == nil && eb.Error.Code != "" {
		return &Error{Status: resp.StatusCode, Code: eb.Error.Code, Message: eb.Error.Message}
	}
	code := CodeInternal
	switch resp.StatusCode {
	case http.StatusBadRequest:
		code = CodeInvalid
	case http.StatusUnauthorized:
		code = CodeUnauthorized
	case http.StatusNotFound:
		code = CodeNotFound
	case http.StatusRequestEntityTooLarge:
		code = CodeTooLarge
	case http.StatusServiceUnavailable, http.StatusBadGateway, http.StatusGatewayTimeout:
		code = CodeUnavailable
	}
	text := strings.TrimSpace(string(b))
	if len(text) > 200 {
		text = text[:200] + "…"
	}
	msg := "control API answered " + resp.Status
	if text != "" {
		msg += ": " + text
	}
	return &Error{Status: resp.StatusCode, Code: code, Message: msg}
}

// lostError says what happened to a request that got no answer: it timed
// out, was interrupted, or the connection broke (the backend died). For a
// request that changes something, the outcome is then unknown: the change
// may have been committed before the answer was lost, and the error says
// how to find out.
func (c *Client) lostError(ctx context.Context, method, path string, err error) error {
	var what string
	switch {
	case errors.Is(ctx.Err(), context.DeadlineExceeded):
		what = fmt.Sprintf("no answer from the hookctl backend at %s in time (%v): it may be overloaded or stuck "+
			"(--timeout sets how long to wait)", c.where, c.timeout)
	case ctx.Err() != nil:
		what = "interrupted before the hookctl backend answered"
	default:
		if e := errors.Unwrap(err); e != nil {
			err = e // drop net/http's "Post URL:" prefix
		}
		what = fmt.Sprintf("the connection to the hookctl backend at %s was lost before it answered (%v)", c.where, err)
	}
	if check := outcomeCheck(method, path); check != "" {
		what += "; the outcome is unknown: the change may or may not have been applied. " + check
	}
	return &lostErr{msg: fmt.Sprintf("%s %s: %v: %s", method, path, hookctl.ErrUnavailable, what), ctxErr: ctx.Err()}
}

// lostErr is a request that got no answer. It wraps hookctl.ErrUnavailable
// and, when the context ended, the context's error.
type lostErr struct {
	msg    string
	ctxErr error
}

func (e *lostErr) Error() string   { return e.msg }
func (e *lostErr) Unwrap() []error { return []error{hookctl.ErrUnavailable, e.ctxErr} }

// outcomeCheck says how to find out whether a change whose answer was lost
// was made; "" for requests that change nothing.
func outcomeCheck(method, path string) string {
	if method == http.MethodGet {
		return ""
	}
	switch path {
	case "/v1/batch":
		return "Check with `hookctl diff -f …` (or apply again: applying twice changes nothing the second time)."
	case "/v1/hooks", "/v1/hooks/remove":
		return "Check with `hookctl hook list`."
	}
	return "Check on the XMPP server."
}
