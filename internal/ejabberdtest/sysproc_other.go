//go:build !linux

package ejabberdtest

import "syscall"

// sysProcAttr puts the Erlang VM in its own process group (no Pdeathsig outside
// Linux: a crashed test may leave a server behind there).
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}
