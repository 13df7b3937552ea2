package registry

// The durable run history, in its own bucket of the same file so that it
// shares bbolt's crash safety:
//
//	runs / 8-byte run ID, big-endian → 8-byte start time (unix ns) + JSON of the Run
//
// Keys in ID order make "newest first" a backward cursor walk and pruning
// a walk from the front; the start time before the JSON lets pruning by
// age stop at the first young run without decoding anything.

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"

	"hookctl.dev/hookctl"
)

var bucketRuns = []byte("runs")

// RunLimits bound the stored history: at most Keep runs, none started
// more than MaxAge before the last write. Zero values keep everything.
type RunLimits struct {
	Keep   int
	MaxAge time.Duration
}

// AppendRuns stores runs (IDs already assigned, increasing) in one
// transaction, then forgets the oldest runs beyond lim. The transaction
// may be shared with catch-up marks written at the same moment
// (sharedUpdate).
func (s *Store) AppendRuns(runs []hookctl.Run, lim RunLimits, now time.Time) error {
	if len(runs) == 0 {
		return nil
	}
	err := s.sharedUpdate(writeRuns, func(tx *bolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists(bucketRuns)
		if err != nil {
			return err
		}
		b.FillPercent = 1 // keys only ever grow: full pages, fewer splits
		for i := range runs {
			v, err := encodeRun(&runs[i])
			if err != nil {
				return err
			}
			if err := b.Put(runKey(runs[i].ID), v); err != nil {
				return err
			}
		}
		return pruneRuns(b, lim, now)
	})
	if err != nil && err != errClosed {
		return fmt.Errorf("writing run history: %w", err)
	}
	return err
}

// pruneRuns deletes runs from the oldest while there are more than
// lim.Keep or the oldest started before now-lim.MaxAge. Run IDs are
// consecutive, so the count is the span of the first and last keys; a gap
// (a batch that failed to write) only makes it forget a few runs early.
func pruneRuns(b *bolt.Bucket, lim RunLimits, now time.Time) error {
	c := b.Cursor()
	lk, _ := c.Last()
	if lk == nil {
		return nil
	}
	last := binary.BigEndian.Uint64(lk)
	cutoff := int64(0)
	if lim.MaxAge > 0 {
		cutoff = now.Add(-lim.MaxAge).UnixNano()
	}
	var del [][]byte
	for k, v := c.First(); k != nil; k, v = c.Next() {
		id := binary.BigEndian.Uint64(k)
		tooMany := lim.Keep > 0 && last-id+1 > uint64(lim.Keep)
		tooOld := cutoff != 0 && len(v) >= 8 && int64(binary.BigEndian.Uint64(v)) < cutoff
		if !tooMany && !tooOld {
			break
		}
		del = append(del, k) // deleting while a cursor walks skips keys
	}
	for _, k := range del {
		if err := b.Delete(k); err != nil {
			return err
		}
	}
	return nil
}

// LastRunID returns the highest stored run ID, 0 when none: IDs go on
// from it after a restart.
func (s *Store) LastRunID() (uint64, error) {
	var id uint64
	err := s.runsTx(false, func(tx *bolt.Tx) error {
		if b := tx.Bucket(bucketRuns); b != nil {
			if k, _ := b.Cursor().Last(); k != nil {
				id = binary.BigEndian.Uint64(k)
			}
		}
		return nil
	})
	return id, err
}

// Runs returns the stored runs q selects, newest first, at most limit
// (all when limit <= 0).
func (s *Store) Runs(q hookctl.RunQuery, limit int) ([]hookctl.Run, error) {
	var out []hookctl.Run
	err := s.runsTx(false, func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketRuns)
		if b == nil {
			return nil
		}
		c := b.Cursor()
		for k, v := c.Last(); k != nil; k, v = c.Prev() {
			var r hookctl.Run
			if decodeRun(v, &r) != nil {
				continue // a damaged record hides one run, not the history
			}
			if !q.Since.IsZero() && r.Started.Before(q.Since) {
				break // older runs only from here on
			}
			if !q.Selects(&r) {
				continue
			}
			out = append(out, r)
			if len(out) == limit {
				break
			}
		}
		return nil
	})
	return out, err
}

// Run returns the stored run id, with its Attempt: how many stored runs
// of the same hook and item came before it, plus one.
func (s *Store) Run(id uint64) (hookctl.Run, error) {
	var r hookctl.Run
	err := s.runsTx(false, func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketRuns)
		var v []byte
		if b != nil {
			v = b.Get(runKey(id))
		}
		if v == nil {
			return fmt.Errorf("%w: run %d (not in the history)", hookctl.ErrNotFound, id)
		}
		if err := decodeRun(v, &r); err != nil {
			return fmt.Errorf("run %d: %w", id, err)
		}
		r.Attempt = 1
		if r.ItemID == "" {
			return nil
		}
		c := b.Cursor()
		c.Seek(runKey(id))
		for k, v := c.Prev(); k != nil; k, v = c.Prev() {
			var o struct {
				Hook   hookctl.Key `json:"hook"`
				ItemID string      `json:"item_id"`
			}
			if len(v) >= 8 && json.Unmarshal(v[8:], &o) == nil && o.Hook == r.Hook && o.ItemID == r.ItemID {
				r.Attempt++
			}
		}
		return nil
	})
	return r, err
}

// runsTx runs f in a read or write transaction under the store's lock,
// refusing once the store is closed.
func (s *Store) runsTx(write bool, f func(*bolt.Tx) error) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return errClosed
	}
	if !write {
		return s.db.View(f)
	}
	if err := s.db.Update(f); err != nil {
		return fmt.Errorf("writing run history: %w", err)
	}
	return nil
}

func runKey(id uint64) []byte { return binary.BigEndian.AppendUint64(nil, id) }

// storedRun is a run as stored: PayloadInXML says the event's payload was
// left out because its item XML holds it (payloadOf gives it back).
type storedRun struct {
	hookctl.Run
	PayloadInXML bool `json:"payload_in_xml,omitempty"`
}

// encodeRun is the stored form of r: its start time, then its JSON
// without HTML escaping (XML payloads would grow and cost more to write)
// and without the event's payload when the item XML holds it.
//
// The JSON is written by appendRunJSON, field by field, in the bytes
// encoding/json would write for storedRun (TestEncodeRunAsEncodingJSON
// holds them to that): reflection was a seventh of the history's cost per
// run. A time encoding/json refuses (a year outside 0–9999) goes to
// encoding/json, for its error.
func encodeRun(r *hookctl.Run) ([]byte, error) {
	in, inXML := r.Input, false
	if in != nil && in.Payload != "" && payloadOf(in.ItemXML) == in.Payload {
		inXML = true
	}
	buf := binary.BigEndian.AppendUint64(make([]byte, 0, runSizeHint(r)), uint64(r.Started.UnixNano()))
	if out, ok := appendRunJSON(buf, r, inXML); ok {
		return out, nil
	}
	return encodeRunJSON(r)
}

// runSizeHint is the room a run's record is likely to need.
func runSizeHint(r *hookctl.Run) int {
	n := 512 + len(r.Hook.Arg) + len(r.Output) + len(r.Error)
	if r.Input != nil {
		n += len(r.Input.ItemXML) + len(r.Input.Payload)
	}
	return n
}

// encodeRunJSON is encodeRun through encoding/json.
func encodeRunJSON(r *hookctl.Run) ([]byte, error) {
	sr := storedRun{Run: *r}
	if in := r.Input; in != nil && in.Payload != "" && payloadOf(in.ItemXML) == in.Payload {
		ci := *in
		ci.Payload = ""
		sr.Input, sr.PayloadInXML = &ci, true
	}
	buf := bytes.NewBuffer(binary.BigEndian.AppendUint64(make([]byte, 0, 1024), uint64(r.Started.UnixNano())))
	enc := json.NewEncoder(buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(sr); err != nil {
		return nil, fmt.Errorf("encoding run %d: %w", r.ID, err)
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

func decodeRun(v []byte, r *hookctl.Run) error {
	if len(v) < 8 {
		return fmt.Errorf("stored run record of %d bytes is too short", len(v))
	}
	var sr storedRun
	if err := json.Unmarshal(v[8:], &sr); err != nil {
		return err
	}
	if sr.PayloadInXML && sr.Input != nil {
		sr.Input.Payload = payloadOf(sr.Input.ItemXML)
	}
	*r = sr.Run
	return nil
}

// payloadOf returns what is inside the outer element of an item's XML as
// the sessions write it (<item …>PAYLOAD</item>), "" for an empty one.
func payloadOf(itemXML string) string {
	if !strings.HasSuffix(itemXML, "</item>") {
		return ""
	}
	start := strings.IndexByte(itemXML, '>')
	if start < 0 {
		return ""
	}
	return itemXML[start+1 : len(itemXML)-len("</item>")]
}
