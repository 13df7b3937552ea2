package daemon

import (
	"io"
	"net"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// cutProxy forwards TCP connections to target until Cut, which closes
// them and refuses new ones (a network partition between one replica and
// etcd), until Heal.
type cutProxy struct {
	l      net.Listener
	target string
	mu     sync.Mutex
	cut    bool
	conns  map[net.Conn]struct{}
}

func newCutProxy(t testing.TB, target string) *cutProxy {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &cutProxy{l: l, target: target, conns: map[net.Conn]struct{}{}}
	done := make(chan struct{})
	go p.serve(done)
	t.Cleanup(func() { l.Close(); <-done; p.Cut() })
	return p
}

func (p *cutProxy) Endpoint() string { return "http://" + p.l.Addr().String() }

func (p *cutProxy) serve(done chan struct{}) {
	defer close(done)
	for {
		c, err := p.l.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		if p.cut {
			p.mu.Unlock()
			c.Close()
			continue
		}
		up, err := net.DialTimeout("tcp", p.target, time.Second)
		if err != nil {
			p.mu.Unlock()
			c.Close()
			continue
		}
		p.conns[c], p.conns[up] = struct{}{}, struct{}{}
		p.mu.Unlock()
		go func() { io.Copy(up, c); up.Close() }()
		go func() { io.Copy(c, up); c.Close() }()
	}
}

// Cut closes every forwarded connection and refuses new ones.
func (p *cutProxy) Cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cut = true
	for c := range p.conns {
		c.Close()
		delete(p.conns, c)
	}
}

// Heal forwards new connections again.
func (p *cutProxy) Heal() {
	p.mu.Lock()
	p.cut = false
	p.mu.Unlock()
}

// TestClusterPartition: the holder loses etcd (its connection cut, the
// other replica still reaching etcd). It stops running the profile once
// its lease may have ended; the other replica takes the profile over and
// runs every item; the cut replica starts no run after its lease, and,
// healed, joins again without taking the profile back.
func TestClusterPartition(t *testing.T) {
	const n = 150
	c := newClusterRig(t, n)
	proxy := newCutProxy(t, c.etcd.Addr())
	c.endpoint = map[string]string{"r1": proxy.Endpoint()}
	r1 := c.start("r1")
	out := filepath.Join(c.tmp, "runs")
	c.createHook(r1, timedScript(t, c.tmp, out))
	if h := c.holder([]*replica{r1}, 20*time.Second); h != r1 {
		t.Fatal("r1 does not hold the profile")
	}
	r2 := c.start("r2")
	pub := newPublisher(t, c.srv, "pub")
	var published []string
	publish := func(from, to int) { published = append(published, publishBurst(t, pub, from, to)...) }
	publish(0, n/3)
	waitRuns(t, out, published, 30*time.Second)

	proxy.Cut()
	cut := time.Now()
	publish(n/3, n)
	if h := c.holder([]*replica{r2}, 30*time.Second); h != r2 {
		t.Fatal("r2 did not take the profile over")
	}
	tookOver := time.Since(cut)
	waitRuns(t, out, published, 60*time.Second)
	lost, dups, rewinds := analyse(readTimed(t, out), published)
	t.Logf("partition: r2 held the profile, connected, %v after the cut (lease %v; r1: %s); %d items: lost %d, duplicates %d, order restarts %d",
		tookOver.Round(time.Millisecond), c.lease, stopTimes(t, []*replica{r1}, cut), n, lost, dups, rewinds)
	for _, run := range runsOf(t, r1) {
		if run.Outcome != "skipped" && run.Started.After(cut.Add(c.lease)) {
			t.Errorf("item %s started on the cut replica r1 at +%v, after its lease", run.ItemID, run.Started.Sub(cut))
		}
	}
	if lost != 0 || rewinds > 1 {
		t.Fatalf("lost %d, order restarts %d", lost, rewinds)
	}

	proxy.Heal()
	healed := time.Now()
	deadline := time.Now().Add(20 * time.Second)
	for {
		st, err := r1.status()
		if err == nil && st.Cluster != nil && st.Cluster.LeaseValidFor > 0 && st.Cluster.Holders["default"] == "r2" {
			if st.Profiles[0].State != "standby" {
				t.Fatalf("healed r1 runs the profile (%s) while r2 holds it", st.Profiles[0].State)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("r1 did not join again, seeing r2 as the holder, after the partition healed: %+v", st.Cluster)
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("healed: r1 joined again in %v; r2 keeps the profile", time.Since(healed).Round(time.Millisecond))
	for _, run := range runsOf(t, r1) {
		if run.Outcome != "skipped" && run.Started.After(healed) {
			t.Errorf("item %s started on r1 after the partition healed", run.ItemID)
		}
	}
}
