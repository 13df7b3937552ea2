package hookctl

import "time"

// Run is the record of one hook run, kept in the run history.
type Run struct {
	// ID increases with every run the backend records.
	ID uint64 `json:"id"`
	// Hook is the key of the hook that ran; HookName its label.
	Hook     Key    `json:"hook"`
	HookName string `json:"hook_name,omitempty"`
	// Event is the event kind, ItemID the item it was about.
	Event  EventKind `json:"event"`
	ItemID string    `json:"item_id,omitempty"`
	// Started is when the run began; Duration how long it took.
	Started  time.Time `json:"started"`
	Duration Duration  `json:"duration"`
	// Outcome is ok, failed, timeout, error or dropped.
	Outcome string `json:"outcome"`
	// ExitCode is the exit status (exec: -1 when the program was killed),
	// the HTTP status (http: 0 when no answer came), or a
	// Python worker's exit status when it died during the run; 0 (omitted
	// in JSON) when there is none.
	ExitCode int `json:"exit_code,omitempty"`
	// Output is the tail of the hook's output and log lines.
	Output string `json:"output,omitempty"`
	// Error says why the run did not succeed.
	Error string `json:"error,omitempty"`
	// Catchup marks runs of events fetched after the fact.
	Catchup bool `json:"catchup,omitempty"`

	// Set is the hook's owner (the declared set), empty for hand-made hooks.
	Set string `json:"set,omitempty"`
	// Queued is how long the event waited between its arrival and the
	// run's start (queue and ordering).
	Queued Duration `json:"queued,omitempty"`
	// Attempt counts the runs of this hook for this item, this one
	// included, as far as the history remembers: 2 or more for an item
	// run again (caught up after a crash, replayed, triggered).
	Attempt int `json:"attempt,omitempty"`
	// Manual says who asked for a run outside the event flow: "trigger"
	// (hookctl trigger) or "replay of N" (hookctl runs replay N).
	Manual string `json:"manual,omitempty"`
	// Input is the event the run received, kept so that `runs show`
	// prints it and `runs replay` runs it again. Its payload is dropped
	// when over MaxRunInput bytes (InputTruncated is then set).
	Input          *Event `json:"input,omitempty"`
	InputTruncated bool   `json:"input_truncated,omitempty"`
}

// MaxRunInput bounds the item XML and payload a run record keeps of its
// event, so that the bounded history stays bounded in bytes too.
const MaxRunInput = 16 << 10
