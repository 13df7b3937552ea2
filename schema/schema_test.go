package schema_test

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rogpeppe/go-internal/txtar"
	"github.com/santhosh-tekuri/jsonschema/v6"
	"gopkg.in/yaml.v3"

	"hookctl.dev/hookctl/schema"
	"hookctl.dev/hookctl/spec"
)

func compile(t *testing.T) *jsonschema.Schema {
	t.Helper()
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(schema.Hooks))
	if err != nil {
		t.Fatal(err)
	}
	c := jsonschema.NewCompiler()
	if err := c.AddResource("hooks.schema.json", doc); err != nil {
		t.Fatal(err)
	}
	s, err := c.Compile("hooks.schema.json")
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// instance decodes a YAML hooks file as the JSON value the schema checks.
func instance(t *testing.T, data []byte) any {
	t.Helper()
	var v any
	if err := yaml.Unmarshal(data, &v); err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	return inst
}

// hooksFiles returns every hooks file of the examples and of the CLI
// scenarios that the rules accept (paths not checked), by name.
func hooksFiles(t *testing.T) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	add := func(name string, data []byte) {
		if !bytes.Contains(data, []byte("version:")) || !bytes.Contains(data, []byte("hooks:")) {
			return
		}
		if _, err := spec.Parse(name, data, spec.Options{}); err == nil {
			out[name] = data
		}
	}
	ex, err := os.ReadFile("../examples/hooks.yaml")
	if err != nil {
		t.Fatal(err)
	}
	add("examples/hooks.yaml", ex)
	scripts, _ := filepath.Glob("../cmd/hookctl/testdata/script/*.txtar")
	for _, s := range scripts {
		a, err := txtar.ParseFile(s)
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range a.Files {
			if strings.HasSuffix(f.Name, ".yaml") || strings.HasSuffix(f.Name, ".yml") {
				add(filepath.Base(s)+":"+f.Name, f.Data)
			}
		}
	}
	if len(out) < 10 {
		t.Fatalf("found only %d valid hooks files to check", len(out))
	}
	return out
}

// TestSchemaAcceptsWhatTheRulesAccept: no valid hooks file is flagged by
// an editor using the schema.
func TestSchemaAcceptsWhatTheRulesAccept(t *testing.T) {
	s := compile(t)
	for name, data := range hooksFiles(t) {
		if err := s.Validate(instance(t, data)); err != nil {
			t.Errorf("%s: valid for hookctl, refused by the schema: %v", name, err)
		}
	}
}

// TestSchemaRefusesWrongShapes: typos and wrong types are caught in the
// editor too.
func TestSchemaRefusesWrongShapes(t *testing.T) {
	s := compile(t)
	for _, bad := range []string{
		"version: 2\n",
		"version: 1\ncolour: red\n",
		"version: 1\nhooks:\n  - node: n\n    arg: x.py\n    timout: 5s\n",
		"version: 1\nhooks:\n  - node: n\n",
		"version: 1\nhooks:\n  - {node: n, arg: x, type: perl}\n",
		"version: 1\nhooks:\n  - {node: n, arg: x, concurrency: 65}\n",
		"version: 1\nhooks:\n  - {node: n, arg: x, events: [publsh]}\n",
		"version: 1\nhooks:\n  - {node: n, arg: x, timeout: soon}\n",
	} {
		if err := s.Validate(instance(t, []byte(bad))); err == nil {
			t.Errorf("schema accepted %q", bad)
		}
	}
}
