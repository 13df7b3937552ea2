package registry

import (
	"fmt"
	"testing"
	"time"

	"hookctl.dev/hookctl"
)

// benchRun is a run as an expr hook of hookctl-bench records it: a small
// item, its id logged.
func benchRun(id uint64) hookctl.Run {
	item := fmt.Sprintf("i%06d", id)
	started := time.Date(2026, 12, 2, 5, 0, 0, int(id), time.UTC)
	return hookctl.Run{ID: id, Hook: hookctl.Key{Profile: "default", Service: "pubsub.localhost", Node: "bench", Type: hookctl.TypeExpr, Arg: "log(item.id)"},
		HookName: "bench", Event: hookctl.EventPublish, ItemID: item, Started: started, Duration: hookctl.Duration(23 * time.Microsecond),
		Outcome: "ok", ExitCode: -1, Output: item + "\n", Queued: hookctl.Duration(41 * time.Microsecond),
		Input: &hookctl.Event{Profile: "default", Service: "pubsub.localhost", Node: "bench", Kind: hookctl.EventPublish, ItemID: item,
			Publisher: "pub@localhost/bench", Payload: `<entry xmlns="urn:example:bench">item</entry>`,
			ItemXML:  `<item xmlns="http://jabber.org/protocol/pubsub#event" id="` + item + `" publisher="pub@localhost/bench"><entry xmlns="urn:example:bench">item</entry></item>`,
			Received: started.Add(-time.Millisecond)}}
}

// BenchmarkEncodeRun: the stored form of one run of the bench's expr hook,
// done for every run the durable history writes.
func BenchmarkEncodeRun(b *testing.B) {
	r := benchRun(1234)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := encodeRun(&r); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkMarkFinished: catch-up marks of one node written in batches of
// 50 (a 50 ms window at 1,000 items/s), the node already holding
// MaxFinished entries, so that every batch also trims the oldest.
func BenchmarkMarkFinished(b *testing.B) {
	s := openStore(b, b.TempDir(), Options{})
	ref := NodeRef{Profile: "default", Service: "pubsub.localhost", Node: "bench"}
	batch := make([]Mark, 50)
	n := 0
	fill := func() {
		for j := range batch {
			n++
			batch[j] = Mark{NodeRef: ref, Finished: Finished{ID: fmt.Sprintf("i%08d", n), Digest: "0123456789abcdef"}}
		}
	}
	for n < MaxFinished {
		fill()
		if err := s.MarkFinished(batch); err != nil {
			b.Fatal(err)
		}
	}
	cpu0 := cpuTime()
	b.ResetTimer()
	for i := 0; i < b.N; i += len(batch) {
		fill()
		if err := s.MarkFinished(batch); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64((cpuTime()-cpu0).Microseconds())/float64(b.N), "cpu-µs/mark")
}

// BenchmarkWindow: one 50 ms window of the backend at 800 items/s, as
// the daemon writes it: the run history's 40 runs and catch-up's 40 marks,
// from two goroutines at the same moment. cpu-µs/item is the CPU of both
// writes per item.
func BenchmarkWindow(b *testing.B) {
	s := openStore(b, b.TempDir(), Options{})
	ref := NodeRef{Profile: "default", Service: "pubsub.localhost", Node: "bench"}
	lim := RunLimits{Keep: 10000, MaxAge: time.Hour}
	const perWindow = 40
	runs := make([]hookctl.Run, perWindow)
	marks := make([]Mark, perWindow)
	var id uint64
	cpu0 := cpuTime()
	b.ResetTimer()
	for i := 0; i < b.N; i += perWindow {
		for j := range perWindow {
			id++
			runs[j] = benchRun(id)
			marks[j] = Mark{NodeRef: ref, Finished: Finished{ID: runs[j].ItemID, Digest: "0123456789abcdef"}}
		}
		errc := make(chan error, 1)
		go func() { errc <- s.MarkFinished(marks) }()
		if err := s.AppendRuns(runs, lim, time.Now()); err != nil {
			b.Fatal(err)
		}
		if err := <-errc; err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64((cpuTime()-cpu0).Microseconds())/float64(b.N), "cpu-µs/item")
}
