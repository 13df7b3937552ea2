package hookctl

import (
	"fmt"
	"strconv"
	"strings"
)

// Bounds of a memory limit (Hook.Memory, the backend's python_memory).
const (
	// MinMemory is below what a python3 worker needs to start.
	MinMemory = 64 << 20
	MaxMemory = 1 << 40
)

// MemoryUnlimited is the memory value that sets no limit.
const MemoryUnlimited = "unlimited"

// ParseMemory reads a memory limit: a size such as "512MiB", "2GiB" (K, M,
// G and T, with or without "iB", are powers of 1024) or a number of bytes.
// It returns 0 for "" (no value: the default applies) and -1 for
// "unlimited".
func ParseMemory(s string) (int64, error) {
	switch s {
	case "":
		return 0, nil
	case MemoryUnlimited:
		return -1, nil
	}
	num := strings.TrimRight(s, "KMGTkmgtIiBb")
	unit := strings.TrimSuffix(strings.TrimSuffix(strings.ToUpper(s[len(num):]), "B"), "I")
	shift, ok := map[string]uint{"": 0, "K": 10, "M": 20, "G": 30, "T": 40}[unit]
	n, err := strconv.ParseInt(strings.TrimSpace(num), 10, 64)
	if !ok || err != nil || n < 0 || n > MaxMemory>>shift {
		return 0, fmt.Errorf("%w: memory %q: want a size such as \"512MiB\" or \"2GiB\" (at most 1TiB), or %q", ErrInvalid, s, MemoryUnlimited)
	}
	n <<= shift
	if n < MinMemory {
		return 0, fmt.Errorf("%w: memory %q: below the 64MiB a Python worker needs", ErrInvalid, s)
	}
	return n, nil
}
