package api

import (
	"context"
	"errors"
	"net/http"

	"hookctl.dev/hookctl"
)

// Error codes carried in {"error":{"code":...,"message":...}}. They are
// stable: scripts and other clients may rely on them.
const (
	CodeInvalid          = "invalid"            // 400
	CodeMethodNotAllowed = "method_not_allowed" // 405
	CodeNotFound         = "not_found"          // 404
	CodeDuplicate        = "duplicate"          // 409
	CodeStale            = "stale"              // 409
	CodeTypeNotAllowed   = "type_not_allowed"   // 403
	CodeUnavailable      = "unavailable"        // 503
	CodeTooLarge         = "too_large"          // 413
	CodeUnauthorized     = "unauthorized"       // 401
	CodeInternal         = "internal"           // 500
)

// Errors of the API itself, in addition to the root package's sentinels.
var (
	// ErrTooLarge: the request body is over the API's limit. It wraps
	// hookctl.ErrInvalid: the request is malformed.
	ErrTooLarge = tooLarge{}
	// ErrUnauthorized: the bearer token is missing or wrong.
	ErrUnauthorized = errors.New("unauthorized")
)

type tooLarge struct{}

func (tooLarge) Error() string { return "request too large" }
func (tooLarge) Unwrap() error { return hookctl.ErrInvalid }

// Error is an error answer of the control API, as the client sees it. It
// unwraps to the sentinel its code stands for, so errors.Is(err,
// hookctl.ErrStale) holds on the client as on the server.
type Error struct {
	Status  int    // HTTP status
	Code    string // one of the Code constants
	Message string // the server's message, meant to be printed as is
}

func (e *Error) Error() string { return e.Message }

// Unwrap returns the sentinel of e's code, nil for internal or unknown
// codes.
func (e *Error) Unwrap() error {
	switch e.Code {
	case CodeInvalid, CodeMethodNotAllowed:
		return hookctl.ErrInvalid
	case CodeNotFound:
		return hookctl.ErrNotFound
	case CodeDuplicate:
		return hookctl.ErrDuplicate
	case CodeStale:
		return hookctl.ErrStale
	case CodeTypeNotAllowed:
		return hookctl.ErrTypeNotAllowed
	case CodeUnavailable:
		return hookctl.ErrUnavailable
	case CodeTooLarge:
		return ErrTooLarge
	case CodeUnauthorized:
		return ErrUnauthorized
	}
	return nil
}

// errorBody is the JSON form of an error answer.
type errorBody struct {
	Error errorDetail `json:"error"`
}

type errorDetail struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// classify maps a backend or request error to its HTTP status and code. The
// order matters for errors that wrap several sentinels: the most specific
// first.
func classify(err error) (int, string) {
	var mbe *http.MaxBytesError
	switch {
	case errors.As(err, &mbe), errors.Is(err, ErrTooLarge):
		return http.StatusRequestEntityTooLarge, CodeTooLarge
	case errors.Is(err, ErrUnauthorized):
		return http.StatusUnauthorized, CodeUnauthorized
	case errors.Is(err, hookctl.ErrStale):
		return http.StatusConflict, CodeStale
	case errors.Is(err, hookctl.ErrDuplicate):
		return http.StatusConflict, CodeDuplicate
	case errors.Is(err, hookctl.ErrTypeNotAllowed):
		return http.StatusForbidden, CodeTypeNotAllowed
	case errors.Is(err, hookctl.ErrNotFound):
		return http.StatusNotFound, CodeNotFound
	case errors.Is(err, hookctl.ErrInvalid):
		return http.StatusBadRequest, CodeInvalid
	case errors.Is(err, hookctl.ErrUnavailable),
		errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return http.StatusServiceUnavailable, CodeUnavailable
	}
	return http.StatusInternalServerError, CodeInternal
}
