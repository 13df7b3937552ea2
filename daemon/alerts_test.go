package daemon

import (
	"context"
	"encoding/json"
	"encoding/xml"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"mellium.im/xmlstream"
	"mellium.im/xmpp"
	"mellium.im/xmpp/stanza"

	"hookctl.dev/hookctl"
	"hookctl.dev/hookctl/alert"
	"hookctl.dev/hookctl/api"
	"hookctl.dev/hookctl/config"
	"hookctl.dev/hookctl/internal/xmpptest"
)

// inbox is a second account, logged in with mellium alone, that keeps the
// bodies of the chat messages it receives.
type inbox struct {
	mu     sync.Mutex
	bodies []string
}

func (in *inbox) get() []string {
	in.mu.Lock()
	defer in.mu.Unlock()
	return append([]string(nil), in.bodies...)
}

func receiveAs(t *testing.T, srv *xmpptest.Server, user string) *inbox {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	xs, nc := rawSession(ctx, t, srv, user+"@localhost/inbox")
	in := &inbox{}
	done := make(chan struct{})
	go func() {
		defer close(done)
		xs.Serve(xmpp.HandlerFunc(func(r xmlstream.TokenReadEncoder, start *xml.StartElement) error {
			if start.Name.Local != "message" {
				return nil
			}
			if attrOf(start.Attr, "type") != "chat" {
				return nil
			}
			// The handler gets the element's inner tokens: keep <body>'s text.
			var body strings.Builder
			depth, inBody := 0, false
			for {
				tok, err := r.Token()
				if err != nil {
					break
				}
				switch tok := tok.(type) {
				case xml.StartElement:
					depth++
					inBody = depth == 1 && tok.Name.Local == "body"
				case xml.EndElement:
					depth--
					inBody = false
				case xml.CharData:
					if inBody {
						body.Write(tok)
					}
				}
			}
			in.mu.Lock()
			in.bodies = append(in.bodies, body.String())
			in.mu.Unlock()
			return nil
		}))
	}()
	// Available presence: chat to the bare JID reaches only available resources.
	if err := xs.Send(ctx, stanza.Presence{}.Wrap(nil)); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cancel()
		nc.SetDeadline(time.Now().Add(time.Second))
		xs.Close()
		nc.Close()
		<-done
	})
	return in
}

func attrOf(attrs []xml.Attr, local string) string {
	for _, a := range attrs {
		if a.Name.Local == local {
			return a.Value
		}
	}
	return ""
}

// webhookRecorder is a real HTTP server on 127.0.0.1 keeping the alerts
// POSTed to it and the Authorization header of each.
type webhookRecorder struct {
	*httptest.Server
	mu   sync.Mutex
	msgs []alert.Message
	auth []string
}

func newWebhookRecorder(t *testing.T) *webhookRecorder {
	w := &webhookRecorder{}
	w.Server = httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		var m alert.Message
		b, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		if err := json.Unmarshal(b, &m); err != nil {
			t.Errorf("webhook body %q: %v", b, err)
		}
		w.mu.Lock()
		w.msgs = append(w.msgs, m)
		w.auth = append(w.auth, r.Header.Get("Authorization"))
		w.mu.Unlock()
	}))
	t.Cleanup(w.Close)
	return w
}

func (w *webhookRecorder) get() ([]alert.Message, []string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]alert.Message(nil), w.msgs...), append([]string(nil), w.auth...)
}

const alertSecret = "s3cr3t-token-value"

// alertConfig is bot's backend with alerts to ops@localhost (XMPP,
// through bot's session) and to a webhook with a secret header.
func alertConfig(t *testing.T, srv *xmpptest.Server, hook *webhookRecorder, window time.Duration) (config.Config, func(string) string) {
	cfg := testConfig(t, srv, "bot")
	srv.Register(t, "ops", "pw")
	cfg.SecretDecls = map[string]config.Secret{"ALERT_TOKEN": {Env: "ALERT_TOKEN"}}
	cfg.Alerts = config.Alerts{
		Window:           hookctl.Duration(window),
		SessionDownAfter: hookctl.Duration(time.Second),
		Sinks: map[string]config.AlertSink{
			"ops": {XMPP: &config.XMPPAlertSink{Profile: "default", To: []string{"ops@localhost"}}},
			"pager": {Webhook: &config.WebhookAlertSink{URL: hook.URL + "/alerts",
				Headers: map[string]string{"Authorization": "Bearer ${ALERT_TOKEN}"}}},
		},
	}
	getenv := func(k string) string {
		if k == "ALERT_TOKEN" {
			return alertSecret
		}
		return ""
	}
	return cfg, getenv
}

// A hook failing 200 times in a burst: the other account receives the
// first failure at once, at most a few summaries with the count, then one
// recovery; the counts add up to 200; the webhook gets the same, with its
// secret header; the secret never shows in a message.
func TestAlertsHookFailureBurst(t *testing.T) {
	srv := xmpptest.Start(t, xmpptest.Prosody, xmpptest.Options{Admins: []string{"bot@localhost"}, MemoryStorage: true})
	hook := newWebhookRecorder(t)
	cfg, getenv := alertConfig(t, srv, hook, time.Second)
	ops := receiveAs(t, srv, "ops")
	b := startBackendWith(t, Options{Config: cfg, Getenv: getenv})

	// In process (an exec hook would fork 200 times): an item "bad-…"
	// fails at int("bad-…"), after a log line that quotes the secret.
	prog := `log("boom: token ` + alertSecret + `") && (item.id startsWith "bad" ? int(item.id) > 0 : true)`
	b.pubsub("default", api.PubSubRequest{Op: api.OpNodeCreate, Service: srv.PubSub, Node: "jobs"})
	b.create(hookctl.Hook{Name: "deploy", Key: hookctl.Key{Service: srv.PubSub, Node: "jobs", Type: hookctl.TypeExpr, Arg: prog}})
	b.waitSubscribed("default", 1)

	const burst = 200
	start := time.Now()
	for i := range burst {
		b.pubsub("default", api.PubSubRequest{Op: api.OpPublish, Service: srv.PubSub, Node: "jobs", ItemID: fmt.Sprintf("bad-%d", i), Payload: entry("x")})
	}
	b.waitRuns(api.RunQuery{Node: "jobs"}, burst)
	elapsed := time.Since(start)
	b.pubsub("default", api.PubSubRequest{Op: api.OpPublish, Service: srv.PubSub, Node: "jobs", ItemID: "good", Payload: entry("x")})

	var bodies []string
	waitUntil(t, 15*time.Second, "recovery message", func() (bool, string) {
		bodies = ops.get()
		return len(bodies) > 0 && strings.HasPrefix(bodies[len(bodies)-1], "RECOVERED"), strings.Join(bodies, "\n")
	})
	t.Logf("%d failures in %v, then a success: %d messages received by ops@localhost:\n%s",
		burst, elapsed.Round(time.Millisecond), len(bodies), strings.Join(bodies, "\n"))
	// First failure, one summary per 1s window at most, a recovery.
	if max := 2 + int(elapsed/time.Second) + 1; len(bodies) > max {
		t.Errorf("%d messages for %d failures in %v, want at most %d", len(bodies), burst, elapsed, max)
	}
	if !strings.HasPrefix(bodies[0], `ALERT hook "deploy" failed: failed: expr: `) {
		t.Errorf("first message = %q", bodies[0])
	}
	if want := fmt.Sprintf(`RECOVERED hook "deploy" succeeds again after %d failures`, burst); !strings.HasPrefix(bodies[len(bodies)-1], want) {
		t.Errorf("last message = %q, want %q…", bodies[len(bodies)-1], want)
	}
	for _, body := range bodies {
		if strings.Contains(body, alertSecret) || !strings.Contains(body, hookctl.Redacted) && strings.HasPrefix(body, "ALERT") {
			t.Errorf("message shows the secret or lacks its redaction: %q", body)
		}
	}

	var msgs []alert.Message
	var auth []string
	waitUntil(t, 10*time.Second, "webhook recovery", func() (bool, string) {
		msgs, auth = hook.get()
		return len(msgs) > 0 && msgs[len(msgs)-1].State == alert.Recovered, fmt.Sprint(msgs)
	})
	sum := 0
	for i, m := range msgs {
		if m.State == alert.Recovered {
			if m.Total != burst {
				t.Errorf("recovery total = %d, want %d", m.Total, burst)
			}
		}
		sum += m.Count
		if auth[i] != "Bearer "+alertSecret {
			t.Errorf("webhook Authorization = %q", auth[i])
		}
	}
	if sum != burst || len(msgs) != len(bodies) {
		t.Errorf("webhook: %d messages whose counts add up to %d, want %d messages adding up to %d", len(msgs), sum, len(bodies), burst)
	}
}

// waitWebhook waits for a webhook message matching ok.
func (w *webhookRecorder) wait(t *testing.T, what string, ok func(alert.Message) bool) alert.Message {
	t.Helper()
	var found alert.Message
	waitUntil(t, 20*time.Second, what, func() (bool, string) {
		msgs, _ := w.get()
		for _, m := range msgs {
			if ok(m) {
				found = m
				return true, ""
			}
		}
		return false, fmt.Sprintf("%d messages: %+v", len(msgs), msgs)
	})
	return found
}

// The XMPP server gone for longer than session_down_after (1s): the
// webhook hears that the profile is down, then that it is back.
func TestAlertsSessionDown(t *testing.T) {
	srv := xmpptest.Start(t, xmpptest.Prosody, xmpptest.Options{})
	hook := newWebhookRecorder(t)
	cfg, getenv := alertConfig(t, srv, hook, time.Second)
	startBackendWith(t, Options{Config: cfg, Getenv: getenv})
	srv.Kill()
	down := hook.wait(t, "session down alert", func(m alert.Message) bool { return m.Kind == alert.SessionDown && m.State == alert.Failing })
	if !strings.HasPrefix(down.Text, "ALERT profile default is down: XMPP session down since ") {
		t.Errorf("down alert = %q", down.Text)
	}
	srv.Restart(t)
	up := hook.wait(t, "session back", func(m alert.Message) bool { return m.Kind == alert.SessionDown && m.State == alert.Recovered })
	t.Logf("%s\n%s", down.Text, up.Text)
	if msgs, _ := hook.get(); len(msgs) != 2 {
		t.Errorf("%d messages, want 2: %+v", len(msgs), msgs)
	}
}

// Hooks files that do not apply (serve --watch) are alerted, and their
// recovery once fixed.
func TestAlertsFilesRound(t *testing.T) {
	srv := xmpptest.Start(t, xmpptest.Prosody, xmpptest.Options{})
	hook := newWebhookRecorder(t)
	cfg, getenv := alertConfig(t, srv, hook, time.Second)
	dir := t.TempDir()
	file := filepath.Join(dir, "hooks.yaml")
	if err := os.WriteFile(file, []byte("version: 1\nset: s\nhooks:\n  - name: a\n    node: n\n    typo: expr\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	startBackendWith(t, Options{Config: cfg, Getenv: getenv, Watch: WatchOptions{Paths: []string{dir}}})
	bad := hook.wait(t, "files alert", func(m alert.Message) bool { return m.Kind == alert.FilesFailing && m.State == alert.Failing })
	if !strings.Contains(bad.Text, "ALERT hooks files failed to apply") || !strings.Contains(bad.Text, `unknown field "typo"`) {
		t.Errorf("files alert = %q", bad.Text)
	}
	if err := os.WriteFile(file, []byte("version: 1\nset: s\nhooks:\n  - name: a\n    node: n\n    type: expr\n    arg: 'true'\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	good := hook.wait(t, "files recovered", func(m alert.Message) bool { return m.Kind == alert.FilesFailing && m.State == alert.Recovered })
	t.Logf("%s\n%s", bad.Text, good.Text)
}

// A catch-up that finds only unseen items (the node kept 10 of 25
// published while the backend was down) is alerted as a gap.
func TestAlertsCatchupGap(t *testing.T) {
	srv := xmpptest.Start(t, xmpptest.Prosody, xmpptest.Options{Admins: []string{"pub@localhost"}})
	srv.Register(t, "pub", "pw")
	hook := newWebhookRecorder(t)
	cfg, getenv := alertConfig(t, srv, hook, time.Second)
	createNode(t, srv, "pub", "small", 10)
	pub := newPublisher(t, srv, "pub")
	b := startBackendWith(t, Options{Config: cfg, Getenv: getenv})
	b.create(hookctl.Hook{Name: "count", Key: hookctl.Key{Service: srv.PubSub, Node: "small", Type: hookctl.TypeExpr, Arg: "true"}, Persistent: true})
	b.waitSubscribed("default", 1)
	pub.publish("small", "seen", 10*time.Second)
	waitUntil(t, 10*time.Second, "seen marked finished", func() (bool, string) {
		st, err := b.client.Status(context.Background())
		if err != nil || len(st.Nodes) != 1 {
			return false, fmt.Sprint(err)
		}
		return st.Nodes[0].Finished == 1, fmt.Sprintf("%+v", st.Nodes[0])
	})
	b.stop()
	for _, id := range ids("m", 0, 25) {
		pub.publish("small", id, 10*time.Second)
	}
	startBackendWith(t, Options{Config: cfg, Getenv: getenv})
	gap := hook.wait(t, "gap alert", func(m alert.Message) bool { return m.Kind == alert.CatchupGap })
	t.Log(gap.Text)
	if gap.State != alert.Event || !strings.Contains(gap.Text, "ALERT node small on pubsub.localhost (profile default) may have missed items (catch-up gap): unknown, maybe some") {
		t.Errorf("gap alert = %+v", gap)
	}
}
