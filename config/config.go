package config

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
	"mellium.im/xmpp/jid"

	"hookctl.dev/hookctl"
	"hookctl.dev/hookctl/rules"
)

// Config is the backend's configuration. The zero value plus Defaults is
// the embedded default: every hook type allowed, no XMPP profile, data
// under DefaultDataDir.
type Config struct {
	// DataDir holds the store (hooks.db) and, by default, the socket.
	DataDir string `yaml:"data_dir"`
	// Socket is the control API's Unix socket.
	Socket string `yaml:"socket"`
	// MetricsHookNames adds hookctl_hook_runs_total{set,name,outcome},
	// one series per named hook and outcome (off: bounded cardinality).
	MetricsHookNames bool `yaml:"metrics_hook_names"`
	// SocketGroup, when set, makes the socket 0660 and owned by this group,
	// so that operators in it can use the CLI (default: 0600, the
	// backend's user only).
	SocketGroup string `yaml:"socket_group"`
	// Listen serves /healthz, /readyz and /metrics over HTTP ("" = off).
	Listen string `yaml:"listen"`
	// APIListen serves the control API over TCP too; needs APITokenFile.
	APIListen string `yaml:"api_listen"`
	// APITokenFile holds the bearer token that TCP clients must send.
	APITokenFile string `yaml:"api_token_file"`
	// APITLSCert and APITLSKey serve the TCP control API over TLS; a
	// non-loopback APIListen needs them, or APIInsecure.
	APITLSCert string `yaml:"api_tls_cert"`
	APITLSKey  string `yaml:"api_tls_key"`
	// APIInsecure allows a non-loopback APIListen in plain HTTP (behind a
	// TLS-terminating proxy on a private network, say).
	APIInsecure bool `yaml:"api_insecure"`
	// AllowTypes are the hook types the backend accepts and runs.
	AllowTypes []hookctl.Type `yaml:"allow_types"`
	// AllowInsecureScripts runs python_file scripts and exec programs that
	// others could change (group/world-writable, or owned by another
	// user); off by default, for containers where one user owns all.
	AllowInsecureScripts bool `yaml:"allow_insecure_scripts"`
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
	// PythonMemory bounds each Python worker's address space (RLIMIT_AS),
	// e.g. "2GiB" (the default) or "unlimited"; a hook's memory overrides it.
	PythonMemory string `yaml:"python_memory"`
	// Profiles are the XMPP accounts, by profile name.
	Profiles map[string]Profile `yaml:"profiles"`
	// SecretDecls are the secrets hooks may name as ${NAME} (http header
	// values), by name; see Secrets.
	SecretDecls map[string]Secret `yaml:"secrets"`
	// MaxPublishBytes bounds a published item's payload; 0 means
	// DefaultMaxPublishBytes. See CheckPublish.
	MaxPublishBytes int `yaml:"max_publish_bytes"`
	// RunsKeep bounds the run history kept in the store (default 10000
	// runs); RunsMaxAge forgets runs older than this (default 720h).
	RunsKeep   int              `yaml:"runs_keep"`
	RunsMaxAge hookctl.Duration `yaml:"runs_max_age"`
	// EventsKeep and EventsMaxAge bound the audit trail of registry
	// changes the same way (default 10000 events, 2160h).
	EventsKeep   int              `yaml:"events_keep"`
	EventsMaxAge hookctl.Duration `yaml:"events_max_age"`
	// Alerts are where and how often failures are told (alerts.go).
	Alerts Alerts `yaml:"alerts"`
	// Cluster, when it has endpoints, shares the registry with other
	// backends on etcd (cluster.go).
	Cluster Cluster `yaml:"cluster"`
}

// DefaultMaxPublishBytes is below the usual server stanza limits
// (Prosody's c2s_stanza_size_limit is 256 KiB, ejabberd's max_stanza_size
// 256 KiB to 64 KiB less the envelope), leaving room for the IQ, PubSub and
// item elements around the payload and for escaping.
const DefaultMaxPublishBytes = 192 << 10

// maxPublishBytesLimit bounds max_publish_bytes itself: no server takes
// stanzas this large, and the API's own body limit is 1 MiB.
const maxPublishBytesLimit = 900 << 10

// CheckPublish refuses a payload over max_publish_bytes before it is sent:
// a stanza over the server's limit makes the server close the whole
// session, dropping every subscription with it. Every publish (the API's,
// a hook's) goes through it.
func (c *Config) CheckPublish(payload string) error {
	limit := c.MaxPublishBytes
	if limit <= 0 {
		limit = DefaultMaxPublishBytes
	}
	if len(payload) > limit {
		return fmt.Errorf("%w: payload of %d bytes is over max_publish_bytes (%d): the XMPP server would "+
			"close the session for a stanza over its limit", hookctl.ErrInvalid, len(payload), limit)
	}
	return nil
}

// DefaultPythonMemory is python_memory when the config sets none.
const DefaultPythonMemory = "2GiB"

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
	// InsecureSkipVerify accepts any certificate: for test servers only,
	// never in production.
	InsecureSkipVerify bool `yaml:"insecure_skip_verify"`
	// CAFile is a PEM file of the CAs that verify the server's
	// certificate; default the system's pool.
	CAFile string `yaml:"ca_file"`
	// Resource is the XMPP resource to bind; default hookctl- and a hash
	// of the host name and data directory (xmppsession.ResourceFor), so
	// that two backends on one account do not take each other's place.
	Resource string `yaml:"resource"`
	// RequestTimeout bounds each request to the server (publish,
	// subscribe, …); default 30s.
	RequestTimeout hookctl.Duration `yaml:"request_timeout"`
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
		if err := decodeFile(path, data, &c); err != nil {
			return c, err
		}
		if err := checkAllowTypesGiven(data, c.AllowTypes); err != nil {
			return c, fmt.Errorf("%s: %w", path, err)
		}
		if err := errors.Join(c.validate(path), c.checkAlerts(path, data), c.checkCluster(path, data)); err != nil {
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

// checkAllowTypesGiven refuses allow_types given but empty ([] or null):
// left out, it allows every type, so an empty list reads both as "none"
// and as "all"; neither guess is safe, and a backend that may run no hook
// at all has no use.
func checkAllowTypesGiven(data []byte, types []hookctl.Type) error {
	if len(types) > 0 {
		return nil
	}
	var probe struct {
		AllowTypes yaml.Node `yaml:"allow_types"`
	}
	if err := yaml.Unmarshal(data, &probe); err != nil || probe.AllowTypes.Kind == 0 {
		return nil
	}
	return fmt.Errorf("allow_types: line %d: an empty list is ambiguous: list the hook types to allow, "+
		"or leave allow_types out to allow every type", probe.AllowTypes.Line)
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
	if _, err := hookctl.ParseMemory(c.PythonMemory); err != nil {
		bad("python_memory", "%v", err)
	}
	if c.MaxPublishBytes < 0 || c.MaxPublishBytes > maxPublishBytesLimit {
		bad("max_publish_bytes", "%d is out of range (1 to %d; 0 or unset: %d)", c.MaxPublishBytes, maxPublishBytesLimit, DefaultMaxPublishBytes)
	}
	if max := rules.DefaultLimits().MaxTimeout; time.Duration(c.DefaultTimeout) > max {
		bad("default_timeout", "%s is longer than a hook's timeout may be (%s)", time.Duration(c.DefaultTimeout), max)
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
	if (c.APITLSCert == "") != (c.APITLSKey == "") {
		bad("api_tls_cert", "api_tls_cert and api_tls_key go together")
	}
	if c.APIListen != "" {
		if err := checkAPIListen(c.APIListen, c.APITLSCert != "", c.APIInsecure); err != nil {
			bad("api_listen", "%v", err)
		}
	}
	for name, sd := range c.SecretDecls {
		field := "secrets." + name
		switch {
		case !ValidSecretName(name):
			bad(field, "name must be letters, digits and _, not starting with a digit")
		case (sd.File == "") == (sd.Env == ""):
			bad(field, "needs exactly one of file or env")
		}
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
		if rt := time.Duration(p.RequestTimeout); rt != 0 && (rt < 100*time.Millisecond || rt > 10*time.Minute) {
			bad(field+".request_timeout", "%v is out of range (100ms to 10m)", rt)
		}
		if p.Server != "" {
			if err := checkHostPort(p.Server); err != nil {
				bad(field+".server", "%v", err)
			}
		}
		if !slices.Contains([]string{"", TLSStartTLS, TLSDirect, TLSNone}, p.TLS) {
			bad(field+".tls", "unknown mode %q (want starttls, direct or none)", p.TLS)
		}
		if p.CAFile != "" && (p.TLS == TLSNone || p.InsecureSkipVerify) {
			bad(field+".ca_file", "is only used to verify a certificate: not with tls: none or insecure_skip_verify")
		}
	}
	return errors.Join(errs...)
}

// ValidSecretName reports whether s can be a secret's name: the rule of
// environment variable names (rules.ValidVarName), as a secret is given to
// hooks as the variable of its name.
func ValidSecretName(s string) bool { return rules.ValidVarName(s) }

// checkAPIListen refuses a TCP control API reachable from other hosts in
// plain HTTP: its bearer token and every hook would cross the network in
// clear. Loopback addresses (and localhost) are always allowed.
func checkAPIListen(addr string, tls, insecure bool) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("%q: want HOST:PORT (%v)", addr, err)
	}
	if err := checkHostPortNumber(addr); err != nil {
		return err
	}
	if tls || insecure || host == "localhost" {
		return nil
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsLoopback() {
		return nil
	}
	what := "a non-loopback address"
	if host == "" || host == "0.0.0.0" || host == "::" {
		what = "every interface"
	}
	return fmt.Errorf("%q is %s: serving the control API there in plain HTTP sends its token in clear; "+
		"set api_tls_cert and api_tls_key, or api_insecure: true to mean it, or listen on 127.0.0.1", addr, what)
}

// checkHostPortNumber checks that addr's port is a number from 0 to 65535
// (0: any free port).
func checkHostPortNumber(addr string) error {
	_, port, _ := net.SplitHostPort(addr)
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		return fmt.Errorf("%q: port %q is not a number from 0 to 65535", addr, port)
	}
	return nil
}

// checkHostPort checks a host:port address: a host, and a port from 1 to
// 65535 (a number; service names are not looked up).
func checkHostPort(addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("%q: want HOST:PORT (%v)", addr, strings.TrimPrefix(err.Error(), "address "+addr+": "))
	}
	n, err := strconv.Atoi(port)
	switch {
	case host == "":
		return fmt.Errorf("%q: no host", addr)
	case err != nil || n < 1 || n > 65535:
		return fmt.Errorf("%q: port %q is not a number from 1 to 65535", addr, port)
	}
	return nil
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
	abs(&c.APITLSCert)
	abs(&c.APITLSKey)
	for i := range c.PythonPath {
		abs(&c.PythonPath[i])
	}
	for name, sd := range c.SecretDecls {
		abs(&sd.File)
		c.SecretDecls[name] = sd
	}
	abs(&c.Cluster.CAFile)
	abs(&c.Cluster.CertFile)
	abs(&c.Cluster.KeyFile)
	abs(&c.Cluster.PasswordFile)
	for name, p := range c.Profiles {
		abs(&p.PasswordFile)
		abs(&p.CAFile)
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
	if c.PythonMemory == "" {
		c.PythonMemory = DefaultPythonMemory
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
	b, err := ReadSecretFile("password_file", p.PasswordFile)
	if err != nil {
		return "", err
	}
	pw := strings.TrimSuffix(strings.TrimSuffix(b, "\n"), "\r")
	if pw == "" {
		return "", fmt.Errorf("password_file %s is empty", p.PasswordFile)
	}
	return pw, nil
}
