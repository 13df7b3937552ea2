package xmppsession

import (
	"errors"
	"testing"

	"hookctl.dev/hookctl"
	"hookctl.dev/hookctl/internal/xmpptest"
)

// SubscribedNodes lists the session's subscriptions as the server has them:
// a node deleted by someone else is gone from the list, without a request
// of ours; other accounts' subscriptions are not listed.
func TestSubscribedNodes(t *testing.T) { xmpptest.Each(t, testSubscribedNodes) }

func testSubscribedNodes(t *testing.T, kind xmpptest.Kind) {
	srv := xmpptest.Start(t, kind, xmpptest.Options{Admins: []string{"admin@localhost"}})
	srv.Register(t, "admin", password)
	srv.Register(t, "sub", password)
	admin := startClient(t, srv, "admin")
	sub := startClient(t, srv, "sub")
	ctx := ctxT(t)
	for _, n := range []string{"n1", "n2", "other"} {
		if err := admin.CreateNode(ctx, srv.PubSub, n); err != nil {
			t.Fatal(err)
		}
	}
	for _, n := range []string{"n1", "n2"} {
		if _, err := sub.Subscribe(ctx, srv.PubSub, n); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := admin.Subscribe(ctx, srv.PubSub, "other"); err != nil {
		t.Fatal(err)
	}
	got, err := sub.SubscribedNodes(ctx, srv.PubSub, "")
	if err != nil || len(got) != 2 || !got["n1"] || !got["n2"] {
		t.Fatalf("SubscribedNodes = %v, %v; want n1 and n2", got, err)
	}
	if got, err := sub.SubscribedNodes(ctx, srv.PubSub, "n2"); err != nil || len(got) != 1 || !got["n2"] {
		t.Fatalf("SubscribedNodes of n2 = %v, %v; want n2", got, err)
	}
	if got, err := sub.SubscribedNodes(ctx, srv.PubSub, "other"); err != nil || len(got) != 0 {
		t.Fatalf("SubscribedNodes of other = %v, %v; want none of ours", got, err)
	}
	if err := admin.DeleteNode(ctx, srv.PubSub, "n1"); err != nil {
		t.Fatal(err)
	}
	got, err = sub.SubscribedNodes(ctx, srv.PubSub, "n1")
	if srv.Quirks().MissingNodeHasNoSubscriptions {
		// ejabberd lists no subscriptions rather than item-not-found;
		// the subscription check takes both as lost.
		if err != nil || len(got) != 0 {
			t.Fatalf("SubscribedNodes of deleted n1: %v, %v; want an empty list", got, err)
		}
	} else if !errors.Is(err, hookctl.ErrNotFound) {
		t.Fatalf("SubscribedNodes of deleted n1: %v, want not found", err)
	}
	// Re-created, n1 has no subscribers (Prosody 0.12 still lists it, see
	// SubscribedNodes); Subscribe subscribes anyway, and events flow.
	if err := admin.CreateNode(ctx, srv.PubSub, "n1"); err != nil {
		t.Fatal(err)
	}
	stale, err := sub.SubscribedNodes(ctx, srv.PubSub, "n1")
	t.Logf("re-created n1, before subscribing: listed %v, %v (Prosody 0.12 lists a stale subscription)", stale, err)
	if _, err := sub.Subscribe(ctx, srv.PubSub, "n1"); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.Publish(ctx, srv.PubSub, "n1", "after", `<x xmlns="urn:x"/>`); err != nil {
		t.Fatal(err)
	}
	if ev := sub.next(t); ev.Node != "n1" || ev.Kind != hookctl.EventDelete {
		t.Fatalf("event %+v, want the delete of n1", ev)
	}
	if ev := sub.next(t); ev.Node != "n1" || ev.ItemID != "after" {
		t.Fatalf("event %+v, want item after of the re-created n1", ev)
	}
	// Own PEP: the same request to the account's bare JID.
	if _, err := sub.Publish(ctx, "", "pep", "", `<x xmlns="urn:x"/>`); err != nil {
		t.Fatal(err)
	}
	if _, err := sub.Subscribe(ctx, "", "pep"); err != nil {
		t.Fatal(err)
	}
	got, err = sub.SubscribedNodes(ctx, "sub@localhost", "")
	if err != nil || !got["pep"] {
		t.Fatalf("PEP: SubscribedNodes = %v, %v; want pep", got, err)
	}
}
