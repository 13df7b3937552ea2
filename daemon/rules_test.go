package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"hookctl.dev/hookctl"
	"hookctl.dev/hookctl/api"
	"hookctl.dev/hookctl/internal/xmpptest"
	"hookctl.dev/hookctl/registry"
	"hookctl.dev/hookctl/spec"
)

// invalidHooks is one list of hooks that no door may let in, each with the
// YAML that declares it in a file and the rules' message every door must
// give. Each case changes one thing of a valid expr hook.
var invalidHooks = []struct {
	name string
	mod  func(*hookctl.Hook)
	yaml string // the field as a file declares it
	want string
}{
	{"deep filter (1 MB)", func(h *hookctl.Hook) { h.Filter = deep(500_000) }, "filter: '" + deep(500_000) + "'", "filter: expression is 1000004 bytes, at most 16384"},
	{"deep filter (100 levels)", func(h *hookctl.Hook) { h.Filter = deep(100) }, "filter: '" + deep(100) + "'", "expression is nested deeper than 64 levels"},
	{"bad expr arg", func(h *hookctl.Hook) { h.Arg = `log("got " + itm.id)` }, `arg: 'log("got " + itm.id)'`, "unknown name itm"},
	{"bad filter", func(h *hookctl.Hook) { h.Filter = "item.id +" }, "filter: 'item.id +'", "unexpected token EOF"},
	{"huge concurrency", func(h *hookctl.Hook) { h.Concurrency = 100000 }, "concurrency: 100000", "concurrency: must be between 1 and 64 (got 100000)"},
	{"one-year timeout", func(h *hookctl.Hook) { h.Timeout = hookctl.Duration(8760 * time.Hour) }, "timeout: 8760h", "timeout: 8760h is longer than 24h"},
	{"service with a resource", func(h *hookctl.Hook) { h.Service = "pubsub.localhost/res" }, "service: pubsub.localhost/res", `"pubsub.localhost/res" has a resource; want a bare JID`},
	{"unknown event", func(h *hookctl.Hook) { h.Events = []hookctl.EventKind{"publsh"} }, "events: [publsh]", `unknown event "publsh"`},
	{"headers on expr", func(h *hookctl.Hook) { h.Headers = map[string]string{"X-A": "b"} }, "headers: {X-A: b}", "only http hooks take headers (this hook is expr)"},
	{"bad name", func(h *hookctl.Hook) { h.Name = "a\tb" }, `name: "a\tb"`, `name: "a\tb" is not a name`},
}

func deep(n int) string { return strings.Repeat("(", n) + "true" + strings.Repeat(")", n) }

// TestEveryDoorRefusesTheSameHooks sends each invalid hook through every
// door — a hooks file (what validate, diff and apply read), the registry
// itself, the API's create and its batch (what hook create, apply and the
// watcher send) — and checks the same refusal everywhere, nothing stored,
// and the backend alive.
func TestEveryDoorRefusesTheSameHooks(t *testing.T) {
	srv := xmpptest.Start(t, xmpptest.Prosody, xmpptest.Options{})
	b := startBackend(t, testConfig(t, srv, "bot"))
	ctx := context.Background()
	store, err := registry.Open(t.TempDir(), registry.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	_, rev0, _ := b.client.List(ctx, "")

	for _, tc := range invalidHooks {
		t.Run(tc.name, func(t *testing.T) {
			h := hookctl.Hook{Key: hookctl.Key{Profile: "default", Service: "pubsub.localhost", Node: "n", Type: hookctl.TypeExpr, Arg: "true"}}
			tc.mod(&h)
			file := "version: 1\nhooks:\n  - " + tc.yaml + "\n"
			key, _, _ := strings.Cut(tc.yaml, ":")
			for _, f := range []string{"name: h", "service: pubsub.localhost", "node: n", "type: expr", "arg: 'true'"} {
				if !strings.HasPrefix(f, key+":") {
					file += "    " + f + "\n"
				}
			}
			name := filepath.Join(t.TempDir(), "hooks.yaml")
			if err := os.WriteFile(name, []byte(file), 0o600); err != nil {
				t.Fatal(err)
			}
			_, fileErr := spec.Load([]string{name}, spec.DefaultOptions())
			_, storeErr := store.Create(ctx, h)
			_, createErr := b.client.Create(ctx, h)
			_, batchErr := b.client.Apply(ctx, hookctl.Batch{Revision: rev0, Create: []hookctl.Hook{h}})
			for door, err := range map[string]error{"file": fileErr, "registry": storeErr, "API create": createErr, "API batch": batchErr} {
				if !errors.Is(err, hookctl.ErrInvalid) || !strings.Contains(err.Error(), tc.want) {
					t.Errorf("%s: %v\nwant ErrInvalid with %q", door, trim(err), tc.want)
				}
			}
		})
	}
	hooks, rev, err := b.client.List(ctx, "")
	if err != nil || len(hooks) != 0 || rev != rev0 {
		t.Errorf("after the refusals: %d hooks at revision %d (%v), want none at %d", len(hooks), rev, err, rev0)
	}
	if snap, _ := store.Snapshot(); len(snap) != 0 {
		t.Errorf("registry stored %d invalid hooks", len(snap))
	}
	if _, err := b.client.Status(ctx); err != nil {
		t.Errorf("backend not answering after the refusals: %v", err)
	}
}

// trim keeps a failure message readable when the error quotes a 1 MB filter.
func trim(err error) string {
	if err == nil {
		return "<nil>"
	}
	s := err.Error()
	if len(s) > 300 {
		s = s[:300] + "…"
	}
	return s
}

// TestStoredInvalidHookIsQuarantined writes hooks that no door accepts
// straight into the store (as an older version, or a limit lowered since,
// would have left them), then starts the backend: it starts, lists them
// with the reason, never runs them, and deletes them with the usual
// command.
func TestStoredInvalidHookIsQuarantined(t *testing.T) {
	srv := xmpptest.Start(t, xmpptest.Prosody, xmpptest.Options{})
	cfg := testConfig(t, srv, "bot")
	bad := []hookctl.Hook{
		{Key: hookctl.Key{Profile: "default", Service: "pubsub.localhost", Node: "q", Type: hookctl.TypeExpr, Arg: "true"}, Filter: deep(500_000), Persistent: true},
		{Key: hookctl.Key{Profile: "default", Service: "pubsub.localhost", Node: "q", Type: hookctl.TypeExpr, Arg: "false"}, Concurrency: 100000, Persistent: true},
	}
	writeRaw(t, cfg.DataDir, bad)

	b := startBackend(t, cfg)
	ctx := context.Background()
	hooks, _, err := b.client.List(ctx, "")
	if err != nil || len(hooks) != 2 {
		t.Fatalf("List = %d hooks, %v; want the 2 stored", len(hooks), err)
	}
	for _, h := range hooks {
		if !strings.Contains(h.Quarantined, "filter: expression is") && !strings.Contains(h.Quarantined, "concurrency: must be between") {
			t.Errorf("hook %s: quarantined = %q, want the rules' reason", h.Key, h.Quarantined)
		}
	}
	st, err := b.client.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if n := countContaining(st.HookErrors, "quarantined, not run"); n != 2 {
		t.Errorf("status lists %d quarantined hooks, want 2: %+v", n, st.HookErrors)
	}
	n, err := b.client.Remove(ctx, hookctl.Match{Profile: "default", Service: "pubsub.localhost", Node: "q"})
	if err != nil || n != 2 {
		t.Fatalf("Remove = %d, %v; want both quarantined hooks deleted", n, err)
	}
}

// writeRaw stores hooks in a data dir's hooks.db as they are, past every
// check, by the registry's own layout.
func writeRaw(t *testing.T, dataDir string, hooks []hookctl.Hook) {
	t.Helper()
	s, err := registry.Open(dataDir, registry.Options{})
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	db, err := bolt.Open(filepath.Join(dataDir, "hooks.db"), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	err = db.Update(func(tx *bolt.Tx) error {
		for _, h := range hooks {
			k, _ := json.Marshal([]string{h.Profile, h.Service, h.Node, string(h.Type), h.Arg})
			v, _ := json.Marshal(h)
			if err := tx.Bucket([]byte("hooks")).Put(k, v); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func countContaining(errs []api.HookError, s string) int {
	n := 0
	for _, e := range errs {
		if strings.Contains(e.Error, s) {
			n++
		}
	}
	return n
}
