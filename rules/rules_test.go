package rules

import (
	"errors"
	"strings"
	"testing"
	"time"

	"hookctl.dev/hookctl"
)

func valid() hookctl.Hook {
	return hookctl.Hook{Key: hookctl.Key{Profile: "default", Service: "pubsub.localhost", Node: "n", Type: hookctl.TypeExpr, Arg: "true"}}
}

func TestCheckValid(t *testing.T) {
	for _, h := range []hookctl.Hook{
		valid(),
		func() hookctl.Hook { h := valid(); h.Service = ""; return h }(),
		func() hookctl.Hook {
			h := valid()
			h.Type, h.Arg, h.Args = hookctl.TypeExec, "scripts/run.sh", []string{"-v"}
			return h
		}(),
		func() hookctl.Hook { h := valid(); h.Type, h.Arg = hookctl.TypePythonFile, "/abs/x.py"; return h }(),
		func() hookctl.Hook {
			h := valid()
			h.Timeout = hookctl.Duration(24 * time.Hour)
			h.Concurrency = 64
			return h
		}(),
		func() hookctl.Hook { h := valid(); h.Name, h.Owner = "any label", "blog"; return h }(),
	} {
		if err := Check(h, DefaultLimits()); err != nil {
			t.Errorf("Check(%s) = %v, want valid", h.Key, err)
		}
	}
}

// TestCheckReportsEveryProblem: all problems at once, each with its field.
func TestCheckReportsEveryProblem(t *testing.T) {
	h := valid()
	h.Service = "a@b/c"
	h.Node = ""
	h.Concurrency = 65
	h.Timeout = -1
	h.Catchup = "later"
	h.Filter = "item.id +"
	h.Headers = map[string]string{"X": "y"}
	err := Check(h, DefaultLimits())
	var ps Problems
	if !errors.As(err, &ps) || !errors.Is(err, hookctl.ErrInvalid) {
		t.Fatalf("Check = %v, want Problems wrapping ErrInvalid", err)
	}
	var fields []string
	for _, p := range ps {
		fields = append(fields, p.Field)
	}
	want := "service node timeout concurrency catchup headers filter"
	if got := strings.Join(fields, " "); got != want {
		t.Errorf("fields = %q, want %q (%v)", got, want, err)
	}
}

func TestCheckPaths(t *testing.T) {
	for arg, ok := range map[string]bool{
		"/usr/bin/x": true, "x.py": true, "a/b.py": true,
		"../x.py": false, "./x.py": false, "a/../b.py": false, "~/x.py": false, ".": false,
	} {
		h := valid()
		h.Type, h.Arg = hookctl.TypePythonFile, arg
		if err := Check(h, DefaultLimits()); (err == nil) != ok {
			t.Errorf("Check(python_file %q) = %v, want ok=%v", arg, err, ok)
		}
	}
}

func TestNormaliseAndIdentity(t *testing.T) {
	h := valid()
	h.Service = ""
	n, err := Normalise(h, "Bot@LocalHost/res")
	if err != nil || n.Service != "bot@localhost" {
		t.Errorf("Normalise(own PEP) = %q, %v; want bot@localhost", n.Service, err)
	}
	h.Service = " PubSub.LocalHost "
	if n, _ := Normalise(h, ""); n.Service != "pubsub.localhost" {
		t.Errorf("Normalise = %q, want pubsub.localhost", n.Service)
	}
	named := valid()
	named.Owner, named.Name = "blog", "rebuild"
	other := named
	other.Arg = "false"
	if IDOf(named) != IDOf(other) {
		t.Error("a named hook's identity changed with its arg")
	}
	if IDOf(valid()) == IDOf(func() hookctl.Hook { h := valid(); h.Arg = "false"; return h }()) {
		t.Error("an unnamed hook's identity ignores its key")
	}
}

func TestResolve(t *testing.T) {
	if p, err := Resolve("/abs/x", ""); err != nil || p != "/abs/x" {
		t.Errorf("Resolve(abs) = %q, %v", p, err)
	}
	if p, err := Resolve("a/x.sh", "/srv/repo"); err != nil || p != "/srv/repo/a/x.sh" {
		t.Errorf("Resolve(rel) = %q, %v", p, err)
	}
	if _, err := Resolve("a/x.sh", ""); !errors.Is(err, hookctl.ErrInvalid) {
		t.Errorf("Resolve(rel, no root) = %v, want ErrInvalid", err)
	}
}

// TestCheckEnvironment: a hook's own env and secrets, for the types that
// have an environment, with valid, unreserved, unrepeated names.
func TestCheckEnvironment(t *testing.T) {
	execHook := func() hookctl.Hook {
		h := valid()
		h.Type, h.Arg = hookctl.TypeExec, "/bin/true"
		return h
	}
	ok := execHook()
	ok.Env = map[string]string{"MODE": "prod", "_X1": ""}
	ok.Secrets = []string{"API_TOKEN"}
	if err := Check(ok, DefaultLimits()); err != nil {
		t.Errorf("Check(env and secrets) = %v, want valid", err)
	}
	many := map[string]string{}
	for i := range 65 {
		many["V"+strings.Repeat("x", i)] = "v"
	}
	for _, tc := range []struct {
		name string
		edit func(*hookctl.Hook)
		want string // "field: message fragment"
	}{
		{"bad name", func(h *hookctl.Hook) { h.Env = map[string]string{"1X": "v"} }, `env.1X: "1X" is not a variable name`},
		{"reserved", func(h *hookctl.Hook) { h.Env = map[string]string{"HOOK_NODE": "v"} }, "env.HOOK_NODE: variables starting with HOOK_"},
		{"nul", func(h *hookctl.Hook) { h.Env = map[string]string{"A": "x\x00y"} }, "env.A: must be valid UTF-8 without NUL"},
		{"secret name", func(h *hookctl.Hook) { h.Secrets = []string{"a-b"} }, `secrets[0]: "a-b" is not a secret name`},
		{"secret twice", func(h *hookctl.Hook) { h.Secrets = []string{"A", "A"} }, `secrets[1]: "A" is listed twice`},
		{"both places", func(h *hookctl.Hook) { h.Env, h.Secrets = map[string]string{"A": "x"}, []string{"A"} }, `secrets[0]: "A" is also set in env`},
		{"too many", func(h *hookctl.Hook) { h.Env = many }, "env: 65 variables"},
		{"expr", func(h *hookctl.Hook) { h.Type, h.Arg, h.Env = hookctl.TypeExpr, "true", map[string]string{"A": "x"} }, "env: only exec and Python hooks have an environment"},
		{"http", func(h *hookctl.Hook) { h.Type, h.Arg, h.Secrets = hookctl.TypeHTTP, "http://127.0.0.1/", []string{"A"} }, `secrets: only exec and Python hooks have an environment (this hook is http); an http hook names secrets in header values as "${NAME}"`},
	} {
		h := execHook()
		tc.edit(&h)
		err := Check(h, DefaultLimits())
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: Check = %v, want %q", tc.name, err, tc.want)
		}
	}
}
