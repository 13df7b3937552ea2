package cluster

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"hookctl.dev/hookctl/registry"
)

// etcdRegistry is the shared registry on etcd (registry.Remote):
//
//	PREFIX registry/rev            → revision, decimal
//	PREFIX registry/BUCKET/KEY     → record (hooks, inventory, suspensions)
//
// A commit is one etcd transaction that puts the records and the next
// revision only if the revision is still the one the backend planned
// against: the registry's stale-revision check, across backends.
type etcdRegistry struct {
	kv     *clientv3.Client
	prefix string // PREFIX registry/
	log    func(msg string, args ...any)
}

var _ registry.Remote = (*etcdRegistry)(nil)

func (r *etcdRegistry) revKey() string { return r.prefix + "rev" }

func (r *etcdRegistry) recordKey(w registry.Write) string {
	return r.prefix + w.Bucket + "/" + string(w.Key)
}

// decode splits an etcd key under the prefix into bucket and key.
func (r *etcdRegistry) decode(key []byte, value []byte) (registry.Write, bool) {
	rest, ok := strings.CutPrefix(string(key), r.prefix)
	if !ok {
		return registry.Write{}, false
	}
	bucket, k, ok := strings.Cut(rest, "/")
	if !ok {
		return registry.Write{}, false
	}
	return registry.Write{Bucket: bucket, Key: []byte(k), Value: value}, true
}

func (r *etcdRegistry) Load(ctx context.Context) (registry.RemoteState, error) {
	resp, err := r.kv.Get(ctx, r.prefix, clientv3.WithPrefix())
	if err != nil {
		return registry.RemoteState{}, err
	}
	st := registry.RemoteState{Cursor: resp.Header.Revision}
	for _, kv := range resp.Kvs {
		if string(kv.Key) == r.revKey() {
			if st.Rev, err = strconv.ParseUint(string(kv.Value), 10, 64); err != nil {
				return st, fmt.Errorf("bad registry revision %q in etcd: %w", kv.Value, err)
			}
			continue
		}
		if w, ok := r.decode(kv.Key, kv.Value); ok {
			st.Records = append(st.Records, w)
		}
	}
	return st, nil
}

func (r *etcdRegistry) Commit(ctx context.Context, from uint64, w []registry.Write) error {
	cmp := clientv3.Compare(clientv3.Value(r.revKey()), "=", strconv.FormatUint(from, 10))
	if from == 0 {
		cmp = clientv3.Compare(clientv3.CreateRevision(r.revKey()), "=", 0)
	}
	ops := make([]clientv3.Op, 0, len(w)+1)
	for _, x := range w {
		if x.Value == nil {
			ops = append(ops, clientv3.OpDelete(r.recordKey(x)))
		} else {
			ops = append(ops, clientv3.OpPut(r.recordKey(x), string(x.Value)))
		}
	}
	ops = append(ops, clientv3.OpPut(r.revKey(), strconv.FormatUint(from+1, 10)))
	resp, err := r.kv.Txn(ctx).If(cmp).Then(ops...).Else(clientv3.OpGet(r.revKey())).Commit()
	if err != nil {
		return txnError(err, len(ops))
	}
	if resp.Succeeded {
		return nil
	}
	var rev uint64
	if g := resp.Responses[0].GetResponseRange(); g != nil && len(g.Kvs) == 1 {
		rev, _ = strconv.ParseUint(string(g.Kvs[0].Value), 10, 64)
	}
	return &registry.MovedError{Rev: rev}
}

// txnError names the etcd limits a big batch meets, with the setting to
// raise.
func txnError(err error, ops int) error {
	switch msg := err.Error(); {
	case strings.Contains(msg, "too many operations in txn request"):
		return fmt.Errorf("the change writes %d records in one etcd transaction, more than etcd allows: start etcd with a larger --max-txn-ops (docs/CLUSTER.md): %w", ops, err)
	case strings.Contains(msg, "request is too large"):
		return fmt.Errorf("the change is larger than etcd accepts in one request: start etcd with a larger --max-request-bytes (docs/CLUSTER.md): %w", err)
	}
	return err
}

// followRetry is the pause before watching again after a watch ended.
const followRetry = 500 * time.Millisecond

func (r *etcdRegistry) Follow(ctx context.Context, cursor int64, apply func(uint64, []registry.Write, bool) error) error {
	for ctx.Err() == nil {
		next, err := r.watch(ctx, cursor, apply)
		if err != nil {
			return err
		}
		cursor = next
		select {
		case <-ctx.Done():
		case <-time.After(followRetry):
		}
	}
	return nil
}

// watch follows the registry from cursor until the watch ends; it returns
// where to go on from. A compacted history is reloaded whole.
func (r *etcdRegistry) watch(ctx context.Context, cursor int64, apply func(uint64, []registry.Write, bool) error) (int64, error) {
	wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	defer cancel()
	for resp := range r.kv.Watch(wctx, r.prefix, clientv3.WithPrefix(), clientv3.WithRev(cursor+1)) {
		if resp.CompactRevision != 0 {
			st, err := r.Load(ctx)
			if err != nil {
				return cursor, nil // try again after the pause
			}
			if err := apply(st.Rev, st.Records, true); err != nil {
				return cursor, err
			}
			return st.Cursor, nil
		}
		if err := resp.Err(); err != nil {
			r.log("watching the shared registry", "err", err)
			return cursor, nil
		}
		for _, ch := range r.changes(resp.Events) {
			if err := apply(ch.rev, ch.w, false); err != nil {
				return cursor, err
			}
		}
		if len(resp.Events) > 0 {
			cursor = resp.Events[len(resp.Events)-1].Kv.ModRevision
		}
	}
	return cursor, nil
}

type remoteChange struct {
	rev uint64
	w   []registry.Write
}

// changes groups watch events by etcd revision: one group per commit.
func (r *etcdRegistry) changes(evs []*clientv3.Event) []remoteChange {
	var out []remoteChange
	var cur *remoteChange
	var etcdRev int64
	for _, ev := range evs {
		if cur == nil || ev.Kv.ModRevision != etcdRev {
			out = append(out, remoteChange{})
			cur, etcdRev = &out[len(out)-1], ev.Kv.ModRevision
		}
		if string(ev.Kv.Key) == r.revKey() {
			// Unreadable: 0, which Follow takes as a change it missed,
			// and reads the whole registry again (Load names the fault).
			cur.rev, _ = strconv.ParseUint(string(ev.Kv.Value), 10, 64)
			continue
		}
		w, ok := r.decode(ev.Kv.Key, ev.Kv.Value)
		if !ok {
			continue
		}
		if ev.Type == clientv3.EventTypeDelete {
			w.Value = nil
		}
		cur.w = append(cur.w, w)
	}
	return out
}
