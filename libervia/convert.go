package libervia

import (
	"errors"
	"fmt"
	"path/filepath"
	"strings"

	"hookctl.dev/hookctl"
	"hookctl.dev/hookctl/rules"
)

// ConvertOptions say how Libervia's hooks become hookctl's.
type ConvertOptions struct {
	// Set is the set (owner) of the hooks made.
	Set string
	// PathFrom and PathTo rewrite python_file paths under directory
	// PathFrom to the same path under PathTo (the scripts moved with the
	// hooks); empty PathFrom keeps paths as stored.
	PathFrom, PathTo string
}

// Convert returns the hookctl hooks equivalent to db's: same profile,
// service, node, type and arg, persistent, owned by opts.Set. Libervia
// allowed the same hook twice; hookctl's key is unique, so duplicates are
// dropped and each is named in notes. A hook that hookctl's rules refuse
// (rules.Check, as at every other door) is an error naming it.
func Convert(db *Database, opts ConvertOptions) (hooks []hookctl.Hook, notes []string, err error) {
	seen := map[hookctl.Key]bool{}
	var errs []error
	for _, lh := range db.Hooks {
		h := hookctl.Hook{
			Key: hookctl.Key{Profile: lh.Profile, Service: lh.Service, Node: lh.Node,
				Type: hookctl.Type(lh.Type), Arg: mapPath(lh, opts)},
			Persistent: true,
			Owner:      opts.Set,
		}
		if seen[h.Key] {
			notes = append(notes, fmt.Sprintf("duplicate of hook %s dropped (Libervia stored it twice; a hookctl hook is unique)", describe(h.Key)))
			continue
		}
		seen[h.Key] = true
		if err := rules.Check(h, rules.DefaultLimits()); err != nil {
			errs = append(errs, fmt.Errorf("hook %s: %w", describe(h.Key), err))
			continue
		}
		hooks = append(hooks, h)
	}
	if len(errs) > 0 {
		return nil, notes, fmt.Errorf("%w: %w", hookctl.ErrInvalid, errors.Join(errs...))
	}
	return hooks, notes, nil
}

// describe names a hook for messages with every part quoted: what a
// database holds may contain newlines or control characters.
func describe(k hookctl.Key) string {
	return fmt.Sprintf("profile %q service %q node %q type %q arg %q", k.Profile, k.Service, k.Node, k.Type, hookctl.RedactURLCredentials(k.Arg))
}

// mapPath applies the PathFrom → PathTo rewrite to a python_file path.
func mapPath(h Hook, opts ConvertOptions) string {
	if h.Type != string(hookctl.TypePythonFile) || opts.PathFrom == "" {
		return h.Arg
	}
	from := filepath.Clean(opts.PathFrom)
	rel, err := filepath.Rel(from, filepath.Clean(h.Arg))
	if err != nil || rel == ".." || strings.HasPrefix(rel, "../") || !filepath.IsAbs(h.Arg) {
		return h.Arg
	}
	return filepath.Join(opts.PathTo, rel)
}

// OwnJIDs maps each profile to its bare JID, for services written as own
// PEP (spec.WriteOptions.OwnJIDs).
func (db *Database) OwnJIDs() map[string]string {
	out := make(map[string]string, len(db.Profiles))
	for p, j := range db.Profiles {
		bare, _, _ := strings.Cut(j, "/")
		out[p] = bare
	}
	return out
}
