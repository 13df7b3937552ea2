// Package runner defines how a hook is run: one Runner per live hook, made by
// the Factory of its type. The subpackages implement the types (exec, expr,
// http, python); dispatch calls them.
package runner

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"time"

	"hookctl.dev/hookctl"
)

// Outcome is how a run ended.
type Outcome string

// The outcomes of a run.
const (
	OK      Outcome = "ok"      // the hook ran and reported success
	Failed  Outcome = "failed"  // the hook ran and failed (exit code, exception, HTTP error)
	Timeout Outcome = "timeout" // the hook overran its timeout and was stopped
	Error   Outcome = "error"   // the hook could not be run at all (load error, missing program)
	Dropped Outcome = "dropped" // never run: the hook's queue was full
	Skipped Outcome = "skipped" // not run on purpose; Err says why
)

// Result is what one run produced.
type Result struct {
	Outcome Outcome
	// ExitCode is the process exit status for exec hooks, the HTTP status
	// for http hooks, -1 when there is none.
	ExitCode int
	// Output is the tail of what the hook printed or logged (bounded by the
	// runner, OutputTail bytes at most).
	Output string
	// Err says why the run did not succeed; nil for OK.
	Err error
}

// OutputTail is the most output a Result keeps, from the end.
const OutputTail = 4096

// Runner runs one hook. Run is called for each event that reaches the hook;
// dispatch never calls Run concurrently more than the hook's Concurrency
// allows. ctx carries the run's deadline: on expiry the runner stops the run
// (killing processes it started) and returns Timeout.
type Runner interface {
	Run(ctx context.Context, ev hookctl.Event) Result
	// Close releases what the runner holds (worker processes, connections).
	Close() error
}

// Factory makes Runners for one hook type.
type Factory interface {
	// Check validates a hook of this type before it is stored (a missing
	// program, a Python file that does not load); nil when it can run.
	Check(ctx context.Context, h hookctl.Hook) error
	// New returns a Runner for h, ready to Run.
	New(h hookctl.Hook, host Host) (Runner, error)
}

// Host is what the backend offers to hooks while they run.
type Host interface {
	// Publish publishes payloadXML as an item on service/node through
	// profile's session and returns the item id (the one given, or the
	// service's choice when empty).
	Publish(ctx context.Context, profile, service, node, itemID, payloadXML string) (string, error)
	// Logger is where hook log lines go, with the hook's attributes.
	Logger() *slog.Logger
}

// DefaultTimeout bounds a run whose hook sets no timeout.
const DefaultTimeout = 30 * time.Second

// Tail returns the last n bytes of s, cut at a rune boundary.
func Tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	s = s[len(s)-n:]
	for i := 0; i < len(s) && i < 4; i++ {
		if s[i]&0xC0 != 0x80 {
			return s[i:]
		}
	}
	return s
}

// EventJSON is the document exec hooks read on stdin and http hooks receive
// as the body: the Event's JSON, with <, > and & left as they are so that
// XML payloads stay readable.
func EventJSON(ev hookctl.Event) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(ev); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(b.Bytes(), []byte("\n")), nil
}
