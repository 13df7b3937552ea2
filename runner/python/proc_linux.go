package python

import (
	"os"
	"syscall"
)

// sysProcAttr puts the worker in its own process group, so that a kill
// of the group stops the programs a hook started too, and has the keeper
// (the process started, see shim.py) told by SIGTERM when the backend
// dies: it then kills the worker and everything below it.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
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
