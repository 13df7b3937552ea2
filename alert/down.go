package alert

import (
	"fmt"
	"time"
)

// DownTracker turns polled session states into SessionDown signals: a
// failure once a profile has been down for After, a success when it is
// connected again after that. Short outages (reconnects) say nothing. It
// is pure and owned by one goroutine, like Coalescer.
type DownTracker struct {
	After time.Duration
	down  map[string]*downState
}

type downState struct {
	since time.Time
	told  bool
}

// NewDownTracker returns a tracker with the given threshold.
func NewDownTracker(after time.Duration) *DownTracker {
	return &DownTracker{After: after, down: map[string]*downState{}}
}

// Observe takes profile's state at now and returns a signal when there is
// one to give.
func (d *DownTracker) Observe(now time.Time, profile string, up bool, lastErr string) (Signal, bool) {
	st := d.down[profile]
	subject := "profile " + profile
	if up {
		if st == nil {
			return Signal{}, false
		}
		delete(d.down, profile)
		return Signal{Kind: SessionDown, Subject: subject, OK: true, At: now}, st.told
	}
	if st == nil {
		st = &downState{since: now}
		d.down[profile] = st
	}
	if st.told || now.Sub(st.since) < d.After {
		return Signal{}, false
	}
	st.told = true
	detail := fmt.Sprintf("XMPP session down since %s", st.since.UTC().Format(time.RFC3339))
	if lastErr != "" {
		detail += ": " + lastErr
	}
	return Signal{Kind: SessionDown, Subject: subject, Detail: detail, At: now}, true
}
