package api

// The control API, version 1. Every answer is JSON. Errors are
// {"error":{"code":CODE,"message":TEXT}} with the codes of errors.go.
//
//	GET  /v1/ping                  → {"ok":true}                    readiness
//	GET  /v1/hooks?profile=P       → {"revision":N,"hooks":[Hook…]} every profile when P is empty
//	POST /v1/hooks        Hook     → 201 {"hook":Hook}              409 duplicate
//	POST /v1/hooks/remove Match    → {"removed":N,"revision":N}
//	POST /v1/batch        Batch    → {"revision":N}                 409 stale
//	GET  /v1/status                → Status
//	GET  /v1/runs?profile=&node=&hook=&failed=true&limit=N → {"runs":[Run…]}
//	POST /v1/pubsub       PubSubRequest → PubSubResult
//
// and the operations routes of ops.go (one run in full, …).
//
// Request bodies are decoded strictly: unknown fields, trailing data and
// bodies over the limit (MaxBatchBody for /v1/batch, MaxBody otherwise) are
// refused before the backend sees them, so a malformed request changes
// nothing. Unknown query parameters are refused as well.

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"hookctl.dev/hookctl"
)

// Body size limits.
const (
	// MaxBatchBody bounds POST /v1/batch: a whole declared set. 100,000
	// hooks take about 14 MB; validate refuses a set whose batch would
	// not fit (CheckBatchSize), so that what it accepts apply can send.
	MaxBatchBody = 32 << 20
	// MaxBody bounds the other request bodies.
	MaxBody = 1 << 20
)

// bodyLimit is the body limit of path, for the server and the client.
func bodyLimit(path string) int64 {
	if path == "/v1/batch" {
		return MaxBatchBody
	}
	return MaxBody
}

// CheckBatchSize refuses a batch whose request body would be over
// MaxBatchBody, saying so before anything is sent. validate calls it on a
// whole set, the client on every batch.
func CheckBatchSize(b hookctl.Batch) error {
	data, err := json.Marshal(b)
	if err != nil {
		return fmt.Errorf("encoding the batch: %w", err)
	}
	return checkBodySize("/v1/batch", len(data), len(b.Create)+len(b.Update)+len(b.Delete))
}

func checkBodySize(path string, size, hooks int) error {
	if limit := bodyLimit(path); int64(size) > limit {
		return fmt.Errorf("%w: %d hook change(s) encode to %d bytes, over the control API's limit of %d MiB "+
			"for one request: apply them in parts (separate hooks files and apply -f runs)",
			ErrTooLarge, hooks, size, limit>>20)
	}
	return nil
}

// shutdownTimeout bounds the graceful shutdown: in-flight requests get this
// long to finish once the serving context ends.
const shutdownTimeout = 5 * time.Second

// ServerOptions configures a Server.
type ServerOptions struct {
	// Backend answers the requests.
	Backend Backend
	// Logger receives request errors; nil discards them.
	Logger *slog.Logger
	// Token is the bearer token required on TCP listeners; "" disables TCP.
	Token string
}

// Server serves the control API of one backend on any number of listeners.
type Server struct {
	backend Backend
	log     *slog.Logger
	token   string
	mux     http.Handler
}

// NewServer returns a server for opts.Backend.
func NewServer(opts ServerOptions) *Server {
	s := &Server{backend: opts.Backend, log: opts.Logger, token: opts.Token}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	s.mux = s.recoverPanics(withSource(s.routes())) // withSource: caller.go
	return s
}

// Handler returns the /v1/ API without authentication (for tests and for
// embedding); Serve adds the token check on listeners that need it.
func (s *Server) Handler() http.Handler { return s.mux }

// Serve serves l until ctx ends, then shuts down gracefully: l is closed at
// once and in-flight requests get a few seconds to finish. With
// requireToken (TCP listeners) every request must carry
// "Authorization: Bearer TOKEN". Serve returns nil after a shutdown asked
// by ctx.
func (s *Server) Serve(ctx context.Context, l net.Listener, requireToken bool) error {
	h := s.mux
	if requireToken {
		if s.token == "" {
			l.Close()
			return errors.New("serving the control API over TCP needs a token")
		}
		h = s.requireToken(h)
	}
	srv := NewHTTPServer(h, s.log)
	// Requests outlive ctx until the shutdown deadline: that is the point
	// of a graceful shutdown.
	srv.BaseContext = func(net.Listener) context.Context { return context.WithoutCancel(ctx) }
	l = LimitListener(l, MaxConns)
	srv.ConnContext = connContext // who is calling (caller.go)
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(l) }()
	select {
	case err := <-errc:
		return fmt.Errorf("serving the control API on %s: %w", l.Addr(), err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	err := srv.Shutdown(sctx)
	if err != nil {
		s.log.Warn("control API: requests still running at shutdown deadline", "addr", l.Addr().String(), "err", err)
		srv.Close()
	}
	<-errc // http.ErrServerClosed once Shutdown or Close has run
	return nil
}

// requireToken refuses requests without the bearer token.
func (s *Server) requireToken(next http.Handler) http.Handler {
	// Comparing digests keeps the comparison constant-time in the token's
	// length too, which ConstantTimeCompare alone would leak.
	want := sha256.Sum256([]byte("Bearer " + s.token))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got := sha256.Sum256([]byte(r.Header.Get("Authorization")))
		if subtle.ConstantTimeCompare(got[:], want[:]) != 1 {
			// The body is never read: a stranger holds nothing.
			dropBody(w)
			w.Header().Set("WWW-Authenticate", `Bearer realm="hookctl"`)
			s.writeError(w, r, fmt.Errorf("%w: missing or wrong bearer token", ErrUnauthorized))
			return
		}
		next.ServeHTTP(w, r)
	})
}

// recoverPanics turns a panicking handler into a 500 answer and a log line
// instead of a dropped connection.
func (s *Server) recoverPanics(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			if v := recover(); v != nil {
				if v == http.ErrAbortHandler {
					panic(v)
				}
				s.log.Error("control API: handler panic", "method", r.Method, "path", r.URL.Path, "panic", v)
				s.writeError(w, r, fmt.Errorf("internal error: %v", v))
			}
		}()
		next.ServeHTTP(w, r)
	})
}

// route is one path's handlers by method.
type route map[string]http.HandlerFunc

// routes builds the router. It is hand-written rather than http.ServeMux so
// that 404 and 405 answers are JSON errors like every other.
func (s *Server) routes() http.Handler {
	table := map[string]route{
		"/v1/ping":         {http.MethodGet: s.ping},
		"/v1/hooks":        {http.MethodGet: s.listHooks, http.MethodPost: s.createHook},
		"/v1/hooks/remove": {http.MethodPost: s.removeHooks},
		"/v1/batch":        {http.MethodPost: s.applyBatch},
		"/v1/inventory":    {http.MethodGet: s.inventory},
		"/v1/status":       {http.MethodGet: s.status},
		"/v1/runs":         {http.MethodGet: s.runs},
		"/v1/pubsub":       {http.MethodPost: s.pubsub},
	}
	maps.Copy(table, s.opsRoutes())
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rt, ok := table[r.URL.Path]
		if !ok {
			s.writeErrorCode(w, http.StatusNotFound, CodeNotFound, fmt.Sprintf("no API endpoint %s", r.URL.Path))
			return
		}
		h, ok := rt[r.Method]
		if !ok {
			allowed := slices.Sorted(maps.Keys(rt))
			w.Header().Set("Allow", strings.Join(allowed, ", "))
			s.writeErrorCode(w, http.StatusMethodNotAllowed, CodeMethodNotAllowed,
				fmt.Sprintf("method %s not allowed on %s (allowed: %s)", r.Method, r.URL.Path, strings.Join(allowed, ", ")))
			return
		}
		h(w, r)
	})
}

func (s *Server) ping(w http.ResponseWriter, r *http.Request) {
	if _, ok := s.query(w, r); !ok {
		return
	}
	s.writeJSON(w, r, http.StatusOK, struct {
		OK bool `json:"ok"`
	}{true})
}

// listResponse is the answer of GET /v1/hooks.
type listResponse struct {
	Revision uint64         `json:"revision"`
	Hooks    []hookctl.Hook `json:"hooks"`
}

func (s *Server) listHooks(w http.ResponseWriter, r *http.Request) {
	q, ok := s.query(w, r, "profile")
	if !ok {
		return
	}
	hooks, rev, err := s.backend.List(r.Context(), q.Get("profile"))
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if hooks == nil {
		hooks = []hookctl.Hook{}
	}
	s.writeJSON(w, r, http.StatusOK, listResponse{Revision: rev, Hooks: hooks})
}

type createResponse struct {
	Hook hookctl.Hook `json:"hook"`
}

func (s *Server) createHook(w http.ResponseWriter, r *http.Request) {
	var h hookctl.Hook
	if !s.decode(w, r, &h, MaxBody) {
		return
	}
	got, err := s.backend.Create(r.Context(), h)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	s.writeJSON(w, r, http.StatusCreated, createResponse{Hook: got})
}

type removeResponse struct {
	Removed  int    `json:"removed"`
	Revision uint64 `json:"revision"`
}

func (s *Server) removeHooks(w http.ResponseWriter, r *http.Request) {
	var m hookctl.Match
	if !s.decode(w, r, &m, MaxBody) {
		return
	}
	n, err := s.backend.Remove(r.Context(), m)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	// The registry contract does not return the revision from Remove; read
	// it after the fact, cheaply when the backend can say it directly.
	var rev uint64
	if rb, ok := s.backend.(interface{ Revision() uint64 }); ok {
		rev = rb.Revision()
	} else if _, rev, err = s.backend.List(r.Context(), m.Profile); err != nil {
		s.writeError(w, r, err)
		return
	}
	s.writeJSON(w, r, http.StatusOK, removeResponse{Removed: n, Revision: rev})
}

type revisionResponse struct {
	Revision uint64 `json:"revision"`
}

func (s *Server) applyBatch(w http.ResponseWriter, r *http.Request) {
	var b hookctl.Batch
	if !s.decode(w, r, &b, bodyLimit(r.URL.Path)) {
		return
	}
	rev, err := s.backend.Apply(r.Context(), b)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	s.writeJSON(w, r, http.StatusOK, revisionResponse{Revision: rev})
}

// inventoryResponse is the answer of GET /v1/inventory.
type inventoryResponse struct {
	Revision uint64              `json:"revision"`
	Sets     []hookctl.SetRecord `json:"sets"`
}

// inventory serves the set records, when the backend keeps them (a
// hookctl.InventoryReader).
func (s *Server) inventory(w http.ResponseWriter, r *http.Request) {
	if _, ok := s.query(w, r); !ok {
		return
	}
	ib, ok := s.backend.(hookctl.InventoryReader)
	if !ok {
		s.writeError(w, r, fmt.Errorf("%w: this backend keeps no inventory", hookctl.ErrNotFound))
		return
	}
	sets, rev, err := ib.Inventory(r.Context())
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if sets == nil {
		sets = []hookctl.SetRecord{}
	}
	s.writeJSON(w, r, http.StatusOK, inventoryResponse{Revision: rev, Sets: sets})
}

func (s *Server) status(w http.ResponseWriter, r *http.Request) {
	if _, ok := s.query(w, r); !ok {
		return
	}
	st, err := s.backend.Status(r.Context())
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	s.writeJSON(w, r, http.StatusOK, st)
}

type runsResponse struct {
	Runs []hookctl.Run `json:"runs"`
}

func (s *Server) runs(w http.ResponseWriter, r *http.Request) {
	q, ok := s.query(w, r, "profile", "node", "hook", "failed", "limit", "set", "since")
	if !ok {
		return
	}
	rq := RunQuery{Profile: q.Get("profile"), Node: q.Get("node"), Hook: q.Get("hook")}
	if err := parseRunQuery(q, &rq); err != nil {
		s.writeError(w, r, err)
		return
	}
	if v := q.Get("failed"); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			s.writeError(w, r, fmt.Errorf("%w: query parameter failed=%q is not a boolean", hookctl.ErrInvalid, v))
			return
		}
		rq.FailedOnly = b
	}
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			s.writeError(w, r, fmt.Errorf("%w: query parameter limit=%q is not a non-negative integer", hookctl.ErrInvalid, v))
			return
		}
		rq.Limit = n
	}
	runs, err := s.backend.Runs(r.Context(), rq)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if runs == nil {
		runs = []hookctl.Run{}
	}
	s.writeJSON(w, r, http.StatusOK, runsResponse{Runs: runs})
}

func (s *Server) pubsub(w http.ResponseWriter, r *http.Request) {
	var req PubSubRequest
	if !s.decode(w, r, &req, MaxBody) {
		return
	}
	res, err := s.backend.PubSub(r.Context(), req)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	s.writeJSON(w, r, http.StatusOK, res)
}

// query parses the query string, refusing parameters other than allowed
// and repeated ones, so that a typo is an error rather than ignored.
func (s *Server) query(w http.ResponseWriter, r *http.Request, allowed ...string) (url.Values, bool) {
	q, err := url.ParseQuery(r.URL.RawQuery)
	if err == nil {
		for k, v := range q {
			switch {
			case !slices.Contains(allowed, k):
				err = fmt.Errorf("unknown query parameter %q", k)
			case len(v) > 1:
				err = fmt.Errorf("query parameter %q given %d times", k, len(v))
			}
			if err != nil {
				break
			}
		}
	}
	if err != nil {
		s.writeError(w, r, fmt.Errorf("%w: %v", hookctl.ErrInvalid, err))
		return nil, false
	}
	return q, true
}

// decode reads r's body as exactly one JSON value into v, strictly, and
// writes the error answer itself when it cannot.
func (s *Server) decode(w http.ResponseWriter, r *http.Request, v any, limit int64) bool {
	if err := decodeBody(w, r, v, limit); err != nil {
		s.writeError(w, r, err)
		return false
	}
	return true
}

func decodeBody(w http.ResponseWriter, r *http.Request, v any, limit int64) error {
	if r.ContentLength > limit {
		return fmt.Errorf("%w: body of %d bytes is over the limit of %d", ErrTooLarge, r.ContentLength, limit)
	}
	if ct := r.Header.Get("Content-Type"); ct != "" {
		if mt, _, _ := strings.Cut(ct, ";"); strings.TrimSpace(strings.ToLower(mt)) != "application/json" {
			return fmt.Errorf("%w: request body must be application/json, not %q", hookctl.ErrInvalid, ct)
		}
	}
	data, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return fmt.Errorf("%w: body is over the limit of %d bytes", ErrTooLarge, limit)
		}
		return fmt.Errorf("%w: reading request body: %v", hookctl.ErrInvalid, err)
	}
	// JSON text is UTF-8; the decoder would silently turn invalid bytes
	// into U+FFFD and so change a payload or a name.
	if !utf8.Valid(data) {
		return fmt.Errorf("%w: request body is not valid UTF-8", hookctl.ErrInvalid)
	}
	if err := checkDuplicateKeys(data); err != nil {
		return fmt.Errorf("%w: request body: %v", hookctl.ErrInvalid, err)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		switch {
		case errors.Is(err, io.EOF):
			return fmt.Errorf("%w: request body is empty", hookctl.ErrInvalid)
		}
		return fmt.Errorf("%w: request body: %s", hookctl.ErrInvalid, strings.TrimPrefix(err.Error(), "json: "))
	}
	// Exactly one value: "{...} garbage" is as malformed as "{...".
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return fmt.Errorf("%w: request body: unexpected data after the JSON value", hookctl.ErrInvalid)
	}
	return nil
}

// maxJSONDepth is encoding/json's own nesting limit.
const maxJSONDepth = 10000

// checkDuplicateKeys refuses an object with the same key twice:
// encoding/json keeps the last silently, so {"node":"a","node":"b"} would
// act on b while a reviewer read a. Syntax errors are left to the decoder.
func checkDuplicateKeys(data []byte) error {
	type frame struct {
		obj     bool
		wantKey bool
		keys    map[string]struct{}
	}
	var stack []*frame
	dec := json.NewDecoder(bytes.NewReader(data))
	for {
		tok, err := dec.Token()
		if err != nil {
			return nil // io.EOF, or a syntax error the decoder reports
		}
		var top *frame
		if len(stack) > 0 {
			top = stack[len(stack)-1]
		}
		if d, ok := tok.(json.Delim); ok && (d == '}' || d == ']') {
			stack = stack[:len(stack)-1]
			continue
		}
		if k, ok := tok.(string); ok && top != nil && top.obj && top.wantKey {
			if _, dup := top.keys[k]; dup {
				return fmt.Errorf("key %q given twice in one object", k)
			}
			top.keys[k] = struct{}{}
			top.wantKey = false
			continue
		}
		if top != nil && top.obj {
			top.wantKey = true // a value ended, or began ({ or [)
		}
		if d, ok := tok.(json.Delim); ok {
			if len(stack) >= maxJSONDepth {
				return fmt.Errorf("nested deeper than %d", maxJSONDepth)
			}
			stack = append(stack, &frame{obj: d == '{', wantKey: true, keys: map[string]struct{}{}})
		}
	}
}

// writeJSON writes v as the answer. An encoding failure after the header
// is out can only be logged.
func (s *Server) writeJSON(w http.ResponseWriter, r *http.Request, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	if err := json.NewEncoder(w).Encode(v); err != nil {
		s.log.Debug("control API: writing answer", "method", r.Method, "path", r.URL.Path, "err", err)
	}
}

// writeError answers with err's status and code and err's text as message.
func (s *Server) writeError(w http.ResponseWriter, r *http.Request, err error) {
	status, code := classify(err)
	level := slog.LevelDebug
	if status >= 500 {
		level = slog.LevelWarn
	}
	s.log.Log(r.Context(), level, "control API request failed", "method", r.Method, "path", r.URL.Path, "code", code, "err", err)
	s.writeErrorCode(w, status, code, err.Error())
}

func (s *Server) writeErrorCode(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(errorBody{Error: errorDetail{Code: code, Message: msg}})
}
