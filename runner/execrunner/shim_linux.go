//go:build linux

package execrunner

// The run shim. A hook's program may leave its process group (setsid) or
// daemonise: the group kill misses it, and it used to outlive its run and
// the backend. So each run starts a copy of the backend's own binary
// (/proc/self/exe) as a small shim between the backend and the program:
//
//   - the shim is a child subreaper (PR_SET_CHILD_SUBREAPER): every orphan
//     among the program's descendants, setsid or not, becomes its child
//     instead of init's;
//   - when the program exits, and when the run is stopped (SIGTERM from
//     the runner), the shim SIGKILLs every descendant left, reaps them,
//     and exits as the program did;
//   - the shim gets SIGTERM when the backend dies, even by kill -9
//     (PR_SET_PDEATHSIG), and cleans up the same way; the program gets
//     SIGKILL when the shim dies.
//
// The shim is recognised by an environment variable in an init function,
// so that any binary linking this package (hookctl, tests) can be one.

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// shimEnv carries the backend's pid to the shim; its presence makes a
// process the shim.
const shimEnv = "HOOKCTL_EXEC_SHIM_PARENT"

// shimArgv0 names the shim in ps.
const shimArgv0 = "hookctl-exec-shim"

const (
	prSetChildSubreaper  = 36
	shimCleanupDeadline  = 5 * time.Second
	shimStartPipeTimeout = 10 * time.Second
)

func init() {
	if v, ok := os.LookupEnv(shimEnv); ok {
		os.Exit(runShim(v, os.Args[1:]))
	}
}

// shimCommand returns the command that runs path with args under the shim,
// and the pipe on which the shim reports a failure to start the program.
func shimCommand(path string, args, env []string) (*exec.Cmd, *os.File, *os.File, error) {
	r, w, err := os.Pipe()
	if err != nil {
		return nil, nil, nil, err
	}
	if _, err := os.Stat("/proc/self/exe"); err != nil {
		// No /proc (a bare container): run the program directly, in its
		// own group, as before the shim; w's EOF reads as "started".
		cmd := exec.Command(path, args...)
		cmd.Env = env
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		return cmd, r, w, nil
	}
	cmd := &exec.Cmd{
		Path:       "/proc/self/exe",
		Args:       append([]string{shimArgv0, path}, args...),
		Env:        shimEnvOf(env),
		ExtraFiles: []*os.File{w}, // fd 3 in the shim
		SysProcAttr: &syscall.SysProcAttr{
			Setpgid: true,
			// The shim cleans up when the backend dies, however it dies.
			Pdeathsig: syscall.SIGTERM,
		},
	}
	return cmd, r, w, nil
}

// shimEnvOf is the program's environment plus the shim's marker. A
// race-detector build sleeps a second at exit unless GORACE says not to:
// the shim sets it for itself and removes it for the program.
func shimEnvOf(env []string) []string {
	marker := strconv.Itoa(os.Getpid())
	out := append([]string(nil), env...)
	if !slices.ContainsFunc(env, func(kv string) bool { return strings.HasPrefix(kv, "GORACE=") }) {
		out = append(out, "GORACE=atexit_sleep_ms=0")
		marker += ",gorace"
	}
	return append(out, shimEnv+"="+marker)
}

// readStartError returns what the shim reported on its start pipe: ""
// once it has started the program.
func readStartError(r *os.File) string {
	_ = r.SetReadDeadline(time.Now().Add(shimStartPipeTimeout))
	var buf bytes.Buffer
	_, _ = buf.ReadFrom(r)
	return strings.TrimSpace(buf.String())
}

// runShim is the shim's main: it returns its exit code, or re-raises the
// signal that killed the program.
func runShim(parent string, args []string) int {
	startPipe := os.NewFile(3, "start")
	syscall.CloseOnExec(3)
	fail := func(format string, a ...any) int {
		fmt.Fprintf(startPipe, format, a...)
		return 127
	}
	if len(args) == 0 {
		return fail("shim: no program")
	}
	if _, _, errno := syscall.RawSyscall(syscall.SYS_PRCTL, prSetChildSubreaper, 1, 0); errno != 0 {
		return fail("shim: PR_SET_CHILD_SUBREAPER: %v", errno)
	}
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	// The backend may have died before the shim asked for its death
	// signal (set by the runner at fork): then there is nothing to run.
	parent, addedGorace := strings.CutSuffix(parent, ",gorace")
	if strconv.Itoa(os.Getppid()) != parent {
		return fail("shim: the backend is gone")
	}
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	cmd.Env = withoutVar(os.Environ(), shimEnv)
	if addedGorace {
		cmd.Env = withoutVar(cmd.Env, "GORACE")
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return fail("starting %s: %v", args[0], err)
	}
	startPipe.Close()
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case <-done:
	case <-sigs:
		_ = cmd.Process.Kill()
		<-done
	}
	killDescendants()
	ws, _ := cmd.ProcessState.Sys().(syscall.WaitStatus)
	if ws.Signaled() {
		// Die of the same signal, so that the run says "killed by signal
		// X", for the signals whose default action the Go runtime leaves
		// alone; the others (SIGSEGV, SIGQUIT, SIGPIPE…) would make it
		// print a trace or ignore them: exit 128+n as a shell does.
		switch sig := ws.Signal(); sig {
		case syscall.SIGKILL, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP, syscall.SIGUSR1, syscall.SIGUSR2, syscall.SIGALRM:
			signal.Reset()
			_ = syscall.Kill(os.Getpid(), sig)
			time.Sleep(time.Second) // the signal ends the process
		default:
			return 128 + int(sig)
		}
	}
	return cmd.ProcessState.ExitCode()
}

// killDescendants SIGKILLs the shim's children until none is left. As a
// subreaper the shim inherits every orphan below it, so killing its
// children round after round reaches every descendant.
func killDescendants() {
	self := os.Getpid()
	deadline := time.Now().Add(shimCleanupDeadline)
	for time.Now().Before(deadline) {
		// Reap what has exited; no child at all (the common case: the
		// program left nothing behind) ends it without scanning /proc.
		for {
			var ws syscall.WaitStatus
			pid, err := syscall.Wait4(-1, &ws, syscall.WNOHANG, nil)
			if err == syscall.ECHILD {
				return
			}
			if pid <= 0 {
				break
			}
		}
		for _, pid := range childrenOf(self) {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// childrenOf lists the processes whose parent is pid, from /proc.
func childrenOf(pid int) []int {
	stats, _ := filepath.Glob("/proc/[0-9]*/stat")
	var kids []int
	for _, p := range stats {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		// pid (comm) state ppid …: comm may hold spaces and parentheses.
		i := bytes.LastIndexByte(b, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(string(b[i+1:]))
		if len(f) < 2 || f[1] != strconv.Itoa(pid) {
			continue
		}
		if k, err := strconv.Atoi(filepath.Base(filepath.Dir(p))); err == nil {
			kids = append(kids, k)
		}
	}
	return kids
}

func withoutVar(env []string, name string) []string {
	out := env[:0:0]
	for _, kv := range env {
		if !strings.HasPrefix(kv, name+"=") {
			out = append(out, kv)
		}
	}
	return out
}
