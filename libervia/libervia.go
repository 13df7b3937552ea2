// Package libervia reads the persistent PubSub hooks that a Libervia (SàT)
// backend stored in its SQLite database, so that `hookctl import libervia`
// can move them over.
//
// Libervia's plugin_exp_pubsub_hook keeps them in a PersistentBinaryDict
// of namespace PUBSUB_HOOK: table private_ind_bin, one row per profile
// (profile_id → profiles.name) and node (key), whose value is a protocol 0
// pickle of a list of {"service": JID, "type": str, "arg": str}. The
// pickle is decoded by internal/pickle, which never runs Python: anything
// but plain data and that JID is refused. The database is opened read-only
// with a pure-Go SQLite (no cgo, nothing to install beside hookctl).
package libervia

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	_ "modernc.org/sqlite" // database/sql driver "sqlite", pure Go

	"hookctl.dev/hookctl"
	"hookctl.dev/hookctl/internal/pickle"
)

// Namespace is the private-data namespace of Libervia's pubsub hooks.
const Namespace = "PUBSUB_HOOK"

// MaxNodes bounds the rows read: a database with more hooked nodes is
// refused rather than loaded (Libervia users have a handful).
const MaxNodes = 10_000

// ErrNotLibervia is wrapped by errors about a file that is not a
// Libervia database (or not one this package knows).
var ErrNotLibervia = errors.New("not a Libervia database")

// Hook is one persistent hook as Libervia stored it.
type Hook struct {
	Profile string
	Service string // the JID as stored (bare for the hooks Libervia makes)
	Node    string
	Type    string
	Arg     string
}

// Database is what Read found.
type Database struct {
	// Profiles maps every profile name to its JID ("" when unset).
	Profiles map[string]string
	// Hooks are in profile, node, stored order.
	Hooks []Hook
}

// Read reads the persistent hooks of profile (every profile when "")
// from the Libervia database at path. It refuses a path that is not a
// regular file (a FIFO, a device, a directory), a database without
// Libervia's tables, an unknown profile, and any stored value that is not
// a list of hooks of plain data; every bad value is named at once.
func Read(ctx context.Context, path, profile string) (*Database, error) {
	db, err := open(path)
	if err != nil {
		return nil, err
	}
	defer db.Close()
	out := &Database{}
	if out.Profiles, err = profiles(ctx, db); err != nil {
		return nil, err
	}
	if _, ok := out.Profiles[profile]; profile != "" && !ok {
		var names []string
		for _, n := range slices.Sorted(maps.Keys(out.Profiles)) {
			names = append(names, strconv.Quote(n))
		}
		return nil, fmt.Errorf("%w: profile %q is not in %s (its profiles: %s)", hookctl.ErrInvalid, profile, path, strings.Join(names, ", "))
	}
	out.Hooks, err = hooks(ctx, db, profile)
	if err != nil {
		return nil, err
	}
	return out, nil
}

// open opens path read-only after checking it is a regular file: SQLite
// would block on a FIFO and read a device forever.
func open(path string) (*sql.DB, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, err
	}
	fi, err := os.Stat(abs)
	if err != nil {
		return nil, fmt.Errorf("reading Libervia database: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%w: %s is not a regular file", ErrNotLibervia, path)
	}
	f, err := os.Open(abs)
	if err != nil {
		return nil, fmt.Errorf("reading Libervia database: %w", err)
	}
	head := make([]byte, 16)
	_, err = io.ReadFull(f, head)
	f.Close()
	if err != nil || string(head) != "SQLite format 3\x00" {
		return nil, fmt.Errorf("%w: %s is not an SQLite database", ErrNotLibervia, path)
	}
	u := url.URL{Scheme: "file", OmitHost: true, Path: abs, RawQuery: "mode=ro&_pragma=query_only(1)"}
	db, err := sql.Open("sqlite", u.String())
	if err != nil {
		return nil, fmt.Errorf("reading Libervia database: %w", err)
	}
	db.SetMaxOpenConns(1)
	return db, nil
}

func profiles(ctx context.Context, db *sql.DB) (map[string]string, error) {
	rows, err := db.QueryContext(ctx, `SELECT p.name, (SELECT j.value FROM param_ind j
		WHERE j.profile_id = p.id AND j.category = 'Connection' AND j.name = 'JabberID')
		FROM profiles p LIMIT ?`, MaxNodes+1)
	if err != nil {
		return nil, notLibervia(err)
	}
	defer rows.Close()
	out := map[string]string{}
	for rows.Next() {
		var name string
		var jid sql.NullString
		if err := rows.Scan(&name, &jid); err != nil {
			return nil, notLibervia(err)
		}
		out[name] = jid.String
	}
	if len(out) > MaxNodes {
		return nil, fmt.Errorf("%w: more than %d profiles", hookctl.ErrInvalid, MaxNodes)
	}
	return out, notLibervia(rows.Err())
}

// hooks reads and decodes the PUBSUB_HOOK rows. Values over the pickle
// size limit are not even loaded (their length is asked first).
func hooks(ctx context.Context, db *sql.DB, profile string) ([]Hook, error) {
	// octet_length reads a value's size from its record header, so an
	// oversized value is refused without SQLite loading it either.
	rows, err := db.QueryContext(ctx, `SELECT p.name, b.key,
		CASE WHEN octet_length(b.value) <= ? THEN CAST(b.value AS BLOB) END, octet_length(b.value)
		FROM private_ind_bin b JOIN profiles p ON p.id = b.profile_id
		WHERE b.namespace = ? AND (? = '' OR p.name = ?)
		ORDER BY p.name, b.key LIMIT ?`, pickle.MaxSize, Namespace, profile, profile, MaxNodes+1)
	if err != nil {
		return nil, notLibervia(err)
	}
	defer rows.Close()
	var (
		out  []Hook
		errs []error
		n    int
	)
	for rows.Next() {
		if n++; n > MaxNodes {
			return nil, fmt.Errorf("%w: more than %d hooked nodes", hookctl.ErrInvalid, MaxNodes)
		}
		var (
			prof, node string
			value      []byte
			size       sql.NullInt64
		)
		if err := rows.Scan(&prof, &node, &value, &size); err != nil {
			return nil, notLibervia(err)
		}
		hs, err := decodeNode(prof, node, value, size.Int64)
		if err != nil {
			errs = append(errs, fmt.Errorf("profile %s, node %q: %w", prof, node, err))
			continue
		}
		out = append(out, hs...)
	}
	if err := rows.Err(); err != nil {
		return nil, notLibervia(err)
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("%w: %w", hookctl.ErrInvalid, errors.Join(errs...))
	}
	return out, nil
}

// notLibervia explains SQLite's errors about a file that is not what we
// expect ("no such table", "file is not a database").
func notLibervia(err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("%w: %w", ErrNotLibervia, err)
}

// decodeNode decodes one node's stored value into its hooks.
func decodeNode(profile, node string, value []byte, size int64) ([]Hook, error) {
	if value == nil {
		if size > pickle.MaxSize {
			return nil, fmt.Errorf("stored value is %d bytes, at most %d", size, pickle.MaxSize)
		}
		return nil, errors.New("stored value is empty")
	}
	v, err := pickle.Decode(value, pickle.Options{AllowJID: true})
	if err != nil {
		return nil, err
	}
	list, ok := v.(*pickle.List)
	if !ok {
		return nil, fmt.Errorf("stored value is a %s, want a list of hooks", pickle.TypeName(v))
	}
	out := make([]Hook, 0, len(list.Items))
	for i, item := range list.Items {
		h, err := decodeHook(item)
		if err != nil {
			return nil, fmt.Errorf("hook %d: %w", i, err)
		}
		h.Profile, h.Node = profile, node
		out = append(out, h)
	}
	return out, nil
}

// decodeHook reads one {"service", "type", "arg"} dict. Other keys are
// refused: they would be something this importer does not know to carry.
func decodeHook(v pickle.Value) (Hook, error) {
	d, ok := v.(*pickle.Dict)
	if !ok {
		return Hook{}, fmt.Errorf("a %s, want a dict", pickle.TypeName(v))
	}
	var h Hook
	for i, k := range d.Keys {
		key, _ := k.(string)
		val := d.Values[i]
		switch key {
		case "service":
			switch s := val.(type) {
			case pickle.JID:
				h.Service = s.String()
			case string:
				h.Service = s
			default:
				return h, fmt.Errorf("service is a %s, want a JID", pickle.TypeName(val))
			}
		case "type", "arg":
			s, ok := val.(string)
			if !ok {
				return h, fmt.Errorf("%s is a %s, want a str", key, pickle.TypeName(val))
			}
			if key == "type" {
				h.Type = s
			} else {
				h.Arg = s
			}
		default:
			return h, fmt.Errorf("unknown field %s (want service, type, arg)", describeKey(k))
		}
	}
	switch {
	case h.Service == "":
		return h, errors.New("no service")
	case h.Type == "":
		return h, errors.New("no type")
	}
	return h, nil
}

func describeKey(k pickle.Value) string {
	if s, ok := k.(string); ok {
		if len(s) > 40 {
			s = s[:40] + "…"
		}
		return fmt.Sprintf("%q", s)
	}
	return "of type " + pickle.TypeName(k)
}
