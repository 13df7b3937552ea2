package registry

// Per-node delivery state, for catch-up after the backend was offline: for
// each (profile, service, node) that has hooks, which items every hook has
// finished with. It lives in its own bucket of the same file so that it
// shares bbolt's crash safety:
//
//	nodes / JSON array [profile, service, node] / 8-byte sequence → id NUL digest
//
// Each node is a bucket of entries in the order they were marked; marking
// appends (no rewrite of the node's state, so a burst costs a few small
// puts per transaction) and trims the oldest beyond MaxFinished. Schema 1
// kept one JSON record per node; Open converts it.

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"slices"

	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"
)

var bucketNodes = []byte("nodes")

// MaxFinished is how many finished entries are remembered per node; the
// oldest are forgotten first (an item marked again counts again).
const MaxFinished = 1000

// Finished is one item the hooks of a node have finished with: its id and a
// digest of its payload, so that an item republished with new content
// counts as new.
type Finished struct {
	ID     string `json:"i"`
	Digest string `json:"d"`
}

// NodeRef names one node of one profile: the unit of catch-up state.
type NodeRef struct{ Profile, Service, Node string }

// Mark records that the hooks of a node finished with an item.
type Mark struct {
	NodeRef
	Finished
}

// NodeState is what the store remembers of a node.
type NodeState struct {
	// Known is false for a node never seen: its hooks are new, and catch-up
	// starts from the node's current items (the baseline).
	Known bool
	// Finished lists finished items, oldest first; an id appears once,
	// with the digest of its last finished content.
	Finished []Finished
}

func nodeKey(r NodeRef) []byte {
	b, _ := json.Marshal([3]string{r.Profile, r.Service, r.Node}) // strings always marshal
	return b
}

func entryValue(f Finished) []byte {
	return append(append(append(make([]byte, 0, len(f.ID)+1+len(f.Digest)), f.ID...), 0), f.Digest...)
}

// NodeState returns what the store remembers of a node.
func (s *Store) NodeState(ref NodeRef) (NodeState, error) {
	var st NodeState
	err := s.view(func(tx *bolt.Tx) error {
		b := nodeBucket(tx, ref)
		if b == nil {
			return nil
		}
		var entries []Finished
		err := b.ForEach(func(_, v []byte) error {
			id, dg, ok := bytes.Cut(v, []byte{0})
			if !ok {
				return fmt.Errorf("decoding state of node %s: bad entry %q", ref.Node, v)
			}
			entries = append(entries, Finished{ID: string(id), Digest: string(dg)})
			return nil
		})
		st = NodeState{Known: true, Finished: addFinished(nil, entries)}
		return err
	})
	return st, err
}

func nodeBucket(tx *bolt.Tx, ref NodeRef) *bolt.Bucket {
	nodes := tx.Bucket(bucketNodes)
	if nodes == nil {
		return nil
	}
	return nodes.Bucket(nodeKey(ref))
}

// SetBaseline makes a node known with items as its finished set (replacing
// any previous state): a node's first hooks start from its current items.
// Calls made at the same time (a profile subscribing to many new nodes
// at once) share one transaction and one fsync: one each was most of the
// store's time when 10,000 new nodes started.
func (s *Store) SetBaseline(ref NodeRef, items []Finished) error {
	return s.batch(func(tx *bolt.Tx) error {
		nodes, err := tx.CreateBucketIfNotExists(bucketNodes)
		if err != nil {
			return err
		}
		k := nodeKey(ref)
		if nodes.Bucket(k) != nil {
			if err := nodes.DeleteBucket(k); err != nil {
				return err
			}
		}
		b, err := nodes.CreateBucket(k)
		if err != nil {
			return err
		}
		return appendEntries(b, addFinished(nil, items))
	})
}

// MarkFinished records finished items, of any number of nodes, in one
// transaction (shared with the run history's when they come together:
// sharedUpdate). A node not known yet becomes known. Each node's marks are
// appended together, in their order, and its oldest entries trimmed once
// (not once per mark): the same entries remain.
func (s *Store) MarkFinished(marks []Mark) error {
	if len(marks) == 0 {
		return nil
	}
	var order []NodeRef // nodes in the order of their first mark
	byNode := map[NodeRef][]Finished{}
	for _, m := range marks {
		if _, ok := byNode[m.NodeRef]; !ok {
			order = append(order, m.NodeRef)
		}
		byNode[m.NodeRef] = append(byNode[m.NodeRef], m.Finished)
	}
	err := s.sharedUpdate(writeMarks, func(tx *bolt.Tx) error {
		nodes, err := tx.CreateBucketIfNotExists(bucketNodes)
		if err != nil {
			return err
		}
		for _, ref := range order {
			b, err := nodes.CreateBucketIfNotExists(nodeKey(ref))
			if err != nil {
				return err
			}
			if err := appendEntries(b, byNode[ref]); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil && err != errClosed {
		return fmt.Errorf("writing node state: %w", err)
	}
	return err
}

// appendEntries adds entries at the end of a node's bucket and forgets the
// oldest beyond MaxFinished.
func appendEntries(b *bolt.Bucket, entries []Finished) error {
	var last uint64
	for _, f := range entries {
		seq, err := b.NextSequence()
		if err != nil {
			return err
		}
		if err := b.Put(binary.BigEndian.AppendUint64(nil, seq), entryValue(f)); err != nil {
			return err
		}
		last = seq
	}
	if last <= MaxFinished {
		return nil
	}
	limit := binary.BigEndian.AppendUint64(nil, last-MaxFinished)
	c := b.Cursor()
	for k, _ := c.First(); k != nil && bytes.Compare(k, limit) <= 0; k, _ = c.Next() {
		if err := c.Delete(); err != nil {
			return err
		}
	}
	return nil
}

// ForgetNodes removes the state of every node keep rejects (nodes that no
// longer have hooks: if hooks come back, they start from the node's state
// then) and returns how many it removed.
func (s *Store) ForgetNodes(keep func(NodeRef) bool) (int, error) {
	n := 0
	err := s.update(func(tx *bolt.Tx) error {
		nodes := tx.Bucket(bucketNodes)
		if nodes == nil {
			return nil
		}
		var drop [][]byte
		err := nodes.ForEach(func(k, _ []byte) error {
			var f [3]string
			if json.Unmarshal(k, &f) != nil || !keep(NodeRef{f[0], f[1], f[2]}) {
				drop = append(drop, slices.Clone(k))
			}
			return nil
		})
		if err != nil {
			return err
		}
		for _, k := range drop {
			if err := nodes.DeleteBucket(k); err != nil {
				return err
			}
		}
		n = len(drop)
		return nil
	})
	return n, err
}

// migrateNodeRecords converts schema 1's node state (one JSON record per
// node) into schema 2's buckets of entries.
func migrateNodeRecords(tx *bolt.Tx) error {
	nodes := tx.Bucket(bucketNodes)
	if nodes == nil {
		return nil
	}
	type record struct {
		Finished []Finished `json:"finished"`
	}
	old := map[string]record{}
	err := nodes.ForEach(func(k, v []byte) error {
		if v == nil {
			return nil // already a bucket
		}
		var rec record
		if err := json.Unmarshal(v, &rec); err != nil {
			return fmt.Errorf("converting node state %s: %w", k, err)
		}
		old[string(k)] = rec
		return nil
	})
	if err != nil {
		return err
	}
	for k, rec := range old {
		if err := nodes.Delete([]byte(k)); err != nil {
			return err
		}
		b, err := nodes.CreateBucket([]byte(k))
		if err != nil {
			return err
		}
		if err := appendEntries(b, rec.Finished); err != nil {
			return err
		}
	}
	return nil
}

// addFinished appends items to list (an id already there moves to the end
// with its new digest) and keeps the newest MaxFinished.
func addFinished(list, items []Finished) []Finished { return MergeFinished(list, items) }

// MergeFinished appends items to list (an id already there moves to the end
// with its new digest) and keeps the newest MaxFinished.
func MergeFinished(list, items []Finished) []Finished {
	last := make(map[string]int, len(items)) // id → index of its last mark
	for i, it := range items {
		last[it.ID] = i
	}
	out := make([]Finished, 0, len(list)+len(items))
	for _, f := range list {
		if _, again := last[f.ID]; !again {
			out = append(out, f)
		}
	}
	for i, it := range items {
		if last[it.ID] == i {
			out = append(out, it)
		}
	}
	if over := len(out) - MaxFinished; over > 0 {
		out = slices.Delete(out, 0, over)
	}
	return out
}

// view and update run f under the store's lock, refusing once closed.
func (s *Store) view(f func(*bolt.Tx) error) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return errClosed
	}
	return s.db.View(f)
}

// batch is update for writes that may share a transaction with
// concurrent ones (bbolt's Batch: f may run more than once, so it must be
// idempotent). The store's lock is not held while it waits, or no two
// writes could meet.
func (s *Store) batch(f func(*bolt.Tx) error) error {
	s.mu.Lock()
	closed := s.closed
	s.mu.Unlock()
	if closed {
		return errClosed
	}
	if err := s.db.Batch(f); err != nil {
		if errors.Is(err, bolterrors.ErrDatabaseNotOpen) {
			return errClosed // closed meanwhile
		}
		return fmt.Errorf("writing node state: %w", err)
	}
	return nil
}

func (s *Store) update(f func(*bolt.Tx) error) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return errClosed
	}
	if err := s.db.Update(f); err != nil {
		return fmt.Errorf("writing node state: %w", err)
	}
	return nil
}
