package reconcile

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"hookctl.dev/hookctl"
	"hookctl.dev/hookctl/spec"
)

// gitTimeout bounds each git command a source runs.
const gitTimeout = 30 * time.Second

// SourceOf names the source of the hooks files at paths, as recorded in
// the inventory: for files in a git work tree, "git:" and the
// repository's origin URL (its top-level directory without one) and the
// path inside it, so that every checkout of one repository is one source;
// otherwise "dir:" and the absolute path. Several paths are joined with
// " + ", sorted.
func SourceOf(ctx context.Context, paths []string) string {
	names := make([]string, 0, len(paths))
	for _, p := range paths {
		abs, err := filepath.Abs(p)
		if err != nil {
			abs = p
		}
		name := "dir:" + abs
		if top, err := gitTop(ctx, abs); err == nil {
			repo := top
			if url, err := git(ctx, top, "config", "--get", "remote.origin.url"); err == nil && url != "" {
				repo = url
			}
			rel, _ := filepath.Rel(top, realPath(abs))
			name = "git:" + repo + "//" + filepath.ToSlash(rel)
		}
		names = append(names, name)
	}
	slices.Sort(names)
	return strings.Join(slices.Compact(names), " + ")
}

// realPath resolves symbolic links (git reports the top level resolved).
func realPath(p string) string {
	if r, err := filepath.EvalSymlinks(p); err == nil {
		return r
	}
	return p
}

// gitTop returns the top level of the git work tree holding path (a file
// or directory), or an error when there is none (or no git).
func gitTop(ctx context.Context, path string) (string, error) {
	dir := path
	if fi, err := os.Stat(path); err != nil || !fi.IsDir() {
		dir = filepath.Dir(path)
	}
	return git(ctx, dir, "rev-parse", "--show-toplevel")
}

// git runs git in dir and returns its trimmed standard output.
func git(ctx context.Context, dir string, args ...string) (string, error) {
	out, err := gitBytes(ctx, dir, args...)
	return strings.TrimSpace(string(out)), err
}

func gitBytes(ctx context.Context, dir string, args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, gitTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "git", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GIT_TERMINAL_PROMPT=0", "GIT_OPTIONAL_LOCKS=0")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("git %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return out, nil
}

// digest is the revision of hooks read from a plain directory: a SHA-256
// of the sets and hooks as loaded (not of the files read again, which may
// have changed since), so that the inventory never records a revision
// whose hooks were not the ones applied.
func digest(d Desired) string {
	h := sha256.New()
	enc := json.NewEncoder(h)
	_ = enc.Encode(d.Sets)
	_ = enc.Encode(d.Hooks)
	return "sha256:" + hex.EncodeToString(h.Sum(nil))[:16]
}

// InGitWorkTree reports whether every path is inside one git work tree.
func InGitWorkTree(ctx context.Context, paths []string) bool {
	if len(paths) == 0 {
		return false
	}
	first := ""
	for _, p := range paths {
		abs, _ := filepath.Abs(p)
		top, err := gitTop(ctx, abs)
		if err != nil || (first != "" && top != first) {
			return false
		}
		first = top
	}
	return true
}

// GitLoader returns a Loader that reads the hooks files at paths from the
// committed tree of ref (HEAD when ""), never from the work tree: an
// uncommitted or half-written file is not seen until it is committed. The
// files are exported with `git archive` to a temporary directory, loaded
// with spec, and their names in hooks' sources and in diagnostics are the
// paths as given. A ref that did not move since the last load returns
// that load again without reading anything. Desired.Revision is the
// commit.
func GitLoader(paths []string, recursive bool, ref string) Loader {
	if ref == "" {
		ref = "HEAD"
	}
	var last *Desired
	var lastErr error
	var lastCommit string
	return func(ctx context.Context) (Desired, error) {
		if err := ctx.Err(); err != nil {
			return Desired{}, err
		}
		top, rels, err := gitPaths(ctx, paths)
		if err != nil {
			return Desired{}, err
		}
		commit, err := git(ctx, top, "rev-parse", "--verify", "--quiet", ref+"^{commit}")
		if err != nil {
			return Desired{}, fmt.Errorf("%w: git ref %s: %v", hookctl.ErrInvalid, ref, err)
		}
		if commit == lastCommit {
			if lastErr != nil {
				return Desired{}, lastErr
			}
			return *last, nil
		}
		d, err := loadCommit(ctx, top, commit, paths, rels, recursive)
		d.Revision = commit
		last, lastErr, lastCommit = &d, err, commit
		return d, err
	}
}

// gitPaths returns the work tree's top level and each path relative to it.
func gitPaths(ctx context.Context, paths []string) (string, []string, error) {
	var top string
	rels := make([]string, len(paths))
	for i, p := range paths {
		abs, err := filepath.Abs(p)
		if err != nil {
			return "", nil, err
		}
		t, err := gitTop(ctx, abs)
		if err != nil {
			return "", nil, fmt.Errorf("%w: %s is not in a git work tree: %v", hookctl.ErrInvalid, p, err)
		}
		if top != "" && t != top {
			return "", nil, fmt.Errorf("%w: %s and %s are in different git work trees", hookctl.ErrInvalid, paths[0], p)
		}
		top = t
		rel, err := filepath.Rel(top, realPath(abs))
		if err != nil || strings.HasPrefix(rel, "..") {
			return "", nil, fmt.Errorf("%w: %s is outside the work tree %s", hookctl.ErrInvalid, p, top)
		}
		rels[i] = filepath.ToSlash(rel)
	}
	return top, rels, nil
}

// loadCommit exports the paths of commit to a temporary directory and
// loads them there.
func loadCommit(ctx context.Context, top, commit string, paths, rels []string, recursive bool) (Desired, error) {
	tmp, err := os.MkdirTemp("", "hookctl-git-")
	if err != nil {
		return Desired{}, err
	}
	defer os.RemoveAll(tmp)
	args := append([]string{"archive", "--format=tar", commit, "--"}, rels...)
	tarball, err := gitBytes(ctx, top, args...)
	if err != nil {
		return Desired{}, fmt.Errorf("%w: reading %s at %.12s: %v", hookctl.ErrInvalid, strings.Join(paths, ", "), commit, err)
	}
	if err := untar(tarball, tmp); err != nil {
		return Desired{}, fmt.Errorf("reading %s at %.12s: %w", strings.Join(paths, ", "), commit, err)
	}
	local := make([]string, len(rels))
	rename := make(map[string]string, len(rels))
	for i, r := range rels {
		local[i] = filepath.Join(tmp, filepath.FromSlash(r))
		rename[local[i]] = paths[i]
	}
	d, err := SpecLoader(local, recursive)(ctx)
	if err != nil {
		return Desired{}, renameErr(err, rename)
	}
	for i := range d.Hooks {
		d.Hooks[i].Source = renamePath(d.Hooks[i].Source, rename)
	}
	for i := range d.Files {
		d.Files[i] = renamePath(d.Files[i], rename)
	}
	return d, nil
}

// renamePath replaces a temporary directory prefix by the path as given.
func renamePath(s string, rename map[string]string) string {
	for from, to := range rename {
		if rest, ok := strings.CutPrefix(s, from); ok {
			return to + rest
		}
	}
	return s
}

// renameErr rewrites the file names of spec diagnostics.
func renameErr(err error, rename map[string]string) error {
	var ds spec.Diagnostics
	if errors.As(err, &ds) {
		out := slices.Clone(ds)
		for i := range out {
			out[i].File = renamePath(out[i].File, rename)
		}
		return out
	}
	msg := err.Error()
	for from, to := range rename {
		msg = strings.ReplaceAll(msg, from, to)
	}
	return fmt.Errorf("%w: %s", hookctl.ErrInvalid, msg)
}

// untar writes a git archive's regular files and directories under dir.
func untar(b []byte, dir string) error {
	tr := tar.NewReader(bytes.NewReader(b))
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		name := filepath.Join(dir, filepath.FromSlash(h.Name))
		if !strings.HasPrefix(name, dir+string(filepath.Separator)) {
			continue // never outside dir
		}
		switch h.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(name, 0o755); err != nil {
				return err
			}
		case tar.TypeReg:
			if err := os.MkdirAll(filepath.Dir(name), 0o755); err != nil {
				return err
			}
			if err := os.WriteFile(name, mustRead(tr, h.Size), os.FileMode(h.Mode)&0o755|0o600); err != nil {
				return err
			}
		}
	}
}

func mustRead(r io.Reader, n int64) []byte {
	b, _ := io.ReadAll(io.LimitReader(r, n))
	return b
}

// GitWatchDirs are the directories of the git repository holding paths
// whose changes mean a new commit or checkout: the git directory (HEAD,
// packed-refs) and every directory under refs/heads.
func GitWatchDirs(ctx context.Context, paths []string) []string {
	top, _, err := gitPaths(ctx, paths)
	if err != nil {
		return nil
	}
	gd, err := git(ctx, top, "rev-parse", "--absolute-git-dir")
	if err != nil {
		return nil
	}
	dirs := []string{gd}
	_ = filepath.WalkDir(filepath.Join(gd, "refs", "heads"), func(p string, d os.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			dirs = append(dirs, p)
		}
		return nil
	})
	return dirs
}
