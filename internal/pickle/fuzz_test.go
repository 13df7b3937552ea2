package pickle

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// FuzzDecode: any input either decodes to plain values or is refused with
// ErrRefused or ErrMalformed; it never panics, and Depth bounds every
// result. The gate replays testdata/fuzz/FuzzDecode (checked in) and the
// pickles of testdata/.
func FuzzDecode(f *testing.F) {
	files, _ := filepath.Glob(filepath.Join("testdata", "*.pkl"))
	for _, name := range files {
		if b, err := os.ReadFile(name); err == nil {
			f.Add(b, true)
		}
	}
	f.Fuzz(func(t *testing.T, data []byte, allowJID bool) {
		v, err := Decode(data, Options{AllowJID: allowJID})
		if err != nil {
			if !errors.Is(err, ErrRefused) && !errors.Is(err, ErrMalformed) {
				t.Fatalf("error wraps neither ErrRefused nor ErrMalformed: %v", err)
			}
			return
		}
		_, _ = Depth(v)
		if !allowJID {
			if _, ok := v.(JID); ok {
				t.Fatal("a JID without AllowJID")
			}
		}
	})
}
