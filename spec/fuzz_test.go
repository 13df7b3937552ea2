package spec_test

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"hookctl.dev/hookctl"
	"hookctl.dev/hookctl/spec"
)

// FuzzParse checks that no input makes the parser panic, and that it
// returns either a set of well-formed hooks or positioned diagnostics.
// Run: go test ./spec -run '^$' -fuzz FuzzParse -fuzztime 30s
func FuzzParse(f *testing.F) {
	for _, tc := range errorCases {
		f.Add([]byte(tc.src))
	}
	if ex, err := os.ReadFile("../examples/hooks.yaml"); err == nil {
		f.Add(ex)
	}
	f.Add([]byte("version: 1\nset: s\nprofile: p\nhooks:\n  - {node: n, type: expr, arg: 'true', filter: 'item.id == \"x\"', events: [purge]}\n"))
	f.Add([]byte("version: 1\nhooks:\n  - node: n\n    arg: ok.py\n    filter: |2\n        event.kind\n"))
	f.Add([]byte("version: 1\nhooks:\n  - node: n\n    arg: ok.py\n    filter: >-\n\n      x ==\n\n      y\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		name := filepath.Join("testdata", "fuzz.yaml")
		set, err := spec.Parse(name, data, spec.DefaultOptions())
		if err != nil {
			if set != nil {
				t.Fatal("a set returned with an error")
			}
			var ds spec.Diagnostics
			if !errors.As(err, &ds) || len(ds) == 0 || !errors.Is(err, hookctl.ErrInvalid) {
				t.Fatalf("error %T %v is not a non-empty Diagnostics", err, err)
			}
			for _, d := range ds {
				if d.File != name || d.Line < 0 || d.Column < 0 || d.Message == "" {
					t.Fatalf("malformed diagnostic %+v", d)
				}
			}
			return
		}
		if len(set.Sets) != 1 || len(set.Files) != 1 {
			t.Fatalf("sets %v, files %v", set.Sets, set.Files)
		}
		for i, h := range set.Hooks {
			if h.Node == "" || h.Arg == "" || !h.Type.Valid() || h.Profile == "" || h.Owner != set.Sets[0] || h.Source == "" {
				t.Fatalf("malformed hook %+v", h)
			}
			if i > 0 && set.Hooks[i-1].Key.Compare(h.Key) >= 0 {
				t.Fatalf("hooks not sorted and unique at %d", i)
			}
		}
	})
}
