package spec

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"gopkg.in/yaml.v3"

	"hookctl.dev/hookctl"
	"hookctl.dev/hookctl/filter"
	"hookctl.dev/hookctl/rules"
	"hookctl.dev/hookctl/runner"
)

// pendingHook is a decoded hook waiting for the rules, with the YAML nodes
// of its fields so that each problem gets its position.
type pendingHook struct {
	hook  hookctl.Hook
	node  *yaml.Node
	path  string
	nodes map[string]*yaml.Node // field ("timeout", "events[1]") → node
	// failed: a field did not decode; the rules still run, for every
	// other problem at once, but the hook is not kept.
	failed bool
	err    error
}

// hook decodes one entry of hooks: the YAML shape of each field here, what
// the values mean in rules.Check (checkPending), so that a file and the
// API refuse the same hooks with the same messages.
func (p *fileParser) hook(n *yaml.Node, path, set, profile string) (pendingHook, bool) {
	f, ok := p.fields(n, path, hookFields)
	if !ok {
		return pendingHook{}, false
	}
	ph := pendingHook{node: n, path: path, nodes: make(map[string]*yaml.Node, 8)}
	h := &ph.hook
	*h = hookctl.Hook{
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
		ph.nodes[field] = v
		return v, path + "." + field, true
	}
	str := func(field string, dst *string) {
		if v, fp, ok := get(field); ok {
			if s, ok := p.str(v, fp); ok {
				*dst = s
			}
		}
	}
	str("name", &h.Name)
	if v, fp, ok := get("profile"); ok {
		if s, ok := p.profile(v, fp); ok {
			h.Profile = s
		}
	}
	str("service", &h.Service)
	str("node", &h.Node)
	if v, fp, ok := get("type"); ok {
		if s, ok := p.str(v, fp); ok {
			h.Type = hookctl.Type(s)
		}
	}
	if v, fp, ok := get("arg"); ok {
		if s, ok := p.str(v, fp); ok {
			h.Arg = s
			if h.Type.TakesPath() && s != "" {
				h.Arg = p.filePath(v, fp, h.Type, s)
			}
		}
	}
	p.decodeAttributes(get, &ph)
	return ph, true
}

// decodeAttributes decodes the fields that are not the hook's key.
func (p *fileParser) decodeAttributes(get func(string) (*yaml.Node, string, bool), ph *pendingHook) {
	h := &ph.hook
	if v, fp, ok := get("args"); ok {
		h.Args, _ = p.strings(v, fp)
	}
	if v, fp, ok := get("headers"); ok {
		h.Headers, _ = p.stringMap(v, fp, "header names")
	}
	if v, fp, ok := get("env"); ok {
		h.Env, _ = p.stringMap(v, fp, "variable names")
	}
	if v, fp, ok := get("secrets"); ok {
		h.Secrets, _ = p.strings(v, fp)
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
		h.Filter, _ = p.str(v, fp)
	}
	if v, fp, ok := get("timeout"); ok {
		if s, ok := p.str(v, fp); ok {
			d, err := time.ParseDuration(s)
			switch {
			case err != nil:
				p.errorAt(v, fp, "bad duration %q (want e.g. \"30s\", \"2m\")", s)
			case d == 0:
				p.errorAt(v, fp, "must be positive (got %q; omit it for the backend's default)", s)
			default:
				h.Timeout = hookctl.Duration(d)
			}
		}
	}
	if v, fp, ok := get("memory"); ok {
		h.Memory, _ = p.str(v, fp)
	}
	if v, fp, ok := get("concurrency"); ok {
		h.Concurrency, _ = p.integer(v, fp)
	}
	if v, fp, ok := get("catchup"); ok {
		if s, ok := p.str(v, fp); ok {
			h.Catchup = strings.TrimPrefix(s, "new")
		}
	}
	if v, fp, ok := get("enabled"); ok {
		if b, ok := p.boolean(v, fp); ok {
			h.Suspended = !b
		}
	}
}

// checkPending applies rules.Check to the file's hooks on up to GOMAXPROCS
// goroutines, reports each problem at its field's place, and keeps the
// hooks that pass.
func (p *fileParser) checkPending() {
	jobs := p.pending
	workers := min(runtime.GOMAXPROCS(0), 1+len(jobs)/32)
	var next atomic.Int64
	var wg sync.WaitGroup
	lim := rules.DefaultLimits()
	for range workers {
		wg.Go(func() {
			for i := int(next.Add(1) - 1); i < len(jobs); i = int(next.Add(1) - 1) {
				jobs[i].err = p.check(jobs[i].hook, lim)
			}
		})
	}
	wg.Wait()
	for _, j := range jobs {
		if j.err == nil && j.failed {
			continue
		}
		if j.err == nil && !j.failed {
			p.l.entries = append(p.l.entries, entry{hook: j.hook, file: p.name, line: j.node.Line, col: j.node.Column, path: j.path})
			continue
		}
		var ps rules.Problems
		if !errors.As(j.err, &ps) {
			p.errorAt(j.node, j.path, "%v", j.err)
			continue
		}
		for _, pr := range ps {
			p.problem(j, pr)
		}
	}
	p.pending = nil
}

// check is rules.Check plus, when the backend's secrets are known, the
// check that every secret the hook names is declared.
func (p *fileParser) check(h hookctl.Hook, lim rules.Limits) error {
	if err := rules.Check(h, lim); err != nil || p.l.opts.Secrets == nil {
		return err
	}
	var ue *runner.UndeclaredSecretError
	if errors.As(runner.CheckSecrets(h, p.l.opts.Secrets), &ue) {
		return rules.Problems{{Field: ue.Field(), Message: ue.Reason()}}
	}
	return nil
}

// problem reports one rules problem at the node of its field (the hook's
// own node when the field was not written, e.g. a missing name).
func (p *fileParser) problem(j pendingHook, pr rules.Problem) {
	field := pr.Field
	if field == "set" {
		return // reported once, at the file's set
	}
	v := fieldNode(j, field)
	fp := j.path + "." + field
	if p.reported[fp] || p.reported[j.path+"."+strings.SplitN(field, "[", 2)[0]] {
		return // the field did not decode: already reported
	}
	var fe *filter.Error
	if pr.Err != nil && errors.As(pr.Err, &fe) && v != nil {
		p.exprError(v, fp, pr.Err)
		return
	}
	if v == nil {
		v = j.node
	}
	p.errorAt(v, fp, "%s", pr.Message)
}

// fieldNode finds the node of a field path such as "events[1]" or
// "headers.X-Token"; nil when the field was not written.
func fieldNode(j pendingHook, field string) *yaml.Node {
	base, rest, _ := strings.Cut(field, "[")
	if b, _, ok := strings.Cut(base, "."); ok {
		base, rest = b, field[len(b)+1:]
	}
	v := j.nodes[base]
	if v == nil || rest == "" {
		return v
	}
	if v.Kind == yaml.SequenceNode {
		if i, err := strconv.Atoi(strings.TrimSuffix(rest, "]")); err == nil && i < len(v.Content) {
			return v.Content[i]
		}
	}
	if v.Kind == yaml.MappingNode {
		for i := 0; i+1 < len(v.Content); i += 2 {
			if v.Content[i].Value == rest {
				return v.Content[i+1]
			}
		}
	}
	return v
}

// filePath resolves a script or program path written in a file: "~"
// expands to the home directory, a relative path is taken from the file's
// directory and stored relative to the files' root, so that the same
// repository checked out anywhere declares the same hooks; the backend
// finds it under its hooks_root (rules.Resolve). With CheckPaths the file
// must exist here (executable for exec).
func (p *fileParser) filePath(v *yaml.Node, path string, t hookctl.Type, s string) string {
	abs, stored := s, s
	switch {
	case s == "~" || strings.HasPrefix(s, "~/"):
		home, err := p.l.homeDir()
		if err != nil {
			p.errorAt(v, path, "cannot expand ~: %v", err)
			return s
		}
		abs = filepath.Join(home, s[1:])
		stored = abs
	case strings.HasPrefix(s, "~"):
		p.errorAt(v, path, "%q: only ~ and ~/ are expanded, not ~user", s)
		return s
	case filepath.IsAbs(s):
		abs = filepath.Clean(s)
		stored = abs
	default:
		abs = filepath.Join(p.dir, s)
		rel, err := filepath.Rel(p.root, abs)
		if err != nil || rel == ".." || strings.HasPrefix(rel, ".."+string(filepath.Separator)) {
			p.errorAt(v, path, "%q is outside the hooks root %s (give -f the repository's root, or an absolute path)", s, p.root)
			return s
		}
		stored = filepath.ToSlash(rel)
	}
	if p.l.opts.CheckPaths {
		if msg := p.l.checkFile(abs, t == hookctl.TypeExec); msg != "" {
			p.errorAt(v, path, "%s", msg)
		}
	}
	return stored
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
