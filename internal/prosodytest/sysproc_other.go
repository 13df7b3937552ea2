//go:build !linux

package prosodytest

import "syscall"

// sysProcAttr puts Prosody in its own process group (no Pdeathsig outside
// Linux: a crashed test may leave a server behind there).
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}
