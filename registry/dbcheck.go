package registry

import (
	"encoding/binary"
	stderrors "errors"
	"fmt"
	"hash/fnv"
	"io"
	"os"
	"runtime/debug"
	"time"

	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"
)

// bbolt's on-disk meta page (go.etcd.io/bbolt/internal/common): a 16-byte
// page header, then magic, version, page size, flags, root bucket (page,
// sequence), freelist page, high-water mark (pages in use), txid and an
// FNV-64a checksum of the preceding 56 bytes.
const (
	boltMagic        = 0xED0CDAED
	boltVersion      = 2
	boltPageHeader   = 16
	boltMetaSize     = 64
	boltNoFreelist   = ^uint64(0)
	boltMinPageSize  = 1 << 10
	boltMaxPageSize  = 1 << 24
	boltChecksumSpan = 56
)

// Page flags of the page header.
const (
	boltBranchPage   = 0x01
	boltLeafPage     = 0x02
	boltFreelistPage = 0x10
)

// checkPageHeader checks that page id says it is that page, of one of the
// kinds in flags, and that its overflow pages are inside the high-water
// mark.
func checkPageHeader(f *os.File, m boltMeta, id uint64, flags uint16) error {
	var hdr [boltPageHeader]byte
	if _, err := f.ReadAt(hdr[:], int64(id*m.pageSize)); err != nil {
		return fmt.Errorf("page %d: %v", id, err)
	}
	gotID := binary.NativeEndian.Uint64(hdr[0:])
	gotFlags := binary.NativeEndian.Uint16(hdr[8:])
	overflow := uint64(binary.NativeEndian.Uint32(hdr[12:]))
	switch {
	case gotID != id:
		return fmt.Errorf("page %d says it is page %d", id, gotID)
	case gotFlags&flags == 0 || gotFlags&^flags != 0:
		return fmt.Errorf("page %d has the wrong kind (flags %#x)", id, gotFlags)
	case id+overflow >= m.pgid:
		return fmt.Errorf("page %d runs past the high-water mark", id)
	}
	return nil
}

// boltMeta is the part of a meta page the check needs.
type boltMeta struct {
	pageSize                   uint64
	root, freelist, pgid, txid uint64
}

// checkDBFile refuses a store file that bbolt would crash on: bbolt maps
// the file and trusts its meta pages, so a truncated file (pages beyond
// its end) kills the process with SIGBUS, and garbage in a page panics. It
// checks the meta pages against the file's size, then walks every page
// read-only with faults turned into errors. A missing or empty file is
// fine: bbolt creates it. A file locked by another backend is left to
// bolt.Open, which reports it.
func checkDBFile(path string) error {
	fi, err := os.Stat(path)
	if err != nil || fi.Size() == 0 {
		return nil
	}
	if err := checkMeta(path, fi.Size()); err != nil {
		return damaged(path, err)
	}
	if err := checkPages(path); err != nil {
		return damaged(path, err)
	}
	return nil
}

func damaged(path string, err error) error {
	return fmt.Errorf("store %s is damaged, not opening it: %v. To recover, stop here and either restore "+
		"the file from a backup, or move it aside (mv %s %s.damaged), start the backend on an empty "+
		"registry and apply your hooks files again (hookctl apply -f …)", path, err, path, path)
}

// checkMeta reads both meta pages and checks that the one bbolt will use
// points inside the file, at pages of the right kind.
func checkMeta(path string, size int64) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	m0, err0 := readMeta(f, 0)
	pageSize := m0.pageSize
	if err0 != nil {
		pageSize = uint64(os.Getpagesize())
	}
	m1, err1 := readMeta(f, int64(pageSize))
	if err0 != nil && err1 != nil {
		return fmt.Errorf("no valid meta page (file of %d bytes: %v)", size, err0)
	}
	// bbolt uses the valid meta page with the highest txid; the other
	// one may be stale after a crash (its pages reused), which is normal.
	m, i := m0, 0
	if err0 != nil || (err1 == nil && m1.txid > m0.txid) {
		m, i = m1, 1
	}
	if err0 == nil && err1 == nil && m0.pageSize != m1.pageSize {
		return fmt.Errorf("meta pages disagree on the page size (%d, %d)", m0.pageSize, m1.pageSize)
	}
	need := m.pgid * m.pageSize
	switch {
	case m.root >= m.pgid || (m.freelist >= m.pgid && m.freelist != boltNoFreelist):
		return fmt.Errorf("meta page %d points beyond its own high-water mark", i)
	case uint64(size) < need:
		return fmt.Errorf("file is truncated: %d bytes, its meta page %d needs %d", size, i, need)
	}
	if err := checkPageHeader(f, m, m.root, boltBranchPage|boltLeafPage); err != nil {
		return fmt.Errorf("meta page %d: root %w", i, err)
	}
	if m.freelist != boltNoFreelist {
		if err := checkPageHeader(f, m, m.freelist, boltFreelistPage); err != nil {
			return fmt.Errorf("meta page %d: freelist %w", i, err)
		}
	}
	return nil
}

func readMeta(f *os.File, off int64) (boltMeta, error) {
	var buf [boltPageHeader + boltMetaSize]byte
	if _, err := f.ReadAt(buf[:], off); err != nil {
		if stderrors.Is(err, io.EOF) {
			return boltMeta{}, fmt.Errorf("meta page at offset %d is cut short", off)
		}
		return boltMeta{}, err
	}
	b := buf[boltPageHeader:]
	u32 := func(i int) uint32 { return binary.NativeEndian.Uint32(b[i:]) }
	u64 := func(i int) uint64 { return binary.NativeEndian.Uint64(b[i:]) }
	h := fnv.New64a()
	h.Write(b[:boltChecksumSpan])
	switch {
	case u32(0) != boltMagic:
		return boltMeta{}, fmt.Errorf("not a bbolt file (bad magic at offset %d)", off)
	case u32(4) != boltVersion:
		return boltMeta{}, fmt.Errorf("unknown bbolt version %d", u32(4))
	case u64(56) != h.Sum64():
		return boltMeta{}, fmt.Errorf("meta page at offset %d has a bad checksum", off)
	}
	m := boltMeta{pageSize: uint64(u32(8)), root: u64(16), freelist: u64(32), pgid: u64(40), txid: u64(48)}
	if m.pageSize < boltMinPageSize || m.pageSize > boltMaxPageSize || m.pageSize&(m.pageSize-1) != 0 {
		return boltMeta{}, fmt.Errorf("meta page at offset %d has a bad page size %d", off, m.pageSize)
	}
	return m, nil
}

// checkPages opens the file read-only and reads every key of every
// bucket, as Open's load will, turning a panic or a memory fault on a
// garbage page into an error. (bbolt's own tx.Check panics in a goroutine
// of its own, which no recover reaches.)
func checkPages(path string) (err error) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, Timeout: 200 * time.Millisecond})
	if stderrors.Is(err, bolterrors.ErrTimeout) {
		return nil // locked by a live backend: bolt.Open says so
	}
	if err != nil {
		return err
	}
	defer db.Close()
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if v := recover(); v != nil {
			err = fmt.Errorf("reading its pages failed: %v", v)
		}
	}()
	return db.View(func(tx *bolt.Tx) error {
		return tx.ForEach(func(_ []byte, b *bolt.Bucket) error { return walkBucket(b, 0) })
	})
}

// walkBucket reads every key and value of b and of its sub-buckets.
func walkBucket(b *bolt.Bucket, depth int) error {
	if depth > 16 {
		return stderrors.New("buckets nested deeper than 16")
	}
	return b.ForEach(func(k, v []byte) error {
		if v == nil {
			if sub := b.Bucket(k); sub != nil {
				return walkBucket(sub, depth+1)
			}
		}
		return nil
	})
}
