package dispatch

import "hookctl.dev/hookctl"

// fillRun completes a run record with what the history keeps beyond the
// outcome: the hook's set, the time the event waited, the event itself
// (its payload dropped past hookctl.MaxRunInput), and no -1 exit code
// for the types without a program.
func fillRun(r *hookctl.Run, h hookctl.Hook, ev *hookctl.Event) {
	r.Set = h.Owner
	if !ev.Received.IsZero() && r.Started.After(ev.Received) {
		r.Queued = hookctl.Duration(r.Started.Sub(ev.Received))
	}
	in := *ev
	if len(in.Payload)+len(in.ItemXML) > hookctl.MaxRunInput {
		in.Payload, in.ItemXML = "", ""
		r.InputTruncated = true
	}
	r.Input = &in
	killed := h.Type == hookctl.TypeExec && (r.Outcome == "timeout" || r.Outcome == "failed")
	if r.ExitCode < 0 && !killed {
		// -1 stays only for an exec program that ran and was killed; for
		// the rest (other types, runs that never started) it meant "none".
		r.ExitCode = 0
	}
}
