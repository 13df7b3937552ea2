package reconcile

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"hookctl.dev/hookctl"
	"hookctl.dev/hookctl/spec"
)

// Partial is what a Watcher falls back on when the files are invalid (see
// PartialLoader): the desired hooks with each set that has an invalid
// file held at its last good hooks, and why each set is held. ok is false
// when the sets cannot be told apart safely; then the whole last good set
// stays in force.
type Partial func(ctx context.Context, loadErr error, last *Desired) (d Desired, held map[string]string, ok bool)

// setLine finds a file's set declaration, for a file too broken to parse.
var setLine = regexp.MustCompile(`(?m)^set:[ \t]*["']?([^"'\s#]+)`)

// PartialLoader returns the Partial of the hooks files at paths: the sets
// whose files are all valid are read afresh (so one set's invalid file
// does not hold back another set's changes), and a set with an invalid
// file keeps its last good hooks. It gives up (ok false) when a problem
// is not in a file, when an invalid file's set cannot be read (from its
// `set:` line or the last good hooks), or when the valid files do not
// load on their own.
func PartialLoader(paths []string, recursive bool) Partial {
	return func(ctx context.Context, loadErr error, last *Desired) (Desired, map[string]string, bool) {
		var ds spec.Diagnostics
		if last == nil || ctx.Err() != nil || !errors.As(loadErr, &ds) {
			return Desired{}, nil, false
		}
		files, err := spec.Files(paths, spec.Options{Recursive: recursive})
		if err != nil {
			return Desired{}, nil, false
		}
		held, bad, ok := heldSets(ds, files, last)
		if !ok {
			return Desired{}, nil, false
		}
		d, ok := loadGood(files, bad)
		if !ok {
			return Desired{}, nil, false
		}
		return mergeHeld(d, last, held), held, true
	}
}

// heldSets returns the sets of the invalid files (with their problems)
// and the invalid files.
func heldSets(ds spec.Diagnostics, files []spec.File, last *Desired) (map[string]string, map[string]bool, bool) {
	known := make(map[string]bool, len(files))
	for _, f := range files {
		known[f.Name] = true
	}
	lastOwner := map[string]string{}
	for _, h := range last.Hooks {
		if i := strings.LastIndex(h.Source, ":"); i > 0 {
			lastOwner[h.Source[:i]] = h.Owner
		}
	}
	held, bad := map[string]string{}, map[string]bool{}
	for _, d := range ds {
		if d.File == "" || !known[d.File] {
			return nil, nil, false
		}
		bad[d.File] = true
		var sets []string
		if b, err := os.ReadFile(d.File); err == nil {
			if m := setLine.FindSubmatch(b); m != nil {
				sets = append(sets, string(m[1]))
			}
		}
		if s, ok := lastOwner[d.File]; ok {
			sets = append(sets, s)
		}
		if len(sets) == 0 {
			return nil, nil, false
		}
		slices.Sort(sets)
		sets = slices.Compact(sets)
		for _, s := range sets {
			if !slices.Contains(last.Sets, s) {
				return nil, nil, false // a new set: nothing good to hold it at
			}
			held[s] = strings.TrimPrefix(held[s]+"\n"+d.String(), "\n")
		}
	}
	return held, bad, true
}

// loadGood loads the valid files alone: copied, under their roots'
// layout, to a temporary directory (relative script paths stay relative
// to the same root; their existence was checked by the failed load), and
// named back as given.
func loadGood(files []spec.File, bad map[string]bool) (Desired, bool) {
	tmp, err := os.MkdirTemp("", "hookctl-partial-")
	if err != nil {
		return Desired{}, false
	}
	defer os.RemoveAll(tmp)
	var roots, good []string
	names := map[string]string{} // copy → name as given
	for _, f := range files {
		if bad[f.Name] {
			continue
		}
		abs, err := filepath.Abs(f.Name)
		rel, err2 := filepath.Rel(f.Root, abs)
		b, err3 := os.ReadFile(f.Name)
		if err != nil || err2 != nil || err3 != nil || strings.HasPrefix(rel, "..") {
			return Desired{}, false
		}
		i := slices.Index(roots, f.Root)
		if i < 0 {
			i, roots = len(roots), append(roots, f.Root)
		}
		dst := filepath.Join(tmp, strconv.Itoa(i), rel)
		if os.MkdirAll(filepath.Dir(dst), 0o700) != nil || os.WriteFile(dst, b, 0o600) != nil {
			return Desired{}, false
		}
		names[dst], good = f.Name, append(good, f.Name)
	}
	if len(good) == 0 {
		return Desired{}, true
	}
	var dirs []string
	for i := range roots {
		dirs = append(dirs, filepath.Join(tmp, strconv.Itoa(i)))
	}
	s, err := spec.Load(dirs, spec.Options{Recursive: true})
	if err != nil {
		return Desired{}, false
	}
	for i := range s.Hooks {
		if j := strings.LastIndex(s.Hooks[i].Source, ":"); j > 0 {
			if n, ok := names[s.Hooks[i].Source[:j]]; ok {
				s.Hooks[i].Source = n + s.Hooks[i].Source[j:]
			}
		}
	}
	return Desired{Hooks: s.Hooks, Sets: s.Sets, Files: good}, true
}

// mergeHeld replaces the held sets' hooks by their last good ones.
func mergeHeld(d Desired, last *Desired, held map[string]string) Desired {
	hooks := slices.DeleteFunc(d.Hooks, func(h hookctl.Hook) bool { _, ok := held[h.Owner]; return ok })
	for _, h := range last.Hooks {
		if _, ok := held[h.Owner]; ok {
			hooks = append(hooks, h)
		}
	}
	slices.SortFunc(hooks, func(a, b hookctl.Hook) int { return a.Key.Compare(b.Key) })
	sets := slices.Clone(d.Sets)
	for s := range held {
		sets = append(sets, s)
	}
	slices.Sort(sets)
	d.Hooks, d.Sets = hooks, slices.Compact(sets)
	d.Revision = digest(d)
	return d
}
