package hookctl

import (
	"errors"
	"testing"
)

func TestParseMemory(t *testing.T) {
	for in, want := range map[string]int64{
		"": 0, "unlimited": -1, "512MiB": 512 << 20, "2GiB": 2 << 30, "1G": 1 << 30, "100M": 100 << 20,
		"1TiB": 1 << 40, "67108864": 64 << 20, "65536K": 64 << 20, "512mb": 512 << 20,
	} {
		if got, err := ParseMemory(in); err != nil || got != want {
			t.Errorf("ParseMemory(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"x", "1.5G", "-1G", "10", "63MiB", "2TiB", "1PB", "MiB", "1 GiB x", "none", "99999999999999999999"} {
		if _, err := ParseMemory(in); !errors.Is(err, ErrInvalid) {
			t.Errorf("ParseMemory(%q): %v, want ErrInvalid", in, err)
		}
	}
}
