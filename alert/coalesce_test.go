package alert

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

var t0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

// clock drives a coalescer: signals at given times, a tick every second
// in between, as the manager does.
type clock struct {
	c    *Coalescer
	now  time.Time
	msgs []Message
}

func (k *clock) advance(to time.Time) {
	for next := k.now.Truncate(time.Second).Add(time.Second); !next.After(to); next = next.Add(time.Second) {
		k.msgs = append(k.msgs, k.c.Tick(next)...)
	}
	k.now = to
}

func (k *clock) signal(at time.Time, ok bool, detail string) {
	k.advance(at)
	if m, sent := k.c.Observe(Signal{Kind: HookFailure, Subject: `hook "h"`, OK: ok, Detail: detail, At: at}); sent {
		k.msgs = append(k.msgs, m)
	}
}

type brief struct {
	State        State
	Count, Total int
	At           time.Duration
}

func briefs(ms []Message) []brief {
	out := make([]brief, len(ms))
	for i, m := range ms {
		out[i] = brief{m.State, m.Count, m.Total, m.At.Sub(t0)}
	}
	return out
}

// 10,000 failures over 12 minutes, then a success: the first failure at
// once, one summary per 5-minute window with the count, a recovery; the
// counts add up to every failure.
func TestCoalesceBurst(t *testing.T) {
	k := &clock{c: NewCoalescer(5 * time.Minute), now: t0}
	const n = 10000
	step := 12 * time.Minute / n
	for i := range n {
		k.signal(t0.Add(time.Duration(i)*step), false, fmt.Sprintf("exit status %d", i))
	}
	k.signal(t0.Add(12*time.Minute), true, "")
	k.advance(t0.Add(30 * time.Minute))
	want := []brief{
		{Failing, 1, 1, 0},
		{Still, 4166, 4167, 5 * time.Minute},
		{Still, 4167, 8334, 10 * time.Minute},
		{Recovered, 1666, 10000, 12 * time.Minute},
	}
	if diff := cmp.Diff(want, briefs(k.msgs)); diff != "" {
		t.Fatalf("messages (-want +got):\n%s", diff)
	}
	if last := k.msgs[2].Detail; last != "exit status 8333" {
		t.Errorf("summary detail = %q, want the last failure's", last)
	}
	if k.c.Len() != 0 {
		t.Errorf("%d subjects remembered after a quiet window, want 0", k.c.Len())
	}
}

// A burst shorter than the window: two messages in all.
func TestCoalesceShortBurst(t *testing.T) {
	k := &clock{c: NewCoalescer(time.Minute), now: t0}
	for i := range 200 {
		k.signal(t0.Add(time.Duration(i)*10*time.Millisecond), false, "boom")
	}
	k.signal(t0.Add(3*time.Second), true, "")
	k.advance(t0.Add(5 * time.Minute))
	want := []brief{{Failing, 1, 1, 0}, {Recovered, 199, 200, 3 * time.Second}}
	if diff := cmp.Diff(want, briefs(k.msgs)); diff != "" {
		t.Fatalf("messages (-want +got):\n%s", diff)
	}
}

// A hook that fails and succeeds in turn, 1000 times in 20s: the first
// failure and recovery at once, then one summary at the window's end.
func TestCoalesceFlapping(t *testing.T) {
	k := &clock{c: NewCoalescer(time.Minute), now: t0}
	for i := range 1000 {
		at := t0.Add(time.Duration(i) * 20 * time.Millisecond)
		k.signal(at, false, "boom")
		k.signal(at.Add(10*time.Millisecond), true, "")
	}
	k.advance(t0.Add(10 * time.Minute))
	want := []brief{{Failing, 1, 1, 0}, {Recovered, 0, 1, 10 * time.Millisecond}, {Recovered, 999, 999, time.Minute + time.Second}} // a window after the last message (10ms), at the next tick
	if diff := cmp.Diff(want, briefs(k.msgs)); diff != "" {
		t.Fatalf("messages (-want +got):\n%s", diff)
	}
}

// Subjects are coalesced apart.
func TestCoalesceSubjectsApart(t *testing.T) {
	c := NewCoalescer(time.Minute)
	var got []string
	for i := range 6 {
		sig := Signal{Kind: HookFailure, Subject: fmt.Sprintf("hook %d", i%3), At: t0}
		if m, ok := c.Observe(sig); ok {
			got = append(got, m.Subject)
		}
	}
	if diff := cmp.Diff([]string{"hook 0", "hook 1", "hook 2"}, got); diff != "" {
		t.Fatalf("immediate messages (-want +got):\n%s", diff)
	}
	if m, ok := c.Observe(Signal{Kind: FilesFailing, Subject: "hook 0", At: t0}); !ok || m.Kind != FilesFailing {
		t.Fatalf("another kind, same subject: %v %v", m, ok)
	}
}

// Gaps are events: told at once (within the burst), then counted per
// window, never "recovered".
func TestCoalesceOneShot(t *testing.T) {
	c := NewCoalescer(time.Minute)
	var got []brief
	for i := range 5 {
		if m, ok := c.Observe(Signal{Kind: CatchupGap, Subject: "node n", At: t0.Add(time.Duration(i) * time.Second)}); ok {
			got = append(got, brief{m.State, m.Count, m.Total, m.At.Sub(t0)})
		}
	}
	got = append(got, briefs(c.Tick(t0.Add(time.Minute)))...) // not a window since the last message (1s)
	got = append(got, briefs(c.Tick(t0.Add(time.Minute+time.Second)))...)
	got = append(got, briefs(c.Tick(t0.Add(3*time.Minute)))...)
	want := []brief{{Event, 1, 1, 0}, {Event, 1, 1, time.Second}, {Event, 3, 3, time.Minute + time.Second}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatalf("messages (-want +got):\n%s", diff)
	}
	if c.Len() != 0 {
		t.Errorf("gap subject remembered after a quiet window")
	}
}

func TestDownTracker(t *testing.T) {
	d := NewDownTracker(time.Minute)
	var got []string
	obs := func(at time.Duration, up bool) {
		if s, ok := d.Observe(t0.Add(at), "main", up, "connection refused"); ok {
			got = append(got, fmt.Sprintf("%v ok=%v %s", at, s.OK, s.Detail))
		}
	}
	obs(0, true)
	obs(time.Second, false) // a short outage: nothing
	obs(30*time.Second, false)
	obs(31*time.Second, true)
	obs(40*time.Second, false) // a long one: told once, then recovered
	obs(99*time.Second, false)
	obs(100*time.Second, false)
	obs(200*time.Second, false)
	obs(201*time.Second, true)
	want := []string{
		"1m40s ok=false XMPP session down since 2026-01-02T03:04:45Z: connection refused",
		"3m21s ok=true ",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatalf("signals (-want +got):\n%s", diff)
	}
}

func TestRender(t *testing.T) {
	since := t0
	cases := []struct {
		m    Message
		want string
	}{
		{Message{Kind: HookFailure, Subject: `hook "a/n"`, State: Failing, Count: 1, Total: 1, Since: since, At: since, Detail: "failed: exit status 1"},
			`ALERT hook "a/n" failed: failed: exit status 1`},
		{Message{Kind: HookFailure, Subject: `hook "n"`, State: Still, Count: 57, Total: 58, Since: since, At: since.Add(5 * time.Minute), Detail: "x"},
			`ALERT hook "n" still failing: 57 more failures (58 since 03:04:05Z); last: x`},
		{Message{Kind: HookFailure, Subject: `hook "n"`, State: Recovered, Count: 3, Total: 10000, Since: since, At: since.Add(12 * time.Minute), Dropped: 4},
			`RECOVERED hook "n" succeeds again after 10000 failures since 03:04:05Z (12m0s) [4 alert signals dropped: queue full]`},
		{Message{Kind: SessionDown, Subject: "profile main", State: Recovered, Total: 1, Since: since, At: since.Add(90 * time.Second)},
			`RECOVERED profile main is connected again (1m30s after the alert)`},
		{Message{Kind: FilesFailing, Subject: "hooks files", State: Failing, Count: 2, Total: 2, Since: since, At: since, Detail: "x.yaml:3:1: bad"},
			`ALERT hooks files failed to apply (2 failed rounds since 03:04:05Z): x.yaml:3:1: bad`},
		{Message{Kind: CatchupGap, Subject: "node n", State: Event, Count: 1, Total: 1, Since: since, At: since, Detail: "20 unseen"},
			`ALERT node n may have missed items (catch-up gap): 20 unseen`},
	}
	for _, c := range cases {
		if got := Render(c.m); got != c.want {
			t.Errorf("Render(%v)\n got %s\nwant %s", c.m, got, c.want)
		}
	}
	long := Render(Message{Kind: HookFailure, Subject: "h", State: Failing, Detail: strings.Repeat("é", 1000)})
	if len(long) > maxDetail+50 || !strings.HasSuffix(long, "é…") {
		t.Errorf("long detail not clipped on a rune boundary: %d bytes, ends %q", len(long), long[len(long)-8:])
	}
}
