package reconcile

import (
	"context"
	"net"
	"path/filepath"
	"testing"

	"hookctl.dev/hookctl"
	"hookctl.dev/hookctl/api"
	"hookctl.dev/hookctl/registry"
)

// apiBackend is the real registry behind the real control API; the session
// side (runs, pubsub) is not used by the reconciler.
type apiBackend struct{ *registry.Store }

func (b apiBackend) Status(ctx context.Context) (api.Status, error) {
	return api.Status{Profiles: []api.ProfileStatus{{Name: "default", JID: "Bot@LocalHost/res"}}}, nil
}

func (b apiBackend) Runs(context.Context, api.RunQuery) ([]hookctl.Run, error) {
	return nil, hookctl.ErrUnavailable
}

func (b apiBackend) PubSub(context.Context, api.PubSubRequest) (api.PubSubResult, error) {
	return api.PubSubResult{}, hookctl.ErrUnavailable
}

// startAPI serves store over a Unix socket and returns a client for it, as
// the sidecar sees the backend.
func startAPI(t testing.TB, store *registry.Store) *api.Client {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "s.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- api.NewServer(api.ServerOptions{Backend: apiBackend{store}}).Serve(ctx, l, false) }()
	c, err := api.NewClient(api.ClientOptions{Socket: sock})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		c.Close()
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
	return c
}

// TestWatchThroughAPI runs the sidecar's path: files → Watcher → control
// API client → server → registry, own-PEP services normalised with the
// profile JIDs from Status, and a stale batch retried across the API.
func TestWatchThroughAPI(t *testing.T) {
	store := openStore(t)
	client := startAPI(t, store)
	dir := t.TempDir()
	file := filepath.Join(dir, "hooks.yaml")
	writeFile(t, file, "version: 1\nset: blog\nhooks:\n  - node: pep\n    type: exec\n    arg: /bin/true\n")

	reg := &racingRegistry{Registry: client}
	w := &Watcher{
		Paths: []string{file}, Load: SpecLoader([]string{file}, false), Registry: reg,
		JIDs: func(ctx context.Context) (map[string]string, error) {
			st, err := client.Status(ctx)
			if err != nil {
				return nil, err
			}
			m := map[string]string{}
			for _, p := range st.Profiles {
				m[p.Name] = p.JID
			}
			return m, nil
		},
	}
	r, err := w.Reconcile(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if r.Result.Attempts != 2 || !r.Result.Applied {
		t.Errorf("attempts %d applied %v: want the stale batch retried over the API", r.Result.Attempts, r.Result.Applied)
	}
	hooks := listAll(t, store)
	if len(hooks) != 2 {
		t.Fatalf("registry: %v", hooks)
	}
	// The second round sees the stored bare JID as equal: nothing to do.
	r, err = w.Reconcile(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if !r.Result.Plan.InSync() || r.Result.Applied {
		t.Errorf("second round not in sync: %+v", r.Result.Plan.Counts())
	}
	for _, h := range listAll(t, store) {
		if h.Node == "pep" && h.Service != "bot@localhost" {
			t.Errorf("own-PEP hook stored with service %q", h.Service)
		}
	}
}
