package python

import (
	"os"
	"syscall"
)

// sysProcAttr puts the worker in its own process group, so that a timeout
// or Close kills the programs a hook started too, and kills the worker if
// the backend dies while a hook runs.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}

func statSig(path string) (fileSig, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return fileSig{}, err
	}
	sig := fileSig{size: fi.Size(), mtime: fi.ModTime().UnixNano()}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		sig.ino, sig.dev = st.Ino, uint64(st.Dev)
		sig.ctim = st.Ctim.Nano()
	}
	return sig, nil
}
