package daemon

import (
	"context"
	"encoding/json"
	"encoding/xml"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
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
	"hookctl.dev/hookctl/internal/prosodytest"
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

func receiveAs(t *testing.T, srv *prosodytest.Server, user string) *inbox {
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
func alertConfig(t *testing.T, srv *prosodytest.Server, hook *webhookRecorder, window time.Duration) (config.Config, func(string) string) {
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
	srv := prosodytest.Start(t, prosodytest.Options{Admins: []string{"bot@localhost"}, MemoryStorage: true})
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
