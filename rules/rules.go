// Package rules is the one definition of a valid hook: the limits, the
// checks of every field, the normalisation of its identity, and the compile
// checks of its filter and expr program. Every door calls it: hooks files
// (spec), the CLI and the control API (through the registry), the registry
// before it commits, and the backend when it loads its own store. The same
// hook gets the same verdict and the same message wherever it comes from.
package rules

import (
	"fmt"
	"maps"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"hookctl.dev/hookctl"
	"hookctl.dev/hookctl/filter"
	"hookctl.dev/hookctl/runner/exprrunner"
)

// Limits bound what a hook may declare. There is one set, DefaultLimits;
// it is a type so that tests and messages name each bound.
type Limits struct {
	MaxTimeout     time.Duration // a run's timeout
	MaxConcurrency int           // overlapping runs (and Python workers)
	MaxProfile     int           // bytes of a profile name
	MaxService     int           // bytes of a service JID (RFC 7622: 3071)
	MaxNode        int           // bytes of a node name
	MaxArg         int           // bytes of the arg (a python_code body)
	MaxName        int           // bytes of a hook or set name
	MaxArgs        int           // exec arguments
	MaxArgsBytes   int           // bytes of all exec arguments together
	MaxHeaders     int           // http headers
	MaxHeaderBytes int           // bytes of one header value
	MaxEnv         int           // env entries plus secrets
	MaxEnvBytes    int           // bytes of all env names and values together
	MaxSource      int           // bytes of the recorded source
}

// DefaultLimits are the limits of every door.
func DefaultLimits() Limits {
	return Limits{
		MaxTimeout:     24 * time.Hour,
		MaxConcurrency: 64,
		MaxProfile:     256,
		MaxService:     3071,
		MaxNode:        1024,
		MaxArg:         16 << 10,
		MaxName:        253,
		MaxArgs:        256,
		MaxArgsBytes:   64 << 10,
		MaxHeaders:     64,
		MaxHeaderBytes: 8 << 10,
		MaxEnv:         64,
		MaxEnvBytes:    64 << 10,
		MaxSource:      4096,
	}
}

// Problem is one thing wrong with a hook: the field it is about (as named
// in hooks files, e.g. "timeout", "args[2]", "headers.X-Token") and what is
// wrong. Err, when set, is the underlying error (a *filter.Error carries
// the position inside an expression).
type Problem struct {
	Field   string
	Message string
	Err     error
}

// Problems is every problem of one hook; as an error it wraps
// hookctl.ErrInvalid.
type Problems []Problem

// Error lists the problems as "field: message; field: message".
func (ps Problems) Error() string {
	s := make([]string, len(ps))
	for i, p := range ps {
		s[i] = p.Field + ": " + p.Message
	}
	return strings.Join(s, "; ")
}

// Unwrap makes errors.Is(err, hookctl.ErrInvalid) hold.
func (ps Problems) Unwrap() error { return hookctl.ErrInvalid }

var (
	nameRE     = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]*$`)
	pyModuleRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$`)
)

// ValidVarName reports whether s can name an environment variable or a
// secret: an ASCII letter or '_', then letters, digits or '_'. A secret is
// given to hooks as the variable of its name, so both follow one rule.
func ValidVarName(s string) bool {
	if s == "" || '0' <= s[0] && s[0] <= '9' {
		return false
	}
	for _, c := range []byte(s) {
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_') {
			return false
		}
	}
	return true
}

// ReservedEnvPrefix starts the variables the backend sets for each event
// (HOOK_NODE, HOOK_ITEM_ID, …): a hook may not declare its own.
const ReservedEnvPrefix = "HOOK_"

// ValidName reports whether s is a valid hook or set name: letters, digits,
// '.', '_' and '-', starting with a letter or digit.
func ValidName(s string) bool { return nameRE.MatchString(s) }

// Check returns every problem of h as declared, or nil. It needs no I/O:
// whether a script exists is the runner's check, on the backend's host.
// Service may be empty (own PEP) or a bare JID in any case; see Normalise.
func Check(h hookctl.Hook, lim Limits) error {
	c := checker{lim: lim}
	c.key(h)
	c.attributes(h)
	c.code(h)
	if len(c.ps) == 0 {
		return nil
	}
	return c.ps
}

// Validate is Check with the hook named, as every door reports it:
// "hook set/name: field: message; …" (or the key for unnamed hooks).
func Validate(h hookctl.Hook) error {
	if err := Check(h, DefaultLimits()); err != nil {
		return fmt.Errorf("hook %s: %w", IDOf(h), err)
	}
	return nil
}

type checker struct {
	lim Limits
	ps  Problems
}

func (c *checker) add(field, format string, args ...any) {
	c.ps = append(c.ps, Problem{Field: field, Message: fmt.Sprintf(format, args...)})
}

func (c *checker) key(h hookctl.Hook) {
	switch {
	case h.Profile == "":
		c.add("profile", "is required")
	case !oneLine(h.Profile) || strings.ContainsRune(h.Profile, ' '):
		c.add("profile", "%q is not a profile name", h.Profile)
	case len(h.Profile) > c.lim.MaxProfile:
		c.add("profile", "is %d bytes, at most %d", len(h.Profile), c.lim.MaxProfile)
	}
	if h.Service != "" {
		if len(h.Service) > c.lim.MaxService {
			c.add("service", "is %d bytes, at most %d", len(h.Service), c.lim.MaxService)
		} else if _, err := BareJID(h.Service); err != nil {
			c.add("service", "%v", err)
		}
	}
	switch {
	case h.Node == "":
		c.add("node", "is required")
	case !oneLine(h.Node):
		c.add("node", "must be one line of valid UTF-8 without control characters")
	case len(h.Node) > c.lim.MaxNode:
		c.add("node", "is %d bytes, at most %d", len(h.Node), c.lim.MaxNode)
	}
	if !h.Type.Valid() {
		c.add("type", "unknown hook type %q (want one of %s)", h.Type, typeNames())
	}
	switch {
	case h.Arg == "":
		c.add("arg", "is required")
	case len(h.Arg) > c.lim.MaxArg:
		c.add("arg", "is %d bytes, at most %d (put long code in a python_file)", len(h.Arg), c.lim.MaxArg)
	case !utf8.ValidString(h.Arg):
		c.add("arg", "is not valid UTF-8")
	}
}

func (c *checker) attributes(h hookctl.Hook) {
	if h.Owner != "" && (!ValidName(h.Owner) || len(h.Owner) > c.lim.MaxName) {
		c.add("set", "%q is not a simple name (letters, digits, '.', '_', '-')", h.Owner)
	}
	// Names were free labels before they became identities: any one line
	// is kept valid, so that no stored hook is quarantined for its name.
	if h.Name != "" && (!oneLine(h.Name) || len(h.Name) > c.lim.MaxName) {
		c.add("name", "%q is not a name (one line without control characters, at most %d bytes)", h.Name, c.lim.MaxName)
	}
	c.events(h.Events)
	switch {
	case h.Timeout < 0:
		c.add("timeout", "must be positive (got %s)", shortDuration(time.Duration(h.Timeout)))
	case time.Duration(h.Timeout) > c.lim.MaxTimeout:
		c.add("timeout", "%s is longer than %s", shortDuration(time.Duration(h.Timeout)), shortDuration(c.lim.MaxTimeout))
	}
	if h.Concurrency < 0 || h.Concurrency > c.lim.MaxConcurrency {
		c.add("concurrency", "must be between 1 and %d (got %d)", c.lim.MaxConcurrency, h.Concurrency)
	}
	switch h.Catchup {
	case hookctl.CatchupNew, hookctl.CatchupAll, hookctl.CatchupNone:
	default:
		c.add("catchup", "unknown catch-up policy %q (want new, all or none)", h.Catchup)
	}
	if _, err := hookctl.ParseMemory(h.Memory); err != nil {
		c.add("memory", "bad memory limit %q (want e.g. \"512MiB\", \"2GiB\" (64MiB to 1TiB), or \"unlimited\")", h.Memory)
	}
	c.args(h)
	c.headers(h)
	c.env(h)
	if len(h.Source) > c.lim.MaxSource {
		c.add("source", "is %d bytes, at most %d", len(h.Source), c.lim.MaxSource)
	}
}

func (c *checker) events(evs []hookctl.EventKind) {
	for i, e := range evs {
		switch {
		case !e.Valid():
			c.add(fmt.Sprintf("events[%d]", i), "unknown event %q (want publish, retract, purge or delete)", e)
		case slices.Contains(evs[:i], e):
			c.add(fmt.Sprintf("events[%d]", i), "%q is listed twice", e)
		}
	}
}

func (c *checker) args(h hookctl.Hook) {
	if len(h.Args) == 0 {
		return
	}
	if h.Type != hookctl.TypeExec && h.Type.Valid() {
		c.add("args", "only exec hooks take args (this hook is %s)", h.Type)
	}
	total := 0
	for i, a := range h.Args {
		total += len(a)
		if strings.IndexByte(a, 0) >= 0 || !utf8.ValidString(a) {
			c.add(fmt.Sprintf("args[%d]", i), "must be valid UTF-8 without NUL")
		}
	}
	if len(h.Args) > c.lim.MaxArgs || total > c.lim.MaxArgsBytes {
		c.add("args", "%d arguments of %d bytes, at most %d arguments of %d bytes", len(h.Args), total, c.lim.MaxArgs, c.lim.MaxArgsBytes)
	}
}

func (c *checker) headers(h hookctl.Hook) {
	if len(h.Headers) == 0 {
		return
	}
	if h.Type != hookctl.TypeHTTP && h.Type.Valid() {
		c.add("headers", "only http hooks take headers (this hook is %s)", h.Type)
	}
	if len(h.Headers) > c.lim.MaxHeaders {
		c.add("headers", "%d headers, at most %d", len(h.Headers), c.lim.MaxHeaders)
	}
	names := slices.Sorted(func(yield func(string) bool) {
		for k := range h.Headers {
			if !yield(k) {
				return
			}
		}
	})
	for _, name := range names {
		v := h.Headers[name]
		switch {
		case !ValidHeaderName(name):
			c.add("headers."+name, "%q is not a valid header name", name)
		case strings.ContainsAny(v, "\r\n\x00"):
			c.add("headers."+name, "header values must be one line")
		case len(v) > c.lim.MaxHeaderBytes:
			c.add("headers."+name, "is %d bytes, at most %d", len(v), c.lim.MaxHeaderBytes)
		}
	}
}

// code checks what is compiled or resolved: the arg for its type and the
// filter, with the runtime's own compilers.
func (c *checker) code(h hookctl.Hook) {
	if h.Filter != "" {
		if _, err := filter.Compile(h.Filter); err != nil {
			c.ps = append(c.ps, Problem{Field: "filter", Message: err.Error(), Err: err})
		}
	}
	if h.Arg == "" || len(h.Arg) > c.lim.MaxArg {
		return
	}
	switch h.Type {
	case hookctl.TypePythonFile, hookctl.TypeExec:
		if msg := checkPath(h.Arg); msg != "" {
			c.add("arg", "%s", msg)
		}
	case hookctl.TypePython:
		if !pyModuleRE.MatchString(h.Arg) {
			c.add("arg", "%q is not a Python module name (e.g. \"package.module\")", h.Arg)
		}
	case hookctl.TypeExpr:
		if err := exprrunner.CheckProgram(h.Arg); err != nil {
			c.ps = append(c.ps, Problem{Field: "arg", Message: exprMessage(err), Err: err})
		}
	case hookctl.TypeHTTP:
		u, err := url.Parse(h.Arg)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			c.add("arg", "%q is not an http or https URL", h.Arg)
		}
	}
}

// exprMessage strips the "invalid: expr program: " prefix the runner's
// error carries for its own callers.
func exprMessage(err error) string {
	var fe *filter.Error
	if asFilterError(err, &fe) {
		return "expr program: " + fe.Message
	}
	return strings.TrimPrefix(err.Error(), hookctl.ErrInvalid.Error()+": ")
}

// shortDuration prints d without trailing zero units: "25h", not
// "25h0m0s".
func shortDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

func oneLine(s string) bool {
	return utf8.ValidString(s) && !strings.ContainsFunc(s, func(r rune) bool { return r < ' ' || r == 0x7f })
}

func typeNames() string {
	names := make([]string, len(hookctl.Types))
	for i, t := range hookctl.Types {
		names[i] = string(t)
	}
	return strings.Join(names, ", ")
}

// ValidHeaderName reports whether s is an HTTP header name, a token (RFC
// 9110): the one rule for http hooks' and alert webhooks' headers.
func ValidHeaderName(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range []byte(s) {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0:
		default:
			return false
		}
	}
	return true
}

// env checks a hook's own environment: literal env values and the names
// of the backend's secrets, given only to the types that have an
// environment (exec and Python).
func (c *checker) env(h hookctl.Hook) {
	if len(h.Env) == 0 && len(h.Secrets) == 0 {
		return
	}
	if !hasEnvironment(h.Type) && h.Type.Valid() {
		what := "env"
		if len(h.Env) == 0 {
			what = "secrets"
		}
		hint := ""
		if h.Type == hookctl.TypeHTTP {
			hint = `; an http hook names secrets in header values as "${NAME}"`
		}
		c.add(what, "only exec and Python hooks have an environment (this hook is %s)%s", h.Type, hint)
	}
	total := 0
	for _, name := range slices.Sorted(maps.Keys(h.Env)) {
		v := h.Env[name]
		total += len(name) + len(v)
		field := "env." + name
		switch {
		case !ValidVarName(name):
			c.add(field, "%q is not a variable name (letters, digits and '_', not starting with a digit)", name)
		case strings.HasPrefix(name, ReservedEnvPrefix):
			c.add(field, "variables starting with %s are set by the backend for each event", ReservedEnvPrefix)
		case strings.IndexByte(v, 0) >= 0 || !utf8.ValidString(v):
			c.add(field, "must be valid UTF-8 without NUL")
		}
	}
	for i, name := range h.Secrets {
		field := fmt.Sprintf("secrets[%d]", i)
		total += len(name)
		switch {
		case !ValidVarName(name):
			c.add(field, "%q is not a secret name (letters, digits and '_', not starting with a digit)", name)
		case strings.HasPrefix(name, ReservedEnvPrefix):
			c.add(field, "variables starting with %s are set by the backend for each event", ReservedEnvPrefix)
		case slices.Contains(h.Secrets[:i], name):
			c.add(field, "%q is listed twice", name)
		default:
			if _, ok := h.Env[name]; ok {
				c.add(field, "%q is also set in env: a variable comes from one place", name)
			}
		}
	}
	if n := len(h.Env) + len(h.Secrets); n > c.lim.MaxEnv || total > c.lim.MaxEnvBytes {
		c.add("env", "%d variables of %d bytes, at most %d variables of %d bytes", n, total, c.lim.MaxEnv, c.lim.MaxEnvBytes)
	}
}

// hasEnvironment reports whether hooks of type t run as processes that
// receive environment variables.
func hasEnvironment(t hookctl.Type) bool {
	switch t {
	case hookctl.TypeExec, hookctl.TypePython, hookctl.TypePythonFile, hookctl.TypePythonCode:
		return true
	}
	return false
}
