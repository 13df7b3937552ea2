package main

import (
	"fmt"
	"os"
	"path/filepath"
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
