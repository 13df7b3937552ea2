// Package registry is hookctl's live registry: persistent hooks in an
// embedded, crash-safe bbolt store in the data dir, temporary hooks in
// memory, and a revision number that moves on every committed change so that
// plans made against an old state are refused as stale.
//
// Why bbolt: it is pure Go (no cgo), a single file, ACID with an fsync on
// every commit, and its B+tree suits ordered listing. SQLite was set aside
// because it needs cgo or a large pure-Go port; Badger because it is an LSM
// tree with background goroutines and compaction, far more than a few
// thousand small records need.
//
// Layout of hooks.db:
//
//	meta:  "schema" → "1", "revision" → uint64 big-endian
//	hooks: JSON array [profile, service, node, type, arg] → JSON of the Hook
//
// Every hook lives in memory too (a map for lookups, and an immutable sorted
// snapshot behind an atomic pointer for readers), so reads never touch the
// file and never wait for a writer.
package registry

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	stderrors "errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"

	"hookctl.dev/hookctl"
)

// schemaVersion is the layout version written in the meta bucket, so that a
// later hookctl can migrate, and an older one refuses a newer store.
const schemaVersion = 2

var (
	bucketMeta  = []byte("meta")
	bucketHooks = []byte("hooks")
	keySchema   = []byte("schema")
	keyRevision = []byte("revision")
)

// openTimeout bounds the wait for the file lock, so a second backend on the
// same data dir fails fast instead of hanging.
const openTimeout = time.Second

// initialMmapSize is the address space bbolt maps at open (64 MiB: some
// 100,000 hooks) so that growing the file rarely means re-mapping it.
const initialMmapSize = 64 << 20

// Options configures a Store.
type Options struct {
	// Profiles maps each configured profile name to its bare JID. Hooks for
	// a profile not listed are refused (ErrNotFound, "unknown profile"),
	// and an empty Service is stored as the profile's bare JID (own PEP).
	// If Profiles is nil, any profile is accepted and an empty Service
	// stays empty.
	Profiles map[string]string
	// Now returns the current time, for Created; default time.Now.
	Now func() time.Time
	// Remote, when set, is the registry shared with other backends
	// (remote.go): Open copies it, writes go to it first, and the backend
	// runs Follow.
	Remote Remote
}

// Store is the live registry. It implements hookctl.Registry and is safe for
// concurrent use: writers are serialised by a mutex, readers use an
// immutable snapshot.
type Store struct {
	db       *bolt.DB
	dir      string
	profiles map[string]string // profile → normalised bare JID; nil = any
	now      func() time.Time
	remote   Remote // nil: this backend's registry alone
	cursor   int64  // where Follow goes on from in the remote

	mu     sync.Mutex                   // serialises writers and guards hooks, closed
	hooks  map[hookctl.Key]hookctl.Hook // every hook, persistent and temporary
	closed bool

	state atomic.Pointer[state] // what readers see

	shared sharedWrites // the per-item writes waiting for a transaction (shared.go)

	subMu      sync.Mutex
	subs       map[*subscriber]struct{}
	subsClosed bool // set by Close: later subscribers get a closed channel
}

// state is an immutable view of the registry at one revision.
type state struct {
	hooks []hookctl.Hook // Key order
	rev   uint64
}

type subscriber struct{ ch chan struct{} }

var _ hookctl.Registry = (*Store)(nil)

// errClosed is returned by every operation after Close.
var errClosed = fmt.Errorf("%w: registry is closed", hookctl.ErrUnavailable)

// Open opens (creating if needed) the store in dataDir/hooks.db. The
// revision starts one above the stored one: temporary hooks did not survive,
// so any plan made before the restart must be refused as stale.
func Open(dataDir string, opts Options) (*Store, error) {
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return nil, fmt.Errorf("creating data dir: %w", err)
	}
	s := &Store{
		dir:    dataDir,
		now:    opts.Now,
		remote: opts.Remote,
		hooks:  make(map[hookctl.Key]hookctl.Hook),
		subs:   make(map[*subscriber]struct{}),
	}
	if s.now == nil {
		s.now = time.Now
	}
	if opts.Profiles != nil {
		s.profiles = make(map[string]string, len(opts.Profiles))
		for name, j := range opts.Profiles {
			bare, err := normaliseJID(j)
			if err != nil {
				return nil, fmt.Errorf("%w: profile %q: jid %q: %v", hookctl.ErrInvalid, name, j, err)
			}
			s.profiles[name] = bare
		}
	}

	path := filepath.Join(dataDir, "hooks.db")
	if err := checkDBFile(path); err != nil {
		return nil, err
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{
		Timeout:      openTimeout,
		FreelistType: bolt.FreelistMapType,
		// Reserving address space up front (the file does not grow with
		// it) spares re-mapping, which copies every dirty node, while a
		// big batch commits: a 10,000-hook batch took 2-3 times longer.
		InitialMmapSize: initialMmapSize,
	})
	if err != nil {
		if stderrors.Is(err, bolterrors.ErrTimeout) {
			return nil, fmt.Errorf("data dir %s is in use by another backend: %w", dataDir, hookctl.ErrUnavailable)
		}
		return nil, fmt.Errorf("opening store %s: %w", path, err)
	}
	s.db = db

	var rev uint64
	err = db.Update(func(tx *bolt.Tx) (err error) {
		rev, err = s.load(tx)
		return err
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("loading store %s: %w", path, err)
	}
	all := make([]hookctl.Hook, 0, len(s.hooks))
	for _, h := range s.hooks {
		all = append(all, h)
	}
	slices.SortFunc(all, func(a, b hookctl.Hook) int { return a.Key.Compare(b.Key) })
	s.state.Store(&state{hooks: all, rev: rev})
	if s.remote != nil {
		ctx, cancel := context.WithTimeout(context.Background(), remoteOpenTimeout)
		defer cancel()
		if err := s.Resync(ctx); err != nil {
			db.Close()
			return nil, err
		}
	}
	return s, nil
}

// remoteOpenTimeout bounds the first copy of a shared registry.
const remoteOpenTimeout = 30 * time.Second

// load checks the schema (converting older layouts), advances the stored
// revision and reads the hooks into memory; it returns the new revision.
func (s *Store) load(tx *bolt.Tx) (uint64, error) {
	var rev uint64
	meta, err := tx.CreateBucketIfNotExists(bucketMeta)
	if err != nil {
		return 0, err
	}
	hooks, err := tx.CreateBucketIfNotExists(bucketHooks)
	if err != nil {
		return 0, err
	}
	if v := meta.Get(keySchema); v != nil {
		var n int
		if _, err := fmt.Sscan(string(v), &n); err != nil || n < 1 {
			return 0, fmt.Errorf("bad schema version %q", v)
		}
		if n > schemaVersion {
			return 0, fmt.Errorf("store schema %d is newer than this hookctl supports (%d)", n, schemaVersion)
		}
		if n < 2 {
			if err := migrateNodeRecords(tx); err != nil {
				return 0, err
			}
		}
	}
	if err := meta.Put(keySchema, fmt.Appendf(nil, "%d", schemaVersion)); err != nil {
		return 0, err
	}
	switch v := meta.Get(keyRevision); len(v) {
	case 0:
	case 8:
		rev = binary.BigEndian.Uint64(v)
	default:
		return 0, fmt.Errorf("bad stored revision %x", v)
	}
	rev++
	if err := putRevision(meta, rev); err != nil {
		return 0, err
	}
	return rev, hooks.ForEach(func(k, v []byte) error {
		h := s.loadHook(k, v)
		s.hooks[h.Key] = h
		return nil
	})
}

// Close closes the store file and every Changes channel. Temporary hooks are
// lost. Close is idempotent.
func (s *Store) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	err := s.db.Close()
	s.mu.Unlock()

	s.subMu.Lock()
	s.subsClosed = true
	for sub := range s.subs {
		close(sub.ch)
		delete(s.subs, sub)
	}
	s.subMu.Unlock()
	if err != nil {
		return fmt.Errorf("closing store: %w", err)
	}
	return nil
}

// Revision returns the current revision.
func (s *Store) Revision() uint64 { return s.state.Load().rev }

// Snapshot returns every hook (all profiles, Key order) and the revision
// they belong to. The slice is shared and immutable: callers must not modify
// it or the hooks' slices and maps.
func (s *Store) Snapshot() ([]hookctl.Hook, uint64) {
	st := s.state.Load()
	return st.hooks, st.rev
}

// List returns the hooks of profile (every profile when empty) in Key order,
// with the revision they were read at. Unlike the reference, persistent
// hooks are not listed first; callers sort as they like. The result is the
// caller's own copy.
func (s *Store) List(ctx context.Context, profile string) ([]hookctl.Hook, uint64, error) {
	if err := ctx.Err(); err != nil {
		return nil, 0, err
	}
	st := s.state.Load()
	hooks := st.hooks
	if profile != "" {
		lo, _ := slices.BinarySearchFunc(hooks, profile, func(h hookctl.Hook, p string) int {
			return strings.Compare(h.Profile, p)
		})
		hi := lo
		for hi < len(hooks) && hooks[hi].Profile == profile {
			hi++
		}
		hooks = hooks[lo:hi]
	}
	out := make([]hookctl.Hook, len(hooks))
	for i, h := range hooks {
		out[i] = cloneHook(h)
	}
	return out, st.rev, nil
}

// Create adds one hook, persistent or temporary, and returns it as stored
// (service normalised, Created set). An existing key is refused with
// ErrDuplicate, naming the existing hook's owner and source.
func (s *Store) Create(ctx context.Context, h hookctl.Hook) (hookctl.Hook, error) {
	if err := ctx.Err(); err != nil {
		return hookctl.Hook{}, err
	}
	h, err := s.normaliseHook(h, nil)
	if err != nil {
		return hookctl.Hook{}, err
	}
	err = s.retryMoved(ctx, func() error { return s.create(ctx, &h) })
	if err != nil {
		return hookctl.Hook{}, err
	}
	return cloneHook(h), nil
}

func (s *Store) create(ctx context.Context, h *hookctl.Hook) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return errClosed
	}
	if old, ok := s.hooks[h.Key]; ok {
		return duplicateError(old)
	}
	h.Created = s.now()
	return s.commit(ctx, change{put: []hookctl.Hook{*h}})
}

// Remove deletes every hook, persistent or temporary, that m selects (empty
// Type or Arg = any) and returns how many it removed. The revision moves
// only when something was removed.
func (s *Store) Remove(ctx context.Context, m hookctl.Match) (int, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	if m.Profile == "" {
		return 0, fmt.Errorf("%w: profile is empty", hookctl.ErrInvalid)
	}
	if m.Node == "" {
		return 0, fmt.Errorf("%w: node is empty", hookctl.ErrInvalid)
	}
	svc, err := s.normaliseService(m.Profile, m.Service, nil)
	if err != nil {
		return 0, err
	}
	m.Service = svc
	var n int
	err = s.retryMoved(ctx, func() (err error) {
		n, err = s.remove(ctx, m)
		return err
	})
	return n, err
}

func (s *Store) remove(ctx context.Context, m hookctl.Match) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return 0, errClosed
	}
	var c change
	// Collect first, then delete: removing while iterating over the same
	// list is what made the reference skip every other match.
	for _, h := range s.state.Load().hooks {
		if m.Matches(h.Key) {
			c.del = append(c.del, h)
		}
	}
	if len(c.del) == 0 {
		return 0, nil
	}
	if err := s.commit(ctx, c); err != nil {
		return 0, err
	}
	return len(c.del), nil
}

// DropTemporary removes the temporary hooks of profile, for when the profile
// was disconnected on purpose, and returns how many it removed.
func (s *Store) DropTemporary(profile string) (int, error) {
	ctx := context.Background()
	var n int
	err := s.retryMoved(ctx, func() error {
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.closed {
			return errClosed
		}
		var c change
		for _, h := range s.state.Load().hooks {
			if h.Profile == profile && !h.Persistent {
				c.del = append(c.del, h)
			}
		}
		n = len(c.del)
		if n == 0 {
			return nil
		}
		return s.commit(ctx, c)
	})
	if err != nil {
		return 0, err
	}
	return n, nil
}

// Apply runs b in one transaction if b.Revision is still the current
// revision, else refuses it with ErrStale. Everything is validated first
// (creates must not exist, updates and deletes must, no key twice); on any
// error nothing changes. Updates keep the stored Created time and may move a
// hook between persistent and temporary. It returns the new revision; an
// empty batch changes nothing and returns the current one.
func (s *Store) Apply(ctx context.Context, b hookctl.Batch) (uint64, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	// Normalise outside the lock: it is the costly, pure part.
	cache := make(map[string]string)
	creates := make([]hookctl.Hook, len(b.Create))
	for i, h := range b.Create {
		n, err := s.normaliseHook(h, cache)
		if err != nil {
			return 0, fmt.Errorf("create %d: %w", i, err)
		}
		creates[i] = n
	}
	updates := make([]hookctl.Hook, len(b.Update))
	for i, h := range b.Update {
		n, err := s.normaliseHook(h, cache)
		if err != nil {
			return 0, fmt.Errorf("update %d: %w", i, err)
		}
		updates[i] = n
	}
	deletes := make([]hookctl.Key, len(b.Delete))
	for i, k := range b.Delete {
		deletes[i] = s.deleteKey(k, cache)
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return 0, errClosed
	}
	cur := s.state.Load().rev
	if b.Revision != cur {
		return 0, fmt.Errorf("%w: batch planned at revision %d, registry is at %d", hookctl.ErrStale, b.Revision, cur)
	}
	if b.Empty() && b.Inventory == nil {
		return cur, nil
	}
	if err := checkInventory(b.Inventory); err != nil {
		return 0, err
	}

	seen := make(map[hookctl.Key]struct{}, len(creates)+len(updates)+len(deletes))
	once := func(k hookctl.Key) error {
		if _, dup := seen[k]; dup {
			return fmt.Errorf("%w: hook %s appears more than once in the batch", hookctl.ErrInvalid, k)
		}
		seen[k] = struct{}{}
		return nil
	}
	var c change
	c.put = make([]hookctl.Hook, 0, len(creates)+len(updates))
	now := s.now()
	for _, h := range creates {
		if err := once(h.Key); err != nil {
			return 0, err
		}
		if old, ok := s.hooks[h.Key]; ok {
			return 0, duplicateError(old)
		}
		h.Created = now
		c.put = append(c.put, h)
	}
	for _, h := range updates {
		if err := once(h.Key); err != nil {
			return 0, err
		}
		old, ok := s.hooks[h.Key]
		if !ok {
			return 0, fmt.Errorf("%w: hook %s (to update)", hookctl.ErrNotFound, h.Key)
		}
		h.Created = old.Created
		if old.Persistent && !h.Persistent {
			c.del = append(c.del, old) // leaves the file, stays in memory
		}
		c.put = append(c.put, h)
	}
	for _, k := range deletes {
		if err := once(k); err != nil {
			return 0, err
		}
		old, ok := s.hooks[k]
		if !ok {
			return 0, fmt.Errorf("%w: hook %s (to delete)", hookctl.ErrNotFound, k)
		}
		c.del = append(c.del, old)
	}
	c.inv = b.Inventory
	if err := s.commit(ctx, c); err != nil {
		var moved *MovedError
		if stderrors.As(err, &moved) {
			return 0, fmt.Errorf("%w: batch planned at revision %d, registry is at %d (changed through another backend)", hookctl.ErrStale, b.Revision, moved.Rev)
		}
		return 0, err
	}
	return s.state.Load().rev, nil
}

// change is one validated set of writes. A key may be in both del and put
// (an update moving a hook from persistent to temporary): del is applied
// first.
type change struct {
	del []hookctl.Hook           // hooks as stored; persistent ones leave the file
	put []hookctl.Hook           // hooks to store; persistent ones go to the file
	inv *hookctl.InventoryChange // set records, in the same transaction
}

// commit writes c and the next revision in one bbolt transaction, then
// updates memory (which cannot fail), publishes a new snapshot and notifies
// subscribers. The caller holds s.mu and has validated c.
func (s *Store) commit(ctx context.Context, c change) error {
	rev := s.state.Load().rev + 1
	inv, err := inventoryWrites(c.inv, s.now())
	if err != nil {
		return err
	}
	if s.remote != nil {
		w, err := remoteWrites(c, inv)
		if err != nil {
			return err
		}
		if err := s.remote.Commit(ctx, rev-1, w); err != nil {
			return s.remoteFailed(err)
		}
	}

	type kv struct{ k, v []byte }
	var puts []kv
	var dels [][]byte
	for _, h := range c.del {
		if h.Persistent {
			dels = append(dels, encodeKey(h.Key))
		}
	}
	for _, h := range c.put {
		if !h.Persistent {
			continue
		}
		v, err := json.Marshal(h)
		if err != nil {
			return fmt.Errorf("encoding hook %s: %w", h.Key, err)
		}
		puts = append(puts, kv{encodeKey(h.Key), v})
	}
	// Sorted inserts fill B+tree pages in order: a big batch commits much
	// faster than with random order.
	slices.SortFunc(puts, func(a, b kv) int { return bytes.Compare(a.k, b.k) })

	// Temporary-only changes write the revision too, so that it never goes
	// backwards across a restart.
	err = s.db.Update(func(tx *bolt.Tx) error {
		hb := tx.Bucket(bucketHooks)
		for _, k := range dels {
			if err := hb.Delete(k); err != nil {
				return err
			}
		}
		for _, p := range puts {
			if err := hb.Put(p.k, p.v); err != nil {
				return err
			}
		}
		for _, x := range inv {
			if err := putLocal(tx, x); err != nil {
				return err
			}
		}
		return putRevision(tx.Bucket(bucketMeta), rev)
	})
	if err != nil {
		return fmt.Errorf("writing store: %w", err)
	}

	changed := make(map[hookctl.Key]struct{}, len(c.del)+len(c.put))
	for _, h := range c.del {
		delete(s.hooks, h.Key)
		changed[h.Key] = struct{}{}
	}
	for _, h := range c.put {
		s.hooks[h.Key] = h
		changed[h.Key] = struct{}{}
	}
	s.state.Store(&state{hooks: s.rebuild(s.state.Load().hooks, c.put, changed), rev: rev})
	s.notify()
	return nil
}

// rebuild returns a new sorted snapshot: old without the changed keys,
// merged with the (sorted) puts that are still current. O(n + k log k), so
// a single create does not sort the whole registry.
func (s *Store) rebuild(old, put []hookctl.Hook, changed map[hookctl.Key]struct{}) []hookctl.Hook {
	cmpKey := func(h hookctl.Hook, k hookctl.Key) int { return h.Key.Compare(k) }
	if len(changed) <= 8 {
		// A few keys (a Create, a small Remove): copy and edit in place by
		// binary search, cheaper than hashing every key.
		out := slices.Clone(old)
		for k := range changed {
			if i, found := slices.BinarySearchFunc(out, k, cmpKey); found {
				out = slices.Delete(out, i, i+1)
			}
		}
		for _, h := range put {
			i, _ := slices.BinarySearchFunc(out, h.Key, cmpKey)
			out = slices.Insert(out, i, h)
		}
		return out
	}
	add := slices.Clone(put)
	slices.SortFunc(add, func(a, b hookctl.Hook) int { return a.Key.Compare(b.Key) })
	out := make([]hookctl.Hook, 0, len(s.hooks))
	i := 0
	for _, h := range old {
		if _, ok := changed[h.Key]; ok {
			continue
		}
		for i < len(add) && add[i].Key.Compare(h.Key) < 0 {
			out = append(out, add[i])
			i++
		}
		out = append(out, h)
	}
	return append(out, add[i:]...)
}

// Changes returns a channel signalled (buffer 1, coalescing) after every
// committed change, and a func that cancels the subscription. The channel is
// closed by cancel or by Close. Sends never block the writer.
func (s *Store) Changes() (<-chan struct{}, func()) {
	sub := &subscriber{ch: make(chan struct{}, 1)}
	s.subMu.Lock()
	if s.subsClosed {
		s.subMu.Unlock()
		close(sub.ch)
		return sub.ch, func() {}
	}
	s.subs[sub] = struct{}{}
	s.subMu.Unlock()
	var once sync.Once
	return sub.ch, func() {
		once.Do(func() {
			s.subMu.Lock()
			defer s.subMu.Unlock()
			if _, ok := s.subs[sub]; ok {
				delete(s.subs, sub)
				close(sub.ch)
			}
		})
	}
}

func (s *Store) notify() {
	s.subMu.Lock()
	defer s.subMu.Unlock()
	for sub := range s.subs {
		select {
		case sub.ch <- struct{}{}:
		default: // a signal is pending already; it covers this change too
		}
	}
}

func putRevision(meta *bolt.Bucket, rev uint64) error {
	return meta.Put(keyRevision, binary.BigEndian.AppendUint64(nil, rev))
}

// encodeKey is the stable bbolt key of a hook: a JSON array of the five Key
// fields, unambiguous and readable with bbolt's own tools.
func encodeKey(k hookctl.Key) []byte {
	b, _ := json.Marshal([5]string{k.Profile, k.Service, k.Node, string(k.Type), k.Arg}) // strings always marshal
	return b
}

func duplicateError(old hookctl.Hook) error {
	owner := old.Owner
	if owner == "" {
		owner = "none"
	}
	src := old.Source
	if src == "" {
		src = "unknown"
	}
	kind := "temporary"
	if old.Persistent {
		kind = "persistent"
	}
	return fmt.Errorf("%w: %s (%s, owner %s, from %s)", hookctl.ErrDuplicate, old.Key, kind, owner, src)
}
