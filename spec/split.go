package spec

import (
	"bytes"
	"runtime"
	"strings"
	"sync"

	"gopkg.in/yaml.v3"
)

// splitMin is the size from which a hooks file's list is parsed in parallel.
// yaml.v3 parses about 7 MB/s on one core, most of the time it takes to load
// a large file; small files gain nothing from splitting.
const splitMin = 256 << 10

// decodeSplit parses a hooks file as yaml.v3 would, but with the items of
// its top-level `hooks:` list cut into chunks parsed concurrently. It only
// does so for the plain layout it can cut safely, and reports ok=false
// otherwise, or when any part fails to parse, so that the caller parses
// the file whole and reports errors exactly as usual.
//
// Why a cut is safe: items start on lines holding exactly the list's
// indentation and "- ". A block scalar, a plain multi-line scalar or a
// nested list inside an item is indented deeper than that, so such a line
// can only be inside a flow collection or a quoted scalar; the chunk
// before the cut then ends inside it and fails to parse, and the file is
// parsed whole.
func decodeSplit(data []byte, parts int) (*yaml.Node, bool) {
	// Lines are cut at \n; yaml.v3 also breaks lines at \r, NEL, LS and PS.
	if parts < 2 || bytes.ContainsAny(data, "\r\u0085\u2028\u2029") {
		return nil, false
	}
	lines := bytes.SplitAfter(data, []byte("\n"))
	hooksLine := -1
	for i, ln := range lines {
		switch {
		case len(ln) > 0 && (ln[0] == '\t' || ln[0] == '%'),
			bytes.HasPrefix(ln, []byte("---")), bytes.HasPrefix(ln, []byte("...")):
			return nil, false // tabs, directives and document markers: not the plain layout
		case hooksLine < 0 && isHooksKey(ln):
			hooksLine = i
		}
	}
	if hooksLine < 0 {
		return nil, false
	}
	// The items: from the first "- " line after hooks: to the first line
	// less indented than it (or as indented but not an item).
	indent, first, end := -1, -1, len(lines)
	var starts []int
	for i := hooksLine + 1; i < len(lines); i++ {
		ln := lines[i]
		ind := indentOf(ln)
		if ind < 0 || ln[ind] == '#' {
			continue // blank or comment
		}
		isItem := ln[ind] == '-' && (ind+1 == len(ln) || ln[ind+1] == ' ' || ln[ind+1] == '\n')
		if indent < 0 {
			if !isItem {
				return nil, false // hooks: is not a block list
			}
			indent, first = ind, i
		}
		if ind < indent || (ind == indent && !isItem) {
			if ind != 0 {
				return nil, false // only a new top-level key may follow the list
			}
			end = i
			break
		}
		if ind == indent {
			if len(bytes.TrimSpace(ln[ind+1:])) == 0 {
				// "-" alone: yaml.v3 places an empty item at the next
				// token, which a cut would move.
				return nil, false
			}
			starts = append(starts, i)
		}
	}
	if len(starts) < 2*parts {
		return nil, false
	}

	// The rest of the file, with the items blanked (line numbers kept):
	// hooks: is then null, and replaced below by the parsed items.
	var rest bytes.Buffer
	rest.Grow(len(data) / 8)
	for i, ln := range lines {
		if i >= first && i < end {
			rest.WriteByte('\n')
		} else {
			rest.Write(ln)
		}
	}

	// Chunks of whole items, of about equal size, each preceded by blank
	// lines so that positions come out as in the whole file.
	type chunk struct {
		from, to int // lines
		doc      yaml.Node
		err      error
	}
	perChunk := (end - first + parts - 1) / parts
	var chunks []*chunk
	from := first
	for k, s := range starts {
		if s-from >= perChunk && s > from {
			chunks = append(chunks, &chunk{from: from, to: s})
			from = s
		}
		if k == len(starts)-1 {
			chunks = append(chunks, &chunk{from: from, to: end})
		}
	}
	var root yaml.Node
	var rootErr error
	var wg sync.WaitGroup
	wg.Go(func() { rootErr = yaml.Unmarshal(rest.Bytes(), &root) })
	for k, c := range chunks {
		wg.Go(func() {
			var b bytes.Buffer
			b.Grow(c.from + len(data)/len(chunks))
			for range c.from {
				b.WriteByte('\n')
			}
			for _, ln := range lines[c.from:c.to] {
				b.Write(ln)
			}
			// yaml.v3 places an empty node (a key with no value) at the
			// token after it: end each chunk with the token that follows
			// it in the whole file, at the same place. Before another
			// chunk that is an item's "-" (an extra item, dropped below);
			// before a top-level key, a document end marker.
			switch {
			case k < len(chunks)-1:
				b.WriteString(strings.Repeat(" ", indent) + "-\n")
			case c.to < len(lines):
				b.WriteString("...\n")
			}
			c.err = yaml.Unmarshal(b.Bytes(), &c.doc)
		})
	}
	wg.Wait()
	if rootErr != nil || root.Kind != yaml.DocumentNode || len(root.Content) != 1 || root.Content[0].Kind != yaml.MappingNode {
		return nil, false
	}
	seq := &yaml.Node{Kind: yaml.SequenceNode, Tag: "!!seq", Line: first + 1, Column: indent + 1}
	for k, c := range chunks {
		if c.err != nil || c.doc.Kind != yaml.DocumentNode || len(c.doc.Content) != 1 || c.doc.Content[0].Kind != yaml.SequenceNode {
			return nil, false
		}
		items := c.doc.Content[0].Content
		if k < len(chunks)-1 {
			items = items[:len(items)-1] // the "-" added after the chunk
		}
		seq.Content = append(seq.Content, items...)
	}
	m := root.Content[0]
	for i := 0; i+1 < len(m.Content); i += 2 {
		v := m.Content[i+1]
		if m.Content[i].Value == "hooks" && m.Content[i].Line == hooksLine+1 && v.Kind == yaml.ScalarNode && v.Tag == "!!null" && v.Value == "" {
			m.Content[i+1] = seq
			return &root, true
		}
	}
	return nil, false
}

// isHooksKey reports whether ln is exactly the top-level key "hooks:",
// perhaps with a comment, and no value on the line.
func isHooksKey(ln []byte) bool {
	rest, ok := bytes.CutPrefix(ln, []byte("hooks:"))
	if !ok {
		return false
	}
	rest = bytes.TrimLeft(rest, " ")
	return len(rest) == 0 || rest[0] == '\n' || rest[0] == '#'
}

// indentOf returns the number of leading spaces of ln, or -1 when the line
// is blank.
func indentOf(ln []byte) int {
	for i, c := range ln {
		switch c {
		case ' ':
		case '\n':
			return -1
		default:
			return i
		}
	}
	return -1
}

// splitParts is how many chunks a large file is cut into.
func splitParts() int { return runtime.GOMAXPROCS(0) }
