package xmppsession

import (
	"testing"

	"github.com/google/go-cmp/cmp"

	"hookctl.dev/hookctl"
)

// Configuration notifications and subscriptions changed by the service are
// notices for the subscription manager; an approved subscription is not.
func TestDecodeNodeNotices(t *testing.T) {
	msg := `<message xmlns="jabber:client" from="pubsub.example.org" to="bot@example.org/hookctl">
<event xmlns="http://jabber.org/protocol/pubsub#event">
  <configuration node="conf"><x xmlns="jabber:x:data" type="result"/></configuration>
  <subscription node="gone" jid="bot@example.org/hookctl" subscription="none"/>
  <subscription node="ok" jid="bot@example.org/hookctl" subscription="subscribed"/>
  <subscription node="wait" jid="bot@example.org/hookctl" subscription="pending"/>
</event>
</message>`
	got, err := decodeString(t, "", msg)
	if err != nil {
		t.Fatal(err)
	}
	base := hookctl.Event{Profile: "p", Service: "pubsub.example.org"}
	with := func(k hookctl.EventKind, node string) hookctl.Event { e := base; e.Kind, e.Node = k, node; return e }
	want := []hookctl.Event{
		with(hookctl.EventConfiguration, "conf"),
		with(hookctl.EventSubscription, "gone"),
		with(hookctl.EventSubscription, "wait"),
	}
	if diff := cmp.Diff(want, got, ignoreReceived); diff != "" {
		t.Errorf("events (-want +got):\n%s", diff)
	}
	for _, ev := range got {
		if ev.Kind.Valid() {
			t.Errorf("%s is a kind hooks can select", ev.Kind)
		}
	}
}
