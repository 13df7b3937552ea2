package main

import (
	"fmt"
	"strings"
	"unicode"

	"hookctl.dev/hookctl"
)

// cell makes s safe for one cell of a printed table: URL credentials are
// hidden, and control and format characters (newline, tab, escape
// sequences that would recolour or rewrite the terminal, bidi overrides)
// are shown escaped, so that an item id or hook arg with a newline cannot
// forge a row.
func cell(s string) string {
	s = hookctl.RedactURLCredentials(s)
	if strings.IndexFunc(s, needsEscape) < 0 {
		return s
	}
	var b strings.Builder
	for _, r := range s {
		switch {
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\r':
			b.WriteString(`\r`)
		case r == '\t':
			b.WriteString(`\t`)
		case r == unicode.ReplacementChar:
			b.WriteRune(r)
		case needsEscape(r) && r < 0x100:
			fmt.Fprintf(&b, `\x%02x`, r)
		case needsEscape(r):
			fmt.Fprintf(&b, `\u%04x`, r)
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}

func needsEscape(r rune) bool {
	return unicode.IsControl(r) || unicode.Is(unicode.Cf, r) || r == '\u2028' || r == '\u2029'
}
