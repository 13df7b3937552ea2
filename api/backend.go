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
	// Suspended lists the suspended hooks and sets.
	Suspended []hookctl.Suspension `json:"suspended,omitempty"`
	// Watch is the state of serve --watch's reconciler, when it runs.
	Watch *hookctl.WatchStatus `json:"watch,omitempty"`
	// Cluster is this replica's view of its cluster (serve --cluster).
	Cluster *hookctl.ClusterStatus `json:"cluster,omitempty"`
}

// The status and query types are shared with the dispatcher and the
// backend's parts, so they live in the root package; these names keep the
// API's vocabulary.
type (
	NodeStatus    = hookctl.NodeStatus
	ProfileStatus = hookctl.ProfileStatus
	HookError     = hookctl.HookError
	RunQuery      = hookctl.RunQuery
)

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
