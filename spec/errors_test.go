package spec_test

import (
	"errors"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"hookctl.dev/hookctl"
	"hookctl.dev/hookctl/spec"
)

// hookHead starts a file of hooks. The files are parsed as
// "testdata/h.yaml", where ok.py, ok.sh (executable), noexec.sh and adir/
// exist.
const hookHead = "version: 1\nhooks:\n"

// errorCases are one file each; want are the exact diagnostics, in order.
var errorCases = []struct {
	name string
	src  string
	want []string
}{
	{"unknown top field", "version: 1\nsett: blog\n", []string{
		"testdata/h.yaml:2:1: unknown field \"sett\" (did you mean \"set\"?)",
	}},
	{"unknown hook field", hookHead + "  - nmae: x\n    node: n\n    arg: ok.py\n", []string{
		"testdata/h.yaml:3:5: hooks[0]: unknown field \"nmae\" (did you mean \"name\"?)",
	}},
	{"field given twice", hookHead + "  - node: a\n    node: b\n    arg: ok.py\n", []string{
		"testdata/h.yaml:4:5: hooks[0].node: given twice (first at line 3)",
	}},
	{"top level not a mapping", "- version: 1\n", []string{
		"testdata/h.yaml:1:1: must be a mapping (got a list); is this a hooks file?",
	}},
	{"missing version", "set: blog\n", []string{
		"testdata/h.yaml:1:1: version: is required (version: 1)",
	}},
	{"empty file", "", []string{
		"testdata/h.yaml:1:1: version: is required (version: 1)",
	}},
	{"comments only", "# nothing here\n", []string{
		"testdata/h.yaml:1:1: version: is required (version: 1)",
	}},
	{"version 2", "version: 2\n", []string{
		"testdata/h.yaml:1:10: version: unsupported version 2 (want 1)",
	}},
	{"version string", "version: \"1\"\n", []string{
		"testdata/h.yaml:1:10: version: must be an integer (got string \"1\")",
	}},
	{"bad set name", "version: 1\nset: my set\n", []string{
		"testdata/h.yaml:2:6: set: \"my set\" is not a simple name (letters, digits, '.', '_', '-')",
	}},
	{"set is a list", "version: 1\nset: [a]\n", []string{
		"testdata/h.yaml:2:6: set: must be a string (got a list)",
	}},
	{"bad profile", "version: 1\nprofile: \"\"\n", []string{
		"testdata/h.yaml:2:10: profile: \"\" is not a profile name",
	}},
	{"hooks not a list", "version: 1\nhooks:\n  node: x\n", []string{
		"testdata/h.yaml:3:3: hooks: must be a list (got a mapping)",
	}},
	{"hook not a mapping", hookHead + "  - node\n", []string{
		"testdata/h.yaml:3:5: hooks[0]: must be a mapping (got string \"node\")",
	}},
	{"missing node and arg", hookHead + "  - name: x\n", []string{
		"testdata/h.yaml:3:5: hooks[0].node: is required",
		"testdata/h.yaml:3:5: hooks[0].arg: is required",
	}},
	{"empty node and arg", hookHead + "  - node: \"\"\n    arg: \"\"\n", []string{
		"testdata/h.yaml:3:11: hooks[0].node: is required",
		"testdata/h.yaml:4:10: hooks[0].arg: is required",
	}},
	{"node is a mapping", hookHead + "  - node: {a: b}\n    arg: ok.py\n", []string{
		"testdata/h.yaml:3:11: hooks[0].node: must be a string (got a mapping)",
	}},
	{"unknown type", hookHead + "  - node: n\n    type: pyhton_file\n    arg: ok.py\n", []string{
		"testdata/h.yaml:4:11: hooks[0].type: unknown hook type \"pyhton_file\" (want one of python, python_file, python_code, exec, expr, http)",
	}},
	{"malformed JID", hookHead + "  - node: n\n    service: a@@b\n    arg: ok.py\n", []string{
		"testdata/h.yaml:4:14: hooks[0].service: malformed JID \"a@@b\": idna: disallowed rune U+0040",
	}},
	{"JID with resource", hookHead + "  - node: n\n    service: a@b.example/res\n    arg: ok.py\n", []string{
		"testdata/h.yaml:4:14: hooks[0].service: \"a@b.example/res\" has a resource; want a bare JID",
	}},
	{"bad duration", hookHead + "  - node: n\n    arg: ok.py\n    timeout: 30\n", []string{
		"testdata/h.yaml:5:14: hooks[0].timeout: bad duration \"30\" (want e.g. \"30s\", \"2m\")",
	}},
	{"zero duration", hookHead + "  - node: n\n    arg: ok.py\n    timeout: 0s\n", []string{
		"testdata/h.yaml:5:14: hooks[0].timeout: must be positive (got \"0s\"; omit it for the backend's default)",
	}},
	{"long duration", hookHead + "  - node: n\n    arg: ok.py\n    timeout: 25h\n", []string{
		"testdata/h.yaml:5:14: hooks[0].timeout: 25h is longer than 24h",
	}},
	{"timeout is a list", hookHead + "  - node: n\n    arg: ok.py\n    timeout: [1s]\n", []string{
		"testdata/h.yaml:5:14: hooks[0].timeout: must be a string (got a list)",
	}},
	{"concurrency string", hookHead + "  - node: n\n    arg: ok.py\n    concurrency: \"4\"\n", []string{
		"testdata/h.yaml:5:18: hooks[0].concurrency: must be an integer (got string \"4\")",
	}},
	{"memory", hookHead + "  - node: n\n    arg: ok.py\n    memory: 10MiB\n  - node: n2\n    arg: ok.py\n    memory: lots\n  - node: n3\n    arg: ok.py\n    memory: 512MiB\n", []string{
		"testdata/h.yaml:5:13: hooks[0].memory: bad memory limit \"10MiB\" (want e.g. \"512MiB\", \"2GiB\" (64MiB to 1TiB), or \"unlimited\")",
		"testdata/h.yaml:8:13: hooks[1].memory: bad memory limit \"lots\" (want e.g. \"512MiB\", \"2GiB\" (64MiB to 1TiB), or \"unlimited\")",
	}},
	{"concurrency range", hookHead + "  - node: n\n    arg: ok.py\n    concurrency: -1\n  - node: n2\n    arg: ok.py\n    concurrency: 65\n", []string{
		"testdata/h.yaml:5:18: hooks[0].concurrency: must be between 1 and 64 (got -1)",
		"testdata/h.yaml:8:18: hooks[1].concurrency: must be between 1 and 64 (got 65)",
	}},
	{"persistent yes", hookHead + "  - node: n\n    arg: ok.py\n    persistent: yes\n", []string{
		"testdata/h.yaml:5:17: hooks[0].persistent: must be true or false (got string \"yes\")",
	}},
	{"events not a list", hookHead + "  - node: n\n    arg: ok.py\n    events: publish\n", []string{
		"testdata/h.yaml:5:13: hooks[0].events: must be a list of strings (got string \"publish\")",
	}},
	{"events bad", hookHead + "  - node: n\n    arg: ok.py\n    events: [publish, pubish, publish]\n", []string{
		"testdata/h.yaml:5:23: hooks[0].events[1]: unknown event \"pubish\" (want publish, retract, purge or delete)",
		"testdata/h.yaml:5:31: hooks[0].events[2]: \"publish\" is listed twice",
	}},
	{"events empty", hookHead + "  - node: n\n    arg: ok.py\n    events: []\n", []string{
		"testdata/h.yaml:5:13: hooks[0].events: must not be empty (omit it for publish and retract)",
	}},
	{"catchup bad", hookHead + "  - node: n\n    arg: ok.py\n    catchup: some\n", []string{
		"testdata/h.yaml:5:14: hooks[0].catchup: unknown catch-up policy \"some\" (want new, all or none)",
	}},
	{"args on python_file", hookHead + "  - node: n\n    arg: ok.py\n    args: [a]\n", []string{
		"testdata/h.yaml:5:11: hooks[0].args: only exec hooks take args (this hook is python_file)",
	}},
	{"args not strings", hookHead + "  - node: n\n    type: exec\n    arg: ok.sh\n    args: [a, [b], ~]\n", []string{
		"testdata/h.yaml:6:15: hooks[0].args[1]: must be a string (got a list)",
		"testdata/h.yaml:6:20: hooks[0].args[2]: must be a string (got null)",
	}},
	{"headers on exec", hookHead + "  - node: n\n    type: exec\n    arg: ok.sh\n    headers: {X-A: b}\n", []string{
		"testdata/h.yaml:6:14: hooks[0].headers: only http hooks take headers (this hook is exec)",
	}},
	{"headers bad", hookHead + "  - node: n\n    type: http\n    arg: http://127.0.0.1/\n    headers:\n      \"bad name\": x\n      X-List: [a]\n", []string{
		"testdata/h.yaml:7:19: hooks[0].headers.bad name: \"bad name\" is not a valid header name",
		"testdata/h.yaml:8:15: hooks[0].headers.X-List: must be a string (got a list)",
	}},
	{"http bad URL", hookHead + "  - node: n\n    type: http\n    arg: ftp://example.org/x\n", []string{
		"testdata/h.yaml:5:10: hooks[0].arg: \"ftp://example.org/x\" is not an http or https URL",
	}},
	{"python bad module", hookHead + "  - node: n\n    type: python\n    arg: my-module\n", []string{
		"testdata/h.yaml:5:10: hooks[0].arg: \"my-module\" is not a Python module name (e.g. \"package.module\")",
	}},
	{"expr syntax", hookHead + "  - node: n\n    type: expr\n    arg: log(\"a\" +)\n", []string{
		"testdata/h.yaml:5:19: hooks[0].arg: unexpected token Bracket(\")\")",
	}},
	{"path missing", hookHead + "  - node: n\n    arg: missing.py\n", []string{
		"testdata/h.yaml:4:10: hooks[0].arg: $DIR/missing.py is not a file (no such file or directory)",
	}},
	{"path is a directory", hookHead + "  - node: n\n    arg: adir\n", []string{
		"testdata/h.yaml:4:10: hooks[0].arg: $DIR/adir is not a file (it is a directory)",
	}},
	{"exec not executable", hookHead + "  - node: n\n    type: exec\n    arg: ./noexec.sh\n", []string{
		"testdata/h.yaml:5:10: hooks[0].arg: $DIR/noexec.sh is not executable",
	}},
	{"tilde user", hookHead + "  - node: n\n    arg: ~bob/x.py\n", []string{
		"testdata/h.yaml:4:10: hooks[0].arg: \"~bob/x.py\": only ~ and ~/ are expanded, not ~user",
	}},
	{"duplicate key", hookHead + "  - node: n\n    arg: ok.py\n  - node: n\n    arg: ./ok.py\n    name: second\n", []string{
		"testdata/h.yaml:5:5: hooks[1]: duplicate hook: same profile, service, node, type and arg as hooks[0] at line 3",
	}},
	{"duplicate name", hookHead + "  - name: a\n    node: n\n    arg: ok.py\n  - name: a\n    node: m\n    arg: ok.py\n", []string{
		"testdata/h.yaml:6:5: hooks[1].name: \"a\" is also the name of hooks[0] at line 3",
	}},
	{"filter plain", hookHead + "  - node: n\n    arg: ok.py\n    filter: event.kind == \"publish\" && item.idd != \"\"\n", []string{
		"testdata/h.yaml:5:45: hooks[0].filter: type filter.ItemEnv has no field idd",
	}},
	{"filter single quoted", hookHead + "  - node: n\n    arg: ok.py\n    filter: 'event.knd == \"publish\"'\n", []string{
		"testdata/h.yaml:5:20: hooks[0].filter: type filter.EventEnv has no field knd",
	}},
	{"filter double quoted", hookHead + "  - node: n\n    arg: ok.py\n    filter: \"event.kind == 'x' && evnt.node == 'y'\"\n", []string{
		"testdata/h.yaml:5:35: hooks[0].filter: unknown name evnt",
	}},
	{"filter not bool", hookHead + "  - node: n\n    arg: ok.py\n    filter: event.kind\n", []string{
		"testdata/h.yaml:5:13: hooks[0].filter: expected bool, but got string",
	}},
	{"filter literal", hookHead + "  - node: n\n    arg: ok.py\n    filter: |\n      event.kind == \"publish\"\n        && item.nope\n", []string{
		"testdata/h.yaml:7:17: hooks[0].filter: type filter.ItemEnv has no field nope",
	}},
	{"filter folded plain", hookHead + "  - node: n\n    arg: ok.py\n    filter: event.kind == \"publish\"\n      && item.nope == \"\"\n", []string{
		"testdata/h.yaml:6:15: hooks[0].filter: type filter.ItemEnv has no field nope",
	}},
	{"filter folded block", hookHead + "  - node: n\n    arg: ok.py\n    filter: >\n      event.kind == \"publish\"\n      && item.nope == \"\"\n", []string{
		"testdata/h.yaml:7:15: hooks[0].filter: type filter.ItemEnv has no field nope",
	}},
	{"filter escapes", hookHead + "  - node: n\n    arg: ok.py\n    filter: \"event.kind == \\\"x\\\" && nope\"\n", []string{
		"testdata/h.yaml:5:13: hooks[0].filter: unknown name nope",
	}},
	{"alias", "version: 1\nx: &a n\nhooks:\n  - node: *a\n    arg: ok.py\n", []string{
		"testdata/h.yaml:4:11: aliases are not allowed in hooks files",
	}},
	{"alias bomb", "version: 1\na: &a [x, x]\nb: &b [*a, *a]\nc: &c [*b, *b]\n", []string{
		"testdata/h.yaml:3:8: aliases are not allowed in hooks files",
		"testdata/h.yaml:3:12: aliases are not allowed in hooks files",
		"testdata/h.yaml:4:8: aliases are not allowed in hooks files",
		"testdata/h.yaml:4:12: aliases are not allowed in hooks files",
	}},
	{"merge key", hookHead + "  - <<: {node: n}\n    arg: ok.py\n", []string{
		"testdata/h.yaml:3:5: hooks[0]: unknown field \"<<\"",
		"testdata/h.yaml:3:5: hooks[0].node: is required",
	}},
	{"syntax error", "version: 1\nhooks:\n  - node: [a\n", []string{
		"testdata/h.yaml:2: did not find expected ',' or ']'",
	}},
	{"two documents", "version: 1\n---\nversion: 1\n", []string{
		"testdata/h.yaml:2:1: a hooks file holds one YAML document",
	}},
	{"tab indentation", "version: 1\nhooks:\n\t- node: a\n", []string{
		"testdata/h.yaml:3: found character that cannot start any token",
	}},
	{"many errors", "version: 3\nset: \"a b\"\nhooks:\n  - node: \"\"\n    type: bad\n    arg: x\n  - node: n\n    arg: missing.py\n    timeout: soon\n    filter: itm.id == \"\"\n    extra: 1\n", []string{
		"testdata/h.yaml:1:10: version: unsupported version 3 (want 1)",
		"testdata/h.yaml:2:6: set: \"a b\" is not a simple name (letters, digits, '.', '_', '-')",
		"testdata/h.yaml:4:11: hooks[0].node: is required",
		"testdata/h.yaml:5:11: hooks[0].type: unknown hook type \"bad\" (want one of python, python_file, python_code, exec, expr, http)",
		"testdata/h.yaml:8:10: hooks[1].arg: $DIR/missing.py is not a file (no such file or directory)",
		"testdata/h.yaml:9:14: hooks[1].timeout: bad duration \"soon\" (want e.g. \"30s\", \"2m\")",
		"testdata/h.yaml:10:13: hooks[1].filter: unknown name itm",
		"testdata/h.yaml:11:5: hooks[1]: unknown field \"extra\"",
	}},
}

// TestErrors checks the exact diagnostic of each class of problem. "$DIR"
// in want stands for the absolute path of testdata.
func TestErrors(t *testing.T) {
	abs, err := filepath.Abs("testdata")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range errorCases {
		t.Run(tc.name, func(t *testing.T) {
			set, err := spec.Parse("testdata/h.yaml", []byte(tc.src), spec.DefaultOptions())
			if err == nil {
				t.Fatalf("no error; hooks %v", set.Hooks)
			}
			if !errors.Is(err, hookctl.ErrInvalid) {
				t.Errorf("errors.Is(err, ErrInvalid) = false for %v", err)
			}
			got := strings.Split(err.Error(), "\n")
			want := slices.Clone(tc.want)
			for i := range want {
				want[i] = strings.ReplaceAll(want[i], "$DIR", abs)
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("diagnostics (-want +got):\n%s", diff)
			}
		})
	}
}
