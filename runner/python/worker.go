package python

import (
	"bufio"
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"
)

// shim is the worker program, fed to python3 on its stdin at start.
//
//go:embed shim.py
var shim string

// The protocol between Go and the shim: one JSON object per line, Go to
// worker on the worker's fd 3, worker to Go on its fd 4.
//
//	Go → worker                                   worker → Go
//	{"op":"load","type":T,"arg":A}                {"op":"loaded","output":O}
//	                                              {"op":"load_error","error":E,"traceback":TB,"output":O}
//	{"op":"run","client":{..},"event":{..},       zero or more of
//	 "item_xml":X}                                  {"op":"log","level":L,"msg":M}
//	                                                {"op":"publish","service":S,"node":N,"payload":P,"item_id":I}
//	{"op":"publish_result","item_id":I}             ← answers to publish, one each
//	{"op":"publish_error","error":E}
//	                                              {"op":"done","ok":true,"output":O}
//	                                              {"op":"done","ok":false,"error":E,"traceback":TB,"output":O}
//
// O is what the hook printed (sys.stdout and sys.stderr, interleaved) and
// logged with host.log, in order. Closing fd 3 asks the worker to exit.

// loadFrame asks the worker to load the hook.
type loadFrame struct {
	Op   string `json:"op"`
	Type string `json:"type"`
	Arg  string `json:"arg"`
}

// runFrame asks the worker to run the hook on one item.
type runFrame struct {
	Op      string      `json:"op"`
	Client  clientFrame `json:"client"`
	Event   eventFrame  `json:"event"`
	ItemXML string      `json:"item_xml,omitempty"`
}

type clientFrame struct {
	Profile string `json:"profile"`
	JID     string `json:"jid"`
}

// eventFrame becomes client.event in Python: every field is an attribute.
type eventFrame struct {
	Service   string `json:"service"`
	Node      string `json:"node"`
	Kind      string `json:"kind"`
	ItemID    string `json:"item_id"`
	Publisher string `json:"publisher"`
	Catchup   bool   `json:"catchup"`
	Received  string `json:"received"`
}

// replyFrame answers a publish request.
type replyFrame struct {
	Op     string `json:"op"`
	ItemID string `json:"item_id,omitempty"`
	Error  string `json:"error,omitempty"`
}

// inFrame is any frame from the worker.
type inFrame struct {
	Op        string `json:"op"`
	OK        bool   `json:"ok"`
	Error     string `json:"error"`
	Traceback string `json:"traceback"`
	Output    string `json:"output"`
	Level     string `json:"level"`
	Msg       string `json:"msg"`
	Service   string `json:"service"`
	Node      string `json:"node"`
	Payload   string `json:"payload"`
	ItemID    string `json:"item_id"`
}

// errWorkerDied says the worker's pipe closed: the process exited or
// closed its protocol descriptors.
var errWorkerDied = errors.New("python worker died")

// worker is one python3 process running the shim.
type worker struct {
	cmd    *exec.Cmd
	toW    *os.File      // our end of fd 3
	fromW  *bufio.Reader // our end of fd 4
	fromF  *os.File
	stray  *tailBuffer   // the process's own fd 1 and 2
	exited chan struct{} // closed once the process is reaped
	err    error         // cmd.Wait's error, set before exited closes
	buf    []byte        // reused to encode frames

	// Load state, owned by whoever holds the slot.
	loaded   bool
	loadSig  fileSig
	loadErr  *LoadError
	loadedAt time.Time
}

// startWorker starts python3 with the shim. dir is its working directory.
func startWorker(python string, env []string, dir, typ string) (*worker, error) {
	// Our side of each pipe is created close-on-exec by os.Pipe; ExtraFiles
	// hands the other sides to the child as fds 3 and 4.
	toR, toW, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("pipe: %w", err)
	}
	fromR, fromW, err := os.Pipe()
	if err != nil {
		toR.Close()
		toW.Close()
		return nil, fmt.Errorf("pipe: %w", err)
	}
	w := &worker{
		toW:    toW,
		fromF:  fromR,
		fromW:  bufio.NewReaderSize(fromR, 64<<10),
		stray:  &tailBuffer{},
		exited: make(chan struct{}),
	}
	cmd := exec.Command(python, "-", "hookctl-worker", typ)
	cmd.Env = env
	cmd.Dir = dir
	cmd.Stdin = strings.NewReader(shim)
	cmd.Stdout = w.stray
	cmd.Stderr = w.stray
	cmd.ExtraFiles = []*os.File{toR, fromW}
	cmd.SysProcAttr = sysProcAttr()
	// A hook's own children may keep fd 1/2 open after the worker is gone;
	// do not let them hold up Wait for long.
	cmd.WaitDelay = time.Second
	w.cmd = cmd
	err = cmd.Start()
	toR.Close()
	fromW.Close()
	if err != nil {
		toW.Close()
		fromR.Close()
		return nil, fmt.Errorf("starting %s: %w", python, err)
	}
	go func() {
		w.err = cmd.Wait()
		close(w.exited)
	}()
	return w, nil
}

// send writes one frame.
func (w *worker) send(v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	w.buf = append(append(w.buf[:0], b...), '\n')
	if _, err := w.toW.Write(w.buf); err != nil {
		return fmt.Errorf("%w: %w", errWorkerDied, err)
	}
	return nil
}

// recv reads one frame.
func (w *worker) recv(f *inFrame) error {
	line, err := w.fromW.ReadSlice('\n')
	if err == bufio.ErrBufferFull {
		// A frame longer than the buffer: collect the rest.
		full := append([]byte(nil), line...)
		for err == bufio.ErrBufferFull {
			line, err = w.fromW.ReadSlice('\n')
			full = append(full, line...)
		}
		line = full
	}
	if err != nil {
		if err == io.EOF || errors.Is(err, os.ErrClosed) {
			return errWorkerDied
		}
		return fmt.Errorf("%w: %w", errWorkerDied, err)
	}
	*f = inFrame{}
	if err := json.Unmarshal(line, f); err != nil {
		return fmt.Errorf("bad frame from python worker: %w", err)
	}
	return nil
}

// alive reports whether the process has not exited yet.
func (w *worker) alive() bool {
	select {
	case <-w.exited:
		return false
	default:
		return true
	}
}

// kill stops the worker's whole process group at once. Safe to call more
// than once and from any goroutine.
func (w *worker) kill() {
	if w.cmd.Process != nil {
		// The group has the worker's pid as id (Setpgid): this also stops
		// programs the hook started.
		_ = syscall.Kill(-w.cmd.Process.Pid, syscall.SIGKILL)
	}
}

// stop asks the worker to exit by closing its fd 3, kills its group if it
// does not within grace, and waits until it is reaped.
func (w *worker) stop(grace time.Duration) {
	w.toW.Close()
	if grace > 0 {
		t := time.NewTimer(grace)
		select {
		case <-w.exited:
		case <-t.C:
		}
		t.Stop()
	}
	w.kill()
	w.reap()
}

// reap waits for the process to be gone and releases our pipe ends. The
// group is killed first so that nothing can keep it running.
func (w *worker) reap() {
	w.kill()
	<-w.exited
	// Leftover members of the group (children of the hook) go too; the id
	// cannot have been reused while any member lives.
	_ = syscall.Kill(-w.cmd.Process.Pid, syscall.SIGKILL)
	w.toW.Close()
	w.fromF.Close()
}

// exitCode is the worker's exit status once reaped, -1 if killed by a
// signal or still running.
func (w *worker) exitCode() int {
	if w.alive() || w.cmd.ProcessState == nil {
		return -1
	}
	return w.cmd.ProcessState.ExitCode()
}

// exitText describes how the worker ended, e.g. "exit status 3".
func (w *worker) exitText() string {
	if w.alive() {
		return "running"
	}
	if w.err != nil {
		return w.err.Error()
	}
	return "exit status 0"
}

// waitExit waits up to d for the process to exit on its own.
func (w *worker) waitExit(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-w.exited:
	case <-t.C:
	case <-ctx.Done():
	}
}

// tailBuffer keeps the last OutputTail bytes written to it.
type tailBuffer struct {
	mu  sync.Mutex
	buf []byte
}

const strayKeep = 4096

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	t.buf = append(t.buf, p...)
	if len(t.buf) > 2*strayKeep {
		t.buf = append(t.buf[:0], t.buf[len(t.buf)-strayKeep:]...)
	}
	t.mu.Unlock()
	return len(p), nil
}

// take returns what was written since the last take.
func (t *tailBuffer) take() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.buf) == 0 {
		return ""
	}
	s := string(t.buf)
	t.buf = t.buf[:0]
	return s
}

// fileSig identifies a version of a file cheaply: one stat per event.
type fileSig struct {
	ino, dev    uint64
	size        int64
	mtime, ctim int64
}
