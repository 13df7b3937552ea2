package spec

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	exprfile "github.com/expr-lang/expr/file"
	exprparser "github.com/expr-lang/expr/parser"
	"gopkg.in/yaml.v3"
	"mellium.im/xmpp/jid"

	"hookctl.dev/hookctl"
	"hookctl.dev/hookctl/filter"
)

// Limits of the attributes a file may set.
const (
	MaxTimeout     = 24 * time.Hour
	MaxConcurrency = 64
)

var (
	setNameRE    = regexp.MustCompile(`^[a-zA-Z0-9._-]+$`)
	pyModuleRE   = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$`)
	yamlLineRE   = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)
	topFields    = []string{"version", "set", "profile", "hooks"}
	hookFields   = []string{"name", "profile", "service", "node", "type", "arg", "args", "headers", "persistent", "events", "filter", "timeout", "concurrency", "catchup", "memory"}
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
	failed bool     // a problem was reported in the current hook
	// filters are compiled once the walk is done, on every CPU: compiling
	// is most of the time spent on a file's own checks.
	filters []filterJob
}

// filterJob is one filter to compile, and the entry of its hook (-1 if the
// hook had other problems).
type filterJob struct {
	v     *yaml.Node
	path  string
	src   string
	entry int
	err   error
}

func (p *fileParser) errorAt(n *yaml.Node, path, format string, args ...any) {
	p.failed = true
	d := Diagnostic{File: p.name, Path: path, Message: fmt.Sprintf(format, args...)}
	if n != nil {
		d.Line, d.Column = n.Line, n.Column
	}
	p.l.diags = append(p.l.diags, d)
}

func (p *fileParser) errorPos(line, col int, path, format string, args ...any) {
	p.failed = true
	p.l.diags = append(p.l.diags, Diagnostic{File: p.name, Line: line, Column: col, Path: path, Message: fmt.Sprintf(format, args...)})
}

// parseFile parses and validates one file, adding its hooks and problems to
// the loader.
func (l *loader) parseFile(name string, data []byte) {
	l.files = append(l.files, name)
	p := &fileParser{l: l, name: name, data: data}
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
	vals  [16]*yaml.Node // at least len(hookFields)
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
	var keys [16]*yaml.Node
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if k.Kind != yaml.ScalarNode {
			p.errorAt(k, path, "keys must be plain field names (got %s)", describe(k))
			continue
		}
		j := slices.Index(known, k.Value)
		if j < 0 {
			msg := fmt.Sprintf("unknown field %q", k.Value)
			if s := suggest(k.Value, known); s != "" {
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
			if setNameRE.MatchString(s) {
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
	names := make(map[string]*yaml.Node, len(hooks.Content))
	p.l.entries = slices.Grow(p.l.entries, len(hooks.Content))
	for i, hn := range hooks.Content {
		path := "hooks[" + strconv.Itoa(i) + "]"
		p.failed = false
		jobs := len(p.filters)
		h, ok := p.hook(hn, path, set, profile)
		if h.Name != "" {
			if prev, dup := names[h.Name]; dup {
				p.errorAt(hn, path+".name", "%q is also the name of the hook at line %d", h.Name, prev.Line)
				ok = false
			} else {
				names[h.Name] = hn
			}
		}
		if ok && !p.failed {
			for i := jobs; i < len(p.filters); i++ {
				p.filters[i].entry = len(p.l.entries)
			}
			p.l.entries = append(p.l.entries, entry{hook: h, file: p.name, line: hn.Line, col: hn.Column, path: path})
		}
	}
	p.compileFilters()
}

// compileFilters compiles the file's filters on up to GOMAXPROCS
// goroutines, reports those that fail and drops their hooks.
func (p *fileParser) compileFilters() {
	jobs := p.filters
	if len(jobs) == 0 {
		return
	}
	workers := min(runtime.GOMAXPROCS(0), 1+len(jobs)/32)
	var next atomic.Int64
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= len(jobs) {
					return
				}
				_, jobs[i].err = filter.Compile(jobs[i].src)
			}
		})
	}
	wg.Wait()
	var drop map[int]bool
	for _, j := range jobs {
		if j.err == nil {
			continue
		}
		p.exprError(j.v, j.path, j.err)
		if j.entry >= 0 {
			if drop == nil {
				drop = make(map[int]bool)
			}
			drop[j.entry] = true
		}
	}
	if drop != nil {
		kept := p.l.entries[:0]
		for i, e := range p.l.entries {
			if !drop[i] {
				kept = append(kept, e)
			}
		}
		p.l.entries = kept
	}
}

// hook decodes and validates one entry of hooks.
func (p *fileParser) hook(n *yaml.Node, path, set, profile string) (hookctl.Hook, bool) {
	f, ok := p.fields(n, path, hookFields)
	if !ok {
		return hookctl.Hook{}, false
	}
	h := hookctl.Hook{
		Key:        hookctl.Key{Profile: profile, Type: hookctl.TypePythonFile},
		Persistent: true,
		Owner:      set,
		Source:     p.name + ":" + strconv.Itoa(n.Line),
	}
	get := func(field string) (*yaml.Node, string, bool) {
		v, ok := f.get(field)
		if !ok || isNull(v) {
			return nil, "", false
		}
		return v, path + "." + field, true
	}

	if v, fp, ok := get("name"); ok {
		h.Name, _ = p.str(v, fp)
	}
	if v, fp, ok := get("profile"); ok {
		if s, ok := p.profile(v, fp); ok {
			h.Profile = s
		}
	}
	if v, fp, ok := get("service"); ok {
		if s, ok := p.str(v, fp); ok && s != "" {
			j, err := jid.Parse(s)
			switch {
			case err != nil:
				p.errorAt(v, fp, "malformed JID %q: %v", s, err)
			case j.Resourcepart() != "":
				p.errorAt(v, fp, "%q has a resource; want a bare JID", s)
			default:
				h.Service = j.String()
			}
		}
	}
	if v, fp, ok := get("node"); ok {
		if s, ok := p.str(v, fp); ok {
			if s == "" {
				p.errorAt(v, fp, "must not be empty")
			}
			h.Node = s
		}
	} else {
		p.errorAt(n, path+".node", "is required")
	}
	typeOK := true
	if v, fp, ok := get("type"); ok {
		if s, ok := p.str(v, fp); ok {
			t, err := hookctl.ParseType(s)
			if err != nil {
				p.errorAt(v, fp, "unknown hook type %q (want one of %s)", s, typeNames())
				typeOK = false
			} else {
				h.Type = t
			}
		} else {
			typeOK = false
		}
	}
	if v, fp, ok := get("arg"); ok {
		if s, ok := p.str(v, fp); ok {
			if s == "" {
				p.errorAt(v, fp, "must not be empty")
			} else if typeOK {
				h.Arg = p.arg(v, fp, h.Type, s)
			} else {
				h.Arg = s
			}
		}
	} else {
		p.errorAt(n, join(path, "arg"), "is required")
	}
	if v, fp, ok := get("args"); ok {
		if args, ok := p.strings(v, fp); ok {
			if typeOK && h.Type != hookctl.TypeExec {
				p.errorAt(v, fp, "only exec hooks take args (this hook is %s)", h.Type)
			}
			h.Args = args
		}
	}
	if v, fp, ok := get("headers"); ok {
		if hs, ok := p.headers(v, fp); ok {
			if typeOK && h.Type != hookctl.TypeHTTP {
				p.errorAt(v, fp, "only http hooks take headers (this hook is %s)", h.Type)
			}
			h.Headers = hs
		}
	}
	if v, fp, ok := get("persistent"); ok {
		if b, ok := p.boolean(v, fp); ok {
			h.Persistent = b
		}
	}
	if v, fp, ok := get("events"); ok {
		h.Events = p.events(v, fp)
	}
	if v, fp, ok := get("filter"); ok {
		if s, ok := p.str(v, fp); ok {
			// Compiled later, in parallel with the other filters.
			p.filters = append(p.filters, filterJob{v: v, path: fp, src: s, entry: -1})
			h.Filter = s
		}
	}
	if v, fp, ok := get("timeout"); ok {
		if s, ok := p.str(v, fp); ok {
			d, err := time.ParseDuration(s)
			switch {
			case err != nil:
				p.errorAt(v, fp, "bad duration %q (want e.g. \"30s\", \"2m\")", s)
			case d <= 0:
				p.errorAt(v, fp, "must be positive (got %q)", s)
			case d > MaxTimeout:
				p.errorAt(v, fp, "%q is longer than 24h", s)
			default:
				h.Timeout = hookctl.Duration(d)
			}
		}
	}
	if v, fp, ok := get("concurrency"); ok {
		if c, ok := p.integer(v, fp); ok {
			if c < 1 || c > MaxConcurrency {
				p.errorAt(v, fp, "must be between 1 and %d (got %d)", MaxConcurrency, c)
			}
			h.Concurrency = c
		}
	}
	if v, fp, ok := get("memory"); ok {
		if s, ok := p.str(v, fp); ok {
			if _, err := hookctl.ParseMemory(s); err != nil || s == "" {
				p.errorAt(v, fp, "bad memory limit %q (want e.g. \"512MiB\", \"2GiB\" (64MiB to 1TiB), or \"unlimited\")", s)
			}
			h.Memory = s
		}
	}
	if v, fp, ok := get("catchup"); ok {
		if s, ok := p.str(v, fp); ok {
			switch s {
			case hookctl.CatchupNew, "new":
				h.Catchup = hookctl.CatchupNew
			case hookctl.CatchupAll, hookctl.CatchupNone:
				h.Catchup = s
			default:
				p.errorAt(v, fp, "unknown catch-up policy %q (want new, all or none)", s)
			}
		}
	}
	return h, true
}

// arg validates a hook's arg for its type and returns it resolved: paths
// absolute, "~" expanded.
func (p *fileParser) arg(v *yaml.Node, path string, t hookctl.Type, s string) string {
	switch t {
	case hookctl.TypePythonFile, hookctl.TypeExec:
		return p.filePath(v, path, t, s)
	case hookctl.TypePython:
		if !pyModuleRE.MatchString(s) {
			p.errorAt(v, path, "%q is not a Python module name (e.g. \"package.module\")", s)
		}
	case hookctl.TypeExpr:
		// Only the syntax: the action functions are the runner's, so the
		// environment is not known here.
		if _, err := exprparser.Parse(s); err != nil {
			p.exprError(v, path, err)
		}
	case hookctl.TypeHTTP:
		u, err := url.Parse(s)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			p.errorAt(v, path, "%q is not an http or https URL", s)
		}
	}
	return s
}

// filePath resolves a script or program path against the file's directory
// and, with CheckPaths, requires a regular (for exec, executable) file.
func (p *fileParser) filePath(v *yaml.Node, path string, t hookctl.Type, s string) string {
	if s == "~" || strings.HasPrefix(s, "~/") {
		home, err := p.l.homeDir()
		if err != nil {
			p.errorAt(v, path, "cannot expand ~: %v", err)
			return s
		}
		s = filepath.Join(home, s[1:])
	} else if strings.HasPrefix(s, "~") {
		p.errorAt(v, path, "%q: only ~ and ~/ are expanded, not ~user", s)
		return s
	}
	if !filepath.IsAbs(s) {
		s = filepath.Join(p.dir, s)
	}
	s = filepath.Clean(s)
	if !p.l.opts.CheckPaths {
		return s
	}
	if msg := p.l.checkFile(s, t == hookctl.TypeExec); msg != "" {
		p.errorAt(v, path, "%s", msg)
	}
	return s
}

func (l *loader) homeDir() (string, error) {
	if l.home == "" {
		h, err := os.UserHomeDir()
		if err != nil {
			return "", err
		}
		l.home = h
	}
	return l.home, nil
}

// checkFile returns why path is not a usable script ("" when it is).
func (l *loader) checkFile(path string, executable bool) string {
	key := path
	if executable {
		key = "x:" + path
	}
	if msg, ok := l.stats[key]; ok {
		return msg
	}
	msg := ""
	fi, err := os.Stat(path)
	switch {
	case err != nil:
		msg = fmt.Sprintf("%s is not a file (%s)", path, statMessage(err))
	case fi.IsDir():
		msg = fmt.Sprintf("%s is not a file (it is a directory)", path)
	case !fi.Mode().IsRegular():
		msg = fmt.Sprintf("%s is not a file", path)
	case executable && fi.Mode().Perm()&0o111 == 0:
		msg = fmt.Sprintf("%s is not executable", path)
	}
	l.stats[key] = msg
	return msg
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
	out := make([]hookctl.EventKind, 0, len(items))
	for i, s := range items {
		k := hookctl.EventKind(s)
		ip := fmt.Sprintf("%s[%d]", path, i)
		switch {
		case !k.Valid():
			p.errorAt(v.Content[i], ip, "unknown event %q (want publish, retract, purge or delete)", s)
		case slices.Contains(out, k):
			p.errorAt(v.Content[i], ip, "%q is listed twice", s)
		default:
			out = append(out, k)
		}
	}
	return out
}

// headers decodes a mapping of HTTP header names to values.
func (p *fileParser) headers(v *yaml.Node, path string) (map[string]string, bool) {
	if v.Kind != yaml.MappingNode {
		p.errorAt(v, path, "must be a mapping of header names to values (got %s)", describe(v))
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
		if !validHeaderName(name) {
			p.errorAt(k, hp, "%q is not a valid header name", name)
			ok = false
			continue
		}
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
		if strings.ContainsAny(s, "\r\n") {
			p.errorAt(val, hp, "header values must be one line")
			ok = false
			continue
		}
		out[name] = s
	}
	return out, ok
}

// validHeaderName reports whether s is an HTTP token (RFC 9110).
func validHeaderName(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range []byte(s) {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0:
		default:
			return false
		}
	}
	return true
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

func typeNames() string {
	names := make([]string, len(hookctl.Types))
	for i, t := range hookctl.Types {
		names[i] = string(t)
	}
	return strings.Join(names, ", ")
}

// suggest returns the known name closest to s when it is a likely typo.
func suggest(s string, known []string) string {
	best, bestD := "", 3
	for _, k := range known {
		if d := editDistance(s, k); d < bestD {
			best, bestD = k, d
		}
	}
	return best
}

func editDistance(a, b string) int {
	if len(a) > 64 || len(b) > 64 {
		return 99 // long keys are no typos of ours; keep this cheap
	}
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
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
