package api

// Operating hooks day to day: the routes beyond the registry and the
// sessions, served when the backend implements them.
//
//	GET /v1/runs?…&set=S&since=RFC3339 (the runs route's extra filters)
//	GET /v1/run?id=N               → Run                            404 when not in the history
//	POST /v1/suspend SuspendRequest → SuspendResult                  404 no such hook or set
//	GET /v1/suspensions            → {"suspensions":[Suspension…]}   operator's and files' (enabled: false)
//	POST /v1/trigger TriggerRequest → Run                            the run, once it ended
//	POST /v1/replay  {"id":N}      → Run                            the new run, once it ended
//	GET /v1/events?since=RFC3339&limit=N → {"events":[AuditEvent…]} the audit trail, newest first

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"hookctl.dev/hookctl"
)

// RunGetter is implemented by backends that return one run in full.
type RunGetter interface {
	GetRun(ctx context.Context, id uint64) (hookctl.Run, error)
}

// opsRoutes are the routes of this file, added to the router's table.
func (s *Server) opsRoutes() map[string]route {
	return map[string]route{
		"/v1/run":         {http.MethodGet: s.getRun},
		"/v1/suspend":     {http.MethodPost: s.suspend},
		"/v1/suspensions": {http.MethodGet: s.suspensions},
		"/v1/trigger":     {http.MethodPost: s.trigger},
		"/v1/replay":      {http.MethodPost: s.replay},
		"/v1/events":      {http.MethodGet: s.events},
	}
}

// parseRunQuery reads the runs filters of this file into rq.
func parseRunQuery(q url.Values, rq *RunQuery) error {
	rq.Set = q.Get("set")
	if v := q.Get("since"); v != "" {
		t, err := time.Parse(time.RFC3339Nano, v)
		if err != nil {
			return fmt.Errorf("%w: query parameter since=%q is not an RFC 3339 time", hookctl.ErrInvalid, v)
		}
		rq.Since = t
	}
	return nil
}

// addRunQuery is parseRunQuery's inverse, for the client.
func addRunQuery(v url.Values, q RunQuery) {
	if q.Set != "" {
		v.Set("set", q.Set)
	}
	if !q.Since.IsZero() {
		v.Set("since", q.Since.Format(time.RFC3339Nano))
	}
}

// unsupported is the error of an operation the backend does not offer.
func unsupported(what string) error {
	return fmt.Errorf("%w: this backend does not support %s", hookctl.ErrUnavailable, what)
}

func (s *Server) getRun(w http.ResponseWriter, r *http.Request) {
	q, ok := s.query(w, r, "id")
	if !ok {
		return
	}
	id, err := strconv.ParseUint(q.Get("id"), 10, 64)
	if err != nil || id == 0 {
		s.writeError(w, r, fmt.Errorf("%w: run id %q is not a positive integer", hookctl.ErrInvalid, q.Get("id")))
		return
	}
	g, ok := s.backend.(RunGetter)
	if !ok {
		s.writeError(w, r, unsupported("showing one run"))
		return
	}
	run, err := g.GetRun(r.Context(), id)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	s.writeJSON(w, r, http.StatusOK, run)
}

// GetRun returns run id of the history in full.
func (c *Client) GetRun(ctx context.Context, id uint64) (hookctl.Run, error) {
	var out hookctl.Run
	err := c.do(ctx, http.MethodGet, "/v1/run", url.Values{"id": {strconv.FormatUint(id, 10)}}, nil, &out)
	return out, err
}

// SuspendRequest is the body of POST /v1/suspend.
type SuspendRequest struct {
	// Kind is "hook" or "set".
	Kind string `json:"kind"`
	// Name is a hook's name, set/name, arg or key, or a set's name.
	Name string `json:"name"`
	// Profile narrows a hook's name to one profile ("" = any).
	Profile string `json:"profile,omitempty"`
	// Suspend suspends when true, resumes when false.
	Suspend bool `json:"suspend"`
}

// SuspendResult is the answer of POST /v1/suspend.
type SuspendResult struct {
	// Name is what was suspended or resumed, as the backend names it.
	Name string `json:"name"`
	// Changed is false when it already was in the state asked.
	Changed  bool   `json:"changed"`
	Revision uint64 `json:"revision"`
}

// Suspender is implemented by backends that suspend hooks and sets.
type Suspender interface {
	Suspend(ctx context.Context, r SuspendRequest) (SuspendResult, error)
	Suspensions(ctx context.Context) ([]hookctl.Suspension, error)
}

func (s *Server) suspend(w http.ResponseWriter, r *http.Request) {
	postOp(s, w, r, "suspending hooks", Suspender.Suspend)
}

// postOp is a POST endpoint served by an optional part of the backend:
// decode the body, check the backend implements B, call it, write its
// result.
func postOp[B, Req, Res any](s *Server, w http.ResponseWriter, r *http.Request, what string, call func(B, context.Context, Req) (Res, error)) {
	var req Req
	if !s.decode(w, r, &req, MaxBody) {
		return
	}
	b, ok := any(s.backend).(B)
	if !ok {
		s.writeError(w, r, unsupported(what))
		return
	}
	res, err := call(b, r.Context(), req)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	s.writeJSON(w, r, http.StatusOK, res)
}

type suspensionsResponse struct {
	Suspensions []hookctl.Suspension `json:"suspensions"`
}

func (s *Server) suspensions(w http.ResponseWriter, r *http.Request) {
	if _, ok := s.query(w, r); !ok {
		return
	}
	b, ok := s.backend.(Suspender)
	if !ok {
		s.writeError(w, r, unsupported("suspending hooks"))
		return
	}
	list, err := b.Suspensions(r.Context())
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if list == nil {
		list = []hookctl.Suspension{}
	}
	s.writeJSON(w, r, http.StatusOK, suspensionsResponse{Suspensions: list})
}

// Suspend suspends or resumes a hook or a set.
func (c *Client) Suspend(ctx context.Context, r SuspendRequest) (SuspendResult, error) {
	var out SuspendResult
	err := c.do(ctx, http.MethodPost, "/v1/suspend", nil, r, &out)
	return out, err
}

// Suspensions lists what is suspended: by an operator, or by its file.
func (c *Client) Suspensions(ctx context.Context) ([]hookctl.Suspension, error) {
	var out suspensionsResponse
	err := c.do(ctx, http.MethodGet, "/v1/suspensions", nil, nil, &out)
	return out.Suspensions, err
}

// TriggerRequest is the body of POST /v1/trigger.
type TriggerRequest struct {
	// Hook is a hook's name, set/name, arg or key; Profile narrows it.
	Hook    string `json:"hook"`
	Profile string `json:"profile,omitempty"`
	// ItemID is the item of the hook's node to run the hook on.
	ItemID string `json:"item_id"`
}

// ReplayRequest is the body of POST /v1/replay.
type ReplayRequest struct {
	ID uint64 `json:"id"`
}

// ManualRunner is implemented by backends that run hooks by hand.
type ManualRunner interface {
	Trigger(ctx context.Context, r TriggerRequest) (hookctl.Run, error)
	Replay(ctx context.Context, id uint64) (hookctl.Run, error)
}

func (s *Server) trigger(w http.ResponseWriter, r *http.Request) {
	postOp(s, w, r, "running hooks by hand", ManualRunner.Trigger)
}

func (s *Server) replay(w http.ResponseWriter, r *http.Request) {
	postOp(s, w, r, "running hooks by hand", func(b ManualRunner, ctx context.Context, req ReplayRequest) (hookctl.Run, error) {
		if req.ID == 0 {
			return hookctl.Run{}, fmt.Errorf("%w: run id is required", hookctl.ErrInvalid)
		}
		return b.Replay(ctx, req.ID)
	})
}

// Trigger runs a hook once on an item fetched from its node.
func (c *Client) Trigger(ctx context.Context, r TriggerRequest) (hookctl.Run, error) {
	var out hookctl.Run
	err := c.do(ctx, http.MethodPost, "/v1/trigger", nil, r, &out)
	return out, err
}

// Replay runs a recorded run's event again.
func (c *Client) Replay(ctx context.Context, id uint64) (hookctl.Run, error) {
	var out hookctl.Run
	err := c.do(ctx, http.MethodPost, "/v1/replay", nil, ReplayRequest{ID: id}, &out)
	return out, err
}

// Auditor is implemented by backends that keep an audit trail.
type Auditor interface {
	Events(ctx context.Context, since time.Time, limit int) ([]hookctl.AuditEvent, error)
}

// DefaultEventsLimit is how many events GET /v1/events returns by default.
const DefaultEventsLimit = 100

type eventsResponse struct {
	Events []hookctl.AuditEvent `json:"events"`
}

func (s *Server) events(w http.ResponseWriter, r *http.Request) {
	q, ok := s.query(w, r, "since", "limit")
	if !ok {
		return
	}
	var rq RunQuery // the same since as runs
	if err := parseRunQuery(q, &rq); err != nil {
		s.writeError(w, r, err)
		return
	}
	limit := DefaultEventsLimit
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 {
			s.writeError(w, r, fmt.Errorf("%w: query parameter limit=%q is not a positive integer", hookctl.ErrInvalid, v))
			return
		}
		limit = n
	}
	b, ok := s.backend.(Auditor)
	if !ok {
		s.writeError(w, r, unsupported("an audit trail"))
		return
	}
	list, err := b.Events(r.Context(), rq.Since, limit)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if list == nil {
		list = []hookctl.AuditEvent{}
	}
	s.writeJSON(w, r, http.StatusOK, eventsResponse{Events: list})
}

// Events returns the audit trail of registry changes, newest first.
func (c *Client) Events(ctx context.Context, since time.Time, limit int) ([]hookctl.AuditEvent, error) {
	v := url.Values{}
	addRunQuery(v, RunQuery{Since: since})
	if limit > 0 {
		v.Set("limit", strconv.Itoa(limit))
	}
	var out eventsResponse
	err := c.do(ctx, http.MethodGet, "/v1/events", v, nil, &out)
	return out.Events, err
}
