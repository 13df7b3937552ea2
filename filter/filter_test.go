package filter

import (
	"errors"
	"testing"

	"hookctl.dev/hookctl"
)

func TestCompileAndMatch(t *testing.T) {
	ev := hookctl.Event{Kind: hookctl.EventPublish, Node: "n", ItemID: "post-1", Payload: "<x/>"}
	cases := []struct {
		src  string
		want bool
	}{
		{"", true},
		{`event.kind == "publish" && item.id startsWith "post-"`, true},
		{`item.id startsWith "draft-"`, false},
		{`event.node == "n" && item.payload contains "<x"`, true},
	}
	for _, c := range cases {
		f, err := Compile(c.src)
		if err != nil {
			t.Fatalf("Compile(%q): %v", c.src, err)
		}
		got, err := f.Match(ev)
		if err != nil || got != c.want {
			t.Errorf("Match(%q) = %v, %v; want %v", c.src, got, err, c.want)
		}
	}
}

func TestCompileErrorsHavePositions(t *testing.T) {
	for _, src := range []string{`event.knd == "publish"`, `item.id + 1`, `event.kind ==`} {
		_, err := Compile(src)
		var fe *Error
		if !errors.As(err, &fe) {
			t.Fatalf("Compile(%q) = %v, want *Error", src, err)
		}
		if fe.Line < 1 {
			t.Errorf("Compile(%q): line %d, want >= 1", src, fe.Line)
		}
	}
}
