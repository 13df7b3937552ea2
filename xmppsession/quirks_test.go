package xmppsession

import (
	"encoding/xml"
	"errors"
	"testing"

	"mellium.im/xmpp/stanza"

	"hookctl.dev/hookctl"
	"hookctl.dev/hookctl/internal/xmpptest"
)

// nodeConfig reads a node's configuration form (owner only) as var → value.
func nodeConfig(t *testing.T, c *client, service, node string) map[string]string {
	t.Helper()
	var res struct {
		XMLName xml.Name `xml:"http://jabber.org/protocol/pubsub#owner pubsub"`
		Fields  []struct {
			Var   string `xml:"var,attr"`
			Value string `xml:"value"`
		} `xml:"configure>x>field"`
	}
	err := c.request(ctxT(t), "reading the configuration", service, stanza.GetIQ, func() xml.TokenReader {
		return elem(NSPubSubOwner, "pubsub", elem("", "configure", nil, "node", node))
	}, &res)
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]string{}
	for _, f := range res.Fields {
		m[f.Var] = f.Value
	}
	return m
}

// TestServerQuirks pins the differences between the servers that
// docs/SERVERS.md lists, on a node created the way other clients do
// (no configuration), so that a change of server shows here.
func TestServerQuirks(t *testing.T) { xmpptest.Each(t, testServerQuirks) }

func testServerQuirks(t *testing.T, kind xmpptest.Kind) {
	srv := xmpptest.Start(t, kind, xmpptest.Options{Admins: []string{"admin@localhost"}})
	srv.Register(t, "admin", password)
	srv.Register(t, "sub", password)
	admin := startClient(t, srv, "admin")
	sub := startClient(t, srv, "sub")
	ctx := ctxT(t)
	svc, q := srv.PubSub, srv.Quirks()
	create := func(node string) {
		t.Helper()
		err := admin.request(ctx, "creating", svc, stanza.SetIQ, func() xml.TokenReader {
			return elem(NSPubSub, "pubsub", elem("", "create", nil, "node", node))
		}, nil)
		if err != nil {
			t.Fatal(err)
		}
	}
	create("raw")
	create("marker")
	cfg := nodeConfig(t, admin, svc, "raw")
	t.Logf("%s default node: max_items %s, notify_delete %s, notify_retract %s, send_last_published_item %s, access_model %s, publish_model %s",
		kind, cfg["pubsub#max_items"], cfg["pubsub#notify_delete"], cfg["pubsub#notify_retract"],
		cfg["pubsub#send_last_published_item"], cfg["pubsub#access_model"], cfg["pubsub#publish_model"])
	wantDefaults := map[xmpptest.Kind]map[string]string{
		xmpptest.Prosody:  {"pubsub#max_items": "20", "pubsub#access_model": "open", "pubsub#publish_model": "publishers", "pubsub#notify_delete": "1", "pubsub#send_last_published_item": "never"},
		xmpptest.Ejabberd: {"pubsub#max_items": "1000", "pubsub#access_model": "open", "pubsub#publish_model": "publishers", "pubsub#notify_delete": "0", "pubsub#send_last_published_item": "on_sub_and_presence"},
	}[kind]
	for k, v := range wantDefaults {
		if cfg[k] != v {
			t.Errorf("default %s = %q, want %q", k, cfg[k], v)
		}
	}
	for _, n := range []string{"raw", "marker"} {
		if _, err := sub.Subscribe(ctx, svc, n); err != nil {
			t.Fatal(err)
		}
	}
	// marker publishes on the other node and returns the events that came
	// before its own: what the server sent for the step before it.
	marks := 0
	marker := func() []hookctl.Event {
		t.Helper()
		marks++
		id := "m" + string(rune('0'+marks))
		if _, err := admin.Publish(ctx, svc, "marker", id, `<m xmlns="urn:x"/>`); err != nil {
			t.Fatal(err)
		}
		var before []hookctl.Event
		for range 5 {
			ev := sub.next(t)
			if ev.Node == "marker" && ev.ItemID == id {
				return before
			}
			before = append(before, ev)
		}
		t.Fatalf("no marker %s: events %+v", id, before)
		return nil
	}
	if _, err := admin.Publish(ctx, svc, "raw", "i1", `<x xmlns="urn:x"/>`); err != nil {
		t.Fatal(err)
	}
	if ev := sub.next(t); ev.ItemID != "i1" {
		t.Fatalf("publish event %+v", ev)
	}
	// A retract without notify='true': ejabberd notifies anyway.
	if err := admin.Retract(ctx, svc, "raw", "i1", false); err != nil {
		t.Fatal(err)
	}
	evs := marker()
	if gotRetract := len(evs) == 1 && evs[0].Kind == hookctl.EventRetract && evs[0].ItemID == "i1"; gotRetract != (kind == xmpptest.Ejabberd) || len(evs) > 1 {
		t.Errorf("after a retract without notify: events %+v", evs)
	}
	// A purge carries the node only, no item ids, on both.
	if _, err := admin.Publish(ctx, svc, "raw", "i2", `<x xmlns="urn:x"/>`); err != nil {
		t.Fatal(err)
	}
	sub.next(t)
	if err := admin.Purge(ctx, svc, "raw"); err != nil {
		t.Fatal(err)
	}
	if ev := sub.next(t); ev.Kind != hookctl.EventPurge || ev.ItemID != "" || ev.Node != "raw" {
		t.Errorf("purge event %+v", ev)
	}
	// A delete of a node created without configuration: only Prosody
	// tells the subscribers.
	if err := admin.DeleteNode(ctx, svc, "raw"); err != nil {
		t.Fatal(err)
	}
	evs = marker()
	if gotDelete := len(evs) == 1 && evs[0].Kind == hookctl.EventDelete; gotDelete != q.NotifiesDeleteByDefault || len(evs) > 1 {
		t.Errorf("after deleting an unconfigured node: events %+v (NotifiesDeleteByDefault %v)", evs, q.NotifiesDeleteByDefault)
	}
	// Missing nodes: item-not-found on both, on the service and on PEP.
	for _, service := range []string{svc, ""} {
		if _, err := sub.Subscribe(ctx, service, "missing"); !errors.Is(err, hookctl.ErrNotFound) {
			t.Errorf("subscribe to a missing node of %q: %v, want item-not-found", service, err)
		}
		if _, err := sub.Items(ctx, service, "missing", 0); !errors.Is(err, hookctl.ErrNotFound) {
			t.Errorf("items of a missing node of %q: %v, want item-not-found", service, err)
		}
	}
}
