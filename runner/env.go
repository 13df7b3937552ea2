package runner

import (
	"fmt"
	"maps"
	"slices"

	"hookctl.dev/hookctl"
)

// SecretSource is the allow-list of the secrets hooks may name, and their
// values: the backend's config.Secrets, which also remembers each value
// read so that it is redacted wherever it shows.
type SecretSource interface {
	Has(name string) bool
	Read(name string) (string, error)
}

// HookEnv returns base followed by h's own environment: its literal Env
// (sorted by name, so the order is stable) and then each secret it names,
// read now from secrets. Later entries win over base (os/exec keeps the
// last of duplicates), so a hook may set its own PATH. The rules have
// checked the names; an error never contains a secret's value.
func HookEnv(base []string, h hookctl.Hook, secrets SecretSource) ([]string, error) {
	if len(h.Env) == 0 && len(h.Secrets) == 0 {
		return base, nil
	}
	env := make([]string, 0, len(base)+len(h.Env)+len(h.Secrets))
	env = append(env, base...)
	for _, name := range slices.Sorted(maps.Keys(h.Env)) {
		env = append(env, name+"="+h.Env[name])
	}
	for _, name := range h.Secrets {
		if secrets == nil {
			return nil, fmt.Errorf("secret %s: this backend declares no secrets", name)
		}
		v, err := secrets.Read(name)
		if err != nil {
			return nil, err
		}
		env = append(env, name+"="+v)
	}
	return env, nil
}

// CheckSecrets returns an *UndeclaredSecretError for the first secret h
// names that secrets does not declare, or nil: a hook naming an undeclared
// secret is refused when it is created or validated, not when it first
// runs.
func CheckSecrets(h hookctl.Hook, secrets SecretSource) error {
	for i, name := range h.Secrets {
		if secrets == nil || !secrets.Has(name) {
			return &UndeclaredSecretError{Index: i, Name: name}
		}
	}
	return nil
}

// UndeclaredSecretError says a hook names a secret the backend's config
// does not declare. Callers add the hook's name and hookctl.ErrInvalid.
type UndeclaredSecretError struct {
	Index int    // in the hook's Secrets
	Name  string // the secret named
}

// Field names the field in hooks files' terms, e.g. "secrets[1]".
func (e *UndeclaredSecretError) Field() string { return fmt.Sprintf("secrets[%d]", e.Index) }

// Reason says what is wrong, without the field.
func (e *UndeclaredSecretError) Reason() string {
	return fmt.Sprintf("%s is not declared in the backend's config (secrets: {%s: {file: …}} or {env: …}); "+
		"hooks receive only declared secrets, never the backend's environment", e.Name, e.Name)
}

func (e *UndeclaredSecretError) Error() string { return e.Field() + ": " + e.Reason() }
