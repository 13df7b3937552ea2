package daemon

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"hookctl.dev/hookctl"
	"hookctl.dev/hookctl/internal/xmpptest"
)

// TestScriptsOthersCanChangeAreRefused: an exec program or python_file
// that another user could replace (group/world-writable, or in such a
// directory) is refused at create, and a stored hook whose file became so
// is not run after a restart; allow_insecure_scripts opts out.
func TestScriptsOthersCanChangeAreRefused(t *testing.T) {
	srv := xmpptest.Start(t, xmpptest.Prosody, xmpptest.Options{})
	cfg := testConfig(t, srv, "bot")
	b := startBackend(t, cfg)
	ctx := context.Background()
	dir := t.TempDir()
	open := filepath.Join(dir, "open")
	if err := os.Mkdir(open, 0o755); err != nil {
		t.Fatal(err)
	}
	worldFile := script(t, dir, "world.sh", "true\n")
	os.Chmod(worldFile, 0o777)
	inOpenDir := script(t, open, "x.sh", "true\n")
	os.Chmod(open, 0o777)
	for path, want := range map[string]string{
		worldFile: "world.sh is writable by group or others (mode 0777)",
		inOpenDir: "open is writable by group or others (mode 0777)",
	} {
		h := hookctl.Hook{Key: hookctl.Key{Profile: "default", Service: srv.PubSub, Node: "n", Type: hookctl.TypeExec, Arg: path}, Persistent: true}
		_, err := b.client.Create(ctx, h)
		if !errors.Is(err, hookctl.ErrInvalid) || !strings.Contains(err.Error(), want) {
			t.Errorf("create %s = %v, want refused: %q", path, err, want)
		}
	}

	// Stored while safe, then opened to others: not run after a restart.
	safe := script(t, dir, "safe.sh", "true\n")
	h := hookctl.Hook{Key: hookctl.Key{Profile: "default", Service: srv.PubSub, Node: "n", Type: hookctl.TypeExec, Arg: safe}, Persistent: true}
	if _, err := b.client.Create(ctx, h); err != nil {
		t.Fatal(err)
	}
	b.stop()
	os.Chmod(safe, 0o666|0o111)
	b = startBackend(t, cfg)
	waitUntil(t, 10*time.Second, "hook refused at load", func() (bool, string) {
		st, err := b.client.Status(ctx)
		if err != nil {
			return false, err.Error()
		}
		return countContaining(st.HookErrors, "safe.sh is writable by group or others") == 1, "no hook error yet"
	})
	b.stop()

	// The opt-out, for containers where one user owns every file.
	cfg.AllowInsecureScripts = true
	b = startBackend(t, cfg)
	h.Arg = worldFile
	if _, err := b.client.Create(ctx, h); err != nil {
		t.Errorf("create with allow_insecure_scripts = %v, want accepted", err)
	}
}
