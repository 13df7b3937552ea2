package xmppsession

import (
	"cmp"
	"context"
	"encoding/xml"
	"fmt"

	"mellium.im/xmpp/stanza"
)

// Connected reports whether the session has a live connection.
func (s *Session) Connected() bool { return s.State().State == StateConnected }

// SubscribedNodes returns the nodes of service ("" = own PEP) that the
// session's full JID is subscribed to, as the service lists them (XEP-0060
// §5.6): of every node, or of node alone when it is not "". A subscription
// the server removed without telling (an access model changed) is missing
// here; a deleted node gives an error wrapping hookctl.ErrNotFound.
//
// Prosody 0.12 keeps listing a subscription to a deleted node: the
// listing of every node then fails (no answer), and a node re-created
// under the same name is listed as subscribed although it has no
// subscribers. Hence Subscribe always subscribes, and callers fall back to
// one node at a time.
func (s *Session) SubscribedNodes(ctx context.Context, service, node string) (map[string]bool, error) {
	what := describe("listing subscriptions on", service, node)
	full, err := s.fullJID()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	var subs subscriptionsResult
	err = s.request(ctx, what, service, stanza.GetIQ, func() xml.TokenReader {
		return elem(NSPubSub, "pubsub", elem("", "subscriptions", nil, "node", node))
	}, &subs)
	if err != nil {
		return nil, err
	}
	out := map[string]bool{}
	for _, sub := range subs.Subscriptions.Subscription {
		if sub.JID == full && sub.State == "subscribed" && (node == "" || sub.Node == node || sub.Node == "") {
			out[cmp.Or(sub.Node, node)] = true
		}
	}
	return out, nil
}
