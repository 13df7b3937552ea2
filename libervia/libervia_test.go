package libervia

import (
	"context"
	"database/sql"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"hookctl.dev/hookctl"
	"hookctl.dev/hookctl/internal/pickle"
)

// fixture is the database the real Libervia wrote (scripts/libervia-fixture.sh).
const fixture = "../cmd/hookctl/testdata/libervia/libervia.db"

func TestReadFixture(t *testing.T) {
	db, err := Read(context.Background(), fixture, "")
	if err != nil {
		t.Fatal(err)
	}
	const dir = "/tmp/libervia-fixture/home/hooks/"
	want := []Hook{
		{Profile: "alice", Service: "pubsub.localhost", Node: "news", Type: "python_file", Arg: dir + "neat.py"},
		{Profile: "alice", Service: "pubsub.localhost", Node: "news", Type: "python_file", Arg: dir + "neat.py"},
		{Profile: "alice", Service: "alice@localhost", Node: "urn:xmpp:microblog:0", Type: "python_file", Arg: dir + "neat.py"},
		{Profile: "alice", Service: "alice@localhost", Node: "urn:xmpp:microblog:0", Type: "python_file", Arg: dir + "blog.py"},
		{Profile: "bob", Service: "pubsub.localhost", Node: "events/été", Type: "python_file", Arg: dir + "blog.py"},
	}
	if diff := cmp.Diff(want, db.Hooks); diff != "" {
		t.Errorf("hooks (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(map[string]string{"alice": "alice@localhost", "bob": "bob@localhost"}, db.Profiles); diff != "" {
		t.Errorf("profiles (-want +got):\n%s", diff)
	}
	bob, err := Read(context.Background(), fixture, "bob")
	if err != nil || len(bob.Hooks) != 1 {
		t.Fatalf("profile bob: %v, %d hooks", err, len(bob.Hooks))
	}
	if _, err := Read(context.Background(), fixture, "carol"); !errors.Is(err, hookctl.ErrInvalid) || !strings.Contains(err.Error(), `"alice", "bob"`) {
		t.Errorf("unknown profile: %v", err)
	}
}

func TestConvertFixture(t *testing.T) {
	db, err := Read(context.Background(), fixture, "")
	if err != nil {
		t.Fatal(err)
	}
	hooks, notes, err := Convert(db, ConvertOptions{Set: "libervia", PathFrom: "/tmp/libervia-fixture/home", PathTo: "/srv/hooks"})
	if err != nil {
		t.Fatal(err)
	}
	if len(hooks) != 4 || len(notes) != 1 || !strings.Contains(notes[0], "duplicate") {
		t.Fatalf("%d hooks, notes %q", len(hooks), notes)
	}
	for _, h := range hooks {
		if !strings.HasPrefix(h.Arg, "/srv/hooks/hooks/") || !h.Persistent || h.Owner != "libervia" {
			t.Errorf("hook %+v", h)
		}
	}
}

func TestReadRefuses(t *testing.T) {
	dir := t.TempDir()
	notDB := filepath.Join(dir, "text")
	os.WriteFile(notDB, []byte("hello, this is not SQLite at all"), 0o600)
	for name, path := range map[string]string{
		"missing": filepath.Join(dir, "nope.db"), "directory": dir, "device": "/dev/zero", "not sqlite": notDB,
	} {
		if _, err := Read(context.Background(), path, ""); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

// makeDB writes a database with Libervia's schema (the tables Read uses,
// as Libervia's sqla_mapping declares them) holding one profile "alice"
// and the given PUBSUB_HOOK values by node.
func makeDB(t *testing.T, values map[string][]byte) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "libervia.db")
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for _, q := range []string{
		`CREATE TABLE profiles (id INTEGER NOT NULL, name TEXT, PRIMARY KEY (id), UNIQUE (name))`,
		`CREATE TABLE param_ind (category TEXT NOT NULL, name TEXT NOT NULL, profile_id INTEGER NOT NULL, value TEXT, PRIMARY KEY (category, name, profile_id))`,
		`CREATE TABLE private_ind_bin (namespace TEXT NOT NULL, "key" TEXT NOT NULL, profile_id INTEGER NOT NULL, value TEXT, PRIMARY KEY (namespace, "key", profile_id))`,
		`INSERT INTO profiles VALUES (1, 'alice')`,
		`INSERT INTO param_ind VALUES ('Connection', 'JabberID', 1, 'alice@localhost')`,
	} {
		if _, err := db.Exec(q); err != nil {
			t.Fatal(err)
		}
	}
	for node, v := range values {
		if _, err := db.Exec(`INSERT INTO private_ind_bin VALUES ('PUBSUB_HOOK', ?, 1, ?)`, node, v); err != nil {
			t.Fatal(err)
		}
	}
	return path
}

// A stored value that would run os.system when Libervia unpickles it is
// refused, naming the node and the global; nothing runs.
func TestReadRefusesCodeInPickle(t *testing.T) {
	evil, err := os.ReadFile("../internal/pickle/testdata/evil-p0.pkl")
	if err != nil {
		t.Fatal(err)
	}
	path := makeDB(t, map[string][]byte{"evil": evil})
	t.Chdir(t.TempDir())
	_, err = Read(context.Background(), path, "")
	if !errors.Is(err, pickle.ErrRefused) || !strings.Contains(err.Error(), `node "evil"`) || !strings.Contains(err.Error(), "system") {
		t.Fatalf("err = %v", err)
	}
	if _, err := os.Stat("pwned"); err == nil {
		t.Fatal("the pickle's command ran")
	}
}

func TestReadRefusesBadValues(t *testing.T) {
	good := []byte("(lp0\n(dp1\nVservice\np2\nVpubsub.localhost\np3\nsVtype\np4\nVpython_file\np5\nsVarg\np6\nV/a.py\np7\nsa.")
	for name, tc := range map[string]struct {
		value []byte
		msg   string
	}{
		"truncated":     {good[:40], "truncated"},
		"deep":          {[]byte(strings.Repeat("(", 100_000)), "nested marks"},
		"not a list":    {[]byte("(dp0\n."), "want a list of hooks"},
		"unknown field": {[]byte("(lp0\n(dp1\nVcallback\np2\nNsa."), `unknown field "callback"`},
		"no service":    {[]byte("(lp0\n(dp1\nVtype\np2\nVpython_file\np3\nsa."), "no service"},
		"int arg":       {[]byte("(lp0\n(dp1\nVarg\np2\nI1\nsa."), "arg is a int"},
		"huge":          {append(append([]byte("V"), make([]byte, pickle.MaxSize)...), '\n', '.'), "at most 1048576"},
		"empty":         {nil, "empty"},
	} {
		path := makeDB(t, map[string][]byte{"bad": tc.value, "good": good})
		_, err := Read(context.Background(), path, "")
		if !errors.Is(err, hookctl.ErrInvalid) || !strings.Contains(err.Error(), `node "bad"`) || !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("%s: err = %v, want one naming node \"bad\" and %q", name, err, tc.msg)
		}
	}
	db, err := Read(context.Background(), makeDB(t, map[string][]byte{"good": good}), "")
	if err != nil || len(db.Hooks) != 1 || db.Hooks[0].Service != "pubsub.localhost" {
		t.Fatalf("a service stored as str: %v %+v", err, db)
	}
}

// A hook hookctl's rules refuse is an error naming it.
func TestConvertRefusesInvalid(t *testing.T) {
	db := &Database{Hooks: []Hook{{Profile: "alice", Service: "pubsub.localhost", Node: "n", Type: "lua", Arg: "x"}}}
	if _, _, err := Convert(db, ConvertOptions{Set: "libervia"}); !errors.Is(err, hookctl.ErrInvalid) || !strings.Contains(err.Error(), "lua") {
		t.Fatalf("err = %v", err)
	}
}

// The real Libervia 0.9 refuses python and python_code hooks (not
// implemented), so its database never holds them; a later or patched one
// could, and they convert like python_file (the decoder's own test reads
// a python_code hook from a pickle made by Python).
func TestConvertEveryPythonType(t *testing.T) {
	db := &Database{Hooks: []Hook{
		{Profile: "alice", Service: "alice@localhost", Node: "n", Type: "python_code", Arg: "print(item)"},
		{Profile: "alice", Service: "alice@localhost", Node: "n", Type: "python", Arg: "json.tool"},
		{Profile: "alice", Service: "alice@localhost", Node: "n", Type: "python_file", Arg: "/old/x.py"},
	}}
	hooks, notes, err := Convert(db, ConvertOptions{Set: "s", PathFrom: "/old", PathTo: "/new"})
	if err != nil || len(notes) != 0 || len(hooks) != 3 {
		t.Fatalf("%v %q %d", err, notes, len(hooks))
	}
	want := []string{"print(item)", "json.tool", "/new/x.py"}
	for i, h := range hooks {
		if h.Arg != want[i] {
			t.Errorf("hook %d: arg %q, want %q", i, h.Arg, want[i])
		}
	}
}
