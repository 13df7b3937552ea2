package hookctl

import "time"

// Event is one PubSub notification as a hook sees it: one item published or
// retracted, or a whole node purged or deleted.
type Event struct {
	// Profile is the account that received the notification.
	Profile string `json:"profile"`
	// Service is the sender's bare JID: the PubSub service (or PEP owner).
	Service string `json:"service"`
	// Node is the node the notification is about.
	Node string `json:"node"`
	// Kind is what happened.
	Kind EventKind `json:"kind"`
	// ItemID is the item's id (publish, retract); empty for purge and delete.
	ItemID string `json:"item_id,omitempty"`
	// Publisher is the item's publisher attribute, when the service sends one.
	Publisher string `json:"publisher,omitempty"`
	// Payload is the item's payload as XML text (the children of <item>),
	// namespaces declared: an element in no namespace has none; empty for
	// retract, purge and delete.
	Payload string `json:"payload,omitempty"`
	// ItemXML is the whole <item>, <retract>, <purge> or <delete> element
	// as XML text, in the pubsub#event namespace, the element that Python
	// hooks receive as `item`.
	ItemXML string `json:"item_xml,omitempty"`
	// Received is when the backend received the notification.
	Received time.Time `json:"received"`
	// Catchup is true when the event was fetched after the fact (missed
	// while offline) rather than received live.
	Catchup bool `json:"catchup,omitempty"`
}

// Notices about a node that are not hook events (no hook can select them):
// the node's configuration changed, or the service changed the account's
// subscription to it (XEP-0060 §8.2.4 and §8.8.4). The backend checks the
// node's subscription again on them.
const (
	EventConfiguration EventKind = "configuration"
	EventSubscription  EventKind = "subscription"
)
