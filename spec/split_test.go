package spec

import (
	"fmt"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// dump renders the parts of a node tree that the loader reads: kinds,
// tags, values and positions.
func dump(b *strings.Builder, n *yaml.Node, depth int) {
	fmt.Fprintf(b, "%*s%d %s %q %d:%d\n", depth, "", n.Kind, n.ShortTag(), n.Value, n.Line, n.Column)
	for _, c := range n.Content {
		dump(b, c, depth+1)
	}
}

// checkSplit fails when decodeSplit accepts data but yields another tree
// than parsing the whole file; it returns whether the split was taken.
func checkSplit(t *testing.T, data string, parts int) bool {
	t.Helper()
	got, ok := decodeSplit([]byte(data), parts)
	if !ok {
		return false
	}
	var whole yaml.Node
	if err := yaml.Unmarshal([]byte(data), &whole); err != nil {
		t.Fatalf("split parse accepted what the whole parse refuses (%v):\n%s", err, data)
	}
	var a, b strings.Builder
	dump(&a, &whole, 0)
	dump(&b, got, 0)
	if a.String() != b.String() {
		t.Fatalf("split parse differs from the whole parse for:\n%s\nwhole:\n%s\nsplit:\n%s", data, a.String(), b.String())
	}
	return true
}

func items(n int, item func(i int) string) string {
	var b strings.Builder
	for i := range n {
		b.WriteString(item(i))
	}
	return b.String()
}

func TestDecodeSplitMatchesWholeParse(t *testing.T) {
	plain := func(i int) string {
		return fmt.Sprintf("  - name: h%d\n    node: n%d\n    type: expr\n    arg: 'true'\n", i, i)
	}
	cases := []struct {
		name  string
		data  string
		split bool // whether the split must be taken
	}{
		{"plain", "version: 1\nset: s\nhooks:\n" + items(12, plain), true},
		{"keys after the list", "version: 1\nhooks:\n" + items(12, plain) + "profile: p\n", true},
		{"items at column 1", "version: 1\nhooks:\n" + items(12, func(i int) string {
			return fmt.Sprintf("- node: n%d\n  type: expr\n  arg: 'true'\n  args:\n  - a\n  - b\n", i)
		}) + "set: x\n", true},
		{"block scalars and comments", "version: 1\nhooks:\n# top\n" + items(12, func(i int) string {
			return fmt.Sprintf("  - node: n%d\n    filter: |\n      - not an item\n      # not a comment\n    arg: >\n      - folded\n# between\n", i)
		}), true},
		{"flow list across a cut", "version: 1\nhooks:\n" + items(6, plain) + "  - node: x\n    events: [publish,\n  - retract]\n" + items(6, plain), false},
		{"quoted scalar across a cut", "version: 1\nhooks:\n" + items(6, plain) + "  - node: \"x\n  - y\"\n" + items(6, plain), false},
		{"anchor used in another chunk", "version: 1\nhooks:\n  - node: &n x\n" + items(12, plain) + "  - node: *n\n", false},
		{"not a list", "version: 1\nhooks: {}\n" + items(12, plain), false},
		{"document marker", "---\nversion: 1\nhooks:\n" + items(12, plain), false},
	}
	for _, c := range cases {
		for _, parts := range []int{2, 3, 4} {
			if taken := checkSplit(t, c.data, parts); c.split && !taken {
				t.Errorf("%s, %d parts: split not taken", c.name, parts)
			}
		}
	}
}

// FuzzDecodeSplit: whenever the split is taken, it gives the whole
// parse's tree.
func FuzzDecodeSplit(f *testing.F) {
	f.Add("version: 1\nhooks:\n" + items(8, func(i int) string { return fmt.Sprintf("  - node: n%d\n    arg: x\n", i) }))
	f.Add("hooks:\n- a\n- b: [c,\n- d]\n- e\n- f\n- g\n- h\n")
	f.Add("hooks:\n  - 'a\n  - b'\n  - c\n  - d\n  - e\n")
	f.Fuzz(func(t *testing.T, data string) {
		checkSplit(t, data, 2)
		checkSplit(t, data, 3)
	})
}

// TestLoaderUsesTheSplit runs a whole Parse both ways on a file with
// errors in several chunks: same diagnostics, same hooks.
func TestLoaderUsesTheSplit(t *testing.T) {
	data := []byte("version: 1\nhooks:\n" + items(40, func(i int) string {
		switch i % 10 {
		case 3:
			return fmt.Sprintf("  - node: n%d\n    type: perl\n    arg: x\n", i)
		case 7:
			return fmt.Sprintf("  - node: n%d\n    type: expr\n    arg: 'true'\n    filter: item.nope\n", i)
		}
		return fmt.Sprintf("  - node: n%d\n    type: expr\n    arg: 'true'\n", i)
	}))
	parse := func(min int) string {
		l := newLoader(Options{})
		l.splitMin = min
		l.parseFile("h.yaml", "/", data)
		set, err := l.result()
		return fmt.Sprintf("%v\n%v", set, err)
	}
	if whole, split := parse(len(data)+1), parse(0); whole != split {
		t.Fatalf("whole parse:\n%s\nsplit parse:\n%s", whole, split)
	}
}
