package hookctl

import "time"

// Status types: what the backend reports of its nodes, profiles and hooks,
// shared by the control API (its wire format) and the parts that fill them.

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
	// Subscribed tells whether the profile's session is subscribed to it,
	// as last confirmed with the server; SubscribeError says why not.
	Subscribed     bool   `json:"subscribed"`
	SubscribeError string `json:"subscribe_error,omitempty"`
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
	Hook  Key    `json:"hook"`
	Error string `json:"error"`
}

// RunQuery selects runs of the history (GET /v1/runs).
type RunQuery struct {
	Profile string `json:"profile,omitempty"`
	Node    string `json:"node,omitempty"`
	// Hook matches the hook's name or arg.
	Hook       string `json:"hook,omitempty"`
	FailedOnly bool   `json:"failed,omitempty"`
	Limit      int    `json:"limit,omitempty"`
	// Set keeps runs of hooks owned by this declared set.
	Set string `json:"set,omitempty"`
	// Since keeps runs started at or after this time.
	Since time.Time `json:"since,omitzero"`
}

// Selects reports whether r is one of the runs q asks for (Limit aside).
// The in-memory and the stored history both filter with it.
func (q RunQuery) Selects(r *Run) bool {
	switch {
	case q.Profile != "" && r.Hook.Profile != q.Profile,
		q.Node != "" && r.Hook.Node != q.Node,
		q.Hook != "" && r.HookName != q.Hook && r.Hook.Arg != q.Hook,
		q.Set != "" && r.Set != q.Set,
		q.FailedOnly && (r.Outcome == "ok" || r.Outcome == "skipped"),
		!q.Since.IsZero() && r.Started.Before(q.Since):
		return false
	}
	return true
}

// Kinds of operator suspension (Suspension.Kind).
const (
	SuspendHook = "hook"
	SuspendSet  = "set"
)

// Suspension is one hook or one declared set an operator suspended
// (`hookctl hook suspend`, `hookctl set suspend`).
type Suspension struct {
	// Kind is SuspendHook or SuspendSet; Name is the hook's identity
	// ("set/name", or its key) or the set's name.
	Kind string `json:"kind"`
	Name string `json:"name"`
	// By is who suspended it; At when.
	By string    `json:"by,omitempty"`
	At time.Time `json:"at"`
}

// AuditEvent is one change of the registry, as the audit trail keeps it
// (`hookctl events`).
type AuditEvent struct {
	// ID increases with every event recorded.
	ID   uint64    `json:"id"`
	Time time.Time `json:"time"`
	// Action is create, remove, apply, suspend or resume.
	Action string `json:"action"`
	// Who made it: "uid 1000 (alice)" over the socket, "token" over TCP,
	// "watch …" for the backend's own watcher (set, files, commit).
	Who string `json:"who"`
	// Revision is the registry revision after the change.
	Revision uint64 `json:"revision"`
	// Subject names what a suspend or resume was about.
	Subject string `json:"subject,omitempty"`
	// Changes are the hooks created, updated and deleted; at most
	// MaxAuditChanges, Omitted says how many more there were.
	Changes []AuditChange `json:"changes,omitempty"`
	Omitted int           `json:"omitted,omitempty"`
}

// MaxAuditChanges bounds the hooks one audit event details.
const MaxAuditChanges = 1000

// AuditChange is one hook in an audit event: created (After), deleted
// (Before), or updated (Attributes: each field before and after).
type AuditChange struct {
	Op         string   `json:"op"` // create, update, delete
	Hook       string   `json:"hook"`
	Key        Key      `json:"key"`
	Before     *Hook    `json:"before,omitempty"`
	After      *Hook    `json:"after,omitempty"`
	Attributes []Change `json:"attributes,omitempty"`
}

// ClusterStatus is a replica's view of the cluster it belongs to (serve
// --cluster): its members, who holds which profile, its lease and etcd.
type ClusterStatus struct {
	Replica   string   `json:"replica"`
	Endpoints []string `json:"endpoints"`
	// Members are the live replicas, by name.
	Members []ClusterMember `json:"members"`
	// Holders maps each profile to the replica holding it ("" = none).
	Holders map[string]string `json:"holders"`
	// Lease is the TTL; LeaseValidFor how long this replica's lease is
	// surely alive (0: lost or expired: it holds nothing).
	Lease         Duration `json:"lease"`
	LeaseValidFor Duration `json:"lease_valid_for"`
	// HolderChanges counts profiles this replica took or gave up.
	HolderChanges int64 `json:"holder_changes"`
	// Etcd is the etcd server this replica reached, or Error why not.
	EtcdVersion string `json:"etcd_version,omitempty"`
	EtcdLeader  uint64 `json:"etcd_leader,omitempty"`
	Error       string `json:"error,omitempty"`
}

// ClusterMember is one live replica.
type ClusterMember struct {
	Name  string    `json:"name"`
	API   string    `json:"api,omitempty"`
	Since time.Time `json:"since"`
}
