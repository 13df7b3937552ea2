package api

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"syscall"

	"hookctl.dev/hookctl"
)

// CheckSocketDir refuses to serve the control socket from a directory that
// other users may write to: one of them could remove the socket and put a
// fake backend in its place, which would then receive every hook, token
// and plan the CLI sends. The backend calls it before listening.
func CheckSocketDir(socket string) error {
	dir := filepath.Dir(socket)
	fi, err := os.Stat(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil // created by the backend, 0700
	}
	if err != nil {
		return fmt.Errorf("socket directory %s: %w", dir, err)
	}
	if fi.Mode().Perm()&0o022 != 0 {
		return fmt.Errorf("%w: socket %s: its directory %s is writable by group or others (mode %04o), so another user could replace the socket; use a private directory (e.g. /run/hookctl, 0755 and owned by the backend's user)",
			hookctl.ErrInvalid, socket, dir, fi.Mode().Perm())
	}
	return nil
}

// CheckSocketOwner refuses to talk to a socket that neither this user nor
// root owns: it would not be our backend. The CLI calls it before dialing.
func CheckSocketOwner(socket string) error {
	fi, err := os.Stat(socket)
	if err != nil {
		return nil // dialing reports it
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return nil
	}
	if uid := uint32(os.Geteuid()); st.Uid != uid && st.Uid != 0 && !sharedWithUs(fi, st.Gid) {
		return fmt.Errorf("%w: socket %s is owned by uid %d, not by you (uid %d) or root: not talking to it; check --socket/HOOKCTL_SOCKET",
			hookctl.ErrUnavailable, socket, st.Uid, uid)
	}
	return nil
}

// sharedWithUs reports whether a socket shared with socket_group is one
// we may use: its group is one of ours and others have no access.
func sharedWithUs(fi fs.FileInfo, gid uint32) bool {
	if fi.Mode().Perm()&0o007 != 0 {
		return false
	}
	groups, err := os.Getgroups()
	if err != nil {
		return false
	}
	for _, g := range append(groups, os.Getegid()) {
		if uint32(g) == gid {
			return true
		}
	}
	return false
}

// ShareSocket gives the socket to group (config socket_group) with mode
// 0660, so that the operators in it can use the CLI; "" keeps it 0600.
func ShareSocket(socket, group string) error {
	if group == "" {
		return nil
	}
	g, err := user.LookupGroup(group)
	if err != nil {
		return fmt.Errorf("socket_group: %w", err)
	}
	gid, err := strconv.Atoi(g.Gid)
	if err != nil {
		return fmt.Errorf("socket_group %s: gid %q: %w", group, g.Gid, err)
	}
	if err := os.Chown(socket, -1, gid); err != nil {
		return fmt.Errorf("socket_group %s: %w", group, err)
	}
	return os.Chmod(socket, 0o660)
}
