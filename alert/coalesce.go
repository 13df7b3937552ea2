package alert

import (
	"cmp"
	"fmt"
	"slices"
	"time"
)

// Signal is one observation: a failure (OK false) or a success of Subject.
type Signal struct {
	Kind Kind
	// Subject is what the signal is about, e.g. `hook "notify"`,
	// `profile main`; with Kind it identifies the condition.
	Subject string
	// OK is a success: the condition clears.
	OK bool
	// Detail says why it failed (the run's error, the session's last error),
	// or, on a success, how the condition ended when not by a success
	// (e.g. "was removed").
	Detail string
	At     time.Time
}

// State is what a message says of its subject.
type State string

// Message states.
const (
	Failing   State = "failing"   // the first failure of an episode
	Still     State = "still"     // a summary: more failures since the last message
	Recovered State = "recovered" // the condition cleared
	Event     State = "event"     // a one-shot alert (catch-up gap)
)

// Message is one alert to send.
type Message struct {
	Kind    Kind   `json:"kind"`
	Subject string `json:"subject"`
	State   State  `json:"state"`
	// Count is how many failures this message tells of (since the last
	// message of the subject); Total since the episode began (Since).
	Count int       `json:"count"`
	Total int       `json:"total"`
	Since time.Time `json:"since"`
	At    time.Time `json:"at"`
	// Detail is the last failure's detail.
	Detail string `json:"detail,omitempty"`
	// Resolution says how a recovered condition ended when not by a
	// success (e.g. "was removed").
	Resolution string `json:"resolution,omitempty"`
	// Dropped counts signals lost because the alert queue was full (for
	// every subject) since the previous message.
	Dropped uint64 `json:"dropped,omitempty"`
	// Text is the message as a person reads it.
	Text string `json:"text"`
}

// MaxBurst is how many messages a subject may send at once, within one
// window, on a change of state (failing, recovered); more changes, and
// plain counts, wait for the window's end and go out as one summary.
const MaxBurst = 2

// Coalescer turns signals into few messages: per subject, the first
// failure at once, then at most one summary per window with the count,
// then a recovery; a subject that flaps is summed up the same way. It is
// pure (time comes with the calls) and not safe for concurrent use: the
// Manager's goroutine owns it.
type Coalescer struct {
	Window   time.Duration
	subjects map[subjectKey]*subject
}

type subjectKey struct {
	kind    Kind
	subject string
}

// subject is the state of one condition.
type subject struct {
	failing   bool      // the last signal was a failure
	announced bool      // this episode's failing message went out
	cleared   bool      // recovered since the last message (to tell)
	pending   int       // failures not yet told
	total     int       // failures of this episode
	since     time.Time // the episode's first failure
	detail    string    // the last failure's detail
	resolved  string    // how it ended, when not by a success
	lastSent  time.Time
	burstFrom time.Time // start of the window that burst counts in
	burst     int       // messages sent since burstFrom
}

// NewCoalescer returns a coalescer with the given window.
func NewCoalescer(window time.Duration) *Coalescer {
	return &Coalescer{Window: window, subjects: map[subjectKey]*subject{}}
}

// Observe takes one signal and returns the message to send at once, if
// any (ok false: nothing, or it waits for Tick).
func (c *Coalescer) Observe(sig Signal) (Message, bool) {
	k := subjectKey{sig.Kind, sig.Subject}
	s := c.subjects[k]
	if sig.OK {
		if s == nil || !s.failing {
			return Message{}, false
		}
		s.failing, s.resolved = false, sig.Detail
		if s.announced {
			s.cleared = true
		}
	} else {
		if s == nil {
			s = &subject{}
			c.subjects[k] = s
		}
		if s.total == 0 {
			s.since = sig.At
		}
		s.failing = true
		s.pending++
		s.total++
		s.detail = sig.Detail
	}
	// A change of state goes out at once while the burst allows.
	change := (s.failing && !s.announced) || s.cleared
	if !change || !c.mayBurst(s, sig.At) {
		return Message{}, false
	}
	return c.emit(k, s, sig.At), true
}

// mayBurst reports whether s may send a message now.
func (c *Coalescer) mayBurst(s *subject, now time.Time) bool {
	if now.Sub(s.burstFrom) >= c.Window {
		s.burstFrom, s.burst = now, 0
	}
	return s.burst < MaxBurst
}

// Tick returns the summaries due at now: subjects with untold failures
// or changes whose last message is a window old. It also forgets the
// subjects that have nothing left to tell.
func (c *Coalescer) Tick(now time.Time) []Message {
	var out []Message
	for k, s := range c.subjects {
		due := now.Sub(s.lastSent) >= c.Window
		if !due {
			continue
		}
		if s.pending > 0 || s.cleared || (s.failing && !s.announced) {
			c.mayBurst(s, now)
			out = append(out, c.emit(k, s, now))
			continue
		}
		if !s.failing {
			delete(c.subjects, k) // quiet for a window: forgotten
		}
	}
	slices.SortFunc(out, func(a, b Message) int {
		return cmp.Or(cmp.Compare(a.Kind, b.Kind), cmp.Compare(a.Subject, b.Subject))
	})
	return out
}

// Len is how many subjects the coalescer remembers.
func (c *Coalescer) Len() int { return len(c.subjects) }

// emit builds the message that tells s's state and resets what it told.
func (c *Coalescer) emit(k subjectKey, s *subject, now time.Time) Message {
	m := Message{Kind: k.kind, Subject: k.subject, Count: s.pending, Total: s.total, Since: s.since, At: now, Detail: s.detail}
	switch {
	case k.kind.oneShot():
		m.State = Event
	case !s.failing:
		// Also when the failure was never told (it came and went while
		// the burst was spent): one message says both.
		m.State = Recovered
	case s.announced:
		m.State = Still
	default:
		m.State = Failing
	}
	s.pending, s.cleared = 0, false
	s.lastSent = now
	s.burst++
	switch {
	case k.kind.oneShot():
		// An event has no episode: each message tells its own count.
		m.Total = m.Count
		s.failing, s.announced, s.total = false, false, 0
	case m.State == Recovered:
		m.Resolution = s.resolved
		s.announced, s.total, s.resolved = false, 0, ""
	default:
		s.announced = true
	}
	return m
}

// String is a one-line summary for logs.
func (m Message) String() string {
	return fmt.Sprintf("%s %s %s count=%d total=%d", m.Kind, m.Subject, m.State, m.Count, m.Total)
}
