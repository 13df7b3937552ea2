package spec

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"hookctl.dev/hookctl"
	"hookctl.dev/hookctl/rules"
)

// loader accumulates the hooks and problems of every file read by one Load.
type loader struct {
	opts    Options
	diags   Diagnostics
	files   []string
	sets    []string
	entries []entry
	// stats caches path checks: many hooks often share one script.
	stats map[string]string
	home  string // the user's home directory, looked up on first "~"
	tree  string // the directory being walked, symlinks resolved
	// splitMin is the file size from which the hooks list is parsed in
	// parallel (see decodeSplit); tests lower it.
	splitMin int
}

// entry is a valid hook with where it was declared, for duplicate checks.
type entry struct {
	hook hookctl.Hook
	file string
	line int
	col  int
	path string // hooks[i]
}

func newLoader(opts Options) *loader {
	return &loader{opts: opts, stats: make(map[string]string), splitMin: splitMin}
}

func (l *loader) fileError(file, msg string) {
	l.diags = append(l.diags, Diagnostic{File: file, Message: msg})
}

// fileRef is a hooks file to read and the root of the path it was found
// under: the directory given, or a file's own directory. Relative script
// paths are stored relative to that root.
type fileRef struct{ name, root string }

// collect expands paths into the files to read, reporting paths that do not
// exist. A file named twice is read once.
func (l *loader) collect(paths []string) []fileRef {
	if len(paths) == 0 {
		l.fileError("", "no hooks files given")
		return nil
	}
	var files []fileRef
	seen := make(map[string]bool)
	root := ""
	add := func(f string) {
		key := f
		if abs, err := filepath.Abs(f); err == nil {
			key = abs // the same file named relatively and absolutely
		}
		if !seen[key] {
			seen[key] = true
			files = append(files, fileRef{f, root})
		}
	}
	for _, p := range paths {
		clean := filepath.Clean(p)
		root = absDir(clean)
		l.tree = realPath(clean)
		fi, err := os.Stat(clean)
		switch {
		case err != nil:
			l.fileError(p, statMessage(err))
		case fi.IsDir():
			found := 0
			subdirs := l.walkDir(clean, make(map[string]bool), func(f string) { found++; add(f) })
			if found == 0 {
				msg := "no hooks files (*.yaml, *.yml) in directory"
				if subdirs && !l.opts.Recursive {
					msg += " (use -R for subdirectories)"
				}
				l.fileError(p, msg)
			}
		case fi.Mode().IsRegular():
			root = absDir(filepath.Dir(clean))
			add(clean)
		default:
			l.fileError(p, "not a regular file or directory")
		}
	}
	return files
}

// walkDir adds the visible *.yaml and *.yml files of dir in name order,
// following symlinks, and descends into visible subdirectories when
// recursive. Hidden entries are skipped, which also skips the "..data"
// directories of Kubernetes ConfigMap volumes. It reports whether dir has
// subdirectories.
func (l *loader) walkDir(dir string, visited map[string]bool, add func(string)) bool {
	if real, err := filepath.EvalSymlinks(dir); err == nil {
		if visited[real] {
			return false // a symlink loop
		}
		visited[real] = true
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		l.fileError(dir, "reading directory: "+statMessage(err))
		return false
	}
	subdirs := false
	for _, e := range entries {
		name := e.Name()
		if strings.HasPrefix(name, ".") {
			continue
		}
		full := filepath.Join(dir, name)
		mode := e.Type()
		if mode&fs.ModeSymlink != 0 {
			fi, err := os.Stat(full)
			if err != nil {
				if isHooksFile(name) {
					l.fileError(full, statMessage(err))
				}
				continue
			}
			if !l.opts.FollowExternalSymlinks && !l.insideTree(full) {
				if isHooksFile(name) || fi.IsDir() {
					l.fileError(full, "symlink leads outside the hooks tree (not read; --follow-external-symlinks allows it)")
				}
				continue
			}
			mode = fi.Mode().Type()
		}
		switch {
		case mode.IsDir():
			subdirs = true
			if l.opts.Recursive {
				l.walkDir(full, visited, add)
			}
		case mode.IsRegular() && isHooksFile(name):
			add(full)
		}
	}
	return subdirs
}

// realPath is p with every symlink resolved, or p when that fails.
func realPath(p string) string {
	if r, err := filepath.EvalSymlinks(p); err == nil {
		return r
	}
	return p
}

// insideTree reports whether the symlink at path leads inside the tree
// being read (l.tree): a ConfigMap's ..data links do, a link to a token
// elsewhere does not, and its content must never reach a message.
func (l *loader) insideTree(path string) bool {
	rel, err := filepath.Rel(l.tree, realPath(path))
	return err == nil && rel != ".." && !strings.HasPrefix(rel, ".."+string(filepath.Separator))
}

// absDir is dir made absolute (as given when that fails: the error shows
// when the file is read).
func absDir(dir string) string {
	if abs, err := filepath.Abs(dir); err == nil {
		return abs
	}
	return dir
}

// duplicate reports e as declaring what prev already declares.
func (l *loader) duplicate(e, prev *entry, path, what string) {
	where := fmt.Sprintf("%s:%d", prev.file, prev.line)
	if prev.file == e.file {
		where = fmt.Sprintf("line %d", prev.line)
	}
	l.diags = append(l.diags, Diagnostic{
		File: e.file, Line: e.line, Column: e.col, Path: path,
		Message: fmt.Sprintf("%s %s at %s", what, prev.path, where),
	})
}

func isHooksFile(name string) bool {
	ext := filepath.Ext(name)
	return ext == ".yaml" || ext == ".yml"
}

// statMessage turns a file system error into a short message without the
// path, which the diagnostic already carries.
func statMessage(err error) string {
	if errors.Is(err, fs.ErrNotExist) {
		return "no such file or directory"
	}
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err.Error()
	}
	return err.Error()
}

// readFile reads a hooks file, refusing files over MaxFileSize without
// reading them (and a file that grows past it while being read).
func (l *loader) readFile(name string) ([]byte, bool) {
	f, err := os.Open(name)
	if err != nil {
		l.fileError(name, "reading hooks file: "+statMessage(err))
		return nil, false
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		l.fileError(name, "reading hooks file: "+statMessage(err))
		return nil, false
	}
	if fi.Size() > MaxFileSize {
		l.fileError(name, fmt.Sprintf("file is larger than 4 MiB (%d bytes)", fi.Size()))
		return nil, false
	}
	data, err := io.ReadAll(io.LimitReader(f, MaxFileSize+1))
	if err != nil {
		l.fileError(name, "reading hooks file: "+statMessage(err))
		return nil, false
	}
	if len(data) > MaxFileSize {
		l.fileError(name, "file is larger than 4 MiB")
		return nil, false
	}
	return data, true
}

// result checks identities across everything read and returns the set, or
// every problem found. Keys are compared normalised as far as the files
// alone allow (services canonical; an own-PEP service equal to the
// profile's JID is caught by Set.Normalise once the JIDs are known).
func (l *loader) result() (*Set, error) {
	byKey := make(map[hookctl.Key]*entry, len(l.entries))
	byName := make(map[rules.ID]*entry, len(l.entries))
	for i := range l.entries {
		e := &l.entries[i]
		if svc, err := rules.BareJID(e.hook.Service); err == nil && e.hook.Service != "" {
			e.hook.Service = svc
		}
		if prev, ok := byName[rules.IDOf(e.hook)]; ok && e.hook.Name != "" {
			l.duplicate(e, prev, e.path+".name", fmt.Sprintf("%q is also the name of", e.hook.Name))
			continue
		}
		if prev, ok := byKey[e.hook.Key]; ok {
			l.duplicate(e, prev, e.path, "duplicate hook: same profile, service, node, type and arg as")
			continue
		}
		byName[rules.IDOf(e.hook)] = e
		byKey[e.hook.Key] = e
	}
	if len(l.diags) > 0 {
		l.diags.sort()
		return nil, l.diags
	}
	// Sort indices rather than hooks: a Hook is large to move around.
	order := make([]int, len(l.entries))
	for i := range order {
		order[i] = i
	}
	slices.SortFunc(order, func(a, b int) int { return l.entries[a].hook.Key.Compare(l.entries[b].hook.Key) })
	s := &Set{Hooks: make([]hookctl.Hook, len(l.entries)), Files: l.files}
	for i, j := range order {
		s.Hooks[i] = l.entries[j].hook
	}
	s.Sets = slices.Clone(l.sets)
	slices.Sort(s.Sets)
	s.Sets = slices.Compact(s.Sets)
	return s, nil
}

// File is a hooks file as Load reads it: its name as Load names it (in
// diagnostics and sources), and the absolute root its relative script
// paths are stored against.
type File struct{ Name, Root string }

// Files returns the files Load would read for paths, in order, with the
// problems finding them (a Diagnostics error). It reads no file: a caller
// that must know which files belong to a load that failed (the watcher,
// keeping each set's last good hooks apart) asks here.
func Files(paths []string, opts Options) ([]File, error) {
	l := newLoader(opts)
	refs := l.collect(paths)
	out := make([]File, len(refs))
	for i, f := range refs {
		out[i] = File{Name: f.name, Root: f.root}
	}
	if len(l.diags) > 0 {
		l.diags.sort()
		return out, l.diags
	}
	return out, nil
}
