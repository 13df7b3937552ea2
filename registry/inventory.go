package registry

// The inventory: per declared set, the source that manages it, the source
// revision last applied and the keys of its hooks (hookctl.SetRecord). It
// is written only by a Batch that carries an InventoryChange, in the same
// bbolt transaction as the batch's hooks, so that a record never
// describes hooks that were not committed:
//
//	inventory / set name → JSON of the SetRecord

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"time"

	bolt "go.etcd.io/bbolt"

	"hookctl.dev/hookctl"
)

var bucketInventory = []byte("inventory")

var _ hookctl.InventoryReader = (*Store)(nil)

// Inventory returns every set record, by set name, with the revision the
// registry was at when they were read.
func (s *Store) Inventory(ctx context.Context) ([]hookctl.SetRecord, uint64, error) {
	if err := ctx.Err(); err != nil {
		return nil, 0, err
	}
	var out []hookctl.SetRecord
	var rev uint64
	err := s.view(func(tx *bolt.Tx) error {
		// view holds s.mu, as commit does: rev matches what is read.
		rev = s.state.Load().rev
		b := tx.Bucket(bucketInventory)
		if b == nil {
			return nil
		}
		return b.ForEach(func(k, v []byte) error {
			var r hookctl.SetRecord
			if err := json.Unmarshal(v, &r); err != nil {
				return fmt.Errorf("bad inventory record of set %q: %w", k, err)
			}
			out = append(out, r)
			return nil
		})
	})
	if err != nil {
		return nil, 0, fmt.Errorf("reading inventory: %w", err)
	}
	return out, rev, nil
}

// checkInventory refuses records that cannot be stored: no set or
// source, a set twice in the change.
func checkInventory(c *hookctl.InventoryChange) error {
	if c == nil {
		return nil
	}
	seen := map[string]bool{}
	for _, r := range c.Put {
		if r.Set == "" || r.Source == "" {
			return fmt.Errorf("%w: inventory record needs a set and a source (set %q, source %q)", hookctl.ErrInvalid, r.Set, r.Source)
		}
		if seen[r.Set] {
			return fmt.Errorf("%w: set %q appears more than once in the inventory change", hookctl.ErrInvalid, r.Set)
		}
		seen[r.Set] = true
	}
	for _, set := range c.Forget {
		if seen[set] {
			return fmt.Errorf("%w: set %q is both put and forgotten in the inventory change", hookctl.ErrInvalid, set)
		}
		seen[set] = true
	}
	return nil
}

// inventoryWrites turns c into the records it writes, each stamped with
// now.
func inventoryWrites(c *hookctl.InventoryChange, now time.Time) ([]Write, error) {
	if c == nil {
		return nil, nil
	}
	var w []Write
	for _, set := range c.Forget {
		w = append(w, Write{Bucket: RemoteInventory, Key: []byte(set)})
	}
	for _, r := range c.Put {
		r.Members = slices.Clone(r.Members)
		slices.SortFunc(r.Members, func(a, b hookctl.Key) int { return a.Compare(b) })
		r.Applied = now
		v, err := json.Marshal(r)
		if err != nil {
			return nil, fmt.Errorf("encoding inventory record of set %q: %w", r.Set, err)
		}
		w = append(w, Write{Bucket: RemoteInventory, Key: []byte(r.Set), Value: v})
	}
	return w, nil
}
