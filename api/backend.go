package api

import (
	"context"
	"time"

	"hookctl.dev/hookctl"
)

// Backend is what the control API serves. The daemon implements it by
// composing the registry, the XMPP sessions and the dispatcher; tests may
// implement it with the registry alone (the XMPP methods then return
// hookctl.ErrUnavailable).
type Backend interface {
	hookctl.Registry
	// Status describes the backend and each profile's session.
	Status(ctx context.Context) (Status, error)
	// Runs returns recent runs, newest first.
	Runs(ctx context.Context, q RunQuery) ([]hookctl.Run, error)
	// PubSub performs a PubSub operation through a profile's session.
	PubSub(ctx context.Context, op PubSubRequest) (PubSubResult, error)
}

// Status is the answer of GET /v1/status.
type Status struct {
	Version  string          `json:"version"`
	Started  time.Time       `json:"started"`
	Revision uint64          `json:"revision"`
	Hooks    int             `json:"hooks"`
	Profiles []ProfileStatus `json:"profiles"`
	// Hooks with a problem (subscribe error, load error), by key.
	HookErrors []HookError `json:"hook_errors,omitempty"`
	// Nodes are the nodes that hooks watch, with their delivery state.
	Nodes []NodeStatus `json:"nodes,omitempty"`
}

// NodeStatus is the delivery state of one node that hooks watch: what the
// backend remembers of it and what catch-up did since start. Items missed
// while offline are reported here as data, not as hook errors.
type NodeStatus struct {
	Profile string `json:"profile"`
	// Service is the PubSub service; the profile's bare JID for its own PEP.
	Service string `json:"service"`
	Node    string `json:"node"`
	// Hooks is how many hooks watch the node.
	Hooks int `json:"hooks"`
	// Subscribed tells whether the profile's session is subscribed to it.
	Subscribed bool `json:"subscribed"`
	// Finished is how many items are remembered as handled (bounded).
	Finished int `json:"finished"`
	// LastCatchup is when the node's items were last fetched to catch up.
	LastCatchup time.Time `json:"last_catchup,omitzero"`
	// CaughtUp counts the items run by catch-up since start.
	CaughtUp uint64 `json:"caught_up"`
	// Gaps counts the catch-ups in which every item the node held was
	// unseen: items published before them may have been missed.
	Gaps uint64 `json:"gaps"`
	// MaybeMissed describes the last gap for people; empty when none.
	MaybeMissed string `json:"maybe_missed,omitempty"`
}

// ProfileStatus is one profile's session state.
type ProfileStatus struct {
	Name  string `json:"name"`
	JID   string `json:"jid"`
	State string `json:"state"` // disconnected, connecting, connected, stopped
	// LastError is the last connection error, empty when none.
	LastError string    `json:"last_error,omitempty"`
	Since     time.Time `json:"since,omitzero"`
	Hooks     int       `json:"hooks"`
	// Subscriptions is how many nodes the session is subscribed to for hooks.
	Subscriptions int `json:"subscriptions"`
	// Events is how many PubSub events the session has received.
	Events uint64 `json:"events"`
	// Reconnects counts automatic reconnects since start.
	Reconnects uint64 `json:"reconnects"`
	// Conflicts counts connections the server closed because another
	// session bound the same full JID (another backend with the same
	// resource); each one makes the next reconnect wait longer.
	Conflicts uint64 `json:"conflicts"`
	// BoundJID is the full JID (with the resource) while connected.
	BoundJID string `json:"bound_jid,omitempty"`
}

// HookError is a problem attached to one hook.
type HookError struct {
	Hook  hookctl.Key `json:"hook"`
	Error string      `json:"error"`
}

// RunQuery filters GET /v1/runs.
type RunQuery struct {
	Profile string `json:"profile,omitempty"`
	Node    string `json:"node,omitempty"`
	// Hook matches the hook's name or arg.
	Hook       string `json:"hook,omitempty"`
	FailedOnly bool   `json:"failed,omitempty"`
	Limit      int    `json:"limit,omitempty"`
}

// PubSub operations.
const (
	OpPublish    = "publish"
	OpRetract    = "retract"
	OpNodeCreate = "node_create"
	OpNodeDelete = "node_delete"
)

// PubSubRequest is the body of POST /v1/pubsub.
type PubSubRequest struct {
	Op      string `json:"op"`
	Profile string `json:"profile"`
	Service string `json:"service,omitempty"`
	Node    string `json:"node"`
	ItemID  string `json:"item_id,omitempty"`
	// Payload is the item payload as XML text (publish).
	Payload string `json:"payload,omitempty"`
	// Notify asks for retract notifications (retract; default true).
	Notify *bool `json:"notify,omitempty"`
}

// PubSubResult is the answer of POST /v1/pubsub.
type PubSubResult struct {
	ItemID string `json:"item_id,omitempty"`
}
