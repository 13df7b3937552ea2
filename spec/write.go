package spec

import (
	"bytes"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"

	"hookctl.dev/hookctl"
)

// WriteOptions say how Write renders hooks as one hooks file.
type WriteOptions struct {
	// Set is the file's set; every hook is written as one of it (their
	// Owner is not looked at: hand-made hooks join it).
	Set string
	// OwnJIDs maps profile → its bare JID: a hook whose service is its
	// profile's own JID is written without service (own PEP), as files
	// declare it. Unknown profiles keep their service.
	OwnJIDs map[string]string
	// Header is a comment written above the document ("" for none).
	Header string
}

// Write renders hooks as one hooks file of set opts.Set that Parse reads
// back into the same hooks (AttributeChanges finds nothing; bookkeeping
// such as Source and Created aside): the format of schema/hooks.schema.json,
// fields in the order files write them, defaults left out. Relative script
// paths are written as stored, that is relative to the hooks root: the file
// belongs at that root. Every field of Hook.Fields is handled here; one it
// does not know is an error, so a new field cannot be forgotten silently.
func Write(hooks []hookctl.Hook, opts WriteOptions) ([]byte, error) {
	hs := slices.Clone(hooks)
	slices.SortStableFunc(hs, func(a, b hookctl.Hook) int { return a.Key.Compare(b.Key) })
	doc := mapping()
	add(doc, "version", scalar("1", "!!int"))
	add(doc, "set", str(opts.Set))
	profile := commonProfile(hs)
	if profile != "" {
		add(doc, "profile", str(profile))
	}
	list := &yaml.Node{Kind: yaml.SequenceNode}
	for _, h := range hs {
		n, err := writeHook(h, profile, opts)
		if err != nil {
			return nil, err
		}
		list.Content = append(list.Content, n)
	}
	add(doc, "hooks", list)
	root := &yaml.Node{Kind: yaml.DocumentNode, Content: []*yaml.Node{doc}, HeadComment: opts.Header}
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(root); err != nil {
		return nil, fmt.Errorf("writing hooks file: %w", err)
	}
	if err := enc.Close(); err != nil {
		return nil, fmt.Errorf("writing hooks file: %w", err)
	}
	return buf.Bytes(), nil
}

// commonProfile is the profile most hooks have (the first in name order
// on a tie; "" for no hooks): written once at the top, and by the hooks
// of other profiles on their own.
func commonProfile(hs []hookctl.Hook) string {
	count := map[string]int{}
	best := ""
	for _, h := range hs {
		count[h.Profile]++
		if c, b := count[h.Profile], count[best]; c > b || (c == b && h.Profile < best) {
			best = h.Profile
		}
	}
	return best
}

// writeHook renders one hook, its fields in hookFields order.
func writeHook(h hookctl.Hook, fileProfile string, opts WriteOptions) (*yaml.Node, error) {
	vals := make(map[string]*yaml.Node, len(hookFields))
	for _, f := range h.Fields() {
		if err := writeField(vals, f.Name, h, fileProfile, opts); err != nil {
			return nil, err
		}
	}
	n := mapping()
	for _, name := range hookFields {
		if v, ok := vals[name]; ok {
			add(n, name, v)
		}
	}
	return n, nil
}

// writeField puts field name of h into vals, leaving defaults out. The
// names are Hook.Fields' (the one list of a hook's declared fields).
func writeField(vals map[string]*yaml.Node, name string, h hookctl.Hook, fileProfile string, opts WriteOptions) error {
	put := func(k string, n *yaml.Node) { vals[k] = n }
	switch name {
	case "profile":
		if h.Profile != fileProfile {
			put("profile", str(h.Profile))
		}
	case "service":
		if h.Service != "" && h.Service != opts.OwnJIDs[h.Profile] {
			put("service", str(h.Service))
		}
	case "node":
		put("node", str(h.Node))
	case "type": // written even for the default python_file: what runs is seen at once
		put("type", str(string(h.Type)))
	case "arg":
		put("arg", str(h.Arg))
	case "persistent":
		if !h.Persistent {
			put("persistent", scalar("false", "!!bool"))
		}
	case "owner": // the file's set
	case "name":
		if h.Name != "" {
			put("name", str(h.Name))
		}
	case "args":
		if len(h.Args) > 0 {
			put("args", strList(h.Args))
		}
	case "headers":
		if len(h.Headers) > 0 {
			put("headers", strMap(h.Headers))
		}
	case "env":
		if len(h.Env) > 0 {
			put("env", strMap(h.Env))
		}
	case "secrets": // names only: the values live in the backend's config
		if len(h.Secrets) > 0 {
			put("secrets", strList(h.Secrets))
		}
	case "events":
		if len(h.Events) > 0 {
			ev := make([]string, len(h.Events))
			for i, e := range h.Events {
				ev[i] = string(e)
			}
			put("events", flow(strList(ev)))
		}
	case "filter":
		if h.Filter != "" {
			put("filter", str(h.Filter))
		}
	case "timeout":
		if h.Timeout > 0 {
			put("timeout", str(h.Timeout.String()))
		}
	case "concurrency":
		if h.Concurrency > 1 {
			put("concurrency", scalar(strconv.Itoa(h.Concurrency), "!!int"))
		}
	case "catchup":
		if h.Catchup != hookctl.CatchupNew {
			put("catchup", str(h.Catchup))
		}
	case "memory":
		if h.Memory != "" {
			put("memory", str(h.Memory))
		}
	case "enabled":
		if h.Suspended {
			put("enabled", scalar("false", "!!bool"))
		}
	default:
		return fmt.Errorf("writing hooks file: hook field %q is not known to spec.Write (teach it, and the parser, about the field)", name)
	}
	return nil
}

func mapping() *yaml.Node { return &yaml.Node{Kind: yaml.MappingNode} }

func add(m *yaml.Node, key string, v *yaml.Node) {
	m.Content = append(m.Content, str(key), v)
}

func scalar(v, tag string) *yaml.Node {
	return &yaml.Node{Kind: yaml.ScalarNode, Tag: tag, Value: v}
}

// str is a string scalar: the encoder quotes it when it would otherwise
// read as another type ("true", "42", "~"), and writes text with line
// breaks as a literal block. YAML 1.1's other booleans ("yes", "off")
// are quoted too, for the tools that still read them so.
func str(s string) *yaml.Node {
	n := scalar(s, "!!str")
	switch {
	case strings.ContainsRune(s, '\n'):
		n.Style = yaml.LiteralStyle
	case yaml11Bool[strings.ToLower(s)]:
		n.Style = yaml.DoubleQuotedStyle
	}
	return n
}

var yaml11Bool = map[string]bool{"y": true, "n": true, "yes": true, "no": true, "on": true, "off": true}

func strList(ss []string) *yaml.Node {
	n := &yaml.Node{Kind: yaml.SequenceNode}
	for _, s := range ss {
		n.Content = append(n.Content, str(s))
	}
	return n
}

func flow(n *yaml.Node) *yaml.Node {
	n.Style = yaml.FlowStyle
	return n
}

func strMap(m map[string]string) *yaml.Node {
	n := mapping()
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		add(n, k, str(m[k]))
	}
	return n
}
