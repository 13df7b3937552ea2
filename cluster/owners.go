package cluster

import (
	"context"
	"maps"
	"slices"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"hookctl.dev/hookctl"
)

// reconcile takes the profiles this replica should hold and hands over
// those another live replica should: a profile without a holder goes to
// its preferred holder among the live members (preferred), or, after two
// lease periods, to any replica that can hold it. A held profile moves to
// its preferred holder only when that evens the load (this replica holds
// at least two more): a replica that comes back does not pull every
// profile back through a second hand-over.
func (c *Cluster) reconcile(ctx context.Context) {
	lease := c.currentLease()
	if lease == 0 || !c.Valid() {
		return
	}
	me := c.opts.Replica
	c.mu.Lock()
	if _, ok := c.members[me]; !ok {
		c.mu.Unlock()
		return // not registered yet: others do not count this replica
	}
	members := c.memberNames()
	owners := maps.Clone(c.owners)
	load := map[string]int{}
	for _, o := range owners {
		load[o]++
	}
	now := time.Now()
	var take, hand []string
	handing := false
	for _, p := range c.opts.Profiles {
		want, owner := preferred(p, members), owners[p]
		switch {
		case owner == "":
			if _, ok := c.orphaned[p]; !ok {
				c.orphaned[p] = now
			}
			if want == me || now.Sub(c.orphaned[p]) > 2*c.ttl {
				take = append(take, p)
			}
		case owner == me && want != me && (c.releasing[p] || load[me]-load[want] >= 2):
			load[me]--
			load[want]++
			if !c.releasing[p] {
				c.releasing[p] = true
				c.log.Info("cluster: handing profile over", "profile", p, "to", want)
				handing = true
			}
			if !c.running[p] {
				hand = append(hand, p)
			}
		default:
			delete(c.orphaned, p)
			if owner == me {
				delete(c.releasing, p)
			}
		}
	}
	c.mu.Unlock()
	if handing {
		c.signal() // the sessions of the profiles handed over stop
	}
	for _, p := range take {
		c.take(ctx, p, lease)
	}
	for _, p := range hand {
		c.hand(ctx, p)
	}
}

// take claims profile if nobody holds it.
func (c *Cluster) take(ctx context.Context, profile string, lease clientv3.LeaseID) {
	cctx, cancel := context.WithTimeout(ctx, c.ttl/2)
	defer cancel()
	k := c.ownerKey(profile)
	resp, err := c.client.Txn(cctx).
		If(clientv3.Compare(clientv3.CreateRevision(k), "=", 0)).
		Then(clientv3.OpPut(k, c.opts.Replica, clientv3.WithLease(lease))).Commit()
	if err != nil || !resp.Succeeded {
		return // another replica was first, or etcd is away: next round
	}
	c.mu.Lock()
	seen := c.owners[profile] == c.opts.Replica // the watch was first: counted there
	c.owners[profile] = c.opts.Replica
	c.ownerOn[profile] = lease
	delete(c.orphaned, profile)
	delete(c.releasing, profile)
	c.mu.Unlock()
	if !seen {
		c.changes.Add(1)
	}
	c.log.Info("cluster: took profile", "profile", profile)
	c.signal()
}

// hand gives profile up, once its session here has stopped.
func (c *Cluster) hand(ctx context.Context, profile string) {
	cctx, cancel := context.WithTimeout(ctx, c.ttl/2)
	defer cancel()
	k := c.ownerKey(profile)
	_, err := c.client.Txn(cctx).
		If(clientv3.Compare(clientv3.Value(k), "=", c.opts.Replica)).
		Then(clientv3.OpDelete(k)).Commit()
	if err != nil {
		c.log.Warn("cluster: handing profile over", "profile", profile, "err", err)
	}
}

// Status is this replica's view of the cluster; it asks etcd for its
// health with a short deadline.
func (c *Cluster) Status(ctx context.Context) hookctl.ClusterStatus {
	c.mu.Lock()
	st := hookctl.ClusterStatus{
		Replica:       c.opts.Replica,
		Endpoints:     slices.Clone(c.opts.Endpoints),
		Holders:       map[string]string{},
		Lease:         hookctl.Duration(c.ttl),
		HolderChanges: c.changes.Load(),
	}
	for _, n := range c.memberNames() {
		st.Members = append(st.Members, c.members[n])
	}
	for _, p := range c.opts.Profiles {
		st.Holders[p] = c.owners[p]
	}
	c.mu.Unlock()
	if left := time.Until(time.Unix(0, c.validUntil.Load())); left > 0 {
		st.LeaseValidFor = hookctl.Duration(left.Round(time.Millisecond))
	}
	cctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	s, err := c.client.Status(cctx, c.opts.Endpoints[0])
	if err != nil {
		st.Error = "etcd: " + err.Error()
		return st
	}
	st.EtcdVersion, st.EtcdLeader = s.Version, s.Leader
	return st
}

// HolderChanges counts the profiles this replica took or gave up.
func (c *Cluster) HolderChanges() int64 { return c.changes.Load() }
