package hookctl

import (
	"context"
	"time"
)

// SetRecord is what the registry remembers of a declared set (its
// inventory, like a Flux Kustomization's or a kubectl ApplySet's): the
// source that manages it, the source revision last applied, and the keys
// of the hooks it held after that apply. A source's rounds use it to find
// the sets it manages that have gone from the files (to prune them), the
// keys a set owned (a hand-made hook there is drift, not a conflict), and
// a second source declaring the same set (refused).
type SetRecord struct {
	Set string `json:"set"`
	// Source names where the set is declared (see reconcile.SourceOf).
	Source string `json:"source"`
	// Revision is the source revision last applied: a git commit, or a
	// digest of the files' contents.
	Revision string `json:"revision,omitempty"`
	// Members are the keys of the set's hooks after that apply, in Key
	// order.
	Members []Key `json:"members"`
	// Applied is when the record was written (set by the registry).
	Applied time.Time `json:"applied,omitzero"`
}

// InventoryChange is the inventory part of a Batch, written in the same
// transaction as its hooks: records put (replacing the set's record) and
// sets forgotten.
type InventoryChange struct {
	Put    []SetRecord `json:"put,omitempty"`
	Forget []string    `json:"forget,omitempty"`
}

// InventoryReader is a registry that keeps set records. The revision is
// the registry's, as in List, so that a plan can tell whether both reads
// saw the same state.
type InventoryReader interface {
	Inventory(ctx context.Context) ([]SetRecord, uint64, error)
}

// WatchStatus is the state of the backend's own reconciler (serve
// --watch) as `hookctl status` shows it.
type WatchStatus struct {
	Ready      bool   `json:"ready"`
	Revision   string `json:"source_revision,omitempty"`
	LastError  string `json:"last_error,omitempty"`
	FilesError string `json:"files_error,omitempty"`
	// SetErrors says, by set, why its changes are refused.
	SetErrors map[string]string `json:"set_errors,omitempty"`
	// Drift is the number of differences found and left in place now.
	Drift int `json:"drift"`
}
