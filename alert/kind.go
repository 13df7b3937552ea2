package alert

// Kind is what an alert is about.
type Kind string

// Alert kinds, as the config's sinks name them in `on:`.
const (
	// HookFailure: a hook's runs fail (failed, timeout, error, dropped);
	// one subject per hook, recovered when one of its runs succeeds.
	HookFailure Kind = "hook_failure"
	// SessionDown: a profile's XMPP session has been down longer than the
	// threshold; recovered when it is connected again.
	SessionDown Kind = "session_down"
	// CatchupGap: a catch-up found only unseen items, so that items may
	// have been missed; an event, with no recovery.
	CatchupGap Kind = "catchup_gap"
	// FilesFailing: a round of the hooks files (serve --watch) failed;
	// recovered when a round applies the files again.
	FilesFailing Kind = "files"
)

// Kinds are every alert kind, in the order the docs list them.
var Kinds = []Kind{HookFailure, SessionDown, CatchupGap, FilesFailing}

// oneShot reports whether alerts of k are events that never recover.
func (k Kind) oneShot() bool { return k == CatchupGap }
