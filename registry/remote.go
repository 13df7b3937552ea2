package registry

// A remote is the registry shared by several backends (cluster mode): the
// hooks, the inventory and the suspensions, with the revision, held by a
// distributed store (package cluster, on etcd). The local file keeps a copy
// of them, so that every read stays local; writes go to the remote first,
// in one transaction that expects the revision this backend last saw, and
// changes made by other backends arrive through Follow.
//
// What stays local to each backend: run history, audit trail, and the
// buckets the cluster keeps elsewhere (node state, own subscriptions).

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"

	bolt "go.etcd.io/bbolt"

	"hookctl.dev/hookctl"
)

// Buckets a remote holds, by name.
const (
	RemoteHooks       = "hooks"
	RemoteInventory   = "inventory"
	RemoteSuspensions = "suspensions"
)

// Write is one record written to a remote: Value nil deletes Key.
type Write struct {
	Bucket string
	Key    []byte
	Value  []byte
}

// RemoteState is every record of a remote at one revision.
type RemoteState struct {
	Rev     uint64
	Records []Write
	// Cursor is where Follow goes on from (the remote's own position).
	Cursor int64
}

// Remote is the shared registry (see the file comment).
type Remote interface {
	// Load reads every record and the revision, consistently.
	Load(ctx context.Context) (RemoteState, error)
	// Commit writes w and revision from+1 atomically if the remote is
	// still at revision from; else it returns a *MovedError.
	Commit(ctx context.Context, from uint64, w []Write) error
	// Follow calls apply with each later change (its revision and
	// writes), in order, from cursor on, until ctx ends. A change it
	// cannot follow (history compacted) is reported as a reload: apply
	// with the whole state, reload true.
	// apply's error ends Follow with it.
	Follow(ctx context.Context, cursor int64, apply func(rev uint64, w []Write, reload bool) error) error
}

// MovedError says another backend changed the shared registry since this
// one last saw it.
type MovedError struct{ Rev uint64 }

func (e *MovedError) Error() string {
	return fmt.Sprintf("the shared registry moved to revision %d", e.Rev)
}

// maxMovedRetries bounds how often a Create or Remove is tried again after
// another backend's change came first.
const maxMovedRetries = 5

// remoteFailed classifies a failed remote commit: another backend's
// change came first (kept as is), or the remote could not be reached.
func (s *Store) remoteFailed(err error) error {
	var moved *MovedError
	if errors.As(err, &moved) {
		return err
	}
	return fmt.Errorf("%w: writing the shared registry: %v", hookctl.ErrUnavailable, err)
}

// retryMoved runs op again, after catching up with the remote, while it
// fails because another backend's change came first.
func (s *Store) retryMoved(ctx context.Context, op func() error) error {
	for attempt := 0; ; attempt++ {
		err := op()
		var moved *MovedError
		if s.remote == nil || !errors.As(err, &moved) || attempt == maxMovedRetries {
			return err
		}
		if err := s.Resync(ctx); err != nil {
			return err
		}
	}
}

// Resync reads the whole remote and makes the local copy match it.
func (s *Store) Resync(ctx context.Context) error {
	st, err := s.remote.Load(ctx)
	if err != nil {
		return fmt.Errorf("%w: reading the shared registry: %v", hookctl.ErrUnavailable, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return errClosed
	}
	return s.replaceAll(st)
}

// Follow keeps the local copy in step with the remote until ctx ends. The
// backend runs it as one of its loops; an error (the local file cannot be
// written) ends it.
func (s *Store) Follow(ctx context.Context) error {
	return s.remote.Follow(ctx, s.cursor, func(rev uint64, w []Write, reload bool) error {
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			return errClosed
		}
		cur := s.state.Load().rev
		switch {
		case reload:
			defer s.mu.Unlock()
			return s.replaceAll(RemoteState{Rev: rev, Records: w})
		case rev <= cur && rev != 0:
			s.mu.Unlock()
			return nil // this backend's own commit, or older
		case rev == cur+1:
			defer s.mu.Unlock()
			return s.applyWrites(rev, w)
		}
		s.mu.Unlock()
		return s.Resync(ctx) // a change was missed: read everything again
	})
}

// remoteWrites turns a validated change into the records it writes.
func remoteWrites(c change, inv []Write) ([]Write, error) {
	var w []Write
	for _, h := range c.del {
		w = append(w, Write{Bucket: RemoteHooks, Key: encodeKey(h.Key)})
	}
	for _, h := range c.put {
		v, err := json.Marshal(h)
		if err != nil {
			return nil, fmt.Errorf("encoding hook %s: %w", h.Key, err)
		}
		w = append(w, Write{Bucket: RemoteHooks, Key: encodeKey(h.Key), Value: v})
	}
	return append(w, inv...), nil
}

// applyWrites applies a change of the remote, at rev, to the local copy
// and memory. The caller holds s.mu.
func (s *Store) applyWrites(rev uint64, w []Write) error {
	changed := map[hookctl.Key]struct{}{}
	var put []hookctl.Hook
	err := s.db.Update(func(tx *bolt.Tx) error {
		for _, x := range w {
			if x.Bucket == RemoteHooks {
				k, h, err := s.remoteHook(x)
				if err != nil {
					return err
				}
				changed[k] = struct{}{}
				if h == nil {
					delete(s.hooks, k)
				} else {
					s.hooks[k] = *h
					put = append(put, *h)
				}
				x = localHook(x, h)
			}
			if err := putLocal(tx, x); err != nil {
				return err
			}
		}
		return putRevision(tx.Bucket(bucketMeta), rev)
	})
	if err != nil {
		return fmt.Errorf("writing the shared registry's change: %w", err)
	}
	s.state.Store(&state{hooks: s.rebuild(s.state.Load().hooks, put, changed), rev: rev})
	s.notify()
	return nil
}

// replaceAll makes the local copy and memory exactly st. The caller holds
// s.mu.
func (s *Store) replaceAll(st RemoteState) error {
	hooks := map[hookctl.Key]hookctl.Hook{}
	err := s.db.Update(func(tx *bolt.Tx) error {
		for _, name := range []string{RemoteHooks, RemoteInventory, RemoteSuspensions} {
			if tx.Bucket([]byte(name)) != nil {
				if err := tx.DeleteBucket([]byte(name)); err != nil {
					return err
				}
			}
			if _, err := tx.CreateBucket([]byte(name)); err != nil {
				return err
			}
		}
		for _, x := range st.Records {
			if x.Bucket == RemoteHooks {
				k, h, err := s.remoteHook(x)
				if err != nil {
					return err
				}
				if h != nil {
					hooks[k] = *h
				}
				x = localHook(x, h)
			}
			if err := putLocal(tx, x); err != nil {
				return err
			}
		}
		return putRevision(tx.Bucket(bucketMeta), st.Rev)
	})
	if err != nil {
		return fmt.Errorf("copying the shared registry: %w", err)
	}
	s.hooks = hooks
	all := make([]hookctl.Hook, 0, len(hooks))
	for _, h := range hooks {
		all = append(all, h)
	}
	slices.SortFunc(all, func(a, b hookctl.Hook) int { return a.Key.Compare(b.Key) })
	s.state.Store(&state{hooks: all, rev: st.Rev})
	if st.Cursor != 0 {
		s.cursor = st.Cursor
	}
	s.notify()
	return nil
}

// remoteHook decodes a hooks record: its key, and the hook (nil for a
// delete). Unlike the local file, the remote holds temporary hooks too.
func (s *Store) remoteHook(x Write) (hookctl.Key, *hookctl.Hook, error) {
	if x.Value == nil {
		var f [5]string
		if err := json.Unmarshal(x.Key, &f); err != nil {
			return hookctl.Key{}, nil, fmt.Errorf("bad hook key %q in the shared registry: %w", x.Key, err)
		}
		return hookctl.Key{Profile: f[0], Service: f[1], Node: f[2], Type: hookctl.Type(f[3]), Arg: f[4]}, nil, nil
	}
	h := s.loadHook(x.Key, x.Value)
	var p struct {
		Persistent bool `json:"persistent"`
	}
	_ = json.Unmarshal(x.Value, &p) // unreadable: quarantined by loadHook
	h.Persistent = p.Persistent || h.Quarantined != ""
	return h.Key, &h, nil
}

// localHook is what the local file keeps of a hooks record: temporary
// hooks live in memory only, as without a remote.
func localHook(x Write, h *hookctl.Hook) Write {
	if h != nil && !h.Persistent {
		x.Value = nil
	}
	return x
}

// putLocal writes one remote record to the local copy.
func putLocal(tx *bolt.Tx, x Write) error {
	b, err := tx.CreateBucketIfNotExists([]byte(x.Bucket))
	if err != nil {
		return err
	}
	if x.Value == nil {
		return b.Delete(x.Key)
	}
	return b.Put(x.Key, x.Value)
}
