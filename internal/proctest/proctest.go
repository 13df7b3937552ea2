// Package proctest looks processes up in /proc for tests that check that
// no hook process outlives its run or the backend: by what ps shows, not
// by the runners' own bookkeeping.
package proctest

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
)

// Alive reports whether pid is a live process: it exists and is neither a
// zombie nor dead.
func Alive(pid int) bool {
	if err := syscall.Kill(pid, 0); err != nil {
		return false
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return !errors.Is(err, os.ErrNotExist)
	}
	// Field 3 is the state, after "pid (comm)".
	s := string(stat)
	if i := strings.LastIndexByte(s, ')'); i >= 0 && i+2 < len(s) {
		return s[i+2] != 'Z' && s[i+2] != 'X'
	}
	return true
}

// Find returns the pid of a live process whose command line is exactly
// name and arg, or 0.
func Find(name, arg string) int {
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/cmdline")
		if err == nil && string(b) == name+"\x00"+arg+"\x00" && Alive(pid) {
			return pid
		}
	}
	return 0
}
