package spec

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"

	exprfile "github.com/expr-lang/expr/file"
	"gopkg.in/yaml.v3"

	"hookctl.dev/hookctl"
	"hookctl.dev/hookctl/filter"
	"hookctl.dev/hookctl/internal/suggest"
	"hookctl.dev/hookctl/rules"
)

var (
	yamlLineRE   = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)
	topFields    = []string{"version", "set", "profile", "hooks"}
	hookFields   = []string{"name", "profile", "service", "node", "type", "arg", "args", "headers", "env", "secrets", "persistent", "events", "filter", "timeout", "concurrency", "catchup", "memory", "enabled"}
	errNoAliases = "aliases are not allowed in hooks files"
)

// fileParser walks one file's YAML nodes, so that every problem keeps its
// position; yaml's own KnownFields errors would lack the document path.
type fileParser struct {
	l      *loader
	name   string
	dir    string // absolute directory of the file, for relative paths
	data   []byte
	lines  [][]byte // data split in lines, made on first need
	root   string   // absolute root of the files being read (see Set)
	failed bool     // a problem was reported in the current hook
	// reported are the paths with a problem already, so that the rules do
	// not report a field again that failed to decode.
	reported map[string]bool
	// pending are the file's decoded hooks, checked by the rules once the
	// walk is done, on every CPU: compiling filters and expr programs is
	// most of the time spent on a file.
	pending []pendingHook
}

func (p *fileParser) errorAt(n *yaml.Node, path, format string, args ...any) {
	p.failed = true
	p.reported[path] = true
	d := Diagnostic{File: p.name, Path: path, Message: fmt.Sprintf(format, args...)}
	if n != nil {
		d.Line, d.Column = n.Line, n.Column
	}
	p.l.diags = append(p.l.diags, d)
}

func (p *fileParser) errorPos(line, col int, path, format string, args ...any) {
	p.failed = true
	p.reported[path] = true
	p.l.diags = append(p.l.diags, Diagnostic{File: p.name, Line: line, Column: col, Path: path, Message: fmt.Sprintf(format, args...)})
}

// parseFile parses and validates one file, adding its hooks and problems to
// the loader. root is the root its relative script paths are stored
// against.
func (l *loader) parseFile(name, root string, data []byte) {
	l.files = append(l.files, name)
	p := &fileParser{l: l, name: name, data: data, root: root, reported: make(map[string]bool)}
	dir, err := filepath.Abs(filepath.Dir(name))
	if err != nil {
		l.fileError(name, "resolving directory: "+err.Error())
		return
	}
	p.dir = dir

	if len(data) >= p.l.splitMin {
		if doc, ok := decodeSplit(data, splitParts()); ok {
			if !p.refuseAliases(doc) {
				p.document(doc)
			}
			return
		}
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	switch err := dec.Decode(&doc); {
	case errors.Is(err, io.EOF):
		// An empty file: reported below as a missing version.
	case err != nil:
		p.yamlError(err)
		return
	default:
		var extra yaml.Node
		switch err := dec.Decode(&extra); {
		case errors.Is(err, io.EOF):
		case err != nil:
			p.yamlError(err)
			return
		default:
			p.errorAt(&extra, "", "a hooks file holds one YAML document")
			return
		}
	}
	if p.refuseAliases(&doc) {
		return
	}
	p.document(&doc)
}

// yamlError reports a YAML syntax error at the line yaml.v3 gives (it gives
// no column).
func (p *fileParser) yamlError(err error) {
	msg := err.Error()
	d := Diagnostic{File: p.name, Message: msg}
	if m := yamlLineRE.FindStringSubmatch(msg); m != nil {
		d.Line, _ = strconv.Atoi(m[1])
		d.Message = m[2]
	} else {
		d.Message = strings.TrimPrefix(msg, "yaml: ")
	}
	p.l.diags = append(p.l.diags, d)
}

// refuseAliases reports every alias: expanding them is how a small file
// becomes a huge document ("billion laughs"), and hooks files do not need
// them.
func (p *fileParser) refuseAliases(n *yaml.Node) bool {
	found := false
	var walk func(*yaml.Node)
	walk = func(n *yaml.Node) {
		if n.Kind == yaml.AliasNode {
			p.errorAt(n, "", "%s", errNoAliases)
			found = true
			return
		}
		for _, c := range n.Content {
			walk(c)
		}
	}
	walk(n)
	return found
}

// fieldSet holds the values of a mapping's known fields; a fixed array
// rather than a map, since it is made for every hook.
type fieldSet struct {
	known []string
	vals  [24]*yaml.Node // at least len(hookFields)
}

// get returns the value of field and whether it was given.
func (f *fieldSet) get(field string) (*yaml.Node, bool) {
	i := slices.Index(f.known, field)
	return f.vals[i], f.vals[i] != nil
}

// fields checks that n is a mapping and returns its values by key,
// reporting keys given twice and unknown keys (with a suggestion).
func (p *fileParser) fields(n *yaml.Node, path string, known []string) (*fieldSet, bool) {
	if n.Kind != yaml.MappingNode {
		p.errorAt(n, path, "must be a mapping (got %s)", describe(n))
		return nil, false
	}
	f := &fieldSet{known: known}
	var keys [24]*yaml.Node
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if k.Kind != yaml.ScalarNode {
			p.errorAt(k, path, "keys must be plain field names (got %s)", describe(k))
			continue
		}
		j := slices.Index(known, k.Value)
		if j < 0 {
			msg := fmt.Sprintf("unknown field %q", k.Value)
			if s := suggest.Closest(k.Value, known); s != "" {
				msg += fmt.Sprintf(" (did you mean %q?)", s)
			}
			p.errorAt(k, path, "%s", msg)
			continue
		}
		if prev := keys[j]; prev != nil {
			p.errorAt(k, join(path, k.Value), "given twice (first at line %d)", prev.Line)
			continue
		}
		keys[j] = k
		f.vals[j] = v
	}
	return f, true
}

func join(path, field string) string {
	if path == "" {
		return field
	}
	return path + "." + field
}

// document validates the top level and each hook.
func (p *fileParser) document(doc *yaml.Node) {
	root := doc
	if doc.Kind == yaml.DocumentNode && len(doc.Content) > 0 {
		root = doc.Content[0]
	}
	if doc.Kind == 0 || isNull(root) {
		// An empty document: only the missing version is wrong.
		p.errorPos(1, 1, "version", "is required (version: 1)")
		return
	}
	if root.Kind != yaml.MappingNode {
		// Never the value: a file that is not a hooks file (a token a
		// symlink leads to) must not have its content in a message.
		p.errorAt(root, "", "must be a mapping (got %s); is this a hooks file?", kindOf(root))
		return
	}
	f, ok := p.fields(root, "", topFields)
	if !ok {
		return
	}

	if v, ok := f.get("version"); !ok || isNull(v) {
		p.errorAt(root, "version", "is required (version: 1)")
	} else if n, ok := p.integer(v, "version"); ok && n != 1 {
		p.errorAt(v, "version", "unsupported version %d (want 1)", n)
	}

	set := DefaultSet
	if v, ok := f.get("set"); ok && !isNull(v) {
		if s, ok := p.str(v, "set"); ok {
			if rules.ValidName(s) {
				set = s
			} else {
				p.errorAt(v, "set", "%q is not a simple name (letters, digits, '.', '_', '-')", s)
			}
		}
	}
	p.l.sets = append(p.l.sets, set)

	profile := DefaultProfile
	if v, ok := f.get("profile"); ok && !isNull(v) {
		if s, ok := p.profile(v, "profile"); ok {
			profile = s
		}
	}

	hooks, ok := f.get("hooks")
	if !ok || isNull(hooks) {
		return
	}
	if hooks.Kind != yaml.SequenceNode {
		p.errorAt(hooks, "hooks", "must be a list (got %s)", describe(hooks))
		return
	}
	p.pending = make([]pendingHook, 0, len(hooks.Content))
	for i, hn := range hooks.Content {
		path := "hooks[" + strconv.Itoa(i) + "]"
		p.failed = false
		ph, ok := p.hook(hn, path, set, profile)
		if ok {
			ph.failed = p.failed
			p.pending = append(p.pending, ph)
		}
	}
	p.checkPending()
}

// events decodes a list of event kinds: known, no repeats, not empty.
func (p *fileParser) events(v *yaml.Node, path string) []hookctl.EventKind {
	items, ok := p.strings(v, path)
	if !ok {
		return nil
	}
	if len(items) == 0 {
		p.errorAt(v, path, "must not be empty (omit it for publish and retract)")
		return nil
	}
	out := make([]hookctl.EventKind, len(items))
	for i, s := range items {
		out[i] = hookctl.EventKind(s)
	}
	return out
}

// stringMap decodes a mapping of names to string values (http headers,
// environment variables); what names the keys in the error.
func (p *fileParser) stringMap(v *yaml.Node, path, what string) (map[string]string, bool) {
	if v.Kind != yaml.MappingNode {
		p.errorAt(v, path, "must be a mapping of %s to values (got %s)", what, describe(v))
		return nil, false
	}
	out := make(map[string]string, len(v.Content)/2)
	ok := true
	for i := 0; i+1 < len(v.Content); i += 2 {
		k, val := v.Content[i], v.Content[i+1]
		name, kok := p.str(k, path)
		if !kok {
			ok = false
			continue
		}
		hp := path + "." + name
		if _, dup := out[name]; dup {
			p.errorAt(k, hp, "given twice")
			ok = false
			continue
		}
		s, vok := p.str(val, hp)
		if !vok {
			ok = false
			continue
		}
		out[name] = s
	}
	return out, ok
}

// profile decodes a profile name: non-empty, one line, no spaces.
func (p *fileParser) profile(v *yaml.Node, path string) (string, bool) {
	s, ok := p.str(v, path)
	if !ok {
		return "", false
	}
	if s == "" || strings.ContainsFunc(s, func(r rune) bool { return r <= ' ' || r == 0x7f }) {
		p.errorAt(v, path, "%q is not a profile name", s)
		return "", false
	}
	return s, true
}

// str decodes a scalar as a string. Like yaml.v3 itself it takes any
// scalar's text (`node: 42` is the node "42"); mappings and lists are errors.
func (p *fileParser) str(v *yaml.Node, path string) (string, bool) {
	if v.Kind != yaml.ScalarNode || v.ShortTag() == "!!binary" {
		p.errorAt(v, path, "must be a string (got %s)", describe(v))
		return "", false
	}
	return v.Value, true
}

// strings decodes a list of strings.
func (p *fileParser) strings(v *yaml.Node, path string) ([]string, bool) {
	if v.Kind != yaml.SequenceNode {
		p.errorAt(v, path, "must be a list of strings (got %s)", describe(v))
		return nil, false
	}
	out := make([]string, 0, len(v.Content))
	ok := true
	for i, c := range v.Content {
		s, sok := p.str(c, fmt.Sprintf("%s[%d]", path, i))
		if !sok || isNull(c) {
			if sok {
				p.errorAt(c, fmt.Sprintf("%s[%d]", path, i), "must be a string (got null)")
			}
			ok = false
			continue
		}
		out = append(out, s)
	}
	return out, ok
}

func (p *fileParser) integer(v *yaml.Node, path string) (int, bool) {
	if v.Kind != yaml.ScalarNode || v.ShortTag() != "!!int" {
		p.errorAt(v, path, "must be an integer (got %s)", describe(v))
		return 0, false
	}
	var n int
	if err := v.Decode(&n); err != nil {
		p.errorAt(v, path, "integer %s is out of range", v.Value)
		return 0, false
	}
	return n, true
}

func (p *fileParser) boolean(v *yaml.Node, path string) (bool, bool) {
	if v.Kind != yaml.ScalarNode || v.ShortTag() != "!!bool" {
		p.errorAt(v, path, "must be true or false (got %s)", describe(v))
		return false, false
	}
	var b bool
	if err := v.Decode(&b); err != nil {
		p.errorAt(v, path, "must be true or false (got %s)", describe(v))
		return false, false
	}
	return b, true
}

func isNull(n *yaml.Node) bool { return n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null" }

// kindOf names a node's kind without its value: "a string", "a list".
func kindOf(n *yaml.Node) string {
	switch {
	case n.Kind == yaml.SequenceNode:
		return "a list"
	case n.Kind == yaml.AliasNode:
		return "an alias"
	case n.ShortTag() == "!!int", n.ShortTag() == "!!float":
		return "a number"
	case n.ShortTag() == "!!bool":
		return "a boolean"
	}
	return "a string"
}

// describe names a node's type for messages: "a mapping", "string \"x\"".
func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.AliasNode:
		return "an alias"
	case yaml.DocumentNode:
		return "a document"
	}
	val := n.Value
	if len(val) > 40 {
		val = val[:37] + "..."
	}
	switch n.ShortTag() {
	case "!!null":
		return "null"
	case "!!str":
		return "string " + strconv.Quote(val)
	case "!!int":
		return "integer " + val
	case "!!float":
		return "number " + val
	case "!!bool":
		return "boolean " + val
	default:
		return n.ShortTag() + " " + strconv.Quote(val)
	}
}

// exprError reports an expr-lang compile error at its place in the file.
func (p *fileParser) exprError(v *yaml.Node, path string, err error) {
	line, col, msg := 1, 0, err.Error()
	var fe *filter.Error
	var xe *exprfile.Error
	switch {
	case errors.As(err, &fe):
		line, col, msg = fe.Line, fe.Column, fe.Message
	case errors.As(err, &xe):
		line, col, msg = xe.Line, xe.Column, xe.Message
	}
	l, c := p.exprPos(v, line, col)
	p.errorPos(l, c, path, "%s", msg)
}
