package config

import (
	"os"
	"path/filepath"
)

// DefaultDataDir is where the backend keeps its store and socket when
// neither --data-dir nor the config says: $HOOKCTL_DATA_DIR, else
// $XDG_STATE_HOME/hookctl, else ~/.local/state/hookctl.
func DefaultDataDir() string {
	if d := os.Getenv("HOOKCTL_DATA_DIR"); d != "" {
		return d
	}
	if d := os.Getenv("XDG_STATE_HOME"); d != "" {
		return filepath.Join(d, "hookctl")
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return filepath.Join(os.TempDir(), "hookctl")
	}
	return filepath.Join(home, ".local", "state", "hookctl")
}

// DefaultSocket is the control socket inside dataDir.
func DefaultSocket(dataDir string) string { return filepath.Join(dataDir, "hookctl.sock") }

// SystemConfigFile is the config read when neither --config nor
// HOOKCTL_CONFIG names one and it exists: the packaged location.
const SystemConfigFile = "/etc/hookctl/config.yaml"

// Find returns the config file to read: flagValue, else $HOOKCTL_CONFIG,
// else SystemConfigFile when it exists, else "" (the embedded defaults).
// The backend and the CLI find it alike, so that the CLI dials the socket
// the backend's config names.
func Find(flagValue string, getenv func(string) string) string {
	if flagValue != "" {
		return flagValue
	}
	if v := getenv("HOOKCTL_CONFIG"); v != "" {
		return v
	}
	if _, err := os.Stat(SystemConfigFile); err == nil {
		return SystemConfigFile
	}
	return ""
}
