package hookctl

import "errors"

// Sentinel errors, checked with errors.Is across packages and carried over
// the control API as stable codes.
var (
	// ErrInvalid: the request or input is malformed.
	ErrInvalid = errors.New("invalid")
	// ErrDuplicate: a hook with the same key exists already.
	ErrDuplicate = errors.New("hook already exists")
	// ErrNotFound: the hook, profile or node does not exist.
	ErrNotFound = errors.New("not found")
	// ErrStale: a batch was planned against an old revision; re-plan.
	ErrStale = errors.New("registry changed since the plan was made")
	// ErrTypeNotAllowed: the backend's config does not allow the hook type.
	ErrTypeNotAllowed = errors.New("hook type not allowed")
	// ErrUnavailable: the backend or the profile's session cannot serve now.
	ErrUnavailable = errors.New("unavailable")
)
