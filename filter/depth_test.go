package filter

import (
	"strings"
	"testing"
)

func TestCheckDepth(t *testing.T) {
	nest := func(n int) string { return strings.Repeat("(", n) + "true" + strings.Repeat(")", n) }
	for _, tc := range []struct {
		src string
		ok  bool
	}{
		{nest(MaxDepth), true},
		{nest(MaxDepth + 1), false},
		{`"` + strings.Repeat("(", 1000) + `" == item.id`, true}, // inside a string: not nesting
		{`'it\'s (' + item.id`, true},
		{"`raw ((((` + item.id", true},
		{strings.Repeat("!", MaxDepth) + "true", true},
		{strings.Repeat("!", MaxDepth+1) + "true", false},
		{strings.Repeat("not ", MaxDepth+1) + "true", false},
		{strings.Repeat("- ", MaxDepth+1) + "1 > 0", false},
		{strings.Repeat("1 - ", 1000) + "1 > 0", true}, // binary minus: a chain, not nesting
		{strings.Repeat("[", MaxDepth+1) + strings.Repeat("]", MaxDepth+1), false},
		{strings.Repeat("x", MaxSource+1), false},
		{"item.id != nil && (event.kind == \"publish\" || (event.kind == \"retract\"))", true},
	} {
		err := CheckDepth(tc.src)
		if (err == nil) != tc.ok {
			t.Errorf("CheckDepth(%.40q…) = %v, want ok=%v", tc.src, err, tc.ok)
		}
	}
}

// TestCompileRefusesDeepBeforeParsing: a filter that would overflow the
// parser's stack is an error, not a crash.
func TestCompileRefusesDeepBeforeParsing(t *testing.T) {
	src := strings.Repeat("(", 500_000) + "true" + strings.Repeat(")", 500_000)
	if _, err := Compile(src); err == nil {
		t.Fatal("Compile of a 500,000-deep filter succeeded")
	}
	src = strings.Repeat("(", 8000) + "true" + strings.Repeat(")", 8000)
	if _, err := Compile(src); err == nil || !strings.Contains(err.Error(), "nested deeper") {
		t.Fatalf("Compile of an 8,000-deep filter = %v, want the depth refused", err)
	}
}
