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
	lay, ok := scanLayout(data, parts)
	if !ok {
		return nil, false
	}
	chunks := lay.chunks(parts)
	var root yaml.Node
	var rootErr error
	var wg sync.WaitGroup
	wg.Go(func() { rootErr = yaml.Unmarshal(lay.rest(len(data)), &root) })
	for k, c := range chunks {
		wg.Go(func() { c.err = yaml.Unmarshal(lay.chunkSource(c, k == len(chunks)-1, len(data)/len(chunks)), &c.doc) })
	}
	wg.Wait()
	if rootErr != nil || root.Kind != yaml.DocumentNode || len(root.Content) != 1 || root.Content[0].Kind != yaml.MappingNode {
		return nil, false
	}
	seq, ok := lay.join(chunks)
	if !ok {
		return nil, false
	}
	m := root.Content[0]
	for i := 0; i+1 < len(m.Content); i += 2 {
		v := m.Content[i+1]
		if m.Content[i].Value == "hooks" && m.Content[i].Line == lay.hooksLine+1 && v.Kind == yaml.ScalarNode && v.Tag == "!!null" && v.Value == "" {
			m.Content[i+1] = seq
			return &root, true
		}
	}
	return nil, false
}

// splitLayout is where a file's top-level hooks list is: its key's line,
// its items' indentation, the lines it spans [first, end) and each item's
// first line.
type splitLayout struct {
	lines      [][]byte
	hooksLine  int
	indent     int
	first, end int
	starts     []int
}

// splitChunk is a run of whole items [from, to) parsed on its own.
type splitChunk struct {
	from, to int // lines
	doc      yaml.Node
	err      error
}

// scanLayout finds the hooks list in the plain layout decodeSplit can cut,
// with enough items for parts chunks; ok=false otherwise.
func scanLayout(data []byte, parts int) (splitLayout, bool) {
	// Lines are cut at \n; yaml.v3 also breaks lines at \r, NEL, LS and PS.
	if parts < 2 || bytes.ContainsAny(data, "\r\u0085\u2028\u2029") {
		return splitLayout{}, false
	}
	lay := splitLayout{lines: bytes.SplitAfter(data, []byte("\n")), hooksLine: -1, indent: -1, first: -1}
	for i, ln := range lay.lines {
		switch {
		case len(ln) > 0 && (ln[0] == '\t' || ln[0] == '%'),
			bytes.HasPrefix(ln, []byte("---")), bytes.HasPrefix(ln, []byte("...")):
			return lay, false // tabs, directives and document markers: not the plain layout
		case lay.hooksLine < 0 && isHooksKey(ln):
			lay.hooksLine = i
		}
	}
	if lay.hooksLine < 0 || !lay.scanItems() {
		return lay, false
	}
	return lay, len(lay.starts) >= 2*parts
}

// scanItems finds the items: from the first "- " line after hooks: to the
// first line less indented than it (or as indented but not an item).
func (lay *splitLayout) scanItems() bool {
	lay.end = len(lay.lines)
	for i := lay.hooksLine + 1; i < len(lay.lines); i++ {
		ln := lay.lines[i]
		ind := indentOf(ln)
		if ind < 0 || ln[ind] == '#' {
			continue // blank or comment
		}
		isItem := ln[ind] == '-' && (ind+1 == len(ln) || ln[ind+1] == ' ' || ln[ind+1] == '\n')
		if lay.indent < 0 {
			if !isItem {
				return false // hooks: is not a block list
			}
			lay.indent, lay.first = ind, i
		}
		if ind < lay.indent || (ind == lay.indent && !isItem) {
			lay.end = i
			return ind == 0 // only a new top-level key may follow the list
		}
		if ind == lay.indent {
			if len(bytes.TrimSpace(ln[ind+1:])) == 0 {
				// "-" alone: yaml.v3 places an empty item at the next
				// token, which a cut would move.
				return false
			}
			lay.starts = append(lay.starts, i)
		}
	}
	return true
}

// rest is the file with the items blanked (line numbers kept): hooks: is
// then null, and replaced by the parsed items.
func (lay *splitLayout) rest(size int) []byte {
	var rest bytes.Buffer
	rest.Grow(size / 8)
	for i, ln := range lay.lines {
		if i >= lay.first && i < lay.end {
			rest.WriteByte('\n')
		} else {
			rest.Write(ln)
		}
	}
	return rest.Bytes()
}

// chunks cuts the items into runs of whole items of about equal size.
func (lay *splitLayout) chunks(parts int) []*splitChunk {
	perChunk := (lay.end - lay.first + parts - 1) / parts
	var chunks []*splitChunk
	from := lay.first
	for k, s := range lay.starts {
		if s-from >= perChunk && s > from {
			chunks = append(chunks, &splitChunk{from: from, to: s})
			from = s
		}
		if k == len(lay.starts)-1 {
			chunks = append(chunks, &splitChunk{from: from, to: lay.end})
		}
	}
	return chunks
}

// chunkSource is a chunk's text, preceded by blank lines so that positions
// come out as in the whole file.
func (lay *splitLayout) chunkSource(c *splitChunk, last bool, size int) []byte {
	var b bytes.Buffer
	b.Grow(c.from + size)
	for range c.from {
		b.WriteByte('\n')
	}
	for _, ln := range lay.lines[c.from:c.to] {
		b.Write(ln)
	}
	// yaml.v3 places an empty node (a key with no value) at the token
	// after it: end each chunk with the token that follows it in the whole
	// file, at the same place. Before another chunk that is an item's "-"
	// (an extra item, dropped by join); before a top-level key, a document
	// end marker.
	switch {
	case !last:
		b.WriteString(strings.Repeat(" ", lay.indent) + "-\n")
	case c.to < len(lay.lines):
		b.WriteString("...\n")
	}
	return b.Bytes()
}

// join puts the chunks' items back into one sequence node.
func (lay *splitLayout) join(chunks []*splitChunk) (*yaml.Node, bool) {
	seq := &yaml.Node{Kind: yaml.SequenceNode, Tag: "!!seq", Line: lay.first + 1, Column: lay.indent + 1}
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
	return seq, true
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
