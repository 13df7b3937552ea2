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
	// ExitCode is the exit status (exec) or HTTP status (http), -1 if none.
	ExitCode int `json:"exit_code"`
	// Output is the tail of the hook's output and log lines.
	Output string `json:"output,omitempty"`
	// Error says why the run did not succeed.
	Error string `json:"error,omitempty"`
	// Catchup marks runs of events fetched after the fact.
	Catchup bool `json:"catchup,omitempty"`
}
