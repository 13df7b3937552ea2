// Package gitinfo reads what the audit trail says of hooks files kept in
// git: the commit checked out where they are.
package gitinfo

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// Head returns `git rev-parse HEAD` in path's directory (path itself when
// it is a directory), or "" when it is not in a git work tree, git is
// missing, or it does not answer within 2 seconds.
func Head(ctx context.Context, path string) string {
	if path == "" {
		return ""
	}
	dir, err := filepath.Abs(path)
	if err != nil {
		return ""
	}
	if fi, err := os.Stat(dir); err == nil && !fi.IsDir() {
		dir = filepath.Dir(dir)
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "git", "-C", dir, "rev-parse", "HEAD")
	cmd.WaitDelay = time.Second
	out, err := cmd.Output()
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(out))
}

// Describe is how a watcher or apply names itself in the audit trail:
// verb ("watch", "apply") and its paths, then "(commit SHA)" when the
// first is in a git work tree.
func Describe(ctx context.Context, verb string, paths []string) string {
	who := verb + " " + strings.Join(paths, " ")
	if len(paths) > 0 {
		if c := Head(ctx, paths[0]); c != "" {
			who += " (commit " + c + ")"
		}
	}
	return who
}
