package daemon

import (
	"context"
	"fmt"
	"testing"
	"time"

	"hookctl.dev/hookctl"
	"hookctl.dev/hookctl/api"
	"hookctl.dev/hookctl/internal/xmpptest"
)

// TestConnectedGauge: hookctl_xmpp_connected follows each profile's
// session, 0 before it connects, 1 once connected, with the build info
// beside it.
func TestConnectedGauge(t *testing.T) {
	srv := xmpptest.Start(t, xmpptest.Prosody, xmpptest.Options{})
	cfg := testConfig(t, srv, "bot")
	d, err := New(Options{Config: cfg, Logger: testLogger(t), Version: "v-test"})
	if err != nil {
		t.Fatal(err)
	}
	if got := gauge(t, d, "hookctl_xmpp_connected", "profile", "default"); got != 0 {
		t.Errorf("connected before Run = %v, want 0", got)
	}
	if got := gauge(t, d, "hookctl_build_info", "version", "v-test"); got != 1 {
		t.Errorf("hookctl_build_info{version=v-test} = %v, want 1", got)
	}
	runUntilEnd(t, d)
	waitUntil(t, 15*time.Second, "connected gauge", func() (bool, string) {
		return gauge(t, d, "hookctl_xmpp_connected", "profile", "default") == 1, "still 0"
	})
}

// gauge reads the value of metric name whose label has value; -1 if absent.
func gauge(t *testing.T, d *Daemon, name, label, value string) float64 {
	t.Helper()
	mfs, err := d.metrics.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == label && l.GetValue() == value {
					return m.GetGauge().GetValue()
				}
			}
		}
	}
	return -1
}

// TestSubscriptionGauges: hookctl_subscriptions counts the profile's
// subscribed nodes and hookctl_catchup_pending_nodes the nodes not caught
// up yet, so that a scrape can tell when a start has settled.
func TestSubscriptionGauges(t *testing.T) {
	srv := xmpptest.Start(t, xmpptest.Prosody, xmpptest.Options{Admins: []string{"pub@localhost"}})
	srv.Register(t, "pub", "pw")
	createNode(t, srv, "pub", "feed", 16)
	cfg := testConfig(t, srv, "bot")
	d, err := New(Options{Config: cfg, Logger: testLogger(t), Version: "v-test"})
	if err != nil {
		t.Fatal(err)
	}
	runUntilEnd(t, d)
	waitUntil(t, 15*time.Second, "connected", func() (bool, string) {
		return gauge(t, d, "hookctl_xmpp_connected", "profile", "default") == 1, "not connected"
	})
	if got := gauge(t, d, "hookctl_subscriptions", "profile", "default"); got != 0 {
		t.Errorf("subscriptions before any hook = %v, want 0", got)
	}
	c, err := api.NewClient(api.ClientOptions{Socket: cfg.Socket})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Create(context.Background(), hookctl.Hook{Key: hookctl.Key{Profile: "default", Service: srv.PubSub, Node: "feed", Type: hookctl.TypeExpr, Arg: "true"}}); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, 15*time.Second, "subscribed and caught up", func() (bool, string) {
		subs, pending := gauge(t, d, "hookctl_subscriptions", "profile", "default"), plainGauge(t, d, "hookctl_catchup_pending_nodes")
		return subs == 1 && pending == 0, fmt.Sprintf("subscriptions %v, pending %v", subs, pending)
	})
}

// plainGauge reads the value of a metric without labels; -1 if absent.
func plainGauge(t *testing.T, d *Daemon, name string) float64 {
	t.Helper()
	mfs, err := d.metrics.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name && len(mf.GetMetric()) == 1 {
			return mf.GetMetric()[0].GetGauge().GetValue()
		}
	}
	return -1
}

// runUntilEnd runs d until the test ends, then stops it and waits (20 s at
// most) for Run to return.
func runUntilEnd(t *testing.T, d *Daemon) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			t.Error("backend did not stop")
		}
	})
}
