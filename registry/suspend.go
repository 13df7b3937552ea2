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
	"context"
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
	var changed bool
	err := s.retryMoved(context.Background(), func() (err error) {
		changed, err = s.setSuspended(kind, name, by, on)
		return err
	})
	return changed, err
}

func (s *Store) setSuspended(kind, name, by string, on bool) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false, errClosed
	}
	k := suspensionKey(kind, name)
	var present bool
	if err := s.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketSuspensions)
		present = b != nil && b.Get(k) != nil
		return nil
	}); err != nil {
		return false, err
	}
	if present == on {
		return false, nil
	}
	w := Write{Bucket: RemoteSuspensions, Key: k}
	if on {
		w.Value, _ = json.Marshal(Suspension{Kind: kind, Name: name, By: by, At: s.now()}) // plain strings and a time
	}
	rev := s.state.Load().rev + 1
	if s.remote != nil {
		if err := s.remote.Commit(context.Background(), rev-1, []Write{w}); err != nil {
			return false, s.remoteFailed(err)
		}
	}
	err := s.db.Update(func(tx *bolt.Tx) error {
		if err := putLocal(tx, w); err != nil {
			return err
		}
		return putRevision(tx.Bucket(bucketMeta), rev)
	})
	if err != nil {
		return false, fmt.Errorf("writing suspension: %w", err)
	}
	s.state.Store(&state{hooks: s.state.Load().hooks, rev: rev})
	s.notify()
	return true, nil
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
