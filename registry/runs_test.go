package registry

import (
	"errors"
	"syscall"
	"testing"
	"time"

	"hookctl.dev/hookctl"
)

func testRun(id uint64, item string, started time.Time) hookctl.Run {
	return hookctl.Run{ID: id, Hook: hookctl.Key{Profile: "p", Service: "s", Node: "n", Type: hookctl.TypeExpr, Arg: "1"},
		ItemID: item, Started: started, Outcome: "ok"}
}

// TestRunsBoundedByCountAndAge: the stored history keeps the newest Keep
// runs, forgets those older than MaxAge, lists newest first, survives a
// reopen, and counts attempts of the same hook and item.
func TestRunsBoundedByCountAndAge(t *testing.T) {
	s, dir := newStore(t)
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	lim := RunLimits{Keep: 5, MaxAge: time.Hour}
	var batch []hookctl.Run
	for i := range 8 {
		batch = append(batch, testRun(uint64(i+1), "a", t0.Add(time.Duration(i)*time.Minute)))
	}
	if err := s.AppendRuns(batch, lim, t0.Add(10*time.Minute)); err != nil {
		t.Fatal(err)
	}
	got, err := s.Runs(hookctl.RunQuery{}, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 5 || got[0].ID != 8 || got[4].ID != 4 {
		t.Fatalf("after 8 runs with keep 5: %d runs, first %d", len(got), got[0].ID)
	}
	r, err := s.Run(6)
	if err != nil || r.Attempt != 3 { // runs 4, 5 and 6 of item a are stored
		t.Errorf("run 6: attempt %d (%v), want 3", r.Attempt, err)
	}
	if _, err := s.Run(2); !errors.Is(err, hookctl.ErrNotFound) {
		t.Errorf("pruned run 2: %v, want not found", err)
	}
	// One more write 65 minutes after run 5 started forgets 4 and 5.
	if err := s.AppendRuns([]hookctl.Run{testRun(9, "b", t0.Add(65*time.Minute))}, lim, t0.Add(65*time.Minute)); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s = openStore(t, dir, Options{})
	if last, err := s.LastRunID(); err != nil || last != 9 {
		t.Errorf("last run id after reopen: %d (%v), want 9", last, err)
	}
	got, _ = s.Runs(hookctl.RunQuery{}, 0)
	var ids []uint64
	for _, r := range got {
		ids = append(ids, r.ID)
	}
	if len(ids) != 4 || ids[0] != 9 || ids[3] != 6 {
		t.Errorf("after the age limit: ids %v, want [9 8 7 6]", ids)
	}
	got, _ = s.Runs(hookctl.RunQuery{Since: t0.Add(7 * time.Minute)}, 0)
	if len(got) != 2 {
		t.Errorf("since run 8 started: %d runs, want 2 (9 and 8)", len(got))
	}
	got, _ = s.Runs(hookctl.RunQuery{}, 2)
	if len(got) != 2 {
		t.Errorf("limit 2: %d runs", len(got))
	}
}

// BenchmarkAppendRuns: the durable history's cost per run, written in
// batches of 50 as runlog writes a busy 50 ms window, with a 1 KiB item.
func BenchmarkAppendRuns(b *testing.B) {
	s := openStore(b, b.TempDir(), Options{})
	item := `<item xmlns="http://jabber.org/protocol/pubsub#event" id="x"><entry xmlns="urn:example:blog"></entry></item>`
	for len(item) < 1024 {
		item += "<p>some text of the entry</p>"
	}
	ev := hookctl.Event{Profile: "p", Service: "s", Node: "n", Kind: hookctl.EventPublish, ItemID: "x", Payload: item, ItemXML: item}
	lim := RunLimits{Keep: 10000, MaxAge: time.Hour}
	now := time.Now()
	batch := make([]hookctl.Run, 50)
	var id uint64
	cpu0 := cpuTime()
	b.ResetTimer()
	for i := 0; i < b.N; i += len(batch) {
		for j := range batch {
			id++
			batch[j] = testRun(id, "x", now)
			batch[j].Input = &ev
			batch[j].Output = "seen x"
		}
		if err := s.AppendRuns(batch, lim, now); err != nil {
			b.Fatal(err)
		}
	}
	// Wall time is mostly the fsync of each batch; CPU is what a run costs
	// the backend.
	b.ReportMetric(float64((cpuTime()-cpu0).Microseconds())/float64(b.N), "cpu-µs/run")
}

// cpuTime is the CPU time (user and system) this process used so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// TestRunInputRoundTrip: a run's event comes back as it was recorded,
// whether its payload is stored inside the item XML or apart.
func TestRunInputRoundTrip(t *testing.T) {
	for _, in := range []hookctl.Event{
		{Kind: hookctl.EventPublish, ItemID: "a", Payload: `<e xmlns="u">x &amp; <b/></e>`, ItemXML: `<item xmlns="p" id="a"><e xmlns="u">x &amp; <b/></e></item>`},
		{Kind: hookctl.EventPublish, ItemID: "a>b", Payload: "", ItemXML: `<item id="a>b"></item>`},
		{Kind: hookctl.EventPublish, ItemID: "c", Payload: "<p/>", ItemXML: `<item id="c>"><p/></item>`},
		{Kind: hookctl.EventRetract, ItemID: "d", ItemXML: `<retract id="d"/>`},
	} {
		r := testRun(1, in.ItemID, time.Unix(0, 0))
		r.Input = &in
		v, err := encodeRun(&r)
		if err != nil {
			t.Fatal(err)
		}
		var got hookctl.Run
		if err := decodeRun(v, &got); err != nil {
			t.Fatal(err)
		}
		if *got.Input != in {
			t.Errorf("round trip of %+v gave %+v", in, *got.Input)
		}
	}
}
