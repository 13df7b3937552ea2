package cluster

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"hookctl.dev/hookctl"
	"hookctl.dev/hookctl/internal/etcdtest"
	"hookctl.dev/hookctl/registry"
)

func open(t *testing.T, etcd *etcdtest.Server, name string, profiles ...string) *Cluster {
	t.Helper()
	ctx, cancel := etcdtest.Wait()
	defer cancel()
	c, err := Open(ctx, Options{Endpoints: []string{etcd.Endpoint()}, Replica: name, Lease: 2 * time.Second, Profiles: profiles, Prefix: "/t/"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func hook(profile, node string) hookctl.Hook {
	return hookctl.Hook{Key: hookctl.Key{Profile: profile, Node: node, Type: hookctl.TypeExpr, Arg: "true"}, Persistent: true}
}

// Two backends on one shared registry: a change made through one is seen
// by the other, and a batch planned before it is refused as stale by
// either.
func TestSharedRegistry(t *testing.T) {
	ra, rb := sharedPair(t)
	ctx := context.Background()

	rev0 := rb.Revision()
	if _, err := ra.Create(ctx, hook("p", "n1")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "b sees a's hook", func() bool { h, _, _ := rb.List(ctx, ""); return len(h) == 1 })
	if rb.Revision() != ra.Revision() || rb.Revision() != rev0+1 {
		t.Fatalf("revisions a %d b %d, want both %d", ra.Revision(), rb.Revision(), rev0+1)
	}
	// a batch planned on b, then a's change comes first
	planned := rb.Revision()
	if _, err := ra.Create(ctx, hook("p", "n2")); err != nil {
		t.Fatal(err)
	}
	_, err := rb.Apply(ctx, hookctl.Batch{Revision: planned, Create: []hookctl.Hook{hook("p", "n3")}})
	if !errors.Is(err, hookctl.ErrStale) {
		t.Fatalf("stale batch on b: %v, want ErrStale", err)
	}
	// b, behind a (no Follow on a), still creates: it catches up first.
	if _, err := rb.Create(ctx, hook("p", "n4")); err != nil {
		t.Fatal(err)
	}
	if _, err := ra.Create(ctx, hook("p", "n5")); err != nil {
		t.Fatalf("a behind b: %v", err)
	}
	hs, _, _ := ra.List(ctx, "")
	if len(hs) != 4 {
		t.Fatalf("a lists %d hooks, want 4 (n1 n2 n4 n5)", len(hs))
	}
	waitFor(t, "b has 4 hooks", func() bool { h, _, _ := rb.List(ctx, ""); return len(h) == 4 })
	// Suspensions are shared too.
	if _, err := ra.SetSuspended(registry.SuspendSet, "s", "me", true); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "b sees the suspension", func() bool { s, _ := rb.Suspensions(); return len(s) == 1 })
}

// sharedPair opens two registries on one etcd, as two replicas would;
// the second follows the shared registry until the test ends.
func sharedPair(t *testing.T) (ra, rb *registry.Store) {
	etcd := etcdtest.Start(t)
	a, b := open(t, etcd, "a"), open(t, etcd, "b")
	ra, err := registry.Open(t.TempDir(), registry.Options{Remote: a.Registry()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ra.Close() })
	rb, err = registry.Open(t.TempDir(), registry.Options{Remote: b.Registry()})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { rb.Follow(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done; rb.Close() })
	return ra, rb
}

func waitFor(t *testing.T, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting: %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Three replicas share ten profiles, each held by exactly one; when one
// replica stops, its profiles move to the others within about a lease.
func TestProfilesSpreadAndMove(t *testing.T) {
	etcd := etcdtest.Start(t)
	var profiles []string
	for i := range 10 {
		profiles = append(profiles, fmt.Sprintf("p%d", i))
	}
	var cs []*Cluster
	var cancels []context.CancelFunc
	for _, n := range []string{"r1", "r2", "r3"} {
		c := open(t, etcd, n, profiles...)
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { c.Run(ctx); close(done) }()
		cs = append(cs, c)
		cancels = append(cancels, func() { cancel(); <-done })
	}
	defer func() {
		for _, c := range cancels {
			c()
		}
	}()
	held := func(c *Cluster) (n int) {
		for _, p := range profiles {
			if c.Holds(p) {
				n++
			}
		}
		return n
	}
	exactlyOne := func(live []*Cluster) bool {
		for _, p := range profiles {
			n := 0
			for _, c := range live {
				if c.Holds(p) {
					n++
				}
			}
			if n != 1 {
				return false
			}
		}
		return true
	}
	waitFor(t, "every profile held once", func() bool { return exactlyOne(cs) })
	for _, c := range cs {
		if held(c) == 0 {
			t.Errorf("%s holds nothing: profiles not spread", c.Replica())
		}
	}
	// r1 leaves cleanly: its profiles move at once.
	start := time.Now()
	cancels[0]()
	cancels[0] = func() {}
	waitFor(t, "r1's profiles moved", func() bool { return exactlyOne(cs[1:]) })
	t.Logf("clean leave: profiles moved in %v", time.Since(start))
	if held(cs[0]) != 0 {
		t.Fatalf("r1 still holds %d profiles after leaving", held(cs[0]))
	}
}

// A second replica of the same name does not join while the first lives:
// both would take the same profiles.
func TestReplicaNameInUse(t *testing.T) {
	etcd := etcdtest.Start(t)
	a, b := open(t, etcd, "same", "p"), open(t, etcd, "same", "p")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	doneA := make(chan struct{})
	go func() { a.Run(ctx); close(doneA) }()
	waitFor(t, "a holds p", func() bool { return a.Holds("p") })
	bctx, bcancel := context.WithCancel(context.Background())
	doneB := make(chan struct{})
	go func() { b.Run(bctx); close(doneB) }()
	time.Sleep(3 * time.Second) // more than the lease
	if b.Valid() || b.Holds("p") {
		t.Fatal("a second replica of the same name joined")
	}
	bcancel()
	<-doneB
	cancel()
	<-doneA
}

// A 10,000-hook batch is one etcd transaction (etcd started with a
// --max-txn-ops above it, as docs/CLUSTER.md says), seen whole by the
// other replica.
func TestBigBatch(t *testing.T) {
	ra, rb := sharedPair(t)
	ctx := context.Background()
	var batch hookctl.Batch
	for i := range 10000 {
		batch.Create = append(batch.Create, hook("p", fmt.Sprintf("n%05d", i)))
	}
	start := time.Now()
	rev, err := ra.Apply(ctx, batch)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("10,000 hooks committed to etcd in %v", time.Since(start).Round(time.Millisecond))
	waitFor(t, "b has the 10,000 hooks", func() bool { h, _, _ := rb.List(ctx, ""); return len(h) == 10000 && rb.Revision() == rev })
}
