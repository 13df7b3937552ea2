package python

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"hookctl.dev/hookctl"
)

// A relative python_path entry is found from the backend's working
// directory, not from each worker's (a python_file worker runs in its
// script's directory).
func TestRelativePythonPath(t *testing.T) {
	requirePython(t)
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "lib"), 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(dir, "lib", "relmod.py"), "def hook(host, client, item):\n    print('relmod', item.get('id'))\n")
	file := writeFile(t, filepath.Join(t.TempDir(), "uses.py"), "import relmod\nhook = relmod.hook\n")
	t.Chdir(dir)
	opts := Options{PythonPath: []string{"lib"}, WorkDir: t.TempDir()}
	for _, h := range []hookctl.Hook{
		{Key: hookctl.Key{Type: hookctl.TypePython, Arg: "relmod"}},
		{Key: hookctl.Key{Type: hookctl.TypePythonFile, Arg: file}},
	} {
		if err := NewFactory(opts).Check(context.Background(), h); err != nil {
			t.Fatalf("Check %s: %v", h.Type, err)
		}
		res := run(t, newRunner(t, opts, h, newHost()), publishEvent("p1"))
		wantOK(t, res)
		if res.Output != "relmod p1\n" {
			t.Errorf("%s output = %q", h.Type, res.Output)
		}
	}
}
