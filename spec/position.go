package spec

import (
	"bytes"
	"strings"
	"unicode/utf8"

	"gopkg.in/yaml.v3"
)

// exprPos maps a position inside an expression (line 1-based, column
// 0-based in runes, as expr-lang reports them) to the file position of that
// character, for the expression held by scalar node v.
//
// The scalar's text is lined up with the source lines it came from:
// plain and quoted scalars on one line or folded over several lines
// (joined by single spaces), literal blocks (|, line for line) and folded
// blocks (>) without blank lines. When the source cannot be lined up with
// the value (escape sequences in quoted strings, blank lines in folded
// text, explicit indentation indicators...), the position of the scalar
// itself is reported.
func (p *fileParser) exprPos(v *yaml.Node, line, col int) (int, int) {
	// The rune offset of the error in the value.
	off := 0
	rest := v.Value
	for l := 1; l < line; l++ {
		i := strings.IndexByte(rest, '\n')
		if i < 0 {
			break
		}
		off += utf8.RuneCountInString(rest[:i+1])
		rest = rest[i+1:]
	}
	off += col

	if l, c, ok := p.lineUp(v, off); ok {
		return l, c
	}
	return v.Line, v.Column
}

// segment is one source line's share of a scalar's value.
type segment struct {
	line, col int    // 1-based position of text's first rune
	text      []rune // the value's runes found on that line
}

// lineUp finds the source position of rune off of v's value.
func (p *fileParser) lineUp(v *yaml.Node, off int) (int, int, bool) {
	if p.lines == nil {
		p.lines = bytes.Split(p.data, []byte("\n"))
	}
	value := []rune(v.Value)
	trim := v.Style&(yaml.LiteralStyle|yaml.FoldedStyle) == 0
	sourceLine := func(n int) []rune { // n is 1-based
		if n < 1 || n > len(p.lines) {
			return nil
		}
		s := strings.TrimRight(string(p.lines[n-1]), "\r")
		if trim {
			s = strings.TrimRight(s, " \t")
		}
		return []rune(s)
	}

	var sep rune
	var segs []segment
	pos := 0 // runes of value matched so far
	// take lines up a segment: src from rune index start on line n.
	take := func(n, start int, src []rune) bool {
		if start > len(src) {
			return false
		}
		text := src[start:]
		if pos+len(text) > len(value) {
			text = text[:len(value)-pos] // the rest is a closing quote, a comment...
		}
		if !runesEqual(text, value[pos:pos+len(text)]) {
			return false
		}
		segs = append(segs, segment{line: n, col: start + 1, text: text})
		pos += len(text)
		return true
	}
	nextLines := func(first int, indent func([]rune) int) bool {
		for n := first; pos < len(value); n++ {
			if strings.Trim(string(value[pos:]), "\n") == "" {
				break // a block's final line breaks
			}
			if n > len(p.lines) {
				return false
			}
			if len(segs) > 0 {
				if value[pos] != sep {
					return false
				}
				pos++
			}
			src := sourceLine(n)
			if !take(n, indent(src), src) {
				return false
			}
		}
		return true
	}
	leading := func(src []rune) int {
		i := 0
		for i < len(src) && (src[i] == ' ' || src[i] == '\t') {
			i++
		}
		return i
	}

	switch v.Style {
	case 0, yaml.TaggedStyle, yaml.SingleQuotedStyle, yaml.DoubleQuotedStyle:
		sep = ' '
		start := v.Column - 1
		if v.Style&(yaml.SingleQuotedStyle|yaml.DoubleQuotedStyle) != 0 {
			start++
		}
		first := true
		if !nextLines(v.Line, func(src []rune) int {
			if first {
				first = false
				return start
			}
			return leading(src)
		}) {
			return 0, 0, false
		}
	case yaml.LiteralStyle, yaml.FoldedStyle:
		sep = '\n'
		if v.Style == yaml.FoldedStyle {
			sep = ' '
		}
		header := sourceLine(v.Line)
		if strings.ContainsAny(string(header[min(v.Column, len(header)):]), "123456789") {
			return 0, 0, false // an explicit indentation indicator
		}
		indent := -1
		for n := v.Line + 1; n <= len(p.lines); n++ {
			if src := sourceLine(n); strings.TrimSpace(string(src)) != "" {
				indent = leading(src)
				break
			}
		}
		if indent < 0 || !nextLines(v.Line+1, func(src []rune) int { return min(indent, len(src)) }) {
			return 0, 0, false
		}
	default:
		return 0, 0, false
	}

	// Find the segment holding off; separators map to the end of a line.
	at := 0
	for i, s := range segs {
		if off < at+len(s.text) || i == len(segs)-1 {
			return s.line, s.col + min(off-at, len(s.text)), true
		}
		at += len(s.text) + 1
		if off < at {
			return s.line, s.col + len(s.text), true
		}
	}
	return 0, 0, false
}

func runesEqual(a, b []rune) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
