package rules

import (
	"errors"
	"fmt"
	"path"
	"path/filepath"
	"strings"

	"mellium.im/xmpp/jid"

	"hookctl.dev/hookctl"
	"hookctl.dev/hookctl/filter"
)

// BareJID returns s as XMPP compares JIDs (PRECIS: localpart case-mapped,
// domain lower-cased). A JID with a resource is refused, not stripped: a
// service is addressed by its bare JID, and silently dropping part of what
// was declared would hide a mistake.
func BareJID(s string) (string, error) {
	j, err := jid.Parse(strings.TrimSpace(s))
	if err != nil {
		return "", fmt.Errorf("malformed JID %q: %v", s, err)
	}
	if j.Resourcepart() != "" {
		return "", fmt.Errorf("%q has a resource; want a bare JID", s)
	}
	return j.String(), nil
}

// Normalise returns h in the form the registry stores and compares:
// Service bare and canonical, or own (the profile's bare JID) when empty
// and own is known. Identity is computed on normalised values only, so two
// declarations that normalise alike are the same hook. h must have passed
// Check.
func Normalise(h hookctl.Hook, own string) (hookctl.Hook, error) {
	svc := strings.TrimSpace(h.Service)
	if svc == "" && own != "" {
		// The profile's own JID: an account JID may carry a resource,
		// its PEP service is the bare JID.
		if j, err := jid.Parse(own); err == nil {
			svc = j.Bare().String()
		}
	}
	if svc != "" {
		bare, err := BareJID(svc)
		if err != nil {
			return h, fmt.Errorf("%w: service: %v", hookctl.ErrInvalid, err)
		}
		svc = bare
	}
	h.Service = svc
	return h, nil
}

// ID is what identifies a hook when plans compare files with the registry:
// a hook declared in a set is its set and name, wherever its files are
// checked out and whatever its arg; a hook made by hand is its Key, the
// reference's identity.
type ID struct {
	Set, Name string
	Key       hookctl.Key // only for hooks made by hand
}

// IDOf returns h's identity.
func IDOf(h hookctl.Hook) ID {
	if h.Owner != "" && h.Name != "" {
		return ID{Set: h.Owner, Name: h.Name}
	}
	return ID{Key: h.Key}
}

// String renders the identity for messages: "set/name" or the key.
func (id ID) String() string {
	if id.Set != "" {
		return id.Set + "/" + id.Name
	}
	return id.Key.String()
}

// checkPath says why arg is not a usable script or program path: absolute
// (hooks made by hand), or relative to the hooks files' root (hooks
// declared in files), clean and inside that root.
func checkPath(arg string) string {
	if filepath.IsAbs(arg) {
		return ""
	}
	switch {
	case strings.HasPrefix(arg, "~"):
		return fmt.Sprintf("%q: ~ is expanded by the CLI and in hooks files, not here", arg)
	case path.Clean(arg) != arg || arg == "." || arg == ".." || strings.HasPrefix(arg, "../"):
		return fmt.Sprintf("%q must be absolute or a clean path inside the hooks root (no .., no ./)", arg)
	}
	return ""
}

// Resolve returns the path a python_file or exec hook runs: arg itself
// when absolute, else arg under root (the backend's hooks_root). A relative
// arg without a root is refused: it names a file of a checkout the backend
// was not told about.
func Resolve(arg, root string) (string, error) {
	if filepath.IsAbs(arg) {
		return arg, nil
	}
	if root == "" {
		return "", Problems{{Field: "arg", Message: fmt.Sprintf("%q is relative to the hooks files' root, and this backend has no hooks_root (set it in its config, or run serve --watch on the files)", arg)}}
	}
	return filepath.Join(root, filepath.FromSlash(arg)), nil
}

func asFilterError(err error, target **filter.Error) bool { return errors.As(err, target) }
