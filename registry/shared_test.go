package registry

import (
	"errors"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// queueSharedWrites starts one sharedUpdate per f while the writer lock is
// held, waits until all are queued, then lets them go: they share one
// transaction. It returns their errors, in the order of fs.
func queueSharedWrites(t *testing.T, s *Store, fs ...func(*bolt.Tx) error) []error {
	t.Helper()
	s.mu.Lock()
	errs := make([]chan error, len(fs))
	for i, f := range fs {
		errs[i] = make(chan error, 1)
		go func() { errs[i] <- s.sharedUpdate(writeKind(i%2), f) }()
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		s.shared.mu.Lock()
		n := len(s.shared.queue)
		s.shared.mu.Unlock()
		if n == len(fs) {
			break
		}
		if time.Now().After(deadline) {
			s.mu.Unlock()
			t.Fatalf("%d of %d writes queued", n, len(fs))
		}
		time.Sleep(time.Millisecond)
	}
	s.mu.Unlock()
	out := make([]error, len(fs))
	for i := range errs {
		select {
		case out[i] = <-errs[i]:
		case <-time.After(5 * time.Second):
			t.Fatalf("write %d did not return", i)
		}
	}
	return out
}

func putKey(key string, counter *int) func(*bolt.Tx) error {
	return func(tx *bolt.Tx) error {
		*counter++
		b, err := tx.CreateBucketIfNotExists([]byte("shared-test"))
		if err != nil {
			return err
		}
		return b.Put([]byte(key), []byte("v"))
	}
}

func hasKey(t *testing.T, s *Store, key string) bool {
	t.Helper()
	found := false
	if err := s.db.View(func(tx *bolt.Tx) error {
		if b := tx.Bucket([]byte("shared-test")); b != nil {
			found = b.Get([]byte(key)) != nil
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return found
}

// TestSharedUpdateCommitsQueuedWritesTogether: writes queued together
// share one transaction, and each is done once.
func TestSharedUpdateCommitsQueuedWritesTogether(t *testing.T) {
	s := openStore(t, t.TempDir(), Options{})
	var na, nb, nc int
	errs := queueSharedWrites(t, s, putKey("a", &na), putKey("b", &nb), putKey("c", &nc))
	for i, err := range errs {
		if err != nil {
			t.Errorf("write %d: %v", i, err)
		}
	}
	if na != 1 || nb != 1 || nc != 1 {
		t.Errorf("writes ran %d, %d, %d times; want once each", na, nb, nc)
	}
	for _, k := range []string{"a", "b", "c"} {
		if !hasKey(t, s, k) {
			t.Errorf("%s not stored", k)
		}
	}
}

// TestSharedUpdateKeepsErrorsApart: a write that fails in a shared
// transaction fails alone; the others are stored.
func TestSharedUpdateKeepsErrorsApart(t *testing.T) {
	s := openStore(t, t.TempDir(), Options{})
	bad := errors.New("bad write")
	var na, nc int
	errs := queueSharedWrites(t, s, putKey("a", &na), func(*bolt.Tx) error { return bad }, putKey("c", &nc))
	if errs[0] != nil || !errors.Is(errs[1], bad) || errs[2] != nil {
		t.Fatalf("errors = %v, want only the second", errs)
	}
	if !hasKey(t, s, "a") || !hasKey(t, s, "c") {
		t.Error("the good writes were not stored")
	}
}

// TestSharedUpdateAfterClose: a write to a closed store says so.
func TestSharedUpdateAfterClose(t *testing.T) {
	s := openStore(t, t.TempDir(), Options{})
	s.Close()
	var n int
	if err := s.sharedUpdate(writeRuns, putKey("a", &n)); !errors.Is(err, errClosed) || n != 0 {
		t.Errorf("err = %v, ran %d times; want errClosed, not run", err, n)
	}
}

func TestWindowWait(t *testing.T) {
	w := 50 * time.Millisecond
	base := time.Date(2026, 12, 2, 5, 0, 0, 0, time.UTC)
	for _, c := range []struct{ at, want time.Duration }{
		{0, w}, {time.Millisecond, 49 * time.Millisecond}, {49 * time.Millisecond, time.Millisecond}, {w, w}, {75 * time.Millisecond, 25 * time.Millisecond},
	} {
		if got := WindowWait(base.Add(c.at), w); got != c.want {
			t.Errorf("at +%s: wait %s, want %s", c.at, got, c.want)
		}
	}
}

// TestSharedUpdateWaitsForAPartner: a write queued while a lone one is
// written joins its transaction.
func TestSharedUpdateWaitsForAPartner(t *testing.T) {
	s := openStore(t, t.TempDir(), Options{})
	var txA, txB *bolt.Tx
	inA := make(chan struct{})
	errA := make(chan error, 1)
	go func() {
		errA <- s.sharedUpdate(writeRuns, func(tx *bolt.Tx) error {
			txA = tx
			close(inA)
			for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
				s.shared.mu.Lock()
				n := len(s.shared.queue)
				s.shared.mu.Unlock()
				if n > 0 {
					break // b is queued
				}
			}
			return nil
		})
	}()
	<-inA // a's transaction is open, a alone in it
	if err := s.sharedUpdate(writeMarks, func(tx *bolt.Tx) error { txB = tx; return nil }); err != nil {
		t.Fatal(err)
	}
	if err := <-errA; err != nil {
		t.Fatal(err)
	}
	if txA == nil || txA != txB {
		t.Errorf("b wrote in transaction %p, a in %p; want the same", txB, txA)
	}
}

// TestSharedWriteExpectsAPartner: a lone write waits for a partner only
// when the other writer wrote within expectWindow.
func TestSharedWriteExpectsAPartner(t *testing.T) {
	var q sharedWrites
	now := time.Now()
	if q.expecting(writeRuns, now) || q.expecting(writeMarks, now) {
		t.Error("expecting a partner before any write")
	}
	q.last[writeMarks] = now.Add(-expectWindow / 2)
	if !q.expecting(writeRuns, now) {
		t.Error("runs: not expecting catch-up, which wrote half a window ago")
	}
	if q.expecting(writeMarks, now) {
		t.Error("marks: expecting the run history, which never wrote")
	}
	if q.expecting(writeRuns, now.Add(expectWindow)) {
		t.Error("runs: still expecting catch-up after expectWindow")
	}
	start := time.Now()
	if q.partner(writeMarks) {
		t.Error("marks found a partner in an empty queue")
	}
	if d := time.Since(start); d >= shareWait {
		t.Errorf("marks waited %s for a partner not expected", d)
	}
}
