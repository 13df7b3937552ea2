package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"hookctl.dev/hookctl"
)

func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestLoadValid(t *testing.T) {
	p := writeFile(t, "hookctl.yaml", `
data_dir: data
allow_types: [exec, expr]
default_timeout: 5s
profiles:
  default:
    jid: bot@localhost/res
    password_file: pw
    server: 127.0.0.1:5222
    tls: none
`)
	c, err := Load(p)
	if err != nil {
		t.Fatal(err)
	}
	c.Defaults()
	if want := filepath.Join(filepath.Dir(p), "data"); c.DataDir != want {
		t.Errorf("DataDir = %q, want %q", c.DataDir, want)
	}
	if c.Socket != filepath.Join(c.DataDir, "hookctl.sock") {
		t.Errorf("Socket = %q", c.Socket)
	}
	if !c.Allowed(hookctl.TypeExec) || c.Allowed(hookctl.TypePythonFile) {
		t.Errorf("AllowTypes = %v", c.AllowTypes)
	}
	if got := c.ProfileJIDs()["default"]; got != "bot@localhost" {
		t.Errorf("ProfileJIDs()[default] = %q, want bare JID", got)
	}
	if c.DefaultTimeout.String() != "5s" {
		t.Errorf("DefaultTimeout = %v", c.DefaultTimeout)
	}
}

func TestLoadEmptyFileIsDefaults(t *testing.T) {
	c, err := Load(writeFile(t, "empty.yaml", ""))
	if err != nil {
		t.Fatal(err)
	}
	c.Defaults()
	if len(c.AllowTypes) != len(hookctl.Types) || c.ProfileJIDs() != nil {
		t.Errorf("defaults: %+v", c)
	}
}

func TestLoadErrorsNameFileAndField(t *testing.T) {
	cases := []struct{ content, want string }{
		{"datadir: x\n", `bad.yaml:1:1: datadir: unknown field "datadir" (did you mean "data_dir"?)`},
		{"allow_types: [perl]\n", `allow_types[0]: unknown hook type "perl"`},
		{"profiles:\n  a:\n    jid: localhost\n    password_env: X\n", `profiles.a.jid: "localhost" has no user part`},
		{"profiles:\n  a:\n    jid: a@b\n", "profiles.a: needs password_file or password_env"},
		{"profiles:\n  a:\n    jid: a@b\n    password_env: X\n    tls: ssl\n", `profiles.a.tls: unknown mode "ssl"`},
		{"api_listen: 127.0.0.1:1\n", "api_listen: a TCP control API needs api_token_file"},
		{"default_timeout: soon\n", `bad duration "soon"`},
		{"allow_types: []\n", "allow_types: line 1: an empty list is ambiguous"},
		{"allow_types:\n", "allow_types: line 1: an empty list is ambiguous"},
		{"api_listen: :1\napi_token_file: t\n", `api_listen: ":1" is every interface`},
		{"api_listen: 10.1.2.3:1\napi_token_file: t\n", `is a non-loopback address`},
		{"api_listen: 127.0.0.1:70000\napi_token_file: t\n", `port "70000" is not a number from 0 to 65535`},
		{"api_tls_cert: c\n", "api_tls_cert and api_tls_key go together"},
		{"max_publish_bytes: -1\n", "max_publish_bytes: -1 is out of range"},
		{"default_timeout: 1000000h\n", "default_timeout: 1000000h0m0s is longer than a hook's timeout may be (24h0m0s)"},
		{"max_publish_bytes: 2000000\n", "max_publish_bytes: 2000000 is out of range"},
		{"profiles:\n  a:\n    jid: a@b\n    password_env: X\n    server: h:0\n", `port "0" is not a number from 1 to 65535`},
		{"profiles:\n  a:\n    jid: a@b\n    password_env: X\n    request_timeout: 1h\n", "request_timeout: 1h0m0s is out of range"},
		{"profiles:\n  a:\n    jid: a@b\n    password_env: X\n    tls: none\n    ca_file: ca.pem\n", "profiles.a.ca_file: is only used to verify a certificate: not with tls: none or insecure_skip_verify"},
		{"profiles:\n  a:\n    jid: a@b\n    password_env: X\n    insecure_skip_verify: true\n    ca_file: ca.pem\n", "profiles.a.ca_file: is only used to verify"},
	}
	for _, c := range cases {
		p := writeFile(t, "bad.yaml", c.content)
		_, err := Load(p)
		if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), p) {
			t.Errorf("Load(%q) = %v, want error with %q and the file name", c.content, err, c.want)
		}
	}
}

func TestPassword(t *testing.T) {
	p := Profile{PasswordFile: writeFile(t, "pw", "s3cret\n")}
	if got, err := p.Password(os.Getenv); err != nil || got != "s3cret" {
		t.Errorf("Password() = %q, %v", got, err)
	}
	env := Profile{PasswordEnv: "PW"}
	if _, err := env.Password(func(string) string { return "" }); err == nil {
		t.Error("empty env var accepted")
	}
}

func TestRelativeConfigPathGivesAbsolutePaths(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "c.yaml"), []byte("data_dir: data\npython_path: [lib]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Chdir(dir)
	c, err := Load("c.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if !filepath.IsAbs(c.DataDir) || !filepath.IsAbs(c.PythonPath[0]) {
		t.Errorf("paths from a relative config: data_dir %q, python_path %q; want absolute", c.DataDir, c.PythonPath[0])
	}
}

// TestExampleBackendConfig: the README's `hookctl serve --config
// examples/backend/config.yaml` names a file that exists and loads, with paths
// taken from its directory.
func TestExampleBackendConfig(t *testing.T) {
	c, err := Load("../examples/backend/config.yaml")
	if err != nil {
		t.Fatal(err)
	}
	ex, _ := filepath.Abs("../examples")
	if c.HooksRoot != ex || c.DataDir != filepath.Join(filepath.Dir(ex), ".hookctl-data") {
		t.Errorf("hooks_root %q, data_dir %q: want them taken from the file's directory %s", c.HooksRoot, c.DataDir, ex)
	}
	if p, ok := c.Profiles["default"]; !ok || p.JID != "bot@localhost" || p.PasswordEnv != "HOOKCTL_PASSWORD" {
		t.Errorf("profiles = %+v", c.Profiles)
	}
}

// A non-loopback api_listen is allowed with TLS or api_insecure, and
// loopback always.
func TestAPIListenAllowed(t *testing.T) {
	for _, content := range []string{
		"api_listen: 127.0.0.1:1\napi_token_file: t\n",
		"api_listen: '[::1]:1'\napi_token_file: t\n",
		"api_listen: localhost:1\napi_token_file: t\n",
		"api_listen: :1\napi_token_file: t\napi_insecure: true\n",
		"api_listen: 0.0.0.0:1\napi_token_file: t\napi_tls_cert: c\napi_tls_key: k\n",
		"allow_types: [expr]\n",
	} {
		if _, err := Load(writeFile(t, "ok.yaml", content)); err != nil {
			t.Errorf("Load(%q): %v", content, err)
		}
	}
}

// TestLoadReportsEveryProblemAtOnce: config errors read like hooks files'
// (FILE:LINE:COL: FIELD: MESSAGE, did you mean), all at once, without Go
// type names.
func TestLoadReportsEveryProblemAtOnce(t *testing.T) {
	p := writeFile(t, "cfg.yaml", "profiles:\n  default:\n    jid: a@b\n    pasword_file: x\nallow_typs: [exec]\nlisten: [1]\ndefault_timeout: 5x\n")
	_, err := Load(p)
	if err == nil {
		t.Fatal("Load succeeded")
	}
	for _, want := range []string{
		p + `:4:5: profiles.default.pasword_file: unknown field "pasword_file" (did you mean "password_file"?)`,
		p + `:5:1: allow_typs: unknown field "allow_typs" (did you mean "allow_types"?)`,
		p + ":6: cannot unmarshal !!seq",
		p + `:7: bad duration "5x"`,
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
	if strings.Contains(err.Error(), "config.") {
		t.Errorf("error names Go types:\n%v", err)
	}
}
