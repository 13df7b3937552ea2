package main

import "testing"

func TestCell(t *testing.T) {
	for in, want := range map[string]string{
		"plain":            "plain",
		"a\nb\tc\rd":       `a\nb\tc\rd`,
		"\x1b[2Jclear":     `\x1b[2Jclear`,
		"rtl\u202eevil":    `rtl\u202eevil`,
		"https://u:pw@h/x": "https://u:xxxxx@h/x",
		"é ünïcode ok":     "é ünïcode ok",
		"nul\x00del\x7f":   `nul\x00del\x7f`,
	} {
		if got := cell(in); got != want {
			t.Errorf("cell(%q) = %q, want %q", in, got, want)
		}
	}
}
