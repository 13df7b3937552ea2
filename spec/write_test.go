package spec

import (
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"hookctl.dev/hookctl"
)

// writeCases are hooks that together set every field of Hook (checked
// by TestWriteCoversEveryField), with the values that are hardest to write:
// multi-line code, strings that read as other YAML types, unicode, and
// defaults written out.
func writeCases() []hookctl.Hook {
	own := "bot@example.org"
	return []hookctl.Hook{
		{Key: hookctl.Key{Profile: "default", Service: own, Node: "urn:xmpp:microblog:0", Type: hookctl.TypePythonFile, Arg: "hooks/neat.py"},
			Persistent: true, Name: "neat", Memory: "512MiB", Catchup: hookctl.CatchupAll, Concurrency: 4},
		{Key: hookctl.Key{Profile: "default", Service: "pubsub.example.org", Node: "42", Type: hookctl.TypePythonCode,
			Arg: "if item.get('id') == 'x':\n    print(\"été\")\n\ttab = True\n"},
			Persistent: false, Events: []hookctl.EventKind{hookctl.EventPurge, hookctl.EventDelete}, Suspended: true},
		{Key: hookctl.Key{Profile: "ops", Service: "pubsub.example.org", Node: "true", Type: hookctl.TypeExec, Arg: "/usr/bin/env"},
			Persistent: true, Args: []string{"echo", "yes", "", "a: b"}, Timeout: hookctl.Duration(90 * time.Second),
			Env: map[string]string{"MODE": "prod", "EMPTY": "", "YAMLISH": "no"}, Secrets: []string{"TOKEN", "DB_PASS"},
			Filter: `event.kind == "publish" && item.id startsWith "post-"`, Catchup: hookctl.CatchupNone},
		{Key: hookctl.Key{Profile: "ops", Service: "pubsub.example.org", Node: "null", Type: hookctl.TypeHTTP, Arg: "http://127.0.0.1:9/hook"},
			Persistent: true, Headers: map[string]string{"X-Token": "${TOKEN}", "X-Empty": "~"}, Name: "web.hook-1",
			Events: []hookctl.EventKind{hookctl.EventPublish, hookctl.EventRetract}},
		{Key: hookctl.Key{Profile: "ops", Service: own, Node: "n", Type: hookctl.TypeExpr, Arg: `log("hi")`}, Persistent: true},
		{Key: hookctl.Key{Profile: "ops", Service: "s.example.org", Node: "m", Type: hookctl.TypePython, Arg: "json.tool"}, Persistent: true},
	}
}

// roundTrip writes hooks as set, parses the file back (as if it were at
// dir/hooks.yaml) and returns the hooks read, services normalised the
// way apply does.
func roundTrip(t *testing.T, hooks []hookctl.Hook, set string, own map[string]string) ([]hookctl.Hook, string) {
	t.Helper()
	data, err := Write(hooks, WriteOptions{Set: set, OwnJIDs: own, Header: "exported"})
	if err != nil {
		t.Fatal(err)
	}
	name := filepath.Join(t.TempDir(), "hooks.yaml")
	s, err := Parse(name, data, Options{})
	if err != nil {
		t.Fatalf("%v\n--- file ---\n%s", err, data)
	}
	for i := range s.Hooks {
		if s.Hooks[i].Service == "" {
			s.Hooks[i].Service = own[s.Hooks[i].Profile]
		}
	}
	return s.Hooks, string(data)
}

func TestWriteRoundTrip(t *testing.T) {
	own := map[string]string{"default": "bot@example.org", "ops": "bot@example.org"}
	in := writeCases()
	got, file := roundTrip(t, in, "blog", own)
	if len(got) != len(in) {
		t.Fatalf("read %d hooks back, wrote %d\n%s", len(got), len(in), file)
	}
	byKey := map[hookctl.Key]hookctl.Hook{}
	for _, h := range got {
		byKey[h.Key] = h
	}
	for _, h := range in {
		h.Owner = "blog"
		back, ok := byKey[h.Key]
		if !ok {
			t.Errorf("hook %s not read back\n%s", h.Key, file)
			continue
		}
		if ch := h.AttributeChanges(back); len(ch) > 0 {
			t.Errorf("hook %s changed by the round trip: %+v\n%s", h.Key, ch, file)
		}
	}
	// Own-PEP services are left out, as files write them; others stay.
	if strings.Contains(file, "bot@example.org") || !strings.Contains(file, "service: pubsub.example.org") {
		t.Errorf("services:\n%s", file)
	}
	if !strings.Contains(file, "enabled: false") || !strings.HasPrefix(file, "# exported\n") {
		t.Errorf("suspended hook or header missing:\n%s", file)
	}
}

// One profile for every hook is written once, at the top.
func TestWriteCommonProfile(t *testing.T) {
	in := writeCases()[2:]
	got, file := roundTrip(t, in, "ops-set", nil)
	if !strings.Contains(file, "\nprofile: ops\n") || strings.Contains(file, "  profile:") {
		t.Errorf("profile not written once:\n%s", file)
	}
	if len(got) != len(in) {
		t.Fatalf("read %d hooks back, wrote %d", len(got), len(in))
	}
}

// TestWriteCoversEveryField fails when a field is added to Hook and no
// write case sets it: the round trip above then checks that Write and
// Parse both carry it (Write also refuses a Fields name it does not know).
func TestWriteCoversEveryField(t *testing.T) {
	bookkeeping := map[string]bool{
		"Source": true, "Created": true, "Quarantined": true, // not declared in files
		"Owner": true, // the file's set
	}
	typ := reflect.TypeOf(hookctl.Hook{})
	for _, path := range fieldPaths(typ, nil) {
		name := typ.FieldByIndex(path).Name
		if bookkeeping[name] {
			continue
		}
		set := false
		for _, h := range writeCases() {
			if !reflect.ValueOf(h).FieldByIndex(path).IsZero() {
				set = true
			}
		}
		if !set {
			t.Errorf("field %s: no write case sets it, so the export round trip does not cover it", name)
		}
	}
	h := writeCases()[0]
	if _, err := Write([]hookctl.Hook{h}, WriteOptions{Set: "s"}); err != nil {
		t.Fatal(err)
	}
	for _, f := range h.Fields() {
		if err := writeField(map[string]*yaml.Node{}, f.Name, h, "", WriteOptions{}); err != nil {
			t.Error(err)
		}
	}
	if err := writeField(map[string]*yaml.Node{}, "brand-new", h, "", WriteOptions{}); err == nil {
		t.Error("an unknown field is not refused")
	}
}

func fieldPaths(t reflect.Type, prefix []int) [][]int {
	var out [][]int
	for i := range t.NumField() {
		f := t.Field(i)
		p := append(append([]int(nil), prefix...), i)
		if f.Anonymous && f.Type.Kind() == reflect.Struct {
			out = append(out, fieldPaths(f.Type, p)...)
			continue
		}
		out = append(out, p)
	}
	return out
}
