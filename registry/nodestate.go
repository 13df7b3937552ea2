package registry

// Per-node delivery state, for catch-up after the backend was offline: for
// each (profile, service, node) that has hooks, which items every hook has
// finished with. It lives in its own bucket of the same file so that it
// shares bbolt's crash safety:
//
//	nodes: JSON array [profile, service, node] → JSON of nodeRecord
//
// A node's record is rewritten whole on each change; it is bounded
// (MaxFinished entries), so that costs a few tens of KiB at most.

import (
	"encoding/json"
	"fmt"
	"slices"

	bolt "go.etcd.io/bbolt"
)

var bucketNodes = []byte("nodes")

// MaxFinished is how many finished items are remembered per node; the
// oldest are forgotten first.
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

type nodeRecord struct {
	Finished []Finished `json:"finished"`
}

func nodeKey(r NodeRef) []byte {
	b, _ := json.Marshal([3]string{r.Profile, r.Service, r.Node}) // strings always marshal
	return b
}

// NodeState returns what the store remembers of a node.
func (s *Store) NodeState(ref NodeRef) (NodeState, error) {
	var st NodeState
	err := s.view(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketNodes)
		if b == nil {
			return nil
		}
		v := b.Get(nodeKey(ref))
		if v == nil {
			return nil
		}
		var rec nodeRecord
		if err := json.Unmarshal(v, &rec); err != nil {
			return fmt.Errorf("decoding state of node %s: %w", ref.Node, err)
		}
		st = NodeState{Known: true, Finished: rec.Finished}
		return nil
	})
	return st, err
}

// SetBaseline makes a node known with items as its finished set (replacing
// any previous state): a node's first hooks start from its current items.
func (s *Store) SetBaseline(ref NodeRef, items []Finished) error {
	return s.update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists(bucketNodes)
		if err != nil {
			return err
		}
		return putNode(b, ref, nodeRecord{Finished: addFinished(nil, items)})
	})
}

// MarkFinished records finished items, of any number of nodes, in one
// transaction. A node not known yet becomes known.
func (s *Store) MarkFinished(marks []Mark) error {
	if len(marks) == 0 {
		return nil
	}
	byNode := map[NodeRef][]Finished{}
	var order []NodeRef
	for _, m := range marks {
		if _, ok := byNode[m.NodeRef]; !ok {
			order = append(order, m.NodeRef)
		}
		byNode[m.NodeRef] = append(byNode[m.NodeRef], m.Finished)
	}
	return s.update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists(bucketNodes)
		if err != nil {
			return err
		}
		for _, ref := range order {
			var rec nodeRecord
			if v := b.Get(nodeKey(ref)); v != nil {
				if err := json.Unmarshal(v, &rec); err != nil {
					return fmt.Errorf("decoding state of node %s: %w", ref.Node, err)
				}
			}
			rec.Finished = addFinished(rec.Finished, byNode[ref])
			if err := putNode(b, ref, rec); err != nil {
				return err
			}
		}
		return nil
	})
}

// ForgetNodes removes the state of every node keep rejects (nodes that no
// longer have hooks: if hooks come back, they start from the node's state
// then) and returns how many it removed.
func (s *Store) ForgetNodes(keep func(NodeRef) bool) (int, error) {
	n := 0
	err := s.update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketNodes)
		if b == nil {
			return nil
		}
		var drop [][]byte
		err := b.ForEach(func(k, _ []byte) error {
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
			if err := b.Delete(k); err != nil {
				return err
			}
		}
		n = len(drop)
		return nil
	})
	return n, err
}

// addFinished appends items to list (an id already there moves to the end
// with its new digest) and keeps the newest MaxFinished.
func addFinished(list, items []Finished) []Finished {
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

func putNode(b *bolt.Bucket, ref NodeRef, rec nodeRecord) error {
	v, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	return b.Put(nodeKey(ref), v)
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
