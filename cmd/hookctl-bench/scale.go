package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"hookctl.dev/hookctl"
	"hookctl.dev/hookctl/api"
	"hookctl.dev/hookctl/config"
	"hookctl.dev/hookctl/internal/prosodytest"
	"hookctl.dev/hookctl/registry"
)

// Scale goals (issue 14, goal 4).
const (
	scaleReadyGoal = 30 * time.Second
	scaleRSSGoalMB = 200
	scaleIdleGoal  = 0.01 // of one core
	// probeLatencyGoal is the latency goal a live item on a caught-up node
	// must meet while the others are still being caught up: the p99 the
	// end-to-end goals allow a hook (python_file: under 50 ms).
	probeLatencyGoal = 50 * time.Millisecond
	// scaleInflight bounds the bench's own requests (node creation,
	// publishes) while setting up.
	scaleInflight = 32
	// statusPoll is how often readiness is polled: the figures' resolution.
	statusPoll = 250 * time.Millisecond
	// maxProbes bounds the live items of the probe: their runs must stay
	// in the run history (runs_keep, 10,000) beside the catch-up's.
	maxProbes = 300
)

// scaleRun is one scale measurement's set-up: the server, the nodes of
// each profile and the backend's data directory.
type scaleRun struct {
	b        *bench
	nodes    []string // node i belongs to profile profileOf(i)
	profiles []string
	cfg      config.Config
	starts   int // backends started, for profile names

	bareMu sync.Mutex
	bareAt map[string]time.Time // live probe item → when the bare subscriber got it
}

func (s *scaleRun) bareEvent(ev hookctl.Event) {
	now := time.Now()
	if ev.Kind != hookctl.EventPublish || !strings.HasPrefix(ev.ItemID, "live") {
		return
	}
	s.bareMu.Lock()
	defer s.bareMu.Unlock()
	if s.bareAt == nil {
		s.bareAt = map[string]time.Time{}
	}
	s.bareAt[ev.ItemID] = now
}

func (s *scaleRun) profileOf(i int) string { return s.profiles[i*len(s.profiles)/len(s.nodes)] }

// scale measures a backend starting with o.scale persistent expr hooks on
// as many nodes, spread over o.profiles profiles: first start (every node
// new: subscribe and baseline), then a restart after one item was
// published to every node while it was down (subscribe and catch up every
// node); during the restart, live items published to the first caught-up
// node measure the latency of a node's live items while the others are
// still being caught up. After each, RSS; after the restart, idle CPU.
func scale(o options) error {
	if o.profiles < 1 || o.profiles > o.scale {
		return fmt.Errorf("-profiles must be in 1..-scale")
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	b := &bench{o: o, typ: hookctl.TypeExpr, log: discardLog(o.verbose), bareDone: make(chan struct{})}
	defer b.close()
	s := &scaleRun{b: b}
	if err := s.setUp(ctx); err != nil {
		return err
	}
	fmt.Printf("scale: %d expr hooks on %d nodes, %d profile(s), Prosody store %s (items and nodes), %d CPUs, load average %s\n\n",
		o.scale, o.scale, o.profiles, o.store, runtime.NumCPU(), loadAverage())

	first, err := s.start(ctx, "first start (new nodes: subscribe + baseline)", nil)
	if err != nil {
		return err
	}
	first.ch.stop()
	fmt.Fprintf(os.Stderr, "publishing one item to each of the %d nodes while the backend is down…\n", o.scale)
	if err := s.eachNode(ctx, func(i int, n string) error {
		_, err := b.pub.Publish(ctx, b.srv.PubSub, n, "missed", "<entry xmlns='urn:example:bench'>missed</entry>")
		return err
	}); err != nil {
		return err
	}
	restart, err := s.start(ctx, "restart (subscribe + catch up one missed item per node)", s.probe)
	if err != nil {
		return err
	}
	defer restart.ch.stop()
	idle := s.idle(restart.ch)
	fmt.Printf("\nidle, %s after ready: CPU %.2f%% of a core (%.3f s), RSS %.1f MB, fds %d, threads %s; Prosody CPU %.2f%%\n",
		s.b.o.idle, idle.cpu*100, idle.cpuSec, rssMB(restart.ch.pid()), openFDs(restart.ch.pid()), threads(restart.ch.pid()), idle.prosody*100)

	var missed []string
	check := func(ok bool, f string, a ...any) {
		if !ok {
			missed = append(missed, fmt.Sprintf(f, a...))
		}
	}
	for _, r := range []scaleResult{first, restart} {
		check(r.ready <= scaleReadyGoal, "%s: ready in %.1f s (goal ≤ %s)", r.what, r.ready.Seconds(), scaleReadyGoal)
		check(r.rss <= scaleRSSGoalMB, "%s: RSS %.0f MB (goal ≤ %d MB)", r.what, r.rss, scaleRSSGoalMB)
	}
	check(idle.cpu < scaleIdleGoal, "idle CPU %.2f%% (goal < 1%%)", idle.cpu*100)
	check(restart.probes > 0, "no live item could be published while nodes were being caught up")
	check(restart.probeP99 <= probeLatencyGoal, "live item latency during catch-up: p99 %s (goal ≤ %s; a bare subscriber's p99 %s)",
		restart.probeP99, probeLatencyGoal, restart.bareP99)
	if len(missed) > 0 {
		fmt.Println("\ngoals missed:")
		for _, m := range missed {
			fmt.Println("  " + m)
		}
		return errGoal
	}
	fmt.Println("\nevery goal met")
	return nil
}

// setUp starts Prosody, registers the accounts, creates the nodes and
// writes the hooks into the backend's store.
func (s *scaleRun) setUp(ctx context.Context) error {
	b, o := s.b, s.b.o
	fmt.Fprintln(os.Stderr, "starting prosody…")
	// -store memory keeps the nodes (subscribers) in memory too: the file
	// store rewrites a node's file on every subscription.
	srv, err := prosodytest.StartProcess("", prosodytest.Options{MemoryStorage: o.store == "memory", MemoryNodes: o.store == "memory",
		Admins: []string{"pub@localhost"}})
	if err != nil {
		return err
	}
	b.srv = srv
	b.onClose(func() { srv.Close() })
	if b.dir, err = os.MkdirTemp("", "hks"); err != nil {
		return err
	}
	b.onClose(func() { os.RemoveAll(b.dir) })
	for p := range o.profiles {
		s.profiles = append(s.profiles, fmt.Sprintf("bot%03d", p))
	}
	fmt.Fprintf(os.Stderr, "registering %d accounts…\n", len(s.profiles)+2)
	if err := bounded(ctx, len(s.profiles)+2, 4, func(i int) error {
		u := "pub"
		switch {
		case i == 1:
			u = "bare"
		case i > 1:
			u = s.profiles[i-2]
		}
		_, err := srv.RegisterUser(u, password)
		return err
	}); err != nil {
		return err
	}
	pub, stopPub, err := session(ctx, srv, "pub", nil, b.log)
	if err != nil {
		return err
	}
	b.pub = pub
	b.onClose(stopPub)
	for i := range o.scale {
		s.nodes = append(s.nodes, fmt.Sprintf("n%05d", i))
	}
	fmt.Fprintf(os.Stderr, "creating %d nodes…\n", o.scale)
	if err := s.eachNode(ctx, func(_ int, n string) error { return pub.CreateNode(ctx, srv.PubSub, n) }); err != nil {
		return err
	}
	// runs_keep above the default 10,000: the restart's catch-up runs and
	// the probes must all stay in the history to be measured.
	// A bare subscriber on the probe node: the yardstick of the probes'
	// latency, through the same server at the same moment.
	bare, stopBare, err := session(ctx, srv, "bare", s.bareEvent, b.log)
	if err != nil {
		return err
	}
	b.onClose(stopBare)
	if _, err := bare.Subscribe(ctx, srv.PubSub, s.nodes[0]); err != nil {
		return fmt.Errorf("bare subscriber: %w", err)
	}
	s.cfg = config.Config{DataDir: filepath.Join(b.dir, "data"), AllowTypes: []hookctl.Type{hookctl.TypeExpr},
		Profiles: map[string]config.Profile{}, RunsKeep: 2*o.scale + 2*maxProbes}
	for _, p := range s.profiles {
		s.cfg.Profiles[p] = config.Profile{JID: p + "@localhost", PasswordEnv: pwEnv, Server: srv.Addr, TLS: config.TLSNone}
	}
	return s.writeHooks(ctx)
}

// writeHooks stores one persistent expr hook per node, in one batch, as
// `hookctl apply` would have before the backend (re)starts.
func (s *scaleRun) writeHooks(ctx context.Context) error {
	st, err := registry.Open(s.cfg.DataDir, registry.Options{Profiles: s.cfg.ProfileJIDs()})
	if err != nil {
		return err
	}
	defer st.Close()
	batch := hookctl.Batch{Revision: st.Revision()}
	for i, n := range s.nodes {
		batch.Create = append(batch.Create, hookctl.Hook{Name: n, Persistent: true,
			Key:    hookctl.Key{Profile: s.profileOf(i), Service: s.b.srv.PubSub, Node: n, Type: hookctl.TypeExpr, Arg: `log(item.id)`},
			Events: []hookctl.EventKind{hookctl.EventPublish}})
	}
	_, err = st.Apply(ctx, batch)
	return err
}

// eachNode calls f for every node, scaleInflight at a time.
func (s *scaleRun) eachNode(ctx context.Context, f func(i int, node string) error) error {
	return bounded(ctx, len(s.nodes), scaleInflight, func(i int) error { return f(i, s.nodes[i]) })
}

// bounded calls f(0..n-1), at most k at a time; the first error wins.
func bounded(ctx context.Context, n, k int, f func(int) error) error {
	var next atomic.Int64
	var wg sync.WaitGroup
	errc := make(chan error, k)
	for range k {
		wg.Go(func() {
			for ctx.Err() == nil {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				if err := f(i); err != nil {
					errc <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errc)
	return <-errc
}

// scaleResult is one start's figures.
type scaleResult struct {
	what      string
	ch        *child
	connected time.Duration // start → every profile connected
	ready     time.Duration // start → every node subscribed and caught up
	cpu       float64       // backend CPU seconds until ready
	prosody   float64       // Prosody CPU seconds until ready
	rss       float64       // MB, at ready
	caughtUp  uint64
	// Live items published to the first caught-up node while the
	// others were being caught up: how many, and their latency.
	probes                          int
	probeMedian, probeP99, probeMax time.Duration
	// The bare subscriber's latency for the same items.
	bareMedian, bareP99, bareMax time.Duration
}

// prober publishes live items while a start is in progress; it returns
// when stop is closed.
type prober func(ctx context.Context, ch *child, stop <-chan struct{}) (sent map[string]time.Time, node string)

// start starts the backend and waits until every node is subscribed and
// caught up (and, with probe, every item published meanwhile ran).
func (s *scaleRun) start(ctx context.Context, what string, probe prober) (scaleResult, error) {
	r := scaleResult{what: what}
	port, err := freeLoopbackPort()
	if err != nil {
		return r, err
	}
	cfg := s.cfg
	cfg.Listen = "127.0.0.1:" + strconv.Itoa(port)
	fmt.Fprintf(os.Stderr, "%s…\n", what)
	prosody0 := cpuSeconds(s.b.srv.PID())
	t0 := time.Now()
	prof := ""
	if s.b.o.backendProfile != "" {
		s.starts++
		prof = fmt.Sprintf("%s.%d", s.b.o.backendProfile, s.starts)
	}
	ch, err := startChild(s.b.dir, cfg, prof)
	if err != nil {
		return r, err
	}
	r.ch = ch
	fail := func(err error) (scaleResult, error) {
		ch.stop()
		if s.b.o.verbose {
			log, _ := os.ReadFile(ch.log)
			os.Stderr.Write(log)
		}
		return r, err
	}
	if err := waitEvery(ctx, time.Minute, 50*time.Millisecond, "every profile connected", func() (bool, error) {
		m, err := scrape(ctx, cfg.Listen)
		if err != nil {
			return false, nil // not listening yet
		}
		return int(m["hookctl_xmpp_connected"]) == len(s.profiles), nil
	}); err != nil {
		return fail(err)
	}
	r.connected = time.Since(t0)
	stopProbe := make(chan struct{})
	var probeSent map[string]time.Time
	var probeNode string
	probeDone := make(chan struct{})
	if probe != nil {
		go func() { defer close(probeDone); probeSent, probeNode = probe(ctx, ch, stopProbe) }() // ends when stopProbe is closed
	} else {
		close(probeDone)
	}
	// Every node subscribed, fetched (caught up) and, after a restart,
	// every missed item dispatched.
	wantCaught := uint64(0)
	if probe != nil {
		wantCaught = uint64(len(s.nodes))
	}
	var progress string
	// Read from /metrics (hookctl_subscriptions, hookctl_catchup_*): a
	// /v1/status of 10,000 nodes costs the backend 20-60 ms of CPU, and
	// polling it was most of the backend's CPU in the first runs.
	err = waitEvery(ctx, s.b.o.timeout, statusPoll, "every node subscribed and caught up", func() (bool, error) {
		if ch.exited() {
			return false, fmt.Errorf("backend exited; see %s", ch.log)
		}
		m, err := scrape(ctx, cfg.Listen)
		if err != nil {
			return false, err
		}
		subs, pending, caught := m["hookctl_subscriptions"], m["hookctl_catchup_pending_nodes"], m["hookctl_catchup_events_total"]
		r.caughtUp = uint64(caught)
		progress = fmt.Sprintf("%.0f subscribed, %.0f nodes pending catch-up, %.0f items caught up", subs, pending, caught)
		return int(subs) == len(s.nodes) && pending == 0 && uint64(caught) >= wantCaught, nil
	})
	close(stopProbe)
	<-probeDone
	if err != nil {
		return fail(fmt.Errorf("%w (%s)", err, progress))
	}
	// The catch-up items dispatched must also have run (and the probes).
	want := int(wantCaught) + len(probeSent)
	if err := waitEvery(ctx, 5*time.Minute, statusPoll, "catch-up runs", func() (bool, error) {
		c, err := runOutcomes(ctx, cfg.Listen)
		return c.ok >= want, err
	}); err != nil {
		return fail(err)
	}
	r.ready = time.Since(t0)
	r.cpu = cpuSeconds(ch.pid())
	r.prosody = cpuSeconds(s.b.srv.PID()) - prosody0
	r.rss = rssMB(ch.pid())
	if probe != nil {
		if err := r.probeLatency(ctx, probeSent, probeNode, s.bareLatency(probeSent)); err != nil {
			return fail(err)
		}
	}
	r.print()
	return r, nil
}

func (r *scaleResult) print() {
	fmt.Printf("%s:\n  connected %.2f s; ready (every node subscribed and caught up%s) %.2f s\n",
		r.what, r.connected.Seconds(), map[bool]string{true: ", every missed item run", false: ""}[r.caughtUp > 0], r.ready.Seconds())
	fmt.Printf("  backend CPU %.2f s, Prosody CPU %.2f s until ready; backend RSS at ready %.1f MB; items caught up %d\n",
		r.cpu, r.prosody, r.rss, r.caughtUp)
	if r.probes > 0 {
		fmt.Printf("  live items on the first caught-up node while the others were caught up: %d, latency median %s, p99 %s, max %s\n",
			r.probes, r.probeMedian.Round(10*time.Microsecond), r.probeP99.Round(10*time.Microsecond), r.probeMax.Round(10*time.Microsecond))
		fmt.Printf("  the same items to a bare subscriber (publish sent → event decoded): median %s, p99 %s, max %s\n",
			r.bareMedian.Round(10*time.Microsecond), r.bareP99.Round(10*time.Microsecond), r.bareMax.Round(10*time.Microsecond))
	}
}

// probe waits until the first node has run its missed item (it is caught
// up), then publishes a live item to it every 100 ms (at most maxProbes)
// until stop: each is published while other nodes are still being
// caught up.
func (s *scaleRun) probe(ctx context.Context, ch *child, stop <-chan struct{}) (map[string]time.Time, string) {
	n := s.nodes[0]
	sent := map[string]time.Time{}
	for {
		runs, err := ch.client.Runs(ctx, api.RunQuery{Node: n, Limit: 1})
		if err == nil && len(runs) == 1 && runs[0].ItemID == "missed" {
			break
		}
		select {
		case <-stop:
			return sent, n
		case <-time.After(50 * time.Millisecond):
		}
	}
	for k := 0; k < maxProbes; k++ {
		id := fmt.Sprintf("live%04d", k)
		t := time.Now()
		if _, err := s.b.pub.Publish(ctx, s.b.srv.PubSub, n, id, "<entry xmlns='urn:example:bench'>live</entry>"); err == nil {
			sent[id] = t
		}
		select {
		case <-stop:
			return sent, n
		case <-time.After(100 * time.Millisecond):
		}
	}
	<-stop
	return sent, n
}

// probeLatency reads the probe node's runs: publish sent → run ended.
func (r *scaleResult) probeLatency(ctx context.Context, sent map[string]time.Time, node string, bare []time.Duration) error {
	if len(bare) > 0 {
		r.bareMedian, r.bareP99, r.bareMax = percentile(bare, 50), percentile(bare, 99), bare[len(bare)-1]
	}
	runs, err := r.ch.client.Runs(ctx, api.RunQuery{Node: node, Limit: len(sent) + 10})
	if err != nil {
		return err
	}
	var lat []time.Duration
	for _, run := range runs {
		if t, ok := sent[run.ItemID]; ok {
			lat = append(lat, run.Started.Add(time.Duration(run.Duration)).Sub(t))
		}
	}
	if len(lat) != len(sent) {
		return fmt.Errorf("probe: %d live items sent, %d runs found", len(sent), len(lat))
	}
	if len(lat) == 0 {
		return nil
	}
	slices.Sort(lat)
	r.probes = len(lat)
	r.probeMedian, r.probeP99, r.probeMax = percentile(lat, 50), percentile(lat, 99), lat[len(lat)-1]
	return nil
}

// idleFigures are the CPU use over -idle, in cores.
type idleFigures struct{ cpu, cpuSec, prosody float64 }

// idle measures the backend's CPU (and Prosody's) over -idle, with
// nothing published and no request to the backend.
func (s *scaleRun) idle(ch *child) idleFigures {
	fmt.Fprintf(os.Stderr, "measuring idle CPU over %s…\n", s.b.o.idle)
	c0, p0, t0 := cpuSeconds(ch.pid()), cpuSeconds(s.b.srv.PID()), time.Now()
	time.Sleep(s.b.o.idle)
	el := time.Since(t0).Seconds()
	d := cpuSeconds(ch.pid()) - c0
	return idleFigures{cpu: d / el, cpuSec: d, prosody: (cpuSeconds(s.b.srv.PID()) - p0) / el}
}

// threads is the thread count of pid (from /proc).
func threads(pid int) string {
	f := procStat(pid)
	if len(f) < 18 {
		return "?"
	}
	return f[17]
}

// loadAverage is the first figures of /proc/loadavg.
func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return f[0] + " " + f[1] + " " + f[2]
}

// bareLatency is the bare subscriber's latency for the probe items, sorted
// (waiting up to 10 s for the last ones).
func (s *scaleRun) bareLatency(sent map[string]time.Time) []time.Duration {
	deadline := time.Now().Add(10 * time.Second)
	for {
		s.bareMu.Lock()
		n := len(s.bareAt)
		s.bareMu.Unlock()
		if n >= len(sent) || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	s.bareMu.Lock()
	defer s.bareMu.Unlock()
	var out []time.Duration
	for id, t := range sent {
		if at, ok := s.bareAt[id]; ok {
			out = append(out, at.Sub(t))
		}
	}
	slices.Sort(out)
	return out
}
