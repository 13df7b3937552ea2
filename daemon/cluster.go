package daemon

import (
	"cmp"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"hookctl.dev/hookctl"
	"hookctl.dev/hookctl/catchup"
	"hookctl.dev/hookctl/cluster"
	"hookctl.dev/hookctl/config"
	"hookctl.dev/hookctl/subscription"
)

// holdCheck is how often a profile's holder checks that it still holds
// it: the lease's validity runs out by time, not by an event.
const holdCheck = 100 * time.Millisecond

// openCluster connects to etcd when the config has a cluster section (or
// serve --cluster); without one, d.cluster stays nil and nothing changes.
func (d *Daemon) openCluster(ctx context.Context) error {
	cc := d.cfg.Cluster
	if !cc.Enabled() {
		return nil
	}
	host, _ := os.Hostname()
	opts := cluster.Options{
		Endpoints: cc.Endpoints,
		Prefix:    cc.Prefix,
		Replica:   cmp.Or(cc.Replica, host),
		Lease:     time.Duration(cc.Lease),
		Username:  cc.Username,
		API:       cmp.Or(d.cfg.APIListen, d.cfg.Socket),
		Logger:    d.log,
	}
	for _, p := range d.profiles {
		opts.Profiles = append(opts.Profiles, p.name)
	}
	slices.Sort(opts.Profiles)
	var err error
	if cc.PasswordFile != "" {
		if opts.Password, err = config.ReadSecretFile("cluster.password_file", cc.PasswordFile); err != nil {
			return err
		}
		opts.Password = strings.TrimSpace(opts.Password)
	}
	if opts.TLS, err = clusterTLS(cc); err != nil {
		return err
	}
	d.cluster, err = cluster.Open(ctx, opts)
	return err
}

// clusterTLS is the TLS config for etcd: its CA, and a client certificate.
func clusterTLS(cc config.Cluster) (*tls.Config, error) {
	https := slices.ContainsFunc(cc.Endpoints, func(e string) bool { return strings.HasPrefix(e, "https://") })
	if !https && cc.CAFile == "" && cc.CertFile == "" {
		return nil, nil
	}
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	if cc.CAFile != "" {
		pem, err := os.ReadFile(cc.CAFile)
		if err != nil {
			return nil, fmt.Errorf("cluster.ca_file: %w", err)
		}
		tc.RootCAs = x509.NewCertPool()
		if !tc.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("cluster.ca_file %s: no PEM certificate in it", cc.CAFile)
		}
	}
	if cc.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(cc.CertFile, cc.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("cluster.cert_file and key_file: %w", err)
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	return tc, nil
}

// nodeStore and subscriptionStore are where catch-up state and the
// subscriptions made are kept: shared in etcd in a cluster, else the file.
func (d *Daemon) nodeStore() catchup.Store {
	if d.cluster != nil {
		return d.cluster.NodeStore()
	}
	return d.store
}

func (d *Daemon) subscriptionStore() subscription.Store {
	if d.cluster != nil {
		return d.cluster.SubscriptionStore()
	}
	return d.store
}

// holdProfile runs p's session and subscriptions while this replica holds
// the profile, and stops them as soon as it does not (lease lost, or the
// profile handed over), until ctx ends.
func (d *Daemon) holdProfile(ctx context.Context, p *profile) error {
	changed := d.cluster.Changed()
	tick := time.NewTicker(holdCheck)
	defer tick.Stop()
	wait := func(until func() bool) bool {
		for !until() {
			select {
			case <-ctx.Done():
				return false
			case <-changed:
			case <-tick.C:
			}
		}
		return true
	}
	holds := func() bool { return d.cluster.Holds(p.name) }
	for ctx.Err() == nil && wait(holds) {
		d.log.Info("cluster: running the profile here", "profile", p.name)
		d.cluster.Started(p.name)
		d.catchup.Flush() // this replica's own marks first (kept while etcd was away)
		d.catchup.Reload(p.name)
		since := time.Now()
		p.heldSince.Store(&since)
		sctx, cancel := context.WithCancel(ctx)
		var wg sync.WaitGroup
		wg.Add(2)
		go func() { defer wg.Done(); _ = p.session.Run(sctx) }()
		go func() { defer wg.Done(); _ = p.subs.Run(sctx) }()
		wait(func() bool { return !holds() })
		p.heldSince.Store(nil)
		cancel()
		wg.Wait()
		d.cluster.Stopped(p.name)
		d.log.Info("cluster: the profile stopped here", "profile", p.name)
	}
	return nil
}

// mayRun lets a run start only on the profile's holder, and only for an
// event received during the current holding: an event the previous
// session read (during a holding that ended, e.g. buffered while the
// process was paused) is stale even if this replica holds the profile
// again; the new holding's catch-up runs it if it was not finished.
func (d *Daemon) mayRun(ev *hookctl.Event) bool {
	p := d.profileByName[ev.Profile]
	if p == nil || !d.cluster.Holds(ev.Profile) {
		return false
	}
	since := p.heldSince.Load()
	return since != nil && !ev.Received.Before(*since)
}

// registerClusterMetrics adds the cluster's gauges and counter.
func (d *Daemon) registerClusterMetrics() {
	c := d.cluster
	d.metrics.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "hookctl_cluster_lease_valid",
			Help: "1 while this replica's etcd lease is surely alive, else 0 (it holds no profile).",
		}, func() float64 { return b2f(c.Valid()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "hookctl_cluster_holder_changes_total",
			Help: "Profiles this replica took or gave up.",
		}, func() float64 { return float64(c.HolderChanges()) }),
	)
	for _, p := range d.profiles {
		d.metrics.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name:        "hookctl_cluster_profile_held",
			Help:        "1 while this replica holds the profile, else 0.",
			ConstLabels: prometheus.Labels{"profile": p.name},
		}, func() float64 { return b2f(c.Holds(p.name)) }))
	}
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
