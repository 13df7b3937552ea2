//go:build linux

package execrunner

// The keeper. A hook's program may leave its process group (setsid) or
// daemonise: a group kill misses it, and it used to outlive its run and
// the backend. So the programs of an exec hook are started by a keeper, a
// long-lived copy of the backend's own binary (/proc/self/exe) between the
// backend and the programs, one per concurrent run slot of the hook:
//
//   - the keeper is a child subreaper (PR_SET_CHILD_SUBREAPER): every
//     orphan among a program's descendants, setsid or not, becomes its
//     child instead of init's;
//   - it runs one program at a time, on request over a Unix socket (the
//     program's stdin and output pipes come with the request, as
//     SCM_RIGHTS); when the program exits, or the runner asks it to stop
//     the run, the keeper SIGKILLs every descendant left, reaps them, and
//     only then reports the exit status, so a run's processes never
//     outlive it;
//   - it gets SIGTERM when the backend dies, even by kill -9
//     (PR_SET_PDEATHSIG), and when its socket closes; it then cleans up
//     the same way and exits; a program gets SIGKILL when its keeper dies.
//
// Starting a Go binary costs milliseconds of CPU (its runtime and package
// initialisation); a keeper pays it once, not once per run as the shim it
// replaces did (BENCHMARKS.md, exec). The keeper is recognised by an
// environment variable in an init function, so that any binary linking
// this package (hookctl, tests) can be one.

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// keeperEnv carries the backend's pid to the keeper; its presence makes a
// process the keeper.
const keeperEnv = "HOOKCTL_EXEC_KEEPER_PARENT"

// keeperArgv0 names the keeper in ps.
const keeperArgv0 = "hookctl-exec-keeper"

const (
	prSetChildSubreaper = 36
	keeperCleanup       = 5 * time.Second // bound on killing a run's descendants
	keeperIdle          = 2 * time.Minute // a burst reuses a keeper; a rare hook does not hold one
	maxFrame            = 8 << 20         // a request: path, args, env (secrets included)
)

// request asks the keeper to run a program; its stdin and output (stdout
// and stderr) come as two file descriptors with the frame. A request with
// Stop set asks it to end the current run.
type request struct {
	Path string   `json:"path,omitempty"`
	Args []string `json:"args,omitempty"`
	Env  []string `json:"env,omitempty"`
	Dir  string   `json:"dir,omitempty"`
	Stop bool     `json:"stop,omitempty"`
}

// reply is the keeper's answer: first Started (or Error), then the exit
// of the program once its descendants are gone.
type reply struct {
	Started bool   `json:"started,omitempty"`
	Error   string `json:"error,omitempty"`
	Exited  bool   `json:"exited,omitempty"`
	Code    int    `json:"code,omitempty"`
	Signal  int    `json:"signal,omitempty"`
}

func init() {
	if v, ok := os.LookupEnv(keeperEnv); ok {
		// Not on this goroutine: the runtime locks it to the main thread
		// during init, and a locked goroutine hands the processor over
		// to another thread (two futex calls) each time it blocks and
		// each time it wakes.
		code := make(chan int)
		go func() { code <- runKeeper(v) }()
		os.Exit(<-code)
	}
}

// keeperMessage is a request read by the keeper, with its descriptors.
type keeperMessage struct {
	req request
	fds []int
}

// runKeeper is the keeper's main; it returns its exit code.
func runKeeper(parent string) int {
	syscall.CloseOnExec(3)
	f := os.NewFile(3, "control")
	c, err := net.FileConn(f)
	f.Close()
	if err != nil {
		return 2
	}
	conn := c.(*net.UnixConn)
	if _, _, errno := syscall.RawSyscall(syscall.SYS_PRCTL, prSetChildSubreaper, 1, 0); errno != 0 {
		_ = writeFrame(conn, reply{Error: "exec keeper: PR_SET_CHILD_SUBREAPER: " + errno.Error()}, nil)
		return 2
	}
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	// The backend may have died before the keeper asked for its death
	// signal (set at fork): then there is no one to serve.
	if strconv.Itoa(os.Getppid()) != parent {
		return 2
	}
	msgs := make(chan keeperMessage)
	go readRequests(conn, msgs) // ends with the process
	idle := time.NewTimer(keeperIdle)
	for {
		select {
		case m, ok := <-msgs:
			if !ok {
				return 0 // the runner closed the socket, or is gone
			}
			if m.req.Stop {
				closeFDs(m.fds)
				continue // a stop after the run ended: nothing to do
			}
			if !serveRun(conn, m, msgs, sigs) {
				return 0
			}
			idle.Reset(keeperIdle)
		case <-sigs:
			return 0
		case <-idle.C:
			return 0
		}
	}
}

// readRequests reads the runner's frames into msgs until the socket
// closes, then closes msgs.
func readRequests(conn *net.UnixConn, msgs chan<- keeperMessage) {
	defer close(msgs)
	for {
		var m keeperMessage
		fds, err := readFrame(conn, &m.req)
		if err != nil {
			return
		}
		m.fds = fds
		msgs <- m
	}
}

// serveRun starts the program of m, waits for it (or a stop request, the
// socket closing, or a signal), kills what it left, and reports its exit.
// It returns false when the keeper must exit.
func serveRun(conn *net.UnixConn, m keeperMessage, msgs <-chan keeperMessage, sigs <-chan os.Signal) bool {
	if len(m.fds) != 2 {
		closeFDs(m.fds)
		return writeFrame(conn, reply{Error: "exec keeper: a run needs stdin and output"}, nil) == nil
	}
	p, err := startProgram(m.req, m.fds[0], m.fds[1])
	closeFDs(m.fds)
	if err != nil {
		return writeFrame(conn, reply{Error: fmt.Sprintf("starting %s: %v", m.req.Path, err)}, nil) == nil
	}
	if writeFrame(conn, reply{Started: true}, nil) != nil {
		p.stop()
		return false
	}
	keep := true
	select {
	case <-p.done:
	case m, ok := <-msgs: // a stop request, or the runner is gone
		closeFDs(m.fds)
		keep = ok
		p.stop()
		<-p.done
	case <-sigs:
		keep = false
		p.stop()
		<-p.done
	}
	killDescendants()
	r := reply{Exited: true, Code: p.status.ExitStatus()}
	if p.status.Signaled() {
		r.Code, r.Signal = -1, int(p.status.Signal())
	}
	return writeFrame(conn, r, nil) == nil && keep
}

// program is a program the keeper started; done is closed once it is
// reaped, with its status.
type program struct {
	pid    int
	done   chan struct{}
	status syscall.WaitStatus
}

// startProgram forks and execs req's program with stdin and out, in its
// own process group, and starts waiting for it. It forks with
// syscall.ForkExec rather than os/exec (which adds a goroutine blocked
// in waitid for each run, and keeps the runtime's monitor waking every
// 20µs while it is blocked); its exit is seen on a pidfd through the
// runtime's poller instead, so an idle keeper sleeps in one epoll_wait.
func startProgram(req request, stdin, out int) (*program, error) {
	pidfd := -1
	attr := &syscall.ProcAttr{
		Dir:   req.Dir,
		Env:   req.Env,
		Files: []uintptr{uintptr(stdin), uintptr(out), uintptr(out)},
		Sys:   &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL, PidFD: &pidfd},
	}
	pid, err := syscall.ForkExec(req.Path, append([]string{req.Path}, req.Args...), attr)
	if err != nil {
		return nil, &os.PathError{Op: "fork/exec", Path: req.Path, Err: err}
	}
	p := &program{pid: pid, done: make(chan struct{})}
	go p.wait(pidfd)
	return p, nil
}

// wait reaps the program and closes p.done. With a pidfd (Linux 5.3 and
// later) it sleeps in the poller until the program exits; without one,
// in wait4.
func (p *program) wait(pidfd int) {
	defer close(p.done)
	if pidfd >= 0 && syscall.SetNonblock(pidfd, true) == nil {
		f := os.NewFile(uintptr(pidfd), "pidfd")
		defer f.Close()
		if rc, err := f.SyscallConn(); err == nil {
			reaped := false
			_ = rc.Read(func(uintptr) bool {
				pid, err := syscall.Wait4(p.pid, &p.status, syscall.WNOHANG, nil)
				reaped = pid == p.pid || (err != nil && err != syscall.EINTR)
				return reaped
			})
			if reaped {
				return
			}
		}
	} else if pidfd >= 0 {
		_ = syscall.Close(pidfd)
	}
	for {
		if _, err := syscall.Wait4(p.pid, &p.status, 0, nil); err != syscall.EINTR {
			return
		}
	}
}

// stop kills the program's group and the program.
func (p *program) stop() {
	_ = syscall.Kill(-p.pid, syscall.SIGKILL)
	_ = syscall.Kill(p.pid, syscall.SIGKILL)
}

// killDescendants SIGKILLs the keeper's children until none is left. As a
// subreaper the keeper inherits every orphan below it, so killing its
// children round after round reaches every descendant.
func killDescendants() {
	self := os.Getpid()
	deadline := time.Now().Add(keeperCleanup)
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

// writeFrame sends v as a frame: a 4-byte big-endian length, then JSON.
// fds, if any, go with the length (SCM_RIGHTS), so that the reader gets
// them with the frame they belong to.
func writeFrame(conn *net.UnixConn, v any, fds []int) error {
	body, err := json.Marshal(v)
	if err != nil {
		return err
	}
	var hdr [4]byte
	binary.BigEndian.PutUint32(hdr[:], uint32(len(body)))
	var oob []byte
	if len(fds) > 0 {
		oob = syscall.UnixRights(fds...)
	}
	if _, _, err := conn.WriteMsgUnix(hdr[:], oob, nil); err != nil {
		return err
	}
	_, err = conn.Write(body)
	return err
}

// readFrame reads one frame into v and returns the descriptors that came
// with it.
func readFrame(conn *net.UnixConn, v any) ([]int, error) {
	var hdr [4]byte
	oob := make([]byte, syscall.CmsgSpace(4*4))
	n, oobn, _, _, err := conn.ReadMsgUnix(hdr[:], oob)
	if err != nil {
		return nil, err
	}
	fds, err := parseRights(oob[:oobn])
	if err != nil {
		return nil, err
	}
	if n < len(hdr) {
		if _, err := io.ReadFull(conn, hdr[n:]); err != nil {
			closeFDs(fds)
			return nil, err
		}
	}
	size := binary.BigEndian.Uint32(hdr[:])
	if size > maxFrame {
		closeFDs(fds)
		return nil, fmt.Errorf("exec keeper: frame of %d bytes, at most %d", size, maxFrame)
	}
	body := make([]byte, size)
	if _, err := io.ReadFull(conn, body); err != nil {
		closeFDs(fds)
		return nil, err
	}
	if err := json.Unmarshal(body, v); err != nil {
		closeFDs(fds)
		return nil, err
	}
	return fds, nil
}

func parseRights(oob []byte) ([]int, error) {
	if len(oob) == 0 {
		return nil, nil
	}
	msgs, err := syscall.ParseSocketControlMessage(oob)
	if err != nil {
		return nil, err
	}
	var fds []int
	for _, m := range msgs {
		got, err := syscall.ParseUnixRights(&m)
		if err != nil {
			closeFDs(fds)
			return nil, err
		}
		fds = append(fds, got...)
	}
	for _, fd := range fds {
		syscall.CloseOnExec(fd)
	}
	return fds, nil
}

func closeFDs(fds []int) {
	for _, fd := range fds {
		_ = syscall.Close(fd)
	}
}

// errKeeperGone says the keeper ended before it took the run: the run can
// be retried on a new keeper, as nothing was started.
var errKeeperGone = errors.New("exec keeper is gone")
