package registry

import (
	"fmt"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/google/go-cmp/cmp"
	bolt "go.etcd.io/bbolt"
)

func TestNodeStateMarkBaselineForget(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	a := NodeRef{"default", "pubsub.localhost", "a"}
	b := NodeRef{"default", "pubsub.localhost", "b"}
	st, err := s.NodeState(a)
	if err != nil || st.Known {
		t.Fatalf("unknown node: %+v, %v", st, err)
	}
	if err := s.SetBaseline(a, []Finished{{"1", "x"}, {"2", "y"}}); err != nil {
		t.Fatal(err)
	}
	// "1" republished with new content moves to the end with its new digest.
	if err := s.MarkFinished([]Mark{{a, Finished{"3", "z"}}, {b, Finished{"9", "q"}}, {a, Finished{"1", "x2"}}}); err != nil {
		t.Fatal(err)
	}
	// Durable: reopen.
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if s, err = Open(dir, Options{}); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	st, err = s.NodeState(a)
	if err != nil {
		t.Fatal(err)
	}
	want := NodeState{Known: true, Finished: []Finished{{"2", "y"}, {"3", "z"}, {"1", "x2"}}}
	if diff := cmp.Diff(want, st); diff != "" {
		t.Errorf("state of a (-want +got):\n%s", diff)
	}
	n, err := s.ForgetNodes(func(r NodeRef) bool { return r == b })
	if err != nil || n != 1 {
		t.Fatalf("ForgetNodes = %d, %v; want 1", n, err)
	}
	if st, _ := s.NodeState(a); st.Known {
		t.Error("a still known after ForgetNodes")
	}
	if st, _ := s.NodeState(b); !st.Known || len(st.Finished) != 1 {
		t.Errorf("b = %+v, want kept", st)
	}
}

func TestNodeStateIsBounded(t *testing.T) {
	s, err := Open(t.TempDir(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ref := NodeRef{"p", "s", "n"}
	var marks []Mark
	for i := range MaxFinished + 250 {
		marks = append(marks, Mark{ref, Finished{fmt.Sprint(i), "d"}})
	}
	if err := s.MarkFinished(marks); err != nil {
		t.Fatal(err)
	}
	st, err := s.NodeState(ref)
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Finished) != MaxFinished || st.Finished[0].ID != "250" || st.Finished[MaxFinished-1].ID != fmt.Sprint(MaxFinished+249) {
		t.Errorf("kept %d entries from %s to %s; want the newest %d", len(st.Finished), st.Finished[0].ID, st.Finished[len(st.Finished)-1].ID, MaxFinished)
	}
}

func TestNodeStateAfterClose(t *testing.T) {
	s, err := Open(t.TempDir(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	if err := s.MarkFinished([]Mark{{NodeRef{"p", "s", "n"}, Finished{"1", "d"}}}); err == nil {
		t.Error("MarkFinished after Close succeeded")
	}
}

func TestNodeStateOfSchema1IsConverted(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	// Write what schema 1 kept: one JSON record per node.
	db, err := bolt.Open(filepath.Join(dir, "hooks.db"), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	ref := NodeRef{"p", "s", "n"}
	err = db.Update(func(tx *bolt.Tx) error {
		if err := tx.Bucket(bucketMeta).Put(keySchema, []byte("1")); err != nil {
			return err
		}
		nodes, err := tx.CreateBucketIfNotExists(bucketNodes)
		if err != nil {
			return err
		}
		return nodes.Put(nodeKey(ref), []byte(`{"finished":[{"i":"a","d":"1"},{"i":"b","d":"2"}]}`))
	})
	db.Close()
	if err != nil {
		t.Fatal(err)
	}
	if s, err = Open(dir, Options{}); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	st, err := s.NodeState(ref)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(NodeState{Known: true, Finished: []Finished{{"a", "1"}, {"b", "2"}}}, st); diff != "" {
		t.Errorf("converted state (-want +got):\n%s", diff)
	}
	if err := s.MarkFinished([]Mark{{ref, Finished{"c", "3"}}}); err != nil {
		t.Fatalf("marking after the conversion: %v", err)
	}
}

// Baselines set at the same time (a profile subscribing to many new nodes
// at once) share transactions; each is durable when SetBaseline returns,
// and none is written once the store is closed.
func TestConcurrentBaselines(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	const n = 64
	errs := make(chan error, n)
	for i := range n {
		go func() {
			errs <- s.SetBaseline(NodeRef{"p", "svc", fmt.Sprint(i)}, []Finished{{fmt.Sprint("item", i), "d"}})
		}()
	}
	for range n {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.SetBaseline(NodeRef{"p", "svc", "late"}, nil); err == nil {
		t.Error("SetBaseline after Close succeeded")
	}
	if s, err = Open(dir, Options{}); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for i := range n {
		st, err := s.NodeState(NodeRef{"p", "svc", fmt.Sprint(i)})
		if err != nil || !st.Known || len(st.Finished) != 1 || st.Finished[0].ID != fmt.Sprint("item", i) {
			t.Fatalf("node %d after reopening: %+v, %v", i, st, err)
		}
	}
}

// TestMarkFinishedBatchesAsOneByOne: marks of interleaved nodes written in
// batches leave each node the state that writing them one by one leaves
// (order kept, an id marked again, trimmed beyond MaxFinished).
func TestMarkFinishedBatchesAsOneByOne(t *testing.T) {
	one, err := Open(t.TempDir(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer one.Close()
	batched, err := Open(t.TempDir(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer batched.Close()
	refs := []NodeRef{{"p", "s", "a"}, {"p", "s", "b"}, {"q", "s", "a"}}
	var marks []Mark
	for i := range 2*MaxFinished + 300 {
		ref := refs[i%len(refs)]
		if i%7 == 0 {
			ref = refs[0]
		}
		marks = append(marks, Mark{ref, Finished{fmt.Sprint(i % 1500), fmt.Sprint("d", i)}})
	}
	// One by one as MarkFinished did before: each mark appended and
	// trimmed on its own (in one transaction, to keep the test quick).
	if err := one.update(func(tx *bolt.Tx) error {
		nodes, err := tx.CreateBucketIfNotExists(bucketNodes)
		if err != nil {
			return err
		}
		for _, m := range marks {
			b, err := nodes.CreateBucketIfNotExists(nodeKey(m.NodeRef))
			if err != nil {
				return err
			}
			if err := appendEntries(b, []Finished{m.Finished}); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	for len(marks) > 0 {
		n := min(len(marks), 97)
		if err := batched.MarkFinished(marks[:n]); err != nil {
			t.Fatal(err)
		}
		marks = marks[n:]
	}
	for _, ref := range refs {
		want, err := one.NodeState(ref)
		if err != nil {
			t.Fatal(err)
		}
		got, err := batched.NodeState(ref)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, want) || len(got.Finished) == 0 {
			t.Errorf("%v: batched state has %d entries, one by one %d; they differ", ref, len(got.Finished), len(want.Finished))
		}
	}
}
