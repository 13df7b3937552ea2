package registry

// The subscriptions hookctl made itself, per profile, so that after a
// restart it removes only its own (a subscription the account had before
// hookctl is left alone). They share the store file and its crash safety:
//
//	subscriptions / JSON array [profile, service, node] → empty
//
// Older versions kept them in data_dir/subscriptions/<profile>.json,
// written without fsync; the subscription package imports that file once.

import (
	"encoding/json"
	"fmt"
	"slices"

	bolt "go.etcd.io/bbolt"
)

var bucketSubscriptions = []byte("subscriptions")

// OwnSubscriptions returns the subscriptions hookctl made for profile,
// sorted by service then node.
func (s *Store) OwnSubscriptions(profile string) ([]NodeRef, error) {
	var out []NodeRef
	err := s.view(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketSubscriptions)
		if b == nil {
			return nil
		}
		return b.ForEach(func(k, _ []byte) error {
			var f [3]string
			if err := json.Unmarshal(k, &f); err != nil {
				return fmt.Errorf("bad subscription key %q: %w", k, err)
			}
			if f[0] == profile {
				out = append(out, NodeRef{f[0], f[1], f[2]})
			}
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("reading subscriptions: %w", err)
	}
	slices.SortFunc(out, compareRefs)
	return out, nil
}

// AddOwnSubscriptions records subscriptions hookctl made (already recorded
// ones stay), in one transaction.
func (s *Store) AddOwnSubscriptions(refs ...NodeRef) error {
	return s.updateSubscriptions(func(b *bolt.Bucket) error {
		for _, r := range refs {
			if err := b.Put(nodeKey(r), nil); err != nil {
				return err
			}
		}
		return nil
	})
}

// RemoveOwnSubscriptions forgets subscriptions (unknown ones are ignored),
// in one transaction.
func (s *Store) RemoveOwnSubscriptions(refs ...NodeRef) error {
	return s.updateSubscriptions(func(b *bolt.Bucket) error {
		for _, r := range refs {
			if err := b.Delete(nodeKey(r)); err != nil {
				return err
			}
		}
		return nil
	})
}

func (s *Store) updateSubscriptions(f func(*bolt.Bucket) error) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return errClosed
	}
	err := s.db.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists(bucketSubscriptions)
		if err != nil {
			return err
		}
		return f(b)
	})
	if err != nil {
		return fmt.Errorf("recording subscriptions: %w", err)
	}
	return nil
}

func compareRefs(a, b NodeRef) int {
	for _, c := range [][2]string{{a.Profile, b.Profile}, {a.Service, b.Service}, {a.Node, b.Node}} {
		if c[0] != c[1] {
			if c[0] < c[1] {
				return -1
			}
			return 1
		}
	}
	return 0
}
