package registry

// The audit trail: one record per registry change, in its own bucket of the
// same file, laid out like the run history (pruned the same way):
//
//	audit / 8-byte event ID, big-endian → 8-byte time (unix ns) + JSON of the AuditEvent
//
// A record is written right after the change it describes commits, in its
// own transaction: a crash between the two loses the record, not the
// change.

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"

	"hookctl.dev/hookctl"
)

var bucketAudit = []byte("audit")

// AppendAudit stores ev with the next event ID (set in ev), then forgets
// the oldest events beyond lim.
func (s *Store) AppendAudit(ev *hookctl.AuditEvent, lim RunLimits) error {
	return s.runsTx(true, func(tx *bolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists(bucketAudit)
		if err != nil {
			return err
		}
		seq, err := b.NextSequence()
		if err != nil {
			return err
		}
		ev.ID = seq
		j, err := json.Marshal(ev)
		if err != nil {
			return fmt.Errorf("encoding audit event: %w", err)
		}
		v := binary.BigEndian.AppendUint64(make([]byte, 0, 8+len(j)), uint64(ev.Time.UnixNano()))
		if err := b.Put(runKey(seq), append(v, j...)); err != nil {
			return err
		}
		return pruneRuns(b, lim, ev.Time)
	})
}

// Audit returns the stored events, newest first, at most limit (all when
// limit <= 0), none before since (when not zero).
func (s *Store) Audit(since time.Time, limit int) ([]hookctl.AuditEvent, error) {
	var out []hookctl.AuditEvent
	err := s.runsTx(false, func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketAudit)
		if b == nil {
			return nil
		}
		c := b.Cursor()
		for k, v := c.Last(); k != nil; k, v = c.Prev() {
			var ev hookctl.AuditEvent
			if len(v) < 8 || json.Unmarshal(v[8:], &ev) != nil {
				continue // a damaged record hides one event, not the trail
			}
			if !since.IsZero() && ev.Time.Before(since) {
				break
			}
			out = append(out, ev)
			if len(out) == limit {
				break
			}
		}
		return nil
	})
	return out, err
}
