package jsonstr

import (
	"bytes"
	"encoding/json"
	"testing"
)

// Append writes exactly what encoding/json writes without HTML escaping.
func TestAppendMatchesEncodingJSON(t *testing.T) {
	for _, s := range []string{
		"", "plain", `quote " backslash \ <x a='1'>&amp;</x>`, "\b\f\n\r\t\x00\x07\x1f\x7f",
		"é ☃ 𝄞", "bad \xff\xfe utf8 \xe2\x82", "sep\u2028par\u2029end",
	} {
		var want bytes.Buffer
		enc := json.NewEncoder(&want)
		enc.SetEscapeHTML(false)
		if err := enc.Encode(s); err != nil {
			t.Fatal(err)
		}
		if got := string(Append(nil, s)) + "\n"; got != want.String() {
			t.Errorf("%q: got %s want %s", s, got, want.String())
		}
	}
}
