package hookctl

import (
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// Type is a hook type: it says how a hook's Arg is run.
type Type string

// The hook types. The three Python types are the reference's; exec, expr and
// http are hookctl's own.
const (
	TypePython     Type = "python"      // Arg: a module importable by python3
	TypePythonFile Type = "python_file" // Arg: path to a script defining hook()
	TypePythonCode Type = "python_code" // Arg: Python source run per item
	TypeExec       Type = "exec"        // Arg: program path; Args: its arguments
	TypeExpr       Type = "expr"        // Arg: an expr-lang program
	TypeHTTP       Type = "http"        // Arg: URL the event is POSTed to
)

// Types lists every hook type in a stable order.
var Types = []Type{TypePython, TypePythonFile, TypePythonCode, TypeExec, TypeExpr, TypeHTTP}

// Valid reports whether t is a known hook type.
func (t Type) Valid() bool { return slices.Contains(Types, t) }

// TakesPath reports whether the type's Arg is a file path, which is made
// absolute and must exist.
func (t Type) TakesPath() bool { return t == TypePythonFile || t == TypeExec }

// ParseType returns the type named s, or an error listing the valid ones.
func ParseType(s string) (Type, error) {
	t := Type(s)
	if !t.Valid() {
		names := make([]string, len(Types))
		for i, v := range Types {
			names[i] = string(v)
		}
		return "", fmt.Errorf("%w: unknown hook type %q (want one of %s)", ErrInvalid, s, strings.Join(names, ", "))
	}
	return t, nil
}

// EventKind is what happened on a node.
type EventKind string

// The event kinds a hook can select with its Events list.
const (
	EventPublish EventKind = "publish" // an item was published
	EventRetract EventKind = "retract" // an item was retracted
	EventPurge   EventKind = "purge"   // every item of the node was removed
	EventDelete  EventKind = "delete"  // the node was deleted
)

// EventKinds lists every event kind in a stable order.
var EventKinds = []EventKind{EventPublish, EventRetract, EventPurge, EventDelete}

// DefaultEvents are the kinds a hook fires on when it names none: items
// published and retracted, as in the reference.
var DefaultEvents = []EventKind{EventPublish, EventRetract}

// Valid reports whether k is a known event kind.
func (k EventKind) Valid() bool { return slices.Contains(EventKinds, k) }

// Catch-up policies (see Hook.Catchup).
const (
	CatchupNew  = ""     // default: items missed while offline, not older ones
	CatchupAll  = "all"  // also every item the node holds when the hook is added
	CatchupNone = "none" // no catch-up: live events only
)

// Key is a hook's identity, the reference's model: two hooks with the same
// key are the same hook. Service is a bare JID; the registry stores the
// profile's own bare JID when it is empty (own PEP).
type Key struct {
	Profile string `json:"profile" yaml:"profile"`
	Service string `json:"service" yaml:"service"`
	Node    string `json:"node" yaml:"node"`
	Type    Type   `json:"type" yaml:"type"`
	Arg     string `json:"arg" yaml:"arg"`
}

// String renders the key for messages, e.g.
// "default pubsub.example.org urn:xmpp:microblog:0 python_file /a.py".
func (k Key) String() string {
	svc := k.Service
	if svc == "" {
		svc = "(pep)"
	}
	return fmt.Sprintf("%s %s %s %s %q", k.Profile, svc, k.Node, k.Type, RedactURLCredentials(k.Arg))
}

// Compare orders keys by profile, service, node, type, then arg, so that
// lists and plans print in a stable order.
func (k Key) Compare(o Key) int {
	if c := strings.Compare(k.Profile, o.Profile); c != 0 {
		return c
	}
	if c := strings.Compare(k.Service, o.Service); c != 0 {
		return c
	}
	if c := strings.Compare(k.Node, o.Node); c != 0 {
		return c
	}
	if c := strings.Compare(string(k.Type), string(o.Type)); c != 0 {
		return c
	}
	return strings.Compare(k.Arg, o.Arg)
}

// Hook is a registered action: its Key plus the attributes that say when and
// how it runs. Zero values mean the defaults.
type Hook struct {
	Key

	// Args are the program's arguments for exec hooks.
	Args []string `json:"args,omitempty" yaml:"args,omitempty"`
	// Headers are sent with http hooks. A value "${NAME}" is replaced by the
	// backend's environment variable NAME when the hook runs, so secrets
	// stay out of files and the registry.
	Headers map[string]string `json:"headers,omitempty" yaml:"headers,omitempty"`
	// Env are literal environment variables given to exec and Python
	// hooks (on top of the clean base environment). Not for secrets: the
	// values are in the hooks file and the registry.
	Env map[string]string `json:"env,omitempty" yaml:"env,omitempty"`
	// Secrets name secrets of the backend's config (secrets:) given to
	// exec and Python hooks as environment variables of the same name.
	// Only the names are stored; values are read by the backend and
	// redacted wherever they show.
	Secrets []string `json:"secrets,omitempty" yaml:"secrets,omitempty"`
	// Persistent hooks are stored and survive restarts; temporary ones live
	// in memory until their profile disconnects or the backend stops.
	Persistent bool `json:"persistent" yaml:"persistent"`
	// Owner is the declared set that manages the hook ("" = made by hand).
	Owner string `json:"owner,omitempty" yaml:"owner,omitempty"`
	// Name is a human label, unique in its file.
	Name string `json:"name,omitempty" yaml:"name,omitempty"`
	// Events selects the kinds the hook fires on; empty = DefaultEvents.
	Events []EventKind `json:"events,omitempty" yaml:"events,omitempty"`
	// Filter is an expr-lang boolean expression over event and item.
	Filter string `json:"filter,omitempty" yaml:"filter,omitempty"`
	// Timeout bounds one run; zero = the backend's default.
	Timeout Duration `json:"timeout,omitempty" yaml:"timeout,omitempty"`
	// Concurrency is how many runs of this hook may overlap; 0 or 1 keeps
	// events strictly in arrival order.
	Concurrency int `json:"concurrency,omitempty" yaml:"concurrency,omitempty"`
	// Catchup is the catch-up policy: CatchupNew, CatchupAll or CatchupNone.
	Catchup string `json:"catchup,omitempty" yaml:"catchup,omitempty"`

	// Source is where the hook was declared ("file:line"), or "cli".
	Source string `json:"source,omitempty" yaml:"source,omitempty"`
	// Created is when the registry first stored the hook.
	Created time.Time `json:"created,omitzero" yaml:"created,omitempty"`
	// Quarantined, when set, says why a stored hook no longer passes the
	// rules: the backend loaded it but never runs it. It is the
	// registry's verdict at load, never stored or accepted from a client.
	Quarantined string `json:"quarantined,omitempty" yaml:"quarantined,omitempty"`
	// Memory bounds a Python hook's worker (address space), e.g. "512MiB",
	// or "unlimited"; "" = the backend's python_memory. See ParseMemory.
	Memory string `json:"memory,omitempty" yaml:"memory,omitempty"`

	// Suspended hooks stay registered but run nothing: each event they
	// would have run is recorded as a skipped run. Hooks files write it
	// `enabled: false`. (An operator's `hookctl hook suspend` is kept
	// apart from the hook, so that files never undo it.)
	Suspended bool `json:"suspended,omitempty" yaml:"suspended,omitempty"`
}

// EffectiveEvents returns the kinds the hook fires on, defaults applied.
func (h Hook) EffectiveEvents() []EventKind {
	if len(h.Events) == 0 {
		return DefaultEvents
	}
	return h.Events
}

// FiresOn reports whether the hook selects events of kind k.
func (h Hook) FiresOn(k EventKind) bool { return slices.Contains(h.EffectiveEvents(), k) }

// Change is one attribute that differs between two hooks with the same key.
type Change struct {
	Field string `json:"field"`
	Old   string `json:"old"`
	New   string `json:"new"`
}

// AttributeChanges lists every declared field that differs from h to o,
// identity first, in a fixed order. It is the one comparison of hooks:
// plans, the dispatcher and the tests use it. Bookkeeping (Source,
// Created) is not compared; Owner is, so adoption shows as a change; the
// key's fields are, so a hook declared in a set whose arg or node changed
// is an update. TestAttributeChangesCoversEveryField fails when a field
// is added to Hook and not here.
func (h Hook) AttributeChanges(o Hook) []Change {
	var out []Change
	a, b := h.Fields(), o.Fields()
	for i := range a {
		if a[i].Value != b[i].Value {
			out = append(out, Change{Field: a[i].Name, Old: a[i].Value, New: b[i].Value})
		}
	}
	return out
}

// Field is one declared field of a hook, as AttributeChanges compares it
// and plans print it.
type Field struct{ Name, Value string }

// Fields lists every declared field of h in a fixed order, identity
// first, each as the text plans compare and print ("" for unset; defaults
// applied where a zero value means one, as for events and concurrency).
func (h Hook) Fields() []Field {
	return []Field{
		{"profile", h.Profile}, {"service", h.Service}, {"node", h.Node},
		{"type", string(h.Type)}, {"arg", h.Arg},
		{"persistent", fmt.Sprint(h.Persistent)}, {"owner", h.Owner}, {"name", h.Name},
		{"args", jsonString(h.Args)}, {"headers", jsonString(h.Headers)},
		{"env", jsonString(h.Env)}, {"secrets", jsonString(h.Secrets)},
		{"events", eventsString(h.EffectiveEvents())}, {"filter", h.Filter},
		{"timeout", h.Timeout.String()}, {"concurrency", fmt.Sprint(max(h.Concurrency, 1))},
		{"catchup", catchupString(h.Catchup)}, {"memory", h.Memory},
		{"enabled", fmt.Sprint(!h.Suspended)},
	}
}

// SameAttributes reports whether AttributeChanges finds nothing, cheaply
// in the common case of identical fields: plans and the dispatcher compare
// every hook on every change, and AttributeChanges formats each field.
func (h Hook) SameAttributes(o Hook) bool {
	if h.Key == o.Key && h.Persistent == o.Persistent && h.Owner == o.Owner && h.Name == o.Name &&
		h.Filter == o.Filter && h.Timeout == o.Timeout && h.Concurrency == o.Concurrency &&
		h.Catchup == o.Catchup && slices.Equal(h.Args, o.Args) && maps.Equal(h.Headers, o.Headers) &&
		maps.Equal(h.Env, o.Env) && slices.Equal(h.Secrets, o.Secrets) &&
		slices.Equal(h.Events, o.Events) && h.Memory == o.Memory && h.Suspended == o.Suspended {
		return true
	}
	return len(h.AttributeChanges(o)) == 0
}

func catchupString(s string) string {
	if s == CatchupNew {
		return "new"
	}
	return s
}

func eventsString(ev []EventKind) string {
	s := make([]string, len(ev))
	for i, e := range ev {
		s[i] = string(e)
	}
	slices.Sort(s)
	return strings.Join(s, ",")
}

func jsonString(v any) string {
	b, _ := json.Marshal(v) // slices and string maps always marshal
	if string(b) == "null" || string(b) == "{}" || string(b) == "[]" {
		return ""
	}
	return string(b)
}

// Duration is a time.Duration that reads and writes as a Go duration string
// ("30s") in JSON and YAML.
type Duration time.Duration

// String returns "" for zero, else the time.Duration form.
func (d Duration) String() string {
	if d == 0 {
		return ""
	}
	return time.Duration(d).String()
}

// MarshalJSON writes the duration as a string.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(d.String()) }

// UnmarshalJSON reads a duration string ("" = zero).
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("duration must be a string such as \"30s\": %w", err)
	}
	v, err := ParseDuration(s)
	if err != nil {
		return err
	}
	*d = v
	return nil
}

// MarshalYAML writes the duration as a string.
func (d Duration) MarshalYAML() (any, error) { return d.String(), nil }

// UnmarshalYAML reads a duration string.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	var s string
	if err := n.Decode(&s); err != nil {
		return fmt.Errorf("line %d: duration must be a string such as \"30s\"", n.Line)
	}
	v, err := ParseDuration(s)
	if err != nil {
		return fmt.Errorf("line %d: %w", n.Line, err)
	}
	*d = v
	return nil
}

// ParseDuration parses a non-negative Go duration string; "" is zero.
func ParseDuration(s string) (Duration, error) {
	if s == "" {
		return 0, nil
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("%w: bad duration %q (want e.g. \"30s\", \"2m\")", ErrInvalid, s)
	}
	if v < 0 {
		return 0, fmt.Errorf("%w: duration %q is negative", ErrInvalid, s)
	}
	return Duration(v), nil
}
