package registry

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/google/go-cmp/cmp"

	"hookctl.dev/hookctl"
)

// TestConcurrent runs creators, removers and batch appliers at once (run it
// with -race). Each worker owns its node, so its own model predicts every
// result exactly, while all of them contend for the lock and the revision.
// At the end the registry equals the union of the models, the revision moved
// exactly once per successful change, and the file holds the persistent part.
func TestConcurrent(t *testing.T) {
	const workers, ops = 8, 200
	ctx := context.Background()
	s, dir := newStore(t)
	rev0 := s.Revision()
	var changes atomic.Uint64

	// A reader checks that every snapshot is sorted and never goes back.
	stop := make(chan struct{})
	var readerErr error
	var rwg sync.WaitGroup
	rwg.Go(func() {
		var last uint64
		for {
			select {
			case <-stop:
				return
			default:
			}
			hs, rev := s.Snapshot()
			if rev < last {
				readerErr = fmt.Errorf("revision went back from %d to %d", last, rev)
				return
			}
			last = rev
			runtime.Gosched() // let the writers run on a small machine
			if !slices.IsSortedFunc(hs, func(a, b hookctl.Hook) int { return a.Key.Compare(b.Key) }) {
				readerErr = fmt.Errorf("snapshot at %d not in Key order", rev)
				return
			}
		}
	})

	models := make([]map[string]bool, workers) // arg → persistent
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := range workers {
		model := map[string]bool{}
		models[w] = model
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(w), 1))
			node := fmt.Sprintf("node-%d", w)
			key := func(arg string) hookctl.Key {
				return hookctl.Key{Profile: "default", Service: "pubsub.example.org", Node: node, Type: hookctl.TypeExec, Arg: arg}
			}
			fail := func(format string, args ...any) {
				errs <- fmt.Errorf("worker %d: "+format, append([]any{w}, args...)...)
			}
			for i := range ops {
				arg := fmt.Sprintf("/a%d", rng.IntN(12))
				switch rng.IntN(3) {
				case 0: // create
					persistent := rng.IntN(2) == 0
					_, err := s.Create(ctx, hookctl.Hook{Key: key(arg), Persistent: persistent})
					_, exists := model[arg]
					switch {
					case exists && !errors.Is(err, hookctl.ErrDuplicate):
						fail("op %d: create of existing %s: err = %v", i, arg, err)
						return
					case !exists && err != nil:
						fail("op %d: create %s: %v", i, arg, err)
						return
					case !exists:
						model[arg] = persistent
						changes.Add(1)
					}
				case 1: // remove by arg, or every hook of the node now and then
					m := hookctl.Match{Profile: "default", Service: "pubsub.example.org", Node: node, Arg: arg}
					want := 0
					if _, ok := model[arg]; ok {
						want = 1
					}
					if rng.IntN(10) == 0 {
						m.Arg, want = "", len(model)
					}
					n, err := s.Remove(ctx, m)
					if err != nil || n != want {
						fail("op %d: remove %+v = %d, %v; want %d", i, m, n, err, want)
						return
					}
					for a := range model {
						if m.Arg == "" || a == m.Arg {
							delete(model, a)
						}
					}
					if n > 0 {
						changes.Add(1)
					}
				case 2: // plan against a List, apply; re-plan when stale
					for attempt := 0; ; attempt++ {
						_, rev, _ := s.List(ctx, "default")
						var b hookctl.Batch
						b.Revision = rev
						next := maps.Clone(model)
						for _, a := range []string{"/b1", "/b2", arg} {
							if _, ok := next[a]; ok {
								if rng.IntN(2) == 0 {
									b.Delete = append(b.Delete, key(a))
									delete(next, a)
								} else {
									p := !next[a]
									b.Update = append(b.Update, hookctl.Hook{Key: key(a), Persistent: p})
									next[a] = p
								}
							} else if !slices.ContainsFunc(b.Create, func(h hookctl.Hook) bool { return h.Arg == a }) {
								b.Create = append(b.Create, hookctl.Hook{Key: key(a), Persistent: true})
								next[a] = true
							}
						}
						got, err := s.Apply(ctx, b)
						if errors.Is(err, hookctl.ErrStale) && attempt < 1000 {
							continue
						}
						if err != nil {
							fail("op %d: apply: %v", i, err)
							return
						}
						if got <= rev {
							fail("op %d: apply returned revision %d, planned at %d", i, got, rev)
							return
						}
						clear(model)
						maps.Copy(model, next)
						changes.Add(1)
						break
					}
				}
			}
		})
	}
	wg.Wait()
	close(stop)
	rwg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if readerErr != nil {
		t.Error(readerErr)
	}

	var want, wantPersistent []string
	for w, model := range models {
		for arg, p := range model {
			k := hookctl.Key{Profile: "default", Service: "pubsub.example.org", Node: fmt.Sprintf("node-%d", w), Type: hookctl.TypeExec, Arg: arg}
			want = append(want, k.String())
			if p {
				wantPersistent = append(wantPersistent, k.String())
			}
		}
	}
	slices.Sort(want)
	slices.Sort(wantPersistent)
	list, rev, _ := s.List(ctx, "")
	got := keys(list)
	slices.Sort(got) // Key order is not string order
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("final registry (-model +got):\n%s", diff)
	}
	if rev != rev0+changes.Load() {
		t.Errorf("revision %d, want %d + %d changes = %d", rev, rev0, changes.Load(), rev0+changes.Load())
	}
	t.Logf("%d hooks, %d changes", len(list), changes.Load())

	s.Close()
	s2 := openStore(t, dir, Options{Profiles: testProfiles})
	list, _, _ = s2.List(ctx, "")
	got = keys(list)
	slices.Sort(got)
	if diff := cmp.Diff(wantPersistent, got); diff != "" {
		t.Errorf("persistent hooks after reopen (-model +got):\n%s", diff)
	}
}
