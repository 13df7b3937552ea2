package spec_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"hookctl.dev/hookctl/spec"
)

// BenchmarkLoad10000 reads and validates a file of 10,000 hooks: python_file
// hooks on one real script, exec hooks on one real program, every tenth
// hook with its own filter (compiled each), a third with a service JID.
func BenchmarkLoad10000(b *testing.B) {
	name, size := write10000(b)
	b.SetBytes(size)
	b.ReportAllocs()
	cpu0 := cpuTime(b)
	for b.Loop() {
		set, err := spec.Load([]string{name}, spec.DefaultOptions())
		if err != nil {
			b.Fatal(err)
		}
		if len(set.Hooks) != 10000 {
			b.Fatalf("%d hooks", len(set.Hooks))
		}
	}
	// On a shared machine wall time (ns/op) includes waiting for a CPU;
	// the process's CPU time per op does not.
	b.ReportMetric(float64(cpuTime(b)-cpu0)/float64(b.N), "cpu-ns/op")
}

// cpuTime is the process's user+system CPU time so far.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkYAMLOnly10000 decodes the same file into a yaml.Node and does
// nothing else: the floor that Load cannot go below with yaml.v3.
func BenchmarkYAMLOnly10000(b *testing.B) {
	name, size := write10000(b)
	b.SetBytes(size)
	b.ReportAllocs()
	for b.Loop() {
		data, err := os.ReadFile(name)
		if err != nil {
			b.Fatal(err)
		}
		var n yaml.Node
		if err := yaml.Unmarshal(data, &n); err != nil {
			b.Fatal(err)
		}
	}
}

// write10000 writes the benchmark's hooks file and its scripts.
func write10000(b *testing.B) (string, int64) {
	dir := b.TempDir()
	writeFiles(b, dir, map[string]string{
		"scripts/hook.py": "def hook(host, client, item): pass\n",
		"scripts/run.sh":  "#!/bin/sh\n",
	})
	var sb strings.Builder
	sb.WriteString("version: 1\nset: bench\nprofile: default\nhooks:\n")
	for i := range 10000 {
		fmt.Fprintf(&sb, "  - name: hook-%d\n    node: urn:example:node:%d\n", i, i)
		if i%3 == 0 {
			fmt.Fprintf(&sb, "    service: pubsub%d.example.org\n", i%7)
		}
		if i%2 == 0 {
			sb.WriteString("    type: exec\n    arg: scripts/run.sh\n    args: [--item, x]\n")
		} else {
			sb.WriteString("    arg: ./scripts/hook.py\n")
		}
		sb.WriteString("    events: [publish]\n    timeout: 30s\n")
		if i%10 == 0 {
			fmt.Fprintf(&sb, "    filter: 'event.kind == \"publish\" && item.id startsWith \"post-%d\"'\n", i)
		}
	}
	name := filepath.Join(dir, "hooks.yaml")
	if err := os.WriteFile(name, []byte(sb.String()), 0o644); err != nil {
		b.Fatal(err)
	}
	return name, int64(sb.Len())
}
