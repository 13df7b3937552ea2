package config

import (
	"fmt"
	"io"
	"os"
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
