package config

import (
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"slices"
	"strings"
	"sync"

	"hookctl.dev/hookctl"
)

// maxSecretFile bounds what a password or token file may hold.
const maxSecretFile = 64 << 10

// ReadSecretFile reads a password or token file, refusing one that group
// or others may read (like ssh with a private key: a secret that others
// can read is no longer a secret, and the mistake is better caught at
// start) and one that is not a regular file. what names the setting in
// the errors, e.g. "password_file".
func ReadSecretFile(what, path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("%s: %w", what, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return "", fmt.Errorf("%s: %w", what, err)
	}
	if !fi.Mode().IsRegular() {
		return "", fmt.Errorf("%s %s is not a regular file", what, path)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return "", fmt.Errorf("%s %s is readable or writable by group or others (mode %04o): make it private (chmod 600 %s)",
			what, path, perm, path)
	}
	b, err := io.ReadAll(io.LimitReader(f, maxSecretFile+1))
	if err != nil {
		return "", fmt.Errorf("%s: %w", what, err)
	}
	if len(b) > maxSecretFile {
		return "", fmt.Errorf("%s %s is larger than %d bytes", what, path, maxSecretFile)
	}
	return string(b), nil
}

// Secret is one value that hooks may name (an http hook's header as
// ${NAME}): from a private file or from the backend's environment.
// Nothing else of the backend's environment is reachable from a hook.
type Secret struct {
	File string `yaml:"file"`
	Env  string `yaml:"env"`
}

// minSecretLen is the shortest secret value accepted: redacting shorter
// strings would garble every text they occur in by chance.
const minSecretLen = 4

// Secrets reads the secrets a config declares and remembers every value
// read, so that Redact hides them wherever they show (run output, errors,
// status). Safe for concurrent use.
type Secrets struct {
	decl   map[string]Secret
	getenv func(string) string
	mu     sync.Mutex
	seen   map[string]struct{}
}

// Secrets returns the reader of c's secrets; getenv reads env secrets.
func (c *Config) Secrets(getenv func(string) string) *Secrets {
	return &Secrets{decl: c.SecretDecls, getenv: getenv, seen: map[string]struct{}{}}
}

// Has reports whether name is declared.
func (s *Secrets) Has(name string) bool { _, ok := s.decl[name]; return ok }

// Read returns the current value of secret name, read afresh (a rotated
// file takes effect at the next run). Errors never contain the value.
func (s *Secrets) Read(name string) (string, error) {
	d, ok := s.decl[name]
	if !ok {
		return "", fmt.Errorf("secret %s is not declared in the backend's config (secrets:)", name)
	}
	var v string
	if d.Env != "" {
		v = s.getenv(d.Env)
	} else {
		b, err := ReadSecretFile("secrets."+name+".file", d.File)
		if err != nil {
			return "", err
		}
		v = strings.TrimSuffix(strings.TrimSuffix(b, "\n"), "\r")
	}
	if len(v) < minSecretLen {
		return "", fmt.Errorf("secret %s is empty or shorter than %d bytes", name, minSecretLen)
	}
	s.mu.Lock()
	s.seen[v] = struct{}{}
	s.mu.Unlock()
	return v, nil
}

// ReadAll reads every secret once, so that a missing one stops the
// backend at start rather than failing runs later.
func (s *Secrets) ReadAll() error {
	var errs []error
	for _, name := range slices.Sorted(maps.Keys(s.decl)) {
		if _, err := s.Read(name); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Redact replaces every secret value read so far with Redacted.
func (s *Secrets) Redact(text string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	for v := range s.seen {
		if strings.Contains(text, v) {
			text = strings.ReplaceAll(text, v, hookctl.Redacted)
		}
	}
	return text
}

// ExpandSecrets replaces each ${NAME} in s with lookup(NAME): the one
// reading of ${NAME} in http hooks' and alert webhooks' headers. A "$" not
// followed by "{" is kept as is; a bad or unclosed reference is an error.
// Errors name the secret, never its value.
func ExpandSecrets(s string, lookup func(string) (string, error)) (string, error) {
	if !strings.Contains(s, "${") {
		return s, nil // the common case, without a copy
	}
	var b strings.Builder
	for {
		i := strings.Index(s, "${")
		if i < 0 {
			b.WriteString(s)
			return b.String(), nil
		}
		b.WriteString(s[:i])
		end := strings.IndexByte(s[i:], '}')
		if end < 0 {
			return "", errors.New("unclosed ${")
		}
		name := s[i+2 : i+end]
		if !ValidSecretName(name) {
			return "", fmt.Errorf("bad variable name %q in ${...}", name)
		}
		v, err := lookup(name)
		if err != nil {
			return "", err
		}
		b.WriteString(v)
		s = s[i+end+1:]
	}
}
