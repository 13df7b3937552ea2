package daemon

import (
	"bufio"
	"context"
	"encoding/xml"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"mellium.im/sasl"
	"mellium.im/xmlstream"
	"mellium.im/xmpp"
	"mellium.im/xmpp/jid"
	"mellium.im/xmpp/stanza"

	"hookctl.dev/hookctl"
	"hookctl.dev/hookctl/api"
	"hookctl.dev/hookctl/config"
	"hookctl.dev/hookctl/internal/xmpptest"
	"hookctl.dev/hookctl/xmppsession"
)

// rawSession logs user (password "pw") in over a connection of its own,
// with mellium alone: for what xmppsession does not do, or refuses to.
func rawSession(ctx context.Context, t testing.TB, srv *xmpptest.Server, user string) (*xmpp.Session, net.Conn) {
	t.Helper()
	origin := jid.MustParse(user)
	nc, err := (&net.Dialer{}).DialContext(ctx, "tcp", srv.Addr)
	if err != nil {
		t.Fatal(err)
	}
	xs, err := xmpp.NewSession(ctx, origin.Domain(), origin, nc, xmpp.Secure, xmpp.NewNegotiator(
		func(*xmpp.Session, *xmpp.StreamConfig) xmpp.StreamConfig {
			return xmpp.StreamConfig{Features: []xmpp.StreamFeature{xmpp.SASL("", "pw", sasl.Plain), xmpp.BindResource()}}
		}))
	if err != nil {
		nc.Close()
		t.Fatalf("session of %s: %v", user, err)
	}
	return xs, nc
}

// createNode creates node on the PubSub component as user (an admin), with
// max_items set: Prosody's default keeps only 20 items. xmppsession has no
// node configuration, so this speaks XMPP with mellium directly.
func createNode(t testing.TB, srv *xmpptest.Server, user, node string, maxItems int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	xs, nc := rawSession(ctx, t, srv, user+"@localhost/setup")
	defer nc.Close()
	go xs.Serve(nil)
	defer xs.Close()
	el := func(ns, local string, inner xml.TokenReader, attrs ...string) xml.TokenReader {
		start := xml.StartElement{Name: xml.Name{Space: ns, Local: local}}
		for i := 0; i+1 < len(attrs); i += 2 {
			start.Attr = append(start.Attr, xml.Attr{Name: xml.Name{Local: attrs[i]}, Value: attrs[i+1]})
		}
		return xmlstream.Wrap(inner, start)
	}
	field := func(v, val string) xml.TokenReader {
		return el("", "field", el("", "value", xmlstream.Token(xml.CharData(val))), "var", v)
	}
	payload := el(xmppsession.NSPubSub, "pubsub", xmlstream.MultiReader(
		el("", "create", nil, "node", node),
		el("", "configure", el("jabber:x:data", "x", xmlstream.MultiReader(
			field("FORM_TYPE", "http://jabber.org/protocol/pubsub#node_config"),
			field("pubsub#max_items", fmt.Sprint(maxItems)),
		), "type", "submit")),
	))
	resp, err := xs.SendIQElement(ctx, payload, stanza.IQ{To: jid.MustParse(srv.PubSub), Type: stanza.SetIQ})
	if err != nil {
		t.Fatalf("creating node %s: %v", node, err)
	}
	defer resp.Close()
	tok, err := resp.Token()
	if err != nil {
		t.Fatal(err)
	}
	if start, ok := tok.(xml.StartElement); ok {
		if _, err := stanza.UnmarshalIQError(resp, start); err != nil {
			t.Fatalf("creating node %s: %v", node, err)
		}
	}
}

// publisher publishes as its own account through an xmppsession.Session,
// which reconnects by itself while the server restarts.
type publisher struct {
	s      *xmppsession.Session
	svc    string
	cancel context.CancelFunc
	done   chan struct{}
	// lastErr is the last publish error, for messages.
	lastErr error
}

func newPublisher(t testing.TB, srv *xmpptest.Server, user string) *publisher {
	t.Helper()
	s, err := xmppsession.New(xmppsession.Config{Profile: "pub", JID: user + "@localhost", Password: "pw",
		Server: srv.Addr, TLS: xmppsession.TLSNone, Resource: "pub"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	p := &publisher{s: s, svc: srv.PubSub, cancel: cancel, done: make(chan struct{})}
	go func() { defer close(p.done); s.Run(ctx) }()
	t.Cleanup(func() { p.cancel(); <-p.done })
	wctx, wcancel := context.WithTimeout(ctx, 10*time.Second)
	defer wcancel()
	if err := s.WaitConnected(wctx); err != nil {
		t.Fatalf("publisher: %v", err)
	}
	return p
}

// publish publishes item id, retrying while the server is away, and
// reports whether the server acknowledged it within timeout.
func (p *publisher) publish(node, id string, timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		if err := p.s.WaitConnected(ctx); err == nil {
			_, err = p.s.Publish(ctx, p.svc, node, id, entry(id))
			if err == nil {
				cancel()
				return true
			}
			p.lastErr = err
		}
		cancel()
		time.Sleep(50 * time.Millisecond)
	}
	return false
}

// recordScript writes an exec hook that appends "ITEM_ID catchup?" lines
// to out, after sleeping delay (a shell sleep argument, "" for none).
func recordScript(t testing.TB, dir, out, delay string) string {
	body := `read -r ev || true
case "$ev" in *'"catchup":true'*) c=catchup;; *) c=live;; esac
`
	if delay != "" {
		body += "sleep " + delay + "\n"
	}
	body += `echo "$HOOK_ITEM_ID $c" >> ` + out + "\n"
	p := filepath.Join(dir, "record.sh")
	if err := os.WriteFile(p, []byte("#!/bin/sh\n"+body), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

// tally is what a recording hook saw: ids in run order, how many runs each
// got, how many runs were marked as catch-up.
type tally struct {
	order   []string
	count   map[string]int
	catchup int
}

func readTally(t testing.TB, out string) tally {
	t.Helper()
	tl := tally{count: map[string]int{}}
	f, err := os.Open(out)
	if os.IsNotExist(err) {
		return tl
	}
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		id, how, _ := strings.Cut(sc.Text(), " ")
		if tl.count[id] == 0 {
			tl.order = append(tl.order, id)
		}
		tl.count[id]++
		if how == "catchup" {
			tl.catchup++
		}
	}
	return tl
}

// check compares the tally with the items published (in order): lost
// (published, never run), duplicates (extra runs), unknown (run, never
// published).
func (tl tally) check(published []string) (lost, dups int, unknown []string) {
	pub := map[string]bool{}
	for _, id := range published {
		pub[id] = true
		if tl.count[id] == 0 {
			lost++
		}
		if n := tl.count[id]; n > 1 {
			dups += n - 1
		}
	}
	for id := range tl.count {
		if !pub[id] {
			unknown = append(unknown, id)
		}
	}
	return lost, dups, unknown
}

func waitTally(t *testing.T, out string, published []string, timeout time.Duration) tally {
	t.Helper()
	var tl tally
	waitUntil(t, timeout, "every published item run", func() (bool, string) {
		tl = readTally(t, out)
		lost, _, _ := tl.check(published)
		return lost == 0, fmt.Sprintf("%d of %d items not run yet", lost, len(published))
	})
	return tl
}

func ids(prefix string, from, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("%s-%04d", prefix, from+i)
	}
	return out
}

// TestCatchupAfterBackendStopped: items published while the backend is
// stopped run after it starts, in publish order, once, marked as catch-up;
// a hook with catchup: none does not get them.
func TestCatchupAfterBackendStopped(t *testing.T) { xmpptest.Each(t, testCatchupAfterBackendStopped) }

func testCatchupAfterBackendStopped(t *testing.T, kind xmpptest.Kind) {
	srv := xmpptest.Start(t, kind, xmpptest.Options{Admins: []string{"pub@localhost"}})
	srv.Register(t, "pub", "pw")
	cfg := testConfig(t, srv, "bot")
	createNode(t, srv, "pub", "feed", 256)
	pub := newPublisher(t, srv, "pub")

	dir := t.TempDir()
	out, outNone := filepath.Join(dir, "out"), filepath.Join(dir, "none")
	prog := recordScript(t, dir, out, "")
	progNone := filepath.Join(dir, "none.sh")
	if err := os.WriteFile(progNone, []byte("#!/bin/sh\necho \"$HOOK_ITEM_ID\" >> "+outNone+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	b := startBackend(t, cfg)
	b.create(hookctl.Hook{Key: hookctl.Key{Service: srv.PubSub, Node: "feed", Type: hookctl.TypeExec, Arg: prog}, Persistent: true, Events: []hookctl.EventKind{hookctl.EventPublish}})
	b.create(hookctl.Hook{Key: hookctl.Key{Service: srv.PubSub, Node: "feed", Type: hookctl.TypeExec, Arg: progNone}, Persistent: true, Catchup: hookctl.CatchupNone, Events: []hookctl.EventKind{hookctl.EventPublish}})
	b.waitSubscribed("default", 1)

	live := ids("live", 0, 20)
	for _, id := range live {
		if !pub.publish("feed", id, 10*time.Second) {
			t.Fatalf("publishing %s failed", id)
		}
	}
	waitTally(t, out, live, 20*time.Second)
	b.stop()

	missed := ids("missed", 0, 200)
	for _, id := range missed {
		if !pub.publish("feed", id, 10*time.Second) {
			t.Fatalf("publishing %s failed", id)
		}
	}
	b = startBackend(t, cfg)
	all := append(slices.Clone(live), missed...)
	// 200 exec runs: under -race on a loaded 2-CPU machine this took more
	// than 30 s (a deadline, not a sleep).
	tl := waitTally(t, out, all, 60*time.Second)
	// A little longer, to see duplicates that would come late.
	after := ids("after", 0, 5)
	for _, id := range after {
		pub.publish("feed", id, 10*time.Second)
	}
	all = append(all, after...)
	tl = waitTally(t, out, all, 20*time.Second)
	lost, dups, unknown := tl.check(all)
	t.Logf("published %d, run %d, caught up %d, duplicates %d, lost %d", len(all), len(tl.order), tl.catchup, dups, lost)
	if lost != 0 || dups != 0 || len(unknown) != 0 {
		t.Errorf("lost %d, duplicates %d, unknown %v; want none", lost, dups, unknown)
	}
	if diff := slicesDiff(all, tl.order); diff != "" {
		t.Errorf("run order is not publish order: %s", diff)
	}
	if tl.catchup != len(missed) {
		t.Errorf("%d runs marked catch-up, want %d", tl.catchup, len(missed))
	}
	runs := b.runs(api.RunQuery{Node: "feed", Hook: prog})
	caught := 0
	for _, r := range runs {
		if r.Catchup {
			caught++
		}
	}
	if caught != len(missed) {
		t.Errorf("hookctl runs shows %d caught-up runs, want %d", caught, len(missed))
	}
	// catchup: none: live items only.
	none := readTally(t, outNone)
	if l, d, u := none.check(append(slices.Clone(live), after...)); l != 0 || d != 0 || len(u) != 0 {
		t.Errorf("catchup: none hook: lost %d, duplicates %d, ran %d unexpected items (%v)", l, d, len(u), u[:min(3, len(u))])
	}
}

func slicesDiff(want, got []string) string {
	for i := range min(len(want), len(got)) {
		if want[i] != got[i] {
			return fmt.Sprintf("at %d: want %s, got %s", i, want[i], got[i])
		}
	}
	if len(want) != len(got) {
		return fmt.Sprintf("want %d items, got %d", len(want), len(got))
	}
	return ""
}

// TestCatchupBaselineAndAll: a hook added to a node with items starts from
// the node's current state; with catchup: all, the node's items run too.
func TestCatchupBaselineAndAll(t *testing.T) {
	srv := xmpptest.Start(t, xmpptest.Prosody, xmpptest.Options{Admins: []string{"pub@localhost"}})
	srv.Register(t, "pub", "pw")
	cfg := testConfig(t, srv, "bot")
	createNode(t, srv, "pub", "old", 256)
	createNode(t, srv, "pub", "all", 256)
	pub := newPublisher(t, srv, "pub")
	before := ids("before", 0, 5)
	for _, id := range before {
		pub.publish("old", id, 10*time.Second)
		pub.publish("all", id, 10*time.Second)
	}
	dir := t.TempDir()
	outOld, outAll := filepath.Join(dir, "old"), filepath.Join(dir, "all")
	b := startBackend(t, cfg)
	b.create(hookctl.Hook{Key: hookctl.Key{Service: srv.PubSub, Node: "old", Type: hookctl.TypeExec, Arg: recordScript(t, t.TempDir(), outOld, "")}, Persistent: true})
	b.create(hookctl.Hook{Key: hookctl.Key{Service: srv.PubSub, Node: "all", Type: hookctl.TypeExec, Arg: recordScript(t, t.TempDir(), outAll, "")}, Persistent: true, Catchup: hookctl.CatchupAll})
	b.waitSubscribed("default", 2)
	pub.publish("old", "new-1", 10*time.Second)
	pub.publish("all", "new-1", 10*time.Second)

	tl := waitTally(t, outAll, append(slices.Clone(before), "new-1"), 20*time.Second)
	if tl.catchup != len(before) || slicesDiff(append(slices.Clone(before), "new-1"), tl.order) != "" {
		t.Errorf("catchup: all ran %v (%d caught up), want the %d old items then new-1", tl.order, tl.catchup, len(before))
	}
	tl = waitTally(t, outOld, []string{"new-1"}, 20*time.Second)
	time.Sleep(200 * time.Millisecond) // an old item run late would show now
	if tl = readTally(t, outOld); len(tl.order) != 1 {
		t.Errorf("default hook ran %v, want only new-1 (old items are the baseline)", tl.order)
	}
}

// TestCatchupGapIsReported: more items published while offline than the
// node keeps: the loss is reported in status, and what the node kept runs.
func TestCatchupGapIsReported(t *testing.T) {
	srv := xmpptest.Start(t, xmpptest.Prosody, xmpptest.Options{Admins: []string{"pub@localhost"}})
	srv.Register(t, "pub", "pw")
	cfg := testConfig(t, srv, "bot")
	createNode(t, srv, "pub", "small", 10)
	pub := newPublisher(t, srv, "pub")
	out := filepath.Join(t.TempDir(), "out")
	b := startBackend(t, cfg)
	b.create(hookctl.Hook{Key: hookctl.Key{Service: srv.PubSub, Node: "small", Type: hookctl.TypeExec, Arg: recordScript(t, t.TempDir(), out, "")}, Persistent: true})
	b.waitSubscribed("default", 1)
	pub.publish("small", "seen", 10*time.Second)
	waitTally(t, out, []string{"seen"}, 20*time.Second)
	// The hook's output comes before its run ends and the item is marked
	// finished: wait for the mark, or it is caught up again after the stop.
	waitUntil(t, 10*time.Second, "seen marked finished", func() (bool, string) {
		st, err := b.client.Status(context.Background())
		if err != nil || len(st.Nodes) != 1 {
			return false, fmt.Sprint(err)
		}
		return st.Nodes[0].Finished == 1, fmt.Sprintf("%+v", st.Nodes[0])
	})
	b.stop()
	missed := ids("m", 0, 25)
	for _, id := range missed {
		pub.publish("small", id, 10*time.Second)
	}
	b = startBackend(t, cfg)
	kept := missed[len(missed)-10:]
	tl := waitTally(t, out, kept, 20*time.Second)
	if lost, _, _ := tl.check(missed[:15]); lost != 15 {
		t.Errorf("items the node dropped ran anyway?: %v", tl.order)
	}
	// The gap is data on the node, not a hook error.
	st, err := b.client.Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, he := range st.HookErrors {
		if strings.Contains(he.Error, "may") {
			t.Errorf("the gap is reported as a hook error: %+v", he)
		}
	}
	if len(st.Nodes) != 1 {
		t.Fatalf("status nodes = %+v, want the one node", st.Nodes)
	}
	n := st.Nodes[0]
	// Finished: the 10 caught up, and "seen" until the marks of items the
	// node no longer holds are trimmed (either is right).
	if n.Node != "small" || n.Service != srv.PubSub || n.Hooks != 1 || !n.Subscribed || n.Gaps != 1 || n.CaughtUp != 10 ||
		(n.Finished != 10 && n.Finished != 11) || n.LastCatchup.IsZero() || !strings.Contains(n.MaybeMissed, "all 10 items the node held were new") {
		t.Errorf("node status = %+v, want 1 gap, 10 caught up, 10 or 11 finished, subscribed", n)
	}
	t.Logf("published %d, run %d (the ones kept), caught up %d, gaps %d: %s", len(missed), len(tl.order)-1, tl.catchup, n.Gaps, n.MaybeMissed)
}

// TestCatchupAcrossProsodyRestart: the server restarts in the middle of a
// burst; every item it acknowledged runs after the reconnect.
func TestCatchupAcrossProsodyRestart(t *testing.T) { xmpptest.Each(t, testCatchupAcrossProsodyRestart) }

func testCatchupAcrossProsodyRestart(t *testing.T, kind xmpptest.Kind) {
	srv := xmpptest.Start(t, kind, xmpptest.Options{Admins: []string{"pub@localhost"}})
	srv.Register(t, "pub", "pw")
	cfg := testConfig(t, srv, "bot")
	createNode(t, srv, "pub", "burst", 256)
	pub := newPublisher(t, srv, "pub")
	out := filepath.Join(t.TempDir(), "out")
	b := startBackend(t, cfg)
	b.create(hookctl.Hook{Key: hookctl.Key{Service: srv.PubSub, Node: "burst", Type: hookctl.TypeExec, Arg: recordScript(t, t.TempDir(), out, "")}, Persistent: true})
	b.waitSubscribed("default", 1)

	var acked []string
	restarted := make(chan struct{})
	go func() {
		defer close(restarted)
		time.Sleep(300 * time.Millisecond)
		srv.Restart(t)
	}()
	for _, id := range ids("b", 0, 200) {
		if pub.publish("burst", id, 20*time.Second) {
			acked = append(acked, id)
		}
	}
	<-restarted
	tl := waitTally(t, out, acked, 60*time.Second)
	lost, dups, unknown := tl.check(acked)
	st, _ := b.client.Status(context.Background())
	t.Logf("published %d (acknowledged), run %d, caught up %d, duplicates %d, lost %d, unknown %d, reconnects %d",
		len(acked), len(tl.order), tl.catchup, dups, lost, len(unknown), st.Profiles[0].Reconnects)
	if lost != 0 {
		t.Errorf("%d acknowledged items never ran", lost)
	}
	if st.Profiles[0].Reconnects == 0 {
		t.Error("the backend never reconnected: the test did not test a restart")
	}
}

// BenchmarkCatchup1000: 1,000 items published on one node while the backend
// is stopped; one op is from starting the backend (store open, XMPP login,
// subscribe, fetch) until an expr hook has run all 1,000.
func BenchmarkCatchup1000(b *testing.B) {
	const n = 1000
	// Memory storage: with file storage Prosody rewrites the whole node on
	// each publish, far too slow for 1,000 items. The node is purged before
	// each round, as Prosody's memory archive fails once full.
	srv := xmpptest.Start(b, xmpptest.Prosody, xmpptest.Options{Admins: []string{"pub@localhost"}, MemoryStorage: true})
	// Prosody caps a node's max_items at 256 unless told otherwise; the
	// last section of the config file is the PubSub component.
	f, err := os.OpenFile(srv.Config, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		b.Fatal(err)
	}
	fmt.Fprintf(f, "\tpubsub_max_items = %d\n", 2*n)
	f.Close()
	srv.Restart(b)
	srv.Register(b, "pub", "pw")
	cfg := benchConfig(b, srv)
	createNode(b, srv, "pub", "big", n)
	pub := newPublisher(b, srv, "pub")

	d := runDaemon(b, cfg)
	d.waitConnected(b, 0)
	if _, err := d.client.Create(context.Background(), hookctl.Hook{Key: hookctl.Key{Profile: "default", Service: srv.PubSub, Node: "big", Type: hookctl.TypeExpr, Arg: `event.item_id != ""`}, Persistent: true}); err != nil {
		b.Fatal(err)
	}
	d.waitConnected(b, 1)
	d.stop(b)

	b.ResetTimer()
	for i := range b.N {
		b.StopTimer()
		if err := pub.s.Purge(context.Background(), srv.PubSub, "big"); err != nil {
			b.Fatal(err)
		}
		for _, id := range ids(fmt.Sprint("i", i), 0, n) {
			if !pub.publish("big", id, 10*time.Second) {
				b.Fatalf("publishing %s failed: %v", id, pub.lastErr)
			}
		}
		b.StartTimer()
		start := time.Now()
		d = runDaemon(b, cfg)
		for {
			runs, err := d.client.Runs(context.Background(), api.RunQuery{Node: "big", Limit: 2 * n})
			if err == nil && len(runs) >= n {
				if !runs[0].Catchup || runs[0].Outcome != "ok" {
					b.Fatalf("run %+v: want an ok caught-up run", runs[0])
				}
				break
			}
			if time.Since(start) > 60*time.Second {
				b.Fatalf("%d of %d runs after 60s", len(runs), n)
			}
			time.Sleep(5 * time.Millisecond)
		}
		b.StopTimer()
		d.stop(b)
		b.StartTimer()
	}
}

// benchConfig is testConfig for benchmarks (one profile, "bot").
func benchConfig(tb testing.TB, srv *xmpptest.Server) config.Config {
	dir, err := os.MkdirTemp("", "hkb")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { os.RemoveAll(dir) })
	pw := filepath.Join(dir, "pw")
	if err := os.WriteFile(pw, []byte("pw\n"), 0o600); err != nil {
		tb.Fatal(err)
	}
	srv.Register(tb, "bot", "pw")
	cfg := config.Config{DataDir: filepath.Join(dir, "data"), Profiles: map[string]config.Profile{
		"default": {JID: "bot@localhost", PasswordFile: pw, Server: srv.Addr, TLS: config.TLSNone},
	}}
	cfg.Defaults()
	return cfg
}

// daemonRun is an in-process backend for benchmarks.
type daemonRun struct {
	client *api.Client
	cancel context.CancelFunc
	done   chan error
}

func runDaemon(tb testing.TB, cfg config.Config) *daemonRun {
	d, err := New(Options{Config: cfg})
	if err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &daemonRun{cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- d.Run(ctx) }()
	if r.client, err = api.NewClient(api.ClientOptions{Socket: cfg.Socket}); err != nil {
		tb.Fatal(err)
	}
	return r
}

func (r *daemonRun) waitConnected(tb testing.TB, subs int) {
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		st, err := r.client.Status(context.Background())
		if err == nil && len(st.Profiles) > 0 && st.Profiles[0].State == "connected" && st.Profiles[0].Subscriptions >= subs {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	tb.Fatal("backend not connected within 20s")
}

func (r *daemonRun) stop(tb testing.TB) {
	r.cancel()
	if err := <-r.done; err != nil {
		tb.Fatal(err)
	}
}
