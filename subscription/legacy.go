package subscription

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"

	"hookctl.dev/hookctl/registry"
)

// LegacyFile is where versions before the store kept the subscriptions
// hookctl made: a JSON array of {"Service", "Node"} per profile.
func LegacyFile(dataDir, profile string) string {
	return filepath.Join(dataDir, "subscriptions", profile+".json")
}

// importLegacy moves the legacy file's subscriptions into the store, then
// removes the file: a crash in between imports it again, which is harmless.
func (m *Manager) importLegacy() error {
	path := m.opts.LegacyFile
	if path == "" {
		return nil
	}
	b, err := os.ReadFile(path)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("reading subscriptions: %w", err)
	}
	var refs []nodeRef
	if err := json.Unmarshal(b, &refs); err != nil {
		return fmt.Errorf("reading subscriptions %s: %w", path, err)
	}
	out := make([]registry.NodeRef, 0, len(refs))
	for _, r := range refs {
		out = append(out, m.ref(r))
	}
	if err := m.opts.Store.AddOwnSubscriptions(out...); err != nil {
		return err
	}
	if err := os.Remove(path); err != nil {
		return fmt.Errorf("removing imported subscriptions file: %w", err)
	}
	_ = os.Remove(filepath.Dir(path)) // only when empty
	m.log.Info("subscriptions imported into the store", "file", path, "count", len(out))
	return nil
}
