package alert

import (
	"fmt"
	"strings"
	"time"
)

// maxDetail bounds the failure detail quoted in a message.
const maxDetail = 500

// words are how each kind reads in a message.
var words = map[Kind]struct{ fail, ok, unit string }{
	HookFailure:  {"failed", "succeeds again", "failure"},
	SessionDown:  {"is down", "is connected again", "outage"},
	CatchupGap:   {"may have missed items (catch-up gap)", "", "gap"},
	FilesFailing: {"failed to apply", "apply again", "failed round"},
}

// Render returns m's text, e.g.
//
//	ALERT hook "notify" failed: exit status 1
//	ALERT hook "notify" still failing: 57 more failures in 5m0s (58 since 02:31:00Z); last: exit status 1
//	RECOVERED hook "notify" succeeds again after 10000 failures since 02:31:00Z (12m3s)
func Render(m Message) string {
	w := words[m.Kind]
	since := m.Since.UTC().Format("15:04:05Z")
	detail := clip(m.Detail)
	var b strings.Builder
	switch m.State {
	case Failing, Event:
		fmt.Fprintf(&b, "ALERT %s %s", m.Subject, w.fail)
		if m.Count > 1 {
			fmt.Fprintf(&b, " (%d %s since %s)", m.Count, plural(m.Count, w.unit), since)
		}
		if detail != "" {
			b.WriteString(": " + detail)
		}
	case Still:
		fmt.Fprintf(&b, "ALERT %s still failing: %d more %s (%d since %s)", m.Subject, m.Count, plural(m.Count, w.unit), m.Total, since)
		if detail != "" {
			b.WriteString("; last: " + detail)
		}
	case Recovered:
		if m.Kind == SessionDown {
			fmt.Fprintf(&b, "RECOVERED %s %s (%s after the alert)", m.Subject, w.ok, m.At.Sub(m.Since).Round(time.Second))
			break
		}
		ok := w.ok
		if m.Resolution != "" {
			ok = m.Resolution
		}
		fmt.Fprintf(&b, "RECOVERED %s %s after %d %s since %s (%s)", m.Subject, ok, m.Total, plural(m.Total, w.unit),
			since, m.At.Sub(m.Since).Round(time.Second))
	}
	if m.Dropped > 0 {
		fmt.Fprintf(&b, " [%d alert signals dropped: queue full]", m.Dropped)
	}
	return b.String()
}

func plural(n int, unit string) string {
	if n == 1 {
		return unit
	}
	return unit + "s"
}

// clip bounds a detail to maxDetail bytes on a rune boundary.
func clip(s string) string {
	s = strings.TrimSpace(s)
	if len(s) <= maxDetail {
		return s
	}
	cut := maxDetail
	for cut > 0 && s[cut]&0xC0 == 0x80 {
		cut--
	}
	return s[:cut] + "…"
}
