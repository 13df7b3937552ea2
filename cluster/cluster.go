// Package cluster runs several hookctl backends as one on etcd: a shared
// registry (registry.Remote), shared catch-up state and subscriptions, and
// one holder per profile, chosen through leases.
//
// Each replica holds one etcd lease, kept alive every third of its TTL.
// Its member key and the owner keys of the profiles it holds are attached
// to that lease, so they vanish when the replica dies, is paused, or loses
// etcd for longer than the TTL; the other replicas then take its profiles.
// A replica counts its own lease as valid only until the time of its last
// successful keepalive's request plus the TTL less a margin: never longer
// than etcd itself keeps the lease, so a replica stops running a profile's
// hooks before another one can take the profile (docs/CLUSTER.md).
package cluster

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"net"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"hookctl.dev/hookctl"
	"hookctl.dev/hookctl/catchup"
	"hookctl.dev/hookctl/registry"
	"hookctl.dev/hookctl/subscription"
)

// Options configure a replica.
type Options struct {
	Endpoints []string    // etcd client URLs
	TLS       *tls.Config // nil: plain
	Username  string      // etcd auth; "" = none
	Password  string
	Prefix    string        // key prefix, default "/hookctl/"
	Replica   string        // this replica's name, unique in the cluster
	Lease     time.Duration // lease TTL, whole seconds (default 5s)
	Profiles  []string      // the profiles this replica can hold
	API       string        // where this replica's control API answers, for status
	Logger    *slog.Logger
}

// DefaultLease is the lease TTL when none is set: a dead replica's
// profiles move within about this long.
const DefaultLease = 5 * time.Second

// dialTimeout bounds the first connection to etcd.
const dialTimeout = 5 * time.Second

// Cluster is this replica's membership. Build it with Open, run it with Run.
type Cluster struct {
	opts   Options
	client *clientv3.Client
	log    *slog.Logger
	ttl    time.Duration

	validUntil atomic.Int64 // unix nanoseconds: the lease is ours until then
	changes    atomic.Int64 // profiles taken or given up

	mu        sync.Mutex
	lease     clientv3.LeaseID
	members   map[string]hookctl.ClusterMember // live replicas, by name
	owners    map[string]string                // profile → replica
	ownerOn   map[string]clientv3.LeaseID      // profile → the lease its owner key is on
	releasing map[string]bool                  // profiles being handed over: no longer held
	running   map[string]bool                  // profiles whose session runs here
	orphaned  map[string]time.Time             // profiles seen without a holder, since
	kick      chan struct{}
	notify    []chan struct{}
}

// Open connects to etcd and checks that it answers.
func Open(ctx context.Context, opts Options) (*Cluster, error) {
	if len(opts.Endpoints) == 0 {
		return nil, errors.New("cluster: no etcd endpoint")
	}
	if opts.Replica == "" {
		return nil, errors.New("cluster: no replica name")
	}
	if opts.Prefix == "" {
		opts.Prefix = "/hookctl/"
	}
	if !strings.HasSuffix(opts.Prefix, "/") {
		opts.Prefix += "/"
	}
	if opts.Lease <= 0 {
		opts.Lease = DefaultLease
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	client, err := clientv3.New(clientv3.Config{
		Endpoints:   opts.Endpoints,
		DialTimeout: dialTimeout,
		TLS:         opts.TLS,
		Username:    opts.Username,
		Password:    opts.Password,
		Logger:      zap.NewNop(), // failures reach our log through our calls
	})
	if err != nil {
		return nil, fmt.Errorf("cluster: connecting to etcd %s: %w", strings.Join(opts.Endpoints, ","), err)
	}
	c := &Cluster{
		opts: opts, client: client, log: opts.Logger, ttl: opts.Lease.Truncate(time.Second),
		members: map[string]hookctl.ClusterMember{}, owners: map[string]string{}, ownerOn: map[string]clientv3.LeaseID{},
		releasing: map[string]bool{}, running: map[string]bool{}, orphaned: map[string]time.Time{},
		kick: make(chan struct{}, 1),
	}
	cctx, cancel := context.WithTimeout(ctx, dialTimeout)
	defer cancel()
	if _, err := client.Status(cctx, opts.Endpoints[0]); err != nil {
		client.Close()
		if why := tlsProblem(opts.Endpoints[0], opts.TLS); why != nil {
			err = why
		}
		return nil, fmt.Errorf("cluster: etcd %s does not answer: %w", opts.Endpoints[0], err)
	}
	return c, nil
}

// tlsProblem finds why a TLS connection to endpoint fails, which the etcd
// client only reports as a timeout: an untrusted or misnamed certificate,
// or the server refusing this client's certificate.
func tlsProblem(endpoint string, tc *tls.Config) error {
	host, ok := strings.CutPrefix(endpoint, "https://")
	if !ok || tc == nil {
		return nil
	}
	tc = tc.Clone()
	if h, _, err := net.SplitHostPort(host); err == nil && tc.ServerName == "" {
		tc.ServerName = h
	}
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 2 * time.Second}, "tcp", host, tc)
	if err != nil {
		return fmt.Errorf("TLS: %w", err)
	}
	defer conn.Close()
	// A refused client certificate shows on the first read (TLS 1.3).
	conn.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
	var b [1]byte
	if _, err := conn.Read(b[:]); err != nil && !errors.Is(err, os.ErrDeadlineExceeded) {
		return fmt.Errorf("TLS: %w", err)
	}
	return nil
}

// Close closes the etcd client.
func (c *Cluster) Close() error { return c.client.Close() }

// Replica is this replica's name.
func (c *Cluster) Replica() string { return c.opts.Replica }

// Registry is the shared registry, for registry.Options.Remote.
func (c *Cluster) Registry() registry.Remote {
	return &etcdRegistry{kv: c.client, prefix: c.opts.Prefix + "registry/", log: c.logWarn}
}

// NodeStore is the shared catch-up state.
func (c *Cluster) NodeStore() catchup.Store {
	return &nodeStore{kv: c.client, prefix: c.opts.Prefix + "nodes/", holds: c.Holds}
}

// SubscriptionStore is the shared record of subscriptions made.
func (c *Cluster) SubscriptionStore() subscription.Store {
	return &subscriptionStore{kv: c.client, prefix: c.opts.Prefix + "subscriptions/"}
}

func (c *Cluster) logWarn(msg string, args ...any) { c.log.Warn(msg, args...) }

func (c *Cluster) memberKey(name string) string   { return c.opts.Prefix + "members/" + name }
func (c *Cluster) ownerKey(profile string) string { return c.opts.Prefix + "owners/" + profile }

// Valid reports whether this replica's lease is surely still alive.
func (c *Cluster) Valid() bool { return time.Now().UnixNano() < c.validUntil.Load() }

// Holds reports whether this replica holds profile now: it owns the
// profile's key on its current lease (not on one lost before a rejoin),
// is not handing it over, and the lease is valid.
func (c *Cluster) Holds(profile string) bool {
	if !c.Valid() {
		return false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.owners[profile] == c.opts.Replica && c.ownerOn[profile] == c.lease && c.lease != 0 && !c.releasing[profile]
}

// Changed returns a channel signalled (coalescing) whenever what this
// replica holds may have changed.
func (c *Cluster) Changed() <-chan struct{} {
	ch := make(chan struct{}, 1)
	c.mu.Lock()
	c.notify = append(c.notify, ch)
	c.mu.Unlock()
	return ch
}

// signal wakes the Changed channels; the caller must not hold c.mu.
func (c *Cluster) signal() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, ch := range c.notify {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
}

// Stopped tells the cluster that this replica's session of profile has
// stopped, so that a profile being handed over can be released.
func (c *Cluster) Stopped(profile string) {
	c.mu.Lock()
	c.running[profile] = false
	c.mu.Unlock()
	c.wake()
}

// Started tells the cluster that this replica's session of profile runs.
func (c *Cluster) Started(profile string) {
	c.mu.Lock()
	c.running[profile] = true
	c.mu.Unlock()
}

func (c *Cluster) wake() {
	select {
	case c.kick <- struct{}{}:
	default:
	}
}

// preferred is the live member that should hold profile: the highest
// rendezvous hash, so that profiles spread evenly and only a leaving or
// joining member's share moves.
func preferred(profile string, members []string) string {
	best, bestH := "", uint64(0)
	for _, m := range members {
		h := fnv.New64a()
		h.Write([]byte(profile))
		h.Write([]byte{0})
		h.Write([]byte(m))
		if v := mix(h.Sum64()); best == "" || v > bestH {
			best, bestH = m, v
		}
	}
	return best
}

// mix spreads FNV's output over all 64 bits (MurmurHash3's finalizer):
// on short, similar names (p00…p29, r1…r3) raw FNV-1a gave one replica
// half of 30 profiles.
func mix(x uint64) uint64 {
	x ^= x >> 33
	x *= 0xff51afd7ed558ccd
	x ^= x >> 33
	x *= 0xc4ceb9fe1a85ec53
	x ^= x >> 33
	return x
}

func (c *Cluster) memberNames() []string {
	names := make([]string, 0, len(c.members))
	for n := range c.members {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}
