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
	if r.ExitCode < 0 && h.Type != hookctl.TypeExec {
		// Only an exec program has an exit status that can be missing
		// (killed); for the others -1 only meant "none".
		r.ExitCode = 0
	}
}
