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

// statSig stats path with one system call and no allocation beyond the
// path's copy (os.Stat builds a FileInfo): it runs before every run.
func statSig(path string) (fileSig, error) {
	var st syscall.Stat_t
	err := ignoringEINTR(func() error { return syscall.Stat(path, &st) })
	if err != nil {
		return fileSig{}, &os.PathError{Op: "stat", Path: path, Err: err}
	}
	return fileSig{ino: st.Ino, dev: uint64(st.Dev), size: st.Size, mtime: st.Mtim.Nano(), ctim: st.Ctim.Nano()}, nil
}

func ignoringEINTR(f func() error) error {
	for {
		if err := f(); err != syscall.EINTR {
			return err
		}
	}
}

// pipeCapacity is how many bytes f's pipe holds (F_GETPIPE_SZ); a pipe
// made while the user has too many pipe pages gets one page only.
func pipeCapacity(f *os.File) int {
	n := 4096
	if c, err := f.SyscallConn(); err == nil {
		_ = c.Control(func(fd uintptr) {
			const getPipeSz = 1032 // F_GETPIPE_SZ
			if r, _, errno := syscall.Syscall(syscall.SYS_FCNTL, fd, getPipeSz, 0); errno == 0 && r > 0 {
				n = int(r)
			}
		})
	}
	return n
}
