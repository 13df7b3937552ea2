package rules

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
)

// ScriptFile says why the backend must not run the python_file script or
// exec program at path (already resolved), or nil. Code the backend runs
// as its own user must not be replaceable by others, as ssh's StrictModes
// holds for keys: the file must be a regular file (executable for exec),
// owned by the backend's user or root, and neither it nor its directory
// writable by group or others. allowInsecure (the config's
// allow_insecure_scripts, for containers where every file belongs to one
// user) skips the ownership and mode checks. The backend checks this when
// a hook is created and each time it loads one.
func ScriptFile(path string, executable, allowInsecure bool) error {
	fi, err := os.Stat(path)
	switch {
	case err != nil:
		return fmt.Errorf("%s is not a file: %w", path, err)
	case !fi.Mode().IsRegular():
		return fmt.Errorf("%s is not a regular file", path)
	case executable && fi.Mode().Perm()&0o111 == 0:
		return fmt.Errorf("%s is not executable", path)
	case allowInsecure:
		return nil
	}
	if err := notWritableByOthers(path, fi); err != nil {
		return err
	}
	dir := filepath.Dir(path)
	di, err := os.Stat(dir)
	if err != nil {
		return fmt.Errorf("%s: %w", dir, err)
	}
	return notWritableByOthers(dir, di)
}

// notWritableByOthers refuses a file or directory that another user could
// change: writable by group or others, or owned by someone other than this
// process's user and root.
func notWritableByOthers(path string, fi fs.FileInfo) error {
	const hint = " (fix its mode or owner, or set allow_insecure_scripts: true in the backend config where every file has one owner)"
	if fi.Mode().Perm()&0o022 != 0 {
		return fmt.Errorf("%s is writable by group or others (mode %04o): another user could change what the backend runs%s", path, fi.Mode().Perm(), hint)
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return nil
	}
	if uid := uint32(os.Geteuid()); st.Uid != uid && st.Uid != 0 {
		return fmt.Errorf("%s is owned by uid %d, not by the backend's user (uid %d) or root%s", path, st.Uid, uid, hint)
	}
	return nil
}
