package registry

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"

	"hookctl.dev/hookctl"
)

func batchOf(n int, node string) []hookctl.Hook {
	hs := make([]hookctl.Hook, n)
	for i := range hs {
		hs[i] = hookctl.Hook{
			Key:        hookctl.Key{Profile: "default", Service: "pubsub.example.org", Node: node, Type: hookctl.TypePythonFile, Arg: fmt.Sprintf("/srv/hooks/h%05d.py", i)},
			Persistent: true,
			Owner:      "bench",
			Source:     fmt.Sprintf("hooks.yaml:%d", i+1),
			Events:     []hookctl.EventKind{hookctl.EventPublish},
		}
	}
	return hs
}

// BenchmarkApplyCreate10000 applies one batch of 10,000 persistent creates
// to an empty store (goal: well under 1 s).
func BenchmarkApplyCreate10000(b *testing.B) {
	ctx := context.Background()
	hooks := batchOf(10000, "urn:xmpp:microblog:0")
	for i := 0; b.Loop(); i++ {
		b.StopTimer()
		s, err := Open(filepath.Join(b.TempDir(), fmt.Sprint(i)), Options{Profiles: testProfiles})
		if err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		if _, err := s.Apply(ctx, hookctl.Batch{Revision: s.Revision(), Create: hooks}); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		s.Close()
		b.StartTimer()
	}
}

// BenchmarkList10000 lists a registry of 10,000 hooks.
func BenchmarkList10000(b *testing.B) {
	ctx := context.Background()
	s := openStore(b, b.TempDir(), Options{Profiles: testProfiles})
	hooks := batchOf(5000, "a")
	hooks = append(hooks, batchOf(5000, "b")...)
	for i := range hooks[:2500] {
		hooks[i].Persistent = false
	}
	if _, err := s.Apply(ctx, hookctl.Batch{Revision: s.Revision(), Create: hooks}); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		got, _, err := s.List(ctx, "")
		if err != nil || len(got) != 10000 {
			b.Fatalf("List: %d hooks, %v", len(got), err)
		}
	}
}

// BenchmarkCreate creates single persistent hooks (one fsynced commit each)
// into a registry already holding 10,000.
func BenchmarkCreate(b *testing.B) {
	ctx := context.Background()
	s := openStore(b, b.TempDir(), Options{Profiles: testProfiles})
	if _, err := s.Apply(ctx, hookctl.Batch{Revision: s.Revision(), Create: batchOf(10000, "base")}); err != nil {
		b.Fatal(err)
	}
	h := batchOf(1, "single")[0]
	for i := 0; b.Loop(); i++ {
		h.Arg = fmt.Sprintf("/srv/hooks/single-%d.py", i)
		if _, err := s.Create(ctx, h); err != nil {
			b.Fatal(err)
		}
	}
}
