package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"hookctl.dev/hookctl"
)

// reconcileEvery is how often holders are checked without a change.
const reconcileEvery = time.Second

// Run keeps the lease, follows the members and holders, and takes or
// hands over profiles until ctx ends; then it gives up the lease, so that
// the other replicas take this one's profiles at once.
func (c *Cluster) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	for _, loop := range []func(context.Context){c.keepLease, c.followMembers, c.followOwners, c.reconcileLoop} {
		wg.Add(1)
		go func() { defer wg.Done(); loop(ctx) }()
	}
	wg.Wait()
	c.resign()
	return nil
}

// resign ends this replica's lease: its member and owner keys go with it.
func (c *Cluster) resign() {
	c.validUntil.Store(0)
	c.mu.Lock()
	lease := c.lease
	c.lease = 0
	c.mu.Unlock()
	c.signal()
	if lease == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if _, err := c.client.Revoke(ctx, lease); err != nil {
		c.log.Warn("cluster: giving up the lease", "err", err)
	}
}

// margin is taken off the lease's validity: the time between a check of
// Holds and the start of a run, and clock rate differences.
func (c *Cluster) margin() time.Duration { return c.ttl / 5 }

// keepLease grants the lease, registers the member and keeps both alive.
func (c *Cluster) keepLease(ctx context.Context) {
	for ctx.Err() == nil {
		if c.currentLease() == 0 {
			if err := c.join(ctx); err != nil {
				c.log.Warn("cluster: joining", "err", err)
				sleepCtx(ctx, time.Second)
				continue
			}
		}
		sleepCtx(ctx, c.ttl/3)
		if ctx.Err() != nil {
			return
		}
		c.renew(ctx)
	}
}

func (c *Cluster) currentLease() clientv3.LeaseID {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lease
}

// join grants a lease and puts the member key on it.
func (c *Cluster) join(ctx context.Context) error {
	cctx, cancel := context.WithTimeout(ctx, c.ttl)
	defer cancel()
	t0 := time.Now()
	g, err := c.client.Grant(cctx, int64(c.ttl/time.Second))
	if err != nil {
		return err
	}
	v, _ := json.Marshal(hookctl.ClusterMember{Name: c.opts.Replica, API: c.opts.API, Since: time.Now().UTC()}) // plain fields
	// The name must be free: two replicas of one name would both take
	// its profiles.
	k := c.memberKey(c.opts.Replica)
	resp, err := c.client.Txn(cctx).If(clientv3.Compare(clientv3.CreateRevision(k), "=", 0)).
		Then(clientv3.OpPut(k, string(v), clientv3.WithLease(g.ID))).Commit()
	if err == nil && !resp.Succeeded {
		err = fmt.Errorf("replica name %q is in use by another live replica (or by this one's previous run, until its lease of %v ends): waiting", c.opts.Replica, c.ttl)
	}
	if err != nil {
		c.client.Revoke(context.Background(), g.ID)
		return err
	}
	c.mu.Lock()
	c.lease = g.ID
	c.mu.Unlock()
	c.validUntil.Store(t0.Add(time.Duration(g.TTL)*time.Second - c.margin()).UnixNano())
	c.log.Info("cluster: joined", "replica", c.opts.Replica, "lease_ttl", c.ttl)
	c.wake()
	return nil
}

// renew keeps the lease alive once. Validity moves only on success, from
// the time the request was sent; a lease etcd no longer knows is lost, with
// every profile on it.
func (c *Cluster) renew(ctx context.Context) {
	lease := c.currentLease()
	cctx, cancel := context.WithTimeout(ctx, c.ttl/3)
	defer cancel()
	t0 := time.Now()
	resp, err := c.client.KeepAliveOnce(cctx, lease)
	switch {
	case err == nil && resp.TTL > 0:
		wasValid := c.Valid()
		c.validUntil.Store(t0.Add(time.Duration(resp.TTL)*time.Second - c.margin()).UnixNano())
		if !wasValid {
			c.log.Info("cluster: lease valid again")
			c.signal()
			c.wake()
		}
	case err == nil || errors.Is(err, rpctypes.ErrLeaseNotFound):
		c.log.Warn("cluster: lease lost; every profile it held is given up")
		c.validUntil.Store(0)
		c.mu.Lock()
		c.lease = 0
		c.mu.Unlock()
		c.signal()
	case ctx.Err() == nil:
		c.log.Warn("cluster: keeping the lease alive", "err", err, "valid_for", time.Until(time.Unix(0, c.validUntil.Load())).Round(time.Millisecond))
	}
}

// followMembers keeps c.members in step with etcd.
func (c *Cluster) followMembers(ctx context.Context) {
	c.follow(ctx, c.opts.Prefix+"members/", func(name string, v []byte, _ clientv3.LeaseID, deleted bool) {
		if deleted {
			delete(c.members, name)
			return
		}
		var m hookctl.ClusterMember
		if json.Unmarshal(v, &m) == nil {
			c.members[name] = m
		}
	}, func() { clear(c.members) })
}

// followOwners keeps c.owners in step with etcd.
func (c *Cluster) followOwners(ctx context.Context) {
	c.follow(ctx, c.opts.Prefix+"owners/", func(profile string, v []byte, lease clientv3.LeaseID, deleted bool) {
		before := c.owners[profile]
		if deleted {
			delete(c.owners, profile)
			delete(c.ownerOn, profile)
		} else {
			c.owners[profile], c.ownerOn[profile] = string(v), lease
		}
		if (before == c.opts.Replica) != (c.owners[profile] == c.opts.Replica) {
			if c.owners[profile] != c.opts.Replica {
				delete(c.releasing, profile)
			}
			c.changes.Add(1)
			c.log.Info("cluster: holder changed", "profile", profile, "from", before, "to", c.owners[profile])
		}
	}, func() {})
}

// follow reads every key under prefix, then watches it, calling set under
// c.mu for each key (its name after the prefix); reset clears the map
// before a full read.
func (c *Cluster) follow(ctx context.Context, prefix string, set func(string, []byte, clientv3.LeaseID, bool), reset func()) {
	for ctx.Err() == nil {
		rev, err := c.readAll(ctx, prefix, set, reset)
		if err != nil {
			sleepCtx(ctx, time.Second)
			continue
		}
		wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
		for resp := range c.client.Watch(wctx, prefix, clientv3.WithPrefix(), clientv3.WithRev(rev+1)) {
			if resp.Err() != nil {
				break
			}
			c.mu.Lock()
			for _, ev := range resp.Events {
				set(strings.TrimPrefix(string(ev.Kv.Key), prefix), ev.Kv.Value, clientv3.LeaseID(ev.Kv.Lease), ev.Type == clientv3.EventTypeDelete)
			}
			c.mu.Unlock()
			c.signal()
			c.wake()
		}
		cancel()
		sleepCtx(ctx, 200*time.Millisecond)
	}
}

func (c *Cluster) readAll(ctx context.Context, prefix string, set func(string, []byte, clientv3.LeaseID, bool), reset func()) (int64, error) {
	cctx, cancel := context.WithTimeout(ctx, c.ttl)
	defer cancel()
	resp, err := c.client.Get(cctx, prefix, clientv3.WithPrefix())
	if err != nil {
		return 0, err
	}
	c.mu.Lock()
	reset()
	seen := map[string]bool{}
	for _, kv := range resp.Kvs {
		name := strings.TrimPrefix(string(kv.Key), prefix)
		seen[name] = true
		set(name, kv.Value, clientv3.LeaseID(kv.Lease), false)
	}
	if prefix == c.opts.Prefix+"owners/" {
		for p := range c.owners {
			if !seen[p] {
				set(p, nil, 0, true)
			}
		}
	}
	c.mu.Unlock()
	c.signal()
	c.wake()
	return resp.Header.Revision, nil
}

func (c *Cluster) reconcileLoop(ctx context.Context) {
	t := time.NewTicker(reconcileEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-c.kick:
		case <-t.C:
		}
		c.reconcile(ctx)
	}
}

func sleepCtx(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}
