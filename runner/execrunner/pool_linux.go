//go:build linux

package execrunner

import (
	"context"
	"encoding/binary"
	"encoding/json"
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
	// replies holds bytes read from conn and not yet decoded; one run
	// at a time reads them.
	replies []byte
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
	go func() { copyOutput(out, outR); close(copied) }()
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

// copyBuffers are the buffers of copyOutput: io.Copy from an *os.File
// made a 32 KiB buffer for every run, mostly to read nothing or a line.
var copyBuffers = sync.Pool{New: func() any { return new([16 << 10]byte) }}

// copyOutput copies the program's output to out until EOF or an error
// (the pipe closed after the wait delay).
func copyOutput(out io.Writer, r *os.File) {
	buf := copyBuffers.Get().(*[16 << 10]byte)
	defer copyBuffers.Put(buf)
	for {
		n, err := r.Read(buf[:])
		if n > 0 {
			_, _ = out.Write(buf[:n])
		}
		if err != nil {
			return
		}
	}
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
// kills the keeper if it does not answer in time. It reads on the
// caller's goroutine: ctx's end and the time limits interrupt the read
// through the socket's read deadline.
func (k *keeper) await(ctx context.Context) (keeperRun, error) {
	w := &runWatch{conn: k.conn}
	_ = k.conn.SetReadDeadline(time.Now().Add(keeperStartTimeout))
	stopWatching := context.AfterFunc(ctx, w.cancel)
	defer stopWatching()
	defer w.finish()
	var res keeperRun
	started := false
	for {
		var r reply
		err := k.readReply(&r)
		switch {
		case errors.Is(err, os.ErrDeadlineExceeded):
			switch w.timedOut() {
			case askStop:
				res.stopped = true
				_ = writeFrame(k.conn, request{Stop: true}, nil)
				continue
			case stopIgnored:
				// The keeper did not answer the stop: kill it (its
				// program gets SIGKILL as it dies).
				k.kill()
				res.broken = true
				return res, nil
			}
			k.kill()
			res.broken = true
			return res, fmt.Errorf("exec keeper did not answer within %s", keeperStartTimeout)
		case err != nil:
			res.broken = true
			if !started {
				// Nothing was started (the keeper ended at its idle
				// timeout as the request came): run it anew.
				return res, errKeeperGone
			}
			return res, fmt.Errorf("exec keeper died during the run: %w", err)
		case r.Error != "":
			res.startErr = r.Error
			return res, nil
		case r.Started:
			started = true
			w.started()
		case r.Exited:
			res.code, res.signal = r.Code, syscall.Signal(r.Signal)
			return res, nil
		}
	}
}

// runWatch sets the read deadline of a keeper's socket during a run:
// the start timeout, none once the program runs, a deadline in the past
// when the run's context ends (to interrupt the read), then the stop's
// grace. The mutex orders the context's callback with the reader's own
// changes, so that neither undoes the other.
type runWatch struct {
	mu        sync.Mutex
	conn      *net.UnixConn
	cancelled bool // ctx ended
	stopping  bool // the stop was asked, its grace is the deadline
	done      bool // the run is over: a late callback must not touch the socket
}

// The reader's next step after a read deadline.
const (
	startTimedOut = iota // the keeper did not answer the request
	askStop              // ctx ended: ask for a stop, its grace is set
	stopIgnored          // the keeper did not answer the stop in time
)

func (w *runWatch) cancel() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done && !w.stopping {
		w.cancelled = true
		_ = w.conn.SetReadDeadline(time.Unix(1, 0))
	}
}

func (w *runWatch) started() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.cancelled {
		_ = w.conn.SetReadDeadline(time.Time{})
	}
}

func (w *runWatch) timedOut() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	switch {
	case w.stopping:
		return stopIgnored
	case w.cancelled:
		w.stopping = true
		_ = w.conn.SetReadDeadline(time.Now().Add(keeperStopGrace))
		return askStop
	}
	return startTimedOut
}

func (w *runWatch) finish() {
	w.mu.Lock()
	w.done = true
	w.mu.Unlock()
}

// readReply reads the keeper's next reply. Replies carry no descriptors;
// bytes read past the reply, or of a reply that a deadline interrupted,
// stay in k.replies for the next call.
func (k *keeper) readReply(r *reply) error {
	for {
		if b := k.replies; len(b) >= 4 {
			size := int(binary.BigEndian.Uint32(b))
			if size > maxFrame {
				return fmt.Errorf("exec keeper: reply of %d bytes", size)
			}
			if len(b) >= 4+size {
				err := json.Unmarshal(b[4:4+size], r)
				k.replies = b[:copy(b, b[4+size:])]
				return err
			}
		}
		k.replies = slices.Grow(k.replies, 256)
		b := k.replies
		n, err := k.conn.Read(b[len(b):cap(b)])
		k.replies = b[:len(b)+n]
		if err != nil {
			return err
		}
	}
}

// kill ends a keeper that stopped answering.
func (k *keeper) kill() {
	_ = syscall.Kill(-k.cmd.Process.Pid, syscall.SIGKILL)
	_ = k.conn.Close()
}
