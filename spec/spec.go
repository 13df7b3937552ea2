// Package spec reads hooks files (hooks.yaml), validates them strictly and
// turns them into the desired hooks, reporting every problem at once as
// "FILE:LINE:COL: PATH: MESSAGE".
//
// Choices a user can rely on:
//   - A field set to null (`service:`, `filter: ~`) is the same as leaving
//     it out. String fields take any scalar's text (`node: 42` is "42");
//     integers and booleans must be YAML integers and booleans.
//   - Defaults: set "default", profile "default", type python_file (as
//     `hook create`), persistent true, events publish and retract.
//     `catchup: new` is accepted for the default policy.
//   - python_file and exec paths are written relative to the file's
//     directory and stored relative to the root given (a directory
//     argument, or a file's own directory), so that a checkout anywhere
//     declares the same hooks; the backend finds them under its
//     hooks_root. A path leaving the root is refused. "~" and "~/…" expand
//     to the home directory ("~user" is refused); absolute paths stay.
//     With Options.CheckPaths the file must exist here (and, for exec, be
//     executable).
//   - What a value means is judged by rules.Check, as at every other door:
//     filters and expr programs are compiled with the runtime's own
//     environment. Expression errors point at the offending character
//     when the scalar's source lines up with its value (plain, quoted
//     without escapes, | and > blocks); otherwise at the start of the
//     scalar.
//   - Aliases are refused (no alias expansion, so no "billion laughs"), as
//     are files over 4 MiB and files holding more than one YAML document.
//   - Directories: their visible *.yaml and *.yml files in name order,
//     symlinks followed; hidden entries (".git", Kubernetes' "..data") are
//     skipped; -R descends into visible subdirectories, each once. A
//     directory without hooks files is an error, like a missing path.
//   - A hook's key must be unique across every file read; a set may span
//     files. Names, a declared hook's identity, must be unique within the
//     set.
package spec

import (
	"cmp"
	"fmt"
	"path/filepath"
	"slices"
	"strings"

	"hookctl.dev/hookctl"
	"hookctl.dev/hookctl/runner"
)

// MaxFileSize is the largest hooks file read (4 MiB). Larger files are
// refused before parsing, so a hostile file cannot make the parser work hard.
const MaxFileSize = 4 << 20

// DefaultSet is the set (owner) name of a file that declares none, and
// DefaultProfile the profile of hooks that name none.
const (
	DefaultSet     = "default"
	DefaultProfile = "default"
)

// Options change how files are read.
type Options struct {
	// Recursive descends into the subdirectories of directories given (-R).
	Recursive bool
	// CheckPaths requires the path of python_file and exec hooks to exist
	// and be a regular file (executable for exec), as `hook create` does.
	// Turning it off lets a CI job without the scripts check the rest.
	CheckPaths bool
	// FollowExternalSymlinks reads files and directories that symlinks in
	// a directory lead to outside it; by default they are refused, so that
	// a link to a secret never has its content read into a message.
	FollowExternalSymlinks bool
	// Secrets, when set, are the secrets of the backend's config: a hook
	// naming another one (secrets:) is a problem here, as at apply. Nil
	// leaves that check to the backend.
	Secrets runner.SecretSource
}

// DefaultOptions returns the options of `hookctl validate`: paths checked,
// no recursion.
func DefaultOptions() Options { return Options{CheckPaths: true} }

// Set is the desired state declared by the files read.
type Set struct {
	// Hooks are sorted by Key.Compare, with Owner, Source and the file
	// defaults (profile, type, persistent) filled in.
	Hooks []hookctl.Hook
	// Sets are the set names the files declare, sorted and unique. A file
	// without hooks still declares its set, so that its hooks can be pruned.
	Sets []string
	// Files are the files read, in the order they were read.
	Files []string
}

// Diagnostic is one problem found in a hooks file.
type Diagnostic struct {
	// File is the file's name as given (or found in a directory).
	File string `json:"file"`
	// Line and Column are 1-based; 0 when unknown (e.g. an unreadable file).
	Line   int `json:"line,omitempty"`
	Column int `json:"column,omitempty"`
	// Path is where in the document, e.g. "hooks[3].timeout" or "version";
	// empty for problems with the file itself.
	Path    string `json:"path,omitempty"`
	Message string `json:"message"`
}

// String renders the diagnostic as "FILE:LINE:COL: PATH: MESSAGE". Parts
// that are unknown (zero line or column, empty path) are left out.
func (d Diagnostic) String() string {
	var b strings.Builder
	b.WriteString(d.File)
	if d.Line > 0 {
		fmt.Fprintf(&b, ":%d", d.Line)
		if d.Column > 0 {
			fmt.Fprintf(&b, ":%d", d.Column)
		}
	}
	if b.Len() > 0 {
		b.WriteString(": ")
	}
	if d.Path != "" {
		b.WriteString(d.Path)
		b.WriteString(": ")
	}
	b.WriteString(d.Message)
	return b.String()
}

// Diagnostics is every problem found; it is the error Load and Parse
// return, and it wraps hookctl.ErrInvalid.
type Diagnostics []Diagnostic

// Error lists the diagnostics, one per line, sorted by file, line, column.
func (ds Diagnostics) Error() string {
	s := slices.Clone(ds)
	s.sort()
	lines := make([]string, len(s))
	for i, d := range s {
		lines[i] = d.String()
	}
	return strings.Join(lines, "\n")
}

// Unwrap makes errors.Is(err, hookctl.ErrInvalid) hold.
func (ds Diagnostics) Unwrap() error { return hookctl.ErrInvalid }

// sort orders by file, line, column; problems at the same place keep the
// order they were found in.
func (ds Diagnostics) sort() {
	slices.SortStableFunc(ds, func(a, b Diagnostic) int {
		return cmp.Or(strings.Compare(a.File, b.File), cmp.Compare(a.Line, b.Line), cmp.Compare(a.Column, b.Column))
	})
}

// Load reads the hooks files and directories in paths (directories: their
// visible *.yaml and *.yml files, sorted; subdirectories too with
// opts.Recursive). On any problem it returns a nil *Set and a Diagnostics
// error holding every problem found.
func Load(paths []string, opts Options) (*Set, error) {
	l := newLoader(opts)
	files := l.collect(paths)
	for _, f := range files {
		data, ok := l.readFile(f.name)
		if ok {
			l.parseFile(f.name, f.root, data)
		}
	}
	return l.result()
}

// Parse reads one file's content. name is used in messages and in each
// hook's Source; relative paths in the file resolve against its directory.
// Load does the same for each file it reads.
func Parse(name string, data []byte, opts Options) (*Set, error) {
	l := newLoader(opts)
	if len(data) > MaxFileSize {
		l.fileError(name, fmt.Sprintf("file is larger than 4 MiB (%d bytes)", len(data)))
	} else {
		l.parseFile(name, absDir(filepath.Dir(name)), data)
	}
	return l.result()
}
