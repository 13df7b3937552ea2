package api

// Operating hooks day to day: the routes beyond the registry and the
// sessions, served when the backend implements them.
//
//	GET /v1/runs?…&set=S&since=RFC3339 (the runs route's extra filters)
//	GET /v1/run?id=N               → Run                            404 when not in the history

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
		"/v1/run": {http.MethodGet: s.getRun},
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
