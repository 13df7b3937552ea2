package hookctl

import "context"

// Registry is the live set of hooks. The backend's store implements it, and
// so does the control API client, so that the reconciler runs the same
// against either.
type Registry interface {
	// List returns the hooks of profile (every profile when empty), in Key
	// order, with the revision they were read at.
	List(ctx context.Context, profile string) ([]Hook, uint64, error)
	// Create adds one hook. A hook with the same Key is refused with
	// ErrDuplicate. It returns the hook as stored (service normalised,
	// Created set).
	Create(ctx context.Context, h Hook) (Hook, error)
	// Remove deletes every hook matching m and returns how many it removed.
	Remove(ctx context.Context, m Match) (int, error)
	// Apply runs a batch in one transaction, only if b.Revision is still the
	// current revision (else ErrStale); it returns the new revision.
	Apply(ctx context.Context, b Batch) (uint64, error)
}

// Match selects hooks to remove. Profile, Service and Node must match
// exactly (Service "" = the profile's own PEP); an empty Type or Arg matches
// any, as in the reference.
type Match struct {
	Profile string `json:"profile"`
	Service string `json:"service"`
	Node    string `json:"node"`
	Type    Type   `json:"type,omitempty"`
	Arg     string `json:"arg,omitempty"`
}

// Matches reports whether key k is selected by m. Service must already be
// normalised on both sides.
func (m Match) Matches(k Key) bool {
	return k.Profile == m.Profile && k.Service == m.Service && k.Node == m.Node &&
		(m.Type == "" || k.Type == m.Type) && (m.Arg == "" || k.Arg == m.Arg)
}

// Batch is a set of changes applied atomically: all of it or none.
type Batch struct {
	// Revision is the registry revision the batch was planned against.
	Revision uint64 `json:"revision"`
	// Create adds hooks; each key must not exist yet.
	Create []Hook `json:"create,omitempty"`
	// Update replaces hooks whose key exists, keeping their Created time.
	Update []Hook `json:"update,omitempty"`
	// Delete removes hooks by key; each must exist.
	Delete []Key `json:"delete,omitempty"`
	// Inventory, if set, updates set records in the same transaction.
	Inventory *InventoryChange `json:"inventory,omitempty"`
}

// Empty reports whether the batch changes nothing.
func (b Batch) Empty() bool { return len(b.Create) == 0 && len(b.Update) == 0 && len(b.Delete) == 0 }
