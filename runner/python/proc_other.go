//go:build unix && !linux

package python

import (
	"os"
	"syscall"
)

// sysProcAttr puts the worker in its own process group, so that a timeout
// or Close kills the programs a hook started too.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}

func statSig(path string) (fileSig, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return fileSig{}, err
	}
	sig := fileSig{size: fi.Size(), mtime: fi.ModTime().UnixNano()}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		sig.ino, sig.dev = uint64(st.Ino), uint64(st.Dev)
	}
	return sig, nil
}

// pipeCapacity is what every pipe holds at least (POSIX's PIPE_BUF, 512,
// is less; the systems this builds on give 4 KiB or more).
func pipeCapacity(*os.File) int { return 4096 }
