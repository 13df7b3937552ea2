package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// pythonFileHook writes the python_file hook measured by -type python_file:
// it appends each item id to out, the Python twin of the exec hook's
// script, so that the runtime (worker, protocol, ElementTree parse, one
// stat per item for reloads) is what is measured.
func pythonFileHook(dir string) (script, out string, err error) {
	out = filepath.Join(dir, "python.out")
	script = filepath.Join(dir, "hook.py")
	src := fmt.Sprintf("OUT = open(%q, \"a\", buffering=1)\n\n"+
		"def hook(host, client, item):\n"+
		"    OUT.write(item.get(\"id\") + \"\\n\")\n", out)
	if err := os.WriteFile(script, []byte(src), 0o644); err != nil {
		return "", "", err
	}
	return script, out, nil
}

// checkHookOutput checks that the hook wrote every id once, in the order
// the runs were recorded.
func checkHookOutput(out string, runIDs []string) error {
	data, err := os.ReadFile(out)
	if err != nil {
		return err
	}
	got := strings.Split(strings.TrimSuffix(string(data), "\n"), "\n")
	if len(got) != len(runIDs) {
		return fmt.Errorf("hook wrote %d lines, want %d", len(got), len(runIDs))
	}
	for i := range got {
		if got[i] != runIDs[i] {
			return fmt.Errorf("hook wrote %s as line %d, but run %d was %s", got[i], i+1, i+1, runIDs[i])
		}
	}
	return nil
}
