package daemon

import "hookctl.dev/hookctl"

// redact hides secrets in text the backend shows (runs, status): URL
// credentials.
func (d *Daemon) redact(s string) string {
	return hookctl.RedactURLCredentials(s)
}

// redactRun returns r with its secrets hidden. The history keeps the
// original, so that `runs --hook ARG` still matches the real arg.
func (d *Daemon) redactRun(r hookctl.Run) hookctl.Run {
	r.Hook.Arg = d.redact(r.Hook.Arg)
	r.HookName = d.redact(r.HookName)
	r.ItemID = d.redact(r.ItemID)
	r.Output = d.redact(r.Output)
	r.Error = d.redact(r.Error)
	return r
}
