package registry

// Suspensions made by an operator (`hookctl hook suspend`, `hookctl set
// suspend`), kept apart from the hooks so that applying files never undoes
// them, in their own bucket of the same file:
//
//	suspensions / "hook " + identity (set/name or key) | "set " + set name → JSON of Suspension
//
// A change moves the registry's revision and signals Changes, like a hook
// change, so that the backend puts it in force before the call returns.

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	bolt "go.etcd.io/bbolt"

	"hookctl.dev/hookctl"
)

var bucketSuspensions = []byte("suspensions")

// Kinds of suspension.
const (
	SuspendHook = hookctl.SuspendHook
	SuspendSet  = hookctl.SuspendSet
)

// Suspension is one hook or set an operator suspended.
type Suspension = hookctl.Suspension

func suspensionKey(kind, name string) []byte { return []byte(kind + " " + name) }

// SetSuspended suspends (on) or resumes (off) the hook or set kind/name.
// It reports whether anything changed; a change moves the revision.
func (s *Store) SetSuspended(kind, name, by string, on bool) (bool, error) {
	if kind != SuspendHook && kind != SuspendSet {
		return false, fmt.Errorf("%w: unknown suspension kind %q", hookctl.ErrInvalid, kind)
	}
	if name == "" {
		return false, fmt.Errorf("%w: empty %s name", hookctl.ErrInvalid, kind)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false, errClosed
	}
	k := suspensionKey(kind, name)
	changed := false
	rev := s.state.Load().rev + 1
	err := s.db.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists(bucketSuspensions)
		if err != nil {
			return err
		}
		if (b.Get(k) != nil) == on {
			return nil
		}
		changed = true
		if !on {
			if err := b.Delete(k); err != nil {
				return err
			}
		} else {
			v, _ := json.Marshal(Suspension{Kind: kind, Name: name, By: by, At: s.now()}) // plain strings and a time
			if err := b.Put(k, v); err != nil {
				return err
			}
		}
		return putRevision(tx.Bucket(bucketMeta), rev)
	})
	if err != nil {
		return false, fmt.Errorf("writing suspension: %w", err)
	}
	if changed {
		s.state.Store(&state{hooks: s.state.Load().hooks, rev: rev})
		s.notify()
	}
	return changed, nil
}

// Suspensions lists the operator's suspensions, sets first, by name.
func (s *Store) Suspensions() ([]Suspension, error) {
	var out []Suspension
	err := s.runsTx(false, func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketSuspensions)
		if b == nil {
			return nil
		}
		return b.ForEach(func(k, v []byte) error {
			var su Suspension
			if json.Unmarshal(v, &su) == nil {
				out = append(out, su)
			}
			return nil
		})
	})
	slices.SortFunc(out, func(a, b Suspension) int {
		if a.Kind != b.Kind {
			return -strings.Compare(a.Kind, b.Kind) // "set" before "hook"
		}
		return strings.Compare(a.Name, b.Name)
	})
	return out, err
}
