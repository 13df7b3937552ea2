package main

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"hookctl.dev/hookctl"
	"hookctl.dev/hookctl/api"
	"hookctl.dev/hookctl/config"
	"hookctl.dev/hookctl/internal/prosodytest"
)

// endurance publishes o.endurance items to one node watched by one hook
// (expr or python_file) of a backend in a child process, and samples the
// backend's RSS, open files and store size as the items go through: they
// must stay flat (the run history is bounded by runs_keep, the node's
// catch-up state by registry.MaxFinished).
func endurance(o options) error {
	typ, err := hookctl.ParseType(o.typ)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	b := &bench{o: o, typ: typ, log: discardLog(o.verbose), bareDone: make(chan struct{})}
	defer b.close()
	if err := b.startServerOnly(ctx); err != nil {
		return err
	}
	port, err := freeLoopbackPort()
	if err != nil {
		return err
	}
	ch, err := startChild(b.dir, config.Config{
		DataDir:    filepath.Join(b.dir, "data"),
		Listen:     "127.0.0.1:" + strconv.Itoa(port),
		AllowTypes: []hookctl.Type{typ},
		Profiles:   map[string]config.Profile{"default": {JID: "bot@localhost", PasswordEnv: pwEnv, Server: b.srv.Addr, TLS: config.TLSNone}},
	}, o.backendProfile)
	if err != nil {
		return err
	}
	b.onClose(ch.stop)
	b.client = ch.client
	if err := waitConnected(ctx, ch.client, 1); err != nil {
		return err
	}
	if err := b.createHook(ctx); err != nil {
		return err
	}
	every := max(o.endurance/20, 1000)
	fmt.Printf("endurance: %d items through one %s hook, %d publishes in flight, Prosody store %s; a sample every %d items\n\n",
		o.endurance, typ, o.inflight, o.store, every)
	fmt.Printf("%9s %8s %9s %9s %6s %10s %9s %9s %9s\n", "items", "elapsed", "items/s", "RSS MB", "fds", "worker MB", "store MB", "finished", "not ok")
	start := time.Now()
	sample := func(n int) error {
		st, err := ch.client.Status(ctx)
		if err != nil {
			return err
		}
		finished := 0
		for _, ns := range st.Nodes {
			finished += ns.Finished
		}
		counts, err := runOutcomes(ctx, ch.cfg.Listen)
		if err != nil {
			return err
		}
		worker := 0.0
		for _, p := range childrenOf(ch.pid()) {
			worker += rssMB(p)
		}
		el := time.Since(start)
		fmt.Printf("%9d %8s %9.0f %9.1f %6d %10.1f %9.2f %9d %9d\n", n, el.Round(time.Second), float64(n)/el.Seconds(),
			rssMB(ch.pid()), openFDs(ch.pid()), worker, fileMB(filepath.Join(ch.cfg.DataDir, "hooks.db")), finished, counts.total-counts.ok)
		return nil
	}
	if err := sample(0); err != nil {
		return err
	}
	const chunk = 500 // at most two chunks queued: under the hook's queue of 1,024
	for sent := 0; sent < o.endurance; {
		n := min(chunk, o.endurance-sent)
		if err := b.publishRange(ctx, sent, n); err != nil {
			return err
		}
		sent += n
		// Let the hook come within one chunk of the publisher.
		if err := waitRuns(ctx, ch.client, uint64(max(sent-chunk, 0)), o.timeout); err != nil {
			return err
		}
		if sent%every == 0 || sent == o.endurance {
			if err := waitRuns(ctx, ch.client, uint64(sent), o.timeout); err != nil {
				return err
			}
			if err := sample(sent); err != nil {
				return err
			}
		}
	}
	counts, err := runOutcomes(ctx, ch.cfg.Listen)
	if err != nil {
		return err
	}
	fmt.Printf("\nruns recorded: %d, ok %d; by outcome %v; runs_keep %d\n", counts.total, counts.ok, counts.by, ch.cfg.RunsKeep)
	if counts.ok != o.endurance {
		return fmt.Errorf("%w: %d of %d items ran ok", errGoal, counts.ok, o.endurance)
	}
	return nil
}

// publishRange publishes items from..from+n-1, o.inflight at a time.
func (b *bench) publishRange(ctx context.Context, from, n int) error {
	payload := "<entry xmlns='urn:example:bench'>item</entry>"
	var next atomic.Int64
	var wg sync.WaitGroup
	errc := make(chan error, b.o.inflight)
	for range b.o.inflight {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				id := fmt.Sprintf("e%08d", from+i)
				if _, err := b.pub.Publish(ctx, b.srv.PubSub, node, id, payload); err != nil {
					errc <- fmt.Errorf("publishing %s: %w", id, err)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errc)
	return <-errc
}

// waitRuns waits until the backend has recorded at least n runs (run ids
// count from 1).
func waitRuns(ctx context.Context, c *api.Client, n uint64, timeout time.Duration) error {
	return waitFor(ctx, timeout, fmt.Sprintf("%d runs", n), func() (bool, error) {
		if n == 0 {
			return true, nil
		}
		runs, err := c.Runs(ctx, api.RunQuery{Limit: 1})
		if err != nil {
			return false, err
		}
		return len(runs) == 1 && runs[0].ID >= n, nil
	})
}

// waitConnected waits until the backend's profiles are all connected.
func waitConnected(ctx context.Context, c *api.Client, profiles int) error {
	return waitFor(ctx, 60*time.Second, "backend connected", func() (bool, error) {
		st, err := c.Status(ctx)
		if err != nil {
			return false, nil // not listening yet
		}
		n := 0
		for _, p := range st.Profiles {
			if p.State == "connected" {
				n++
			}
		}
		return n == profiles, nil
	})
}

// outcomes are the backend's run counts from hookctl_runs_total.
type outcomes struct {
	total, ok int
	by        map[string]int
}

// runOutcomes reads hookctl_runs_total from the backend's /metrics.
func runOutcomes(ctx context.Context, listen string) (outcomes, error) {
	o := outcomes{by: map[string]int{}}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+listen+"/metrics", nil)
	if err != nil {
		return o, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return o, err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "hookctl_runs_total{") {
			continue
		}
		_, rest, _ := strings.Cut(line, `outcome="`)
		outcome, _, _ := strings.Cut(rest, `"`)
		f := strings.Fields(line)
		v, _ := strconv.ParseFloat(f[len(f)-1], 64)
		o.by[outcome] += int(v)
		o.total += int(v)
		if outcome == "ok" {
			o.ok += int(v)
		}
	}
	return o, sc.Err()
}

// startServerOnly starts Prosody (o.store), registers bot and pub, creates
// the node and connects the publisher (no bare subscriber).
func (b *bench) startServerOnly(ctx context.Context) error {
	fmt.Fprintln(os.Stderr, "starting prosody…")
	srv, err := prosodytest.StartProcess("", prosodytest.Options{MemoryStorage: b.o.store == "memory", Admins: []string{"pub@localhost"}})
	if err != nil {
		return err
	}
	b.srv = srv
	b.onClose(func() { srv.Close() })
	for _, u := range []string{"bot", "pub"} {
		if _, err := srv.RegisterUser(u, password); err != nil {
			return err
		}
	}
	if b.dir, err = os.MkdirTemp("", "hkb"); err != nil {
		return err
	}
	b.onClose(func() { os.RemoveAll(b.dir) })
	pub, stopPub, err := session(ctx, srv, "pub", nil, b.log)
	if err != nil {
		return err
	}
	b.pub = pub
	b.onClose(stopPub)
	if err := pub.CreateNode(ctx, srv.PubSub, node); err != nil {
		return fmt.Errorf("creating node: %w", err)
	}
	return nil
}

// scrape reads the backend's /metrics: the sum of each metric's series
// (labels ignored).
func scrape(ctx context.Context, listen string) (map[string]float64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+listen+"/metrics", nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		f := strings.Fields(line)
		name, _, _ := strings.Cut(f[0], "{")
		v, _ := strconv.ParseFloat(f[len(f)-1], 64)
		out[name] += v
	}
	return out, sc.Err()
}
