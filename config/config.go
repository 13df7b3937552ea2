package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
	"mellium.im/xmpp/jid"

	"hookctl.dev/hookctl"
)

// Config is the backend's configuration. The zero value plus Defaults is
// the embedded default: every hook type allowed, no XMPP profile, data
// under DefaultDataDir.
type Config struct {
	// DataDir holds the store (hooks.db) and, by default, the socket.
	DataDir string `yaml:"data_dir"`
	// Socket is the control API's Unix socket.
	Socket string `yaml:"socket"`
	// Listen serves /healthz, /readyz and /metrics over HTTP ("" = off).
	Listen string `yaml:"listen"`
	// APIListen serves the control API over TCP too; needs APITokenFile.
	APIListen string `yaml:"api_listen"`
	// APITokenFile holds the bearer token that TCP clients must send.
	APITokenFile string `yaml:"api_token_file"`
	// AllowTypes are the hook types the backend accepts and runs.
	AllowTypes []hookctl.Type `yaml:"allow_types"`
	// DefaultTimeout bounds runs of hooks that set no timeout.
	DefaultTimeout hookctl.Duration `yaml:"default_timeout"`
	// Python is the interpreter for the Python hook types.
	Python string `yaml:"python"`
	// PythonPath is searched first for `python` hook modules.
	PythonPath []string `yaml:"python_path"`
	// HooksRoot is where the backend finds the scripts and programs that
	// hooks files name by relative path: the backend host's checkout of
	// the files' repository (serve --watch DIR defaults it to DIR).
	HooksRoot string `yaml:"hooks_root"`
	// Profiles are the XMPP accounts, by profile name.
	Profiles map[string]Profile `yaml:"profiles"`
	// RunsKeep bounds the run history kept in the store (default 10000
	// runs); RunsMaxAge forgets runs older than this (default 720h).
	RunsKeep   int              `yaml:"runs_keep"`
	RunsMaxAge hookctl.Duration `yaml:"runs_max_age"`
	// EventsKeep and EventsMaxAge bound the audit trail of registry
	// changes the same way (default 10000 events, 2160h).
	EventsKeep   int              `yaml:"events_keep"`
	EventsMaxAge hookctl.Duration `yaml:"events_max_age"`
}

// TLS modes of a profile's connection.
const (
	TLSStartTLS = "starttls" // upgrade the plain connection (default)
	TLSDirect   = "direct"   // TLS from the first byte
	TLSNone     = "none"     // plain TCP: only for test servers on loopback
)

// Profile is one XMPP account.
type Profile struct {
	JID string `yaml:"jid"`
	// PasswordFile or PasswordEnv name where the password is; never inline.
	PasswordFile string `yaml:"password_file"`
	PasswordEnv  string `yaml:"password_env"`
	// Server is host:port; default the JID's domain, port 5222.
	Server string `yaml:"server"`
	// TLS is starttls (default), direct or none.
	TLS string `yaml:"tls"`
	// InsecureSkipVerify accepts any certificate: for test servers only.
	InsecureSkipVerify bool `yaml:"insecure_skip_verify"`
}

// Load reads a config file strictly: unknown fields, wrong types and bad
// values are errors naming the file and line. An empty path returns the
// defaults.
func Load(path string) (Config, error) {
	var c Config
	if path != "" {
		data, err := os.ReadFile(path)
		if err != nil {
			return c, fmt.Errorf("reading config: %w", err)
		}
		dec := yaml.NewDecoder(bytes.NewReader(data))
		dec.KnownFields(true)
		// An empty file decodes as io.EOF: it is an empty config.
		if err := dec.Decode(&c); err != nil && !errors.Is(err, io.EOF) {
			return c, fmt.Errorf("%s: %w", path, cleanYAMLError(err))
		}
		if err := c.validate(path); err != nil {
			return c, err
		}
		// Absolute, so that workers started in other directories agree.
		dir, err := filepath.Abs(filepath.Dir(path))
		if err != nil {
			return c, fmt.Errorf("reading config: %w", err)
		}
		c.resolvePaths(dir)
	}
	return c, nil
}

func cleanYAMLError(err error) error {
	return errors.New(strings.TrimPrefix(err.Error(), "yaml: "))
}

func (c *Config) validate(path string) error {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s: %s", path, field, fmt.Sprintf(format, args...)))
	}
	for i, t := range c.AllowTypes {
		if !t.Valid() {
			bad(fmt.Sprintf("allow_types[%d]", i), "unknown hook type %q", t)
		}
	}
	if c.RunsKeep < 0 {
		bad("runs_keep", "must be positive (0 = the default, 10000)")
	}
	if c.RunsMaxAge < 0 {
		bad("runs_max_age", "must be positive (0 = the default, 720h)")
	}
	if c.EventsKeep < 0 {
		bad("events_keep", "must be positive (0 = the default, 10000)")
	}
	if c.EventsMaxAge < 0 {
		bad("events_max_age", "must be positive (0 = the default, 2160h)")
	}
	if c.APIListen != "" && c.APITokenFile == "" {
		bad("api_listen", "a TCP control API needs api_token_file")
	}
	for name, p := range c.Profiles {
		field := "profiles." + name
		j, err := jid.Parse(p.JID)
		switch {
		case p.JID == "":
			bad(field+".jid", "missing")
		case err != nil:
			bad(field+".jid", "malformed JID %q: %v", p.JID, err)
		case j.Localpart() == "":
			bad(field+".jid", "%q has no user part (want user@domain)", p.JID)
		}
		if p.PasswordFile == "" && p.PasswordEnv == "" {
			bad(field, "needs password_file or password_env")
		}
		if p.PasswordFile != "" && p.PasswordEnv != "" {
			bad(field, "password_file and password_env are exclusive")
		}
		if !slices.Contains([]string{"", TLSStartTLS, TLSDirect, TLSNone}, p.TLS) {
			bad(field+".tls", "unknown mode %q (want starttls, direct or none)", p.TLS)
		}
	}
	return errors.Join(errs...)
}

// resolvePaths makes relative paths in the file relative to its directory.
func (c *Config) resolvePaths(dir string) {
	abs := func(p *string) {
		if *p != "" && !filepath.IsAbs(*p) {
			*p = filepath.Join(dir, *p)
		}
	}
	abs(&c.DataDir)
	abs(&c.Socket)
	abs(&c.APITokenFile)
	if c.HooksRoot != "" {
		abs(&c.HooksRoot)
	}
	for i := range c.PythonPath {
		abs(&c.PythonPath[i])
	}
	for name, p := range c.Profiles {
		abs(&p.PasswordFile)
		c.Profiles[name] = p
	}
}

// ApplyEnv lets the environment override the file: HOOKCTL_DATA_DIR and
// HOOKCTL_SOCKET.
func (c *Config) ApplyEnv(getenv func(string) string) {
	if v := getenv("HOOKCTL_DATA_DIR"); v != "" {
		c.DataDir = v
	}
	if v := getenv("HOOKCTL_SOCKET"); v != "" {
		c.Socket = v
	}
}

// Defaults fills what is still unset.
func (c *Config) Defaults() {
	if c.DataDir == "" {
		c.DataDir = DefaultDataDir()
	}
	if c.Socket == "" {
		c.Socket = DefaultSocket(c.DataDir)
	}
	if len(c.AllowTypes) == 0 {
		c.AllowTypes = slices.Clone(hookctl.Types)
	}
	if c.DefaultTimeout == 0 {
		c.DefaultTimeout = hookctl.Duration(30 * time.Second)
	}
	if c.Python == "" {
		c.Python = "python3"
	}
	if c.RunsKeep == 0 {
		c.RunsKeep = 10000
	}
	if c.RunsMaxAge == 0 {
		c.RunsMaxAge = hookctl.Duration(720 * time.Hour)
	}
	if c.EventsKeep == 0 {
		c.EventsKeep = 10000
	}
	if c.EventsMaxAge == 0 {
		c.EventsMaxAge = hookctl.Duration(2160 * time.Hour)
	}
}

// Allowed reports whether hooks of type t may be created and run.
func (c *Config) Allowed(t hookctl.Type) bool { return slices.Contains(c.AllowTypes, t) }

// ProfileJIDs maps each profile to its bare JID, for the registry. It is
// nil when no profile is configured, so that the registry then accepts any
// profile (a backend without XMPP still keeps a registry).
func (c *Config) ProfileJIDs() map[string]string {
	if len(c.Profiles) == 0 {
		return nil
	}
	m := make(map[string]string, len(c.Profiles))
	for name, p := range c.Profiles {
		j, err := jid.Parse(p.JID)
		if err != nil {
			continue // validate reported it
		}
		m[name] = j.Bare().String()
	}
	return m
}

// Password reads the profile's password from its file or environment
// variable, trimming one trailing newline.
func (p Profile) Password(getenv func(string) string) (string, error) {
	if p.PasswordEnv != "" {
		v := getenv(p.PasswordEnv)
		if v == "" {
			return "", fmt.Errorf("password_env: variable %s is empty or unset", p.PasswordEnv)
		}
		return v, nil
	}
	b, err := os.ReadFile(p.PasswordFile)
	if err != nil {
		return "", fmt.Errorf("password_file: %w", err)
	}
	return strings.TrimSuffix(strings.TrimSuffix(string(b), "\n"), "\r"), nil
}
