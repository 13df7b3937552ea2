//go:build linux

package execrunner

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"sync"
	"syscall"
	"time"
)

const (
	keeperStartTimeout = 10 * time.Second // the keeper's answer to a request
	keeperStopGrace    = time.Second      // its answer to a stop, before it is killed
)

// keeper is the runner's side of one keeper process (keeper_linux.go).
type keeper struct {
	cmd    *exec.Cmd
	conn   *net.UnixConn
	exited chan struct{} // closed once the process is reaped
}

// startKeeper starts a keeper process and the goroutine that reaps it.
func startKeeper() (*keeper, error) {
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("exec keeper: socketpair: %w", err)
	}
	mine, theirs := os.NewFile(uintptr(fds[0]), "keeper"), os.NewFile(uintptr(fds[1]), "keeper")
	defer theirs.Close()
	cmd := &exec.Cmd{
		Path:       "/proc/self/exe",
		Args:       []string{keeperArgv0},
		Env:        keeperEnvOf(),
		ExtraFiles: []*os.File{theirs}, // fd 3 in the keeper
		SysProcAttr: &syscall.SysProcAttr{
			Setpgid: true,
			// The keeper cleans up when the backend dies, however it dies.
			Pdeathsig: syscall.SIGTERM,
		},
	}
	if err := cmd.Start(); err != nil {
		mine.Close()
		return nil, fmt.Errorf("starting the exec keeper: %w", err)
	}
	c, err := net.FileConn(mine)
	mine.Close()
	if err != nil {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		return nil, fmt.Errorf("exec keeper: %w", err)
	}
	k := &keeper{cmd: cmd, conn: c.(*net.UnixConn), exited: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(k.exited) }()
	return k, nil
}

// keeperEnvOf is the keeper's own environment (programs get the one
// their request carries): its marker; GOMAXPROCS=1, as it serves one run
// at a time and a second processor only makes the runtime wake another
// thread (futex calls) each time one of its goroutines is readied; and
// GORACE, as a race-detector build otherwise sleeps a second at exit.
func keeperEnvOf() []string {
	return []string{"GOMAXPROCS=1", "GORACE=atexit_sleep_ms=0", keeperEnv + "=" + strconv.Itoa(os.Getpid())}
}

// alive reports whether the keeper process has not been reaped yet.
func (k *keeper) alive() bool {
	select {
	case <-k.exited:
		return false
	default:
		return true
	}
}

// close ends the keeper: closing its socket makes it exit (and kill a
// program still running); it is killed if it has not within a second.
func (k *keeper) close() {
	_ = k.conn.Close()
	t := time.NewTimer(keeperStopGrace)
	defer t.Stop()
	select {
	case <-k.exited:
	case <-t.C:
		_ = syscall.Kill(-k.cmd.Process.Pid, syscall.SIGKILL)
		<-k.exited
	}
}

// pool keeps a hook's idle keepers, at most one per run slot.
type pool struct {
	mu     sync.Mutex
	idle   []*keeper
	max    int
	closed bool
}

// get returns an idle keeper, or starts one.
func (p *pool) get() (*keeper, error) {
	p.mu.Lock()
	var found *keeper
	var dead []*keeper // ended while idle (their idle timeout)
	for len(p.idle) > 0 && found == nil {
		k := p.idle[len(p.idle)-1]
		p.idle = p.idle[:len(p.idle)-1]
		if k.alive() {
			found = k
		} else {
			dead = append(dead, k)
		}
	}
	closed := p.closed
	p.mu.Unlock()
	for _, k := range dead {
		k.close() // its process is reaped already: this releases the socket
	}
	switch {
	case found != nil:
		return found, nil
	case closed:
		return nil, errors.New("exec runner is closed")
	}
	return startKeeper()
}

// put gives back a keeper after a run that left it able to serve another.
func (p *pool) put(k *keeper) {
	p.mu.Lock()
	if !p.closed && len(p.idle) < p.max && k.alive() {
		p.idle = append(p.idle, k)
		k = nil
	}
	p.mu.Unlock()
	if k != nil {
		k.close()
	}
}

// close ends every idle keeper; busy ones end when their run gives them
// back.
func (p *pool) close() {
	p.mu.Lock()
	idle := slices.Clone(p.idle)
	p.idle, p.closed = nil, true
	p.mu.Unlock()
	var wg sync.WaitGroup
	for _, k := range idle {
		wg.Go(k.close)
	}
	wg.Wait()
}

// keeperRun is one run through a keeper: what the runner gets back.
type keeperRun struct {
	startErr string // the program did not start (ENOENT, EACCES…)
	code     int
	signal   syscall.Signal
	stopped  bool // ctx ended the run
	broken   bool // the keeper cannot serve another run
}

// run has k run the program: stdin is fed input, the output goes to out.
// It returns once the program and every descendant are gone and out has
// everything they wrote (or waitDelay has passed since).
func (k *keeper) run(ctx context.Context, req request, input []byte, out io.Writer, waitDelay time.Duration) (keeperRun, error) {
	inR, inW, err := stdinPipe(input)
	if err != nil {
		return keeperRun{}, err
	}
	outR, outW, err := outputPipe()
	if err != nil {
		_ = syscall.Close(inR)
		closeStdin(inW)
		return keeperRun{}, err
	}
	err = writeFrame(k.conn, req, []int{inR, outW})
	closeFDs([]int{inR, outW})
	if err != nil {
		closeStdin(inW)
		outR.Close()
		return keeperRun{broken: true}, errKeeperGone
	}
	copied := make(chan struct{})
	go func() { _, _ = io.Copy(out, outR); close(copied) }()
	res, err := k.await(ctx)
	// The program is gone: its stdin is no longer read, and its output
	// ends at once unless something it passed the pipe to still holds it.
	closeStdin(inW)
	t := time.NewTimer(waitDelay)
	select {
	case <-copied:
	case <-t.C:
		outR.Close()
		<-copied
	}
	t.Stop()
	outR.Close()
	return res, err
}

// stdinPipe returns a pipe holding input: its read end, and its write
// end if input did not fit (then a goroutine writes the rest). Events
// are small, and fit in a pipe's buffer: they are written here, before
// the program starts, with no goroutine and no poller registration.
func stdinPipe(input []byte) (r int, w *pendingStdin, err error) {
	var p [2]int
	if err := syscall.Pipe2(p[:], syscall.O_CLOEXEC); err != nil {
		return -1, nil, fmt.Errorf("stdin pipe: %w", err)
	}
	// The write end only: the program's stdin stays blocking.
	if err := syscall.SetNonblock(p[1], true); err != nil {
		closeFDs(p[:])
		return -1, nil, fmt.Errorf("stdin pipe: %w", err)
	}
	n := 0
	for n < len(input) {
		m, err := syscall.Write(p[1], input[n:])
		if err == syscall.EINTR {
			continue
		}
		if err != nil || m <= 0 {
			break // full (EAGAIN): the rest is written as the program reads
		}
		n += m
	}
	if n == len(input) {
		_ = syscall.Close(p[1])
		return p[0], nil, nil
	}
	f := os.NewFile(uintptr(p[1]), "stdin") // non-blocking: the poller waits
	w = &pendingStdin{f: f, done: make(chan struct{})}
	go func() {
		_, _ = f.Write(input[n:])
		f.Close() // end of input: the program reads EOF
		close(w.done)
	}()
	return p[0], w, nil
}

// outputPipe returns the read end of a pipe for the program's output, in
// the poller, and its write end as a plain descriptor, which only goes to
// the keeper (os.Pipe would register both ends, then unregister the
// write end when its descriptor is taken).
func outputPipe() (*os.File, int, error) {
	var p [2]int
	if err := syscall.Pipe2(p[:], syscall.O_CLOEXEC); err != nil {
		return nil, -1, fmt.Errorf("output pipe: %w", err)
	}
	if err := syscall.SetNonblock(p[0], true); err != nil {
		closeFDs(p[:])
		return nil, -1, fmt.Errorf("output pipe: %w", err)
	}
	return os.NewFile(uintptr(p[0]), "output"), p[1], nil
}

// pendingStdin is the rest of an input too large for the pipe's buffer,
// being written.
type pendingStdin struct {
	f    *os.File
	done chan struct{}
}

// closeStdin ends the write of the rest of the input, if any: the
// program no longer reads it. (Closing the file twice is harmless.)
func closeStdin(w *pendingStdin) {
	if w == nil {
		return
	}
	w.f.Close()
	<-w.done
}

// await reads the keeper's answers to a run: started (or why not), then
// the exit. When ctx ends first it asks the keeper to stop the run, and
// kills the keeper if it does not answer in time.
func (k *keeper) await(ctx context.Context) (keeperRun, error) {
	// One channel for answers and the read error, so that an answer the
	// keeper sent before dying is seen before its death.
	answers := make(chan answer, 2)
	go func() {
		for {
			var r reply
			if _, err := readFrame(k.conn, &r); err != nil {
				answers <- answer{err: err}
				return
			}
			answers <- answer{r: r}
			if r.Exited || r.Error != "" {
				return
			}
		}
	}()
	start := time.NewTimer(keeperStartTimeout)
	defer start.Stop()
	var stopC <-chan time.Time // the stop's grace, once asked
	var res keeperRun
	started := false
	for {
		select {
		case a := <-answers:
			r := a.r
			switch {
			case a.err != nil:
				res.broken = true
				if !started {
					// Nothing was started (the keeper ended at its
					// idle timeout as the request came): run it anew.
					return res, errKeeperGone
				}
				return res, fmt.Errorf("exec keeper died during the run: %w", a.err)
			case r.Error != "":
				res.startErr = r.Error
				return res, nil
			case r.Started:
				started = true
				start.Stop()
			case r.Exited:
				res.code, res.signal = r.Code, syscall.Signal(r.Signal)
				return res, nil
			}
		case <-start.C:
			k.kill(answers)
			res.broken = true
			return res, fmt.Errorf("exec keeper did not answer within %s", keeperStartTimeout)
		case <-ctx.Done():
			res.stopped = true
			ctx = context.Background() // ask once
			_ = writeFrame(k.conn, request{Stop: true}, nil)
			t := time.NewTimer(keeperStopGrace)
			defer t.Stop()
			stopC = t.C
		case <-stopC:
			// The keeper did not answer the stop: kill it (its program
			// gets SIGKILL as it dies).
			k.kill(answers)
			res.broken = true
			return res, nil
		}
	}
}

// answer is a reply read from a keeper, or why none could be.
type answer struct {
	r   reply
	err error
}

// kill ends a keeper that stopped answering, and waits for await's
// reader to see the end.
func (k *keeper) kill(answers <-chan answer) {
	_ = syscall.Kill(-k.cmd.Process.Pid, syscall.SIGKILL)
	_ = k.conn.Close()
	for a := range answers {
		if a.err != nil || a.r.Exited || a.r.Error != "" {
			return // the reader's last answer
		}
	}
}
