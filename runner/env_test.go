package runner

import (
	"errors"
	"slices"
	"testing"

	"hookctl.dev/hookctl"
)

type mapSecrets map[string]string

func (m mapSecrets) Has(name string) bool { _, ok := m[name]; return ok }

func (m mapSecrets) Read(name string) (string, error) {
	v, ok := m[name]
	if !ok {
		return "", errors.New("not declared")
	}
	return v, nil
}

func TestHookEnv(t *testing.T) {
	h := hookctl.Hook{Env: map[string]string{"B": "2", "A": "1", "PATH": "/opt/bin"}, Secrets: []string{"TOKEN"}}
	got, err := HookEnv([]string{"PATH=/bin"}, h, mapSecrets{"TOKEN": "s3cret"})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"PATH=/bin", "A=1", "B=2", "PATH=/opt/bin", "TOKEN=s3cret"}
	if !slices.Equal(got, want) {
		t.Errorf("HookEnv = %q, want %q", got, want)
	}
	if _, err := HookEnv(nil, hookctl.Hook{Secrets: []string{"GONE"}}, mapSecrets{}); err == nil {
		t.Error("HookEnv with an unreadable secret: no error")
	}
	if _, err := HookEnv(nil, hookctl.Hook{Secrets: []string{"X"}}, nil); err == nil {
		t.Error("HookEnv with no secrets declared: no error")
	}
}

func TestCheckSecrets(t *testing.T) {
	h := hookctl.Hook{Secrets: []string{"A", "B"}}
	if err := CheckSecrets(h, mapSecrets{"A": "x", "B": "y"}); err != nil {
		t.Errorf("declared: %v", err)
	}
	var ue *UndeclaredSecretError
	if err := CheckSecrets(h, mapSecrets{"A": "x"}); !errors.As(err, &ue) || ue.Field() != "secrets[1]" || ue.Name != "B" {
		t.Errorf("undeclared B: %v, want secrets[1] B", err)
	}
}
