package runner

import (
	"strings"
	"testing"
	"unicode/utf8"
)

func TestTailWriterKeepsTheEnd(t *testing.T) {
	w := NewTailWriter(8)
	w.WriteString("abc")
	w.WriteString("defgh")
	if got := w.String(); got != "abcdefgh" {
		t.Fatalf("String() = %q", got)
	}
	w.WriteString("ij")
	if got := w.String(); got != "cdefghij" {
		t.Fatalf("after overflow String() = %q, want the last 8 bytes", got)
	}
	w.WriteString(strings.Repeat("z", 100))
	if got := w.String(); got != "zzzzzzzz" {
		t.Fatalf("after a big write String() = %q", got)
	}
}

func TestTailWriterCutsAtRuneBoundary(t *testing.T) {
	w := NewTailWriter(5)
	w.WriteString("aéééé") // 9 bytes; the last 5 start inside an é
	got := w.String()
	if !utf8.ValidString(got) || !strings.HasSuffix("aéééé", got) {
		t.Fatalf("String() = %q, want a valid UTF-8 suffix", got)
	}
}
