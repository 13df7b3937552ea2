package cluster

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"hookctl.dev/hookctl/catchup"
	"hookctl.dev/hookctl/registry"
	"hookctl.dev/hookctl/subscription"
)

// storeTimeout bounds one call of the node-state and subscription stores.
const storeTimeout = 10 * time.Second

// maxOpsPerTxn stays under etcd's default --max-txn-ops (128).
const maxOpsPerTxn = 100

// nodeStore is catch-up's per-node state on etcd, shared so that the
// replica that takes a profile over goes on from where the last holder's
// marks reached:
//
//	PREFIX nodes/JSON [profile, service, node] → JSON [[id, digest], …]
//
// Marks arrive in batches (catch-up writes every 50 ms); each batch is one
// read and one transaction per node group, retried when another writer
// (the previous holder finishing its last runs) came in between.
type nodeStore struct {
	kv     *clientv3.Client
	prefix string
	holds  func(profile string) bool // which profiles' state this replica may forget
}

var _ catchup.Store = (*nodeStore)(nil)

func (s *nodeStore) key(ref registry.NodeRef) string {
	b, _ := json.Marshal([3]string{ref.Profile, ref.Service, ref.Node}) // strings always marshal
	return s.prefix + string(b)
}

func encodeFinished(f []registry.Finished) string {
	pairs := make([][2]string, len(f))
	for i, x := range f {
		pairs[i] = [2]string{x.ID, x.Digest}
	}
	b, _ := json.Marshal(pairs) // strings always marshal
	return string(b)
}

func decodeFinished(v []byte) ([]registry.Finished, error) {
	var pairs [][2]string
	if err := json.Unmarshal(v, &pairs); err != nil {
		return nil, err
	}
	out := make([]registry.Finished, len(pairs))
	for i, p := range pairs {
		out[i] = registry.Finished{ID: p[0], Digest: p[1]}
	}
	return out, nil
}

func (s *nodeStore) NodeState(ref registry.NodeRef) (registry.NodeState, error) {
	ctx, cancel := context.WithTimeout(context.Background(), storeTimeout)
	defer cancel()
	resp, err := s.kv.Get(ctx, s.key(ref))
	if err != nil || len(resp.Kvs) == 0 {
		return registry.NodeState{}, err
	}
	f, err := decodeFinished(resp.Kvs[0].Value)
	if err != nil {
		return registry.NodeState{}, fmt.Errorf("node state of %s in etcd: %w", ref.Node, err)
	}
	return registry.NodeState{Known: true, Finished: f}, nil
}

func (s *nodeStore) SetBaseline(ref registry.NodeRef, items []registry.Finished) error {
	ctx, cancel := context.WithTimeout(context.Background(), storeTimeout)
	defer cancel()
	_, err := s.kv.Put(ctx, s.key(ref), encodeFinished(registry.MergeFinished(nil, items)))
	return err
}

func (s *nodeStore) MarkFinished(marks []registry.Mark) error {
	byNode := map[registry.NodeRef][]registry.Finished{}
	var order []registry.NodeRef
	for _, m := range marks {
		if _, ok := byNode[m.NodeRef]; !ok {
			order = append(order, m.NodeRef)
		}
		byNode[m.NodeRef] = append(byNode[m.NodeRef], m.Finished)
	}
	for len(order) > 0 {
		n := min(len(order), maxOpsPerTxn/2)
		if err := s.mark(order[:n], byNode); err != nil {
			return err
		}
		order = order[n:]
	}
	return nil
}

// markRetries bounds the optimistic retries of one group of nodes.
const markRetries = 10

// mark merges the marks of refs into their stored lists in one
// transaction that holds only if no list changed since it was read.
func (s *nodeStore) mark(refs []registry.NodeRef, byNode map[registry.NodeRef][]registry.Finished) error {
	ctx, cancel := context.WithTimeout(context.Background(), storeTimeout)
	defer cancel()
	for range markRetries {
		gets := make([]clientv3.Op, len(refs))
		for i, ref := range refs {
			gets[i] = clientv3.OpGet(s.key(ref))
		}
		read, err := s.kv.Txn(ctx).Then(gets...).Commit()
		if err != nil {
			return err
		}
		var cmps []clientv3.Cmp
		var puts []clientv3.Op
		for i, ref := range refs {
			var list []registry.Finished
			var modRev int64
			if kvs := read.Responses[i].GetResponseRange().Kvs; len(kvs) == 1 {
				modRev = kvs[0].ModRevision
				list, _ = decodeFinished(kvs[0].Value) // unreadable: start over
			}
			cmps = append(cmps, clientv3.Compare(clientv3.ModRevision(s.key(ref)), "=", modRev))
			puts = append(puts, clientv3.OpPut(s.key(ref), encodeFinished(registry.MergeFinished(list, byNode[ref]))))
		}
		resp, err := s.kv.Txn(ctx).If(cmps...).Then(puts...).Commit()
		if err != nil {
			return err
		}
		if resp.Succeeded {
			return nil
		}
	}
	return fmt.Errorf("node state: %d writers in a row came first", markRetries)
}

func (s *nodeStore) ForgetNodes(keep func(registry.NodeRef) bool) (int, error) {
	ctx, cancel := context.WithTimeout(context.Background(), storeTimeout)
	defer cancel()
	resp, err := s.kv.Get(ctx, s.prefix, clientv3.WithPrefix(), clientv3.WithKeysOnly())
	if err != nil {
		return 0, err
	}
	n := 0
	for _, kv := range resp.Kvs {
		var f [3]string
		if json.Unmarshal([]byte(strings.TrimPrefix(string(kv.Key), s.prefix)), &f) != nil {
			continue
		}
		ref := registry.NodeRef{Profile: f[0], Service: f[1], Node: f[2]}
		// Only the holder of a profile forgets its nodes: another
		// replica's view of the hooks may lag behind the holder's.
		if keep(ref) || !s.holds(ref.Profile) {
			continue
		}
		if _, err := s.kv.Delete(ctx, string(kv.Key)); err != nil {
			return n, err
		}
		n++
	}
	return n, nil
}

// subscriptionStore records the subscriptions hookctl made, per profile,
// shared so that the next holder of a profile removes those no hook needs:
//
//	PREFIX subscriptions/PROFILE/JSON [service, node] → ""
type subscriptionStore struct {
	kv     *clientv3.Client
	prefix string
}

var _ subscription.Store = (*subscriptionStore)(nil)

func (s *subscriptionStore) key(ref registry.NodeRef) string {
	b, _ := json.Marshal([2]string{ref.Service, ref.Node}) // strings always marshal
	return s.prefix + ref.Profile + "/" + string(b)
}

func (s *subscriptionStore) OwnSubscriptions(profile string) ([]registry.NodeRef, error) {
	ctx, cancel := context.WithTimeout(context.Background(), storeTimeout)
	defer cancel()
	p := s.prefix + profile + "/"
	resp, err := s.kv.Get(ctx, p, clientv3.WithPrefix(), clientv3.WithKeysOnly(), clientv3.WithSort(clientv3.SortByKey, clientv3.SortAscend))
	if err != nil {
		return nil, err
	}
	var out []registry.NodeRef
	for _, kv := range resp.Kvs {
		var f [2]string
		if json.Unmarshal([]byte(strings.TrimPrefix(string(kv.Key), p)), &f) == nil {
			out = append(out, registry.NodeRef{Profile: profile, Service: f[0], Node: f[1]})
		}
	}
	return out, nil
}

func (s *subscriptionStore) AddOwnSubscriptions(refs ...registry.NodeRef) error {
	return s.write(refs, func(k string) clientv3.Op { return clientv3.OpPut(k, "") })
}

func (s *subscriptionStore) RemoveOwnSubscriptions(refs ...registry.NodeRef) error {
	return s.write(refs, func(k string) clientv3.Op { return clientv3.OpDelete(k) })
}

func (s *subscriptionStore) write(refs []registry.NodeRef, op func(string) clientv3.Op) error {
	ctx, cancel := context.WithTimeout(context.Background(), storeTimeout)
	defer cancel()
	for len(refs) > 0 {
		n := min(len(refs), maxOpsPerTxn)
		ops := make([]clientv3.Op, n)
		for i, ref := range refs[:n] {
			ops[i] = op(s.key(ref))
		}
		if _, err := s.kv.Txn(ctx).Then(ops...).Commit(); err != nil {
			return err
		}
		refs = refs[n:]
	}
	return nil
}
