package python

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	_ "embed"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// shim is the worker program, fed to python3 on its stdin at start: the
// shim proper, then the item, client and host as Libervia hooks expect
// them (domish.py), then the call to main.
var shim = shimMain + shimDomish + "\nmain()\n"

//go:embed shim.py
var shimMain string

//go:embed domish.py
var shimDomish string

// The protocol between Go and the shim: one JSON object per line, Go to
// worker on the worker's fd 3, worker to Go on its fd 4.
//
//	Go → worker                                   worker → Go
//	{"op":"load","type":T,"arg":A}                {"op":"loaded","files":F}
//	                                              {"op":"load_error","error":E,"traceback":TB}
//	{"op":"run","client":{..},"event":{..},       zero or more of
//	 "item_xml":X}                                  {"op":"log","level":L,"msg":M}
//	                                                {"op":"publish","service":S,"node":N,"payload":P,"item_id":I,"loop":B}
//	{"op":"publish_result","item_id":I}             ← answers to publish, one each
//	{"op":"publish_error","error":E}
//	                                              {"op":"done","ok":true,"files":F}
//	                                              {"op":"done","ok":false,"error":E,"traceback":TB,"files":F}
//
// What the hook prints (sys.stdout, sys.stderr, host.log lines) goes to the
// worker's fd 1 and 2 as it is written, which the Go side collects: output
// up to a crash or a kill is kept. Before each answer to load or run the
// worker writes its marker (a random string given on its command line) to
// fd 1: the output before the marker is that request's. F lists the files
// of the modules loaded from the hook's own directory (null: unchanged since
// the last list), which are watched for reloads. Closing fd 3 asks the
// worker to exit. Run frames may be pipelined (batch.go): the worker runs
// them one after the other, answering each, and keeps the run frames it
// reads while waiting for a publish answer for later. The done frame of a run
// that went well and imported nothing new is always the same bytes
// (doneOK), which the Go side matches without decoding JSON.

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
	Loop      bool   `json:"loop"`
	// Files is nil when absent or null: the list did not change.
	Files []string `json:"files"`
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
	toCap  int           // what the pipe to the worker holds, bytes
	marker []byte        // written by the worker to fd 1 before each answer
	ready  bool          // the start-up marker was seen, see awaitReady

	// Load state, set once by the load (a worker loads one version of the
	// hook in its life; a reload is a new worker).
	loaded   bool
	loadErr  *LoadError
	loadedAt time.Time
	watch    []watched // the files the loaded version came from
	loadOut  string    // what loading printed, for the first run
	killOnce sync.Once // one group-kill fallback per worker
}

// startWorker starts python3 with the shim. dir is its working directory;
// memory, when positive, is its address-space limit in bytes (RLIMIT_AS,
// set by the shim on itself before any hook code runs).
func startWorker(python string, env []string, dir, typ string, memory int64) (*worker, error) {
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
		exited: make(chan struct{}),
		marker: newMarker(),
		toCap:  pipeCapacity(toW),
	}
	w.stray = newTailBuffer(w.marker)
	cmd := exec.Command(python, "-", "hookctl-worker", typ, string(w.marker), strconv.FormatInt(max(memory, 0), 10))
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

// sendRaw writes frames already encoded (appendRunFrame).
func (w *worker) sendRaw(b []byte) error {
	if _, err := w.toW.Write(b); err != nil {
		return fmt.Errorf("%w: %w", errWorkerDied, err)
	}
	return nil
}

// doneOK is the frame of a run that went well and imported no new module,
// the most frequent one: recognised without decoding JSON. The shim
// writes exactly these bytes (DONE_OK).
var doneOK = []byte(`{"op": "done", "ok": true, "files": null}` + "\n")

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
	if bytes.Equal(line, doneOK) {
		f.Op, f.OK = "done", true
		return nil
	}
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

// kill stops the worker and every process below it: the keeper (the
// process started, parent and subreaper of the python worker) kills them
// all on SIGTERM, including processes that left the group; if it has not
// ended within keeperGrace, the group is killed. Safe to call more than
// once and from any goroutine.
func (w *worker) kill() {
	if w.cmd.Process == nil || !w.alive() {
		return // reaped: its pid may belong to another process by now
	}
	_ = syscall.Kill(w.cmd.Process.Pid, syscall.SIGTERM)
	w.killOnce.Do(func() {
		go func() {
			t := time.NewTimer(keeperGrace)
			defer t.Stop()
			select {
			case <-w.exited:
			case <-t.C:
				_ = syscall.Kill(-w.cmd.Process.Pid, syscall.SIGKILL)
			}
		}()
	})
}

// keeperGrace bounds the keeper's clean-up before its group is killed.
const keeperGrace = 2 * time.Second

// dumpAndKill asks the worker for a dump of its threads' stacks (SIGUSR1,
// answered by faulthandler even when the hook is stuck in C code), waits
// until the dump has arrived (output then quiet) or dumpWait passed, and
// kills the group. It is the deadline's action: the run's output then says
// where the hook was.
func (w *worker) dumpAndKill() {
	if w.cmd.Process == nil || !w.alive() {
		w.kill()
		return
	}
	_ = syscall.Kill(w.cmd.Process.Pid, syscall.SIGUSR1)
	w.stray.waitQuiet(dumpWait, 30*time.Millisecond, w.exited)
	w.kill()
}

// dumpWait bounds the wait for a stack dump before the kill.
const dumpWait = 500 * time.Millisecond

// output returns what the worker wrote to fd 1 and 2 for the request just
// answered: up to its marker, which the worker wrote before the answer.
func (w *worker) output() string {
	s, _ := w.stray.takeUntil(w.marker, time.Second, w.exited)
	return s
}

// awaitReady waits until the worker has started (python3 and the shim's
// imports: its first marker), so that a hook's timeout is not spent on
// the interpreter's start-up. It is done once, before the first request.
func (w *worker) awaitReady(ctx context.Context) error {
	if w.ready {
		return nil
	}
	d := startTimeout
	if dl, ok := ctx.Deadline(); ok {
		d = min(d, time.Until(dl))
	}
	out, ok := w.stray.takeUntil(w.marker, d, w.exited)
	if !ok {
		return fmt.Errorf("%w: not started within %s (%s): %s", errWorkerDied, d.Round(time.Millisecond), w.exitText(), strings.TrimSpace(out))
	}
	w.ready = true
	w.loadOut = out
	return nil
}

// startTimeout bounds python3's start-up.
const startTimeout = 30 * time.Second

// newMarker returns a string a hook will not print by chance; no NUL, as
// it travels on the command line.
func newMarker() []byte {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return []byte("\x1ehookctl-end-" + hex.EncodeToString(b[:]) + "\x1e")
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

// tailBuffer keeps the last bytes written to it (at least strayKeep) of
// each run's output, the runs' outputs separated by the worker's marker,
// and tells waiters when something was written.
type tailBuffer struct {
	mu      sync.Mutex
	buf     []byte
	marker  []byte
	changed chan struct{} // closed at the next write; nil when nobody waits
}

const strayKeep = 4096

func newTailBuffer(marker []byte) *tailBuffer {
	return &tailBuffer{marker: marker}
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	t.buf = append(t.buf, p...)
	if len(t.buf) > 2*strayKeep {
		t.buf = trimRuns(t.buf, t.marker)
	}
	if t.changed != nil {
		close(t.changed)
		t.changed = nil
	}
	t.mu.Unlock()
	return len(p), nil
}

// trimRuns keeps the last strayKeep bytes of each run's output in buf,
// and every marker: with pipelined runs, the next run's output may come
// in before the run before it was taken, and its marker must stay.
func trimRuns(buf, marker []byte) []byte {
	out := buf[:0]
	for {
		i := -1
		if len(marker) > 0 {
			i = bytes.Index(buf, marker)
		}
		seg := buf
		if i >= 0 {
			seg = buf[:i]
		}
		if len(seg) > strayKeep {
			seg = seg[len(seg)-strayKeep:]
		}
		out = append(out, seg...) // copies forward: never past what is read
		if i < 0 {
			return out
		}
		out = append(out, marker...)
		buf = buf[i+len(marker):]
	}
}

// waitChan returns a channel closed at the next write. The caller holds mu.
func (t *tailBuffer) waitChan() chan struct{} {
	if t.changed == nil {
		t.changed = make(chan struct{})
	}
	return t.changed
}

// take returns what was written since the last take, without markers.
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

// takeUntil waits until marker has been written (at most d, or until
// exited closes: then everything is in) and returns what came before it,
// keeping what came after for the next take, and true. Without the marker
// it returns everything and false.
func (t *tailBuffer) takeUntil(marker []byte, d time.Duration, exited <-chan struct{}) (string, bool) {
	var timer *time.Timer // made only if the marker is not in yet
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	for {
		t.mu.Lock()
		if i := bytes.Index(t.buf, marker); i >= 0 {
			s := string(t.buf[:i])
			t.buf = append(t.buf[:0], t.buf[i+len(marker):]...)
			t.mu.Unlock()
			return s, true
		}
		changed := t.waitChan()
		t.mu.Unlock()
		if timer == nil {
			timer = time.NewTimer(d)
		}
		select {
		case <-changed:
			continue
		case <-exited:
		case <-timer.C:
		}
		// Everything that will come is in.
		return strings.ReplaceAll(t.take(), string(marker), ""), false
	}
}

// waitQuiet waits until something was written and then nothing more for
// quiet, at most d in all, or until exited closes.
func (t *tailBuffer) waitQuiet(d, quiet time.Duration, exited <-chan struct{}) {
	deadline := time.NewTimer(d)
	defer deadline.Stop()
	var q <-chan time.Time // armed once output arrived
	for {
		t.mu.Lock()
		changed := t.waitChan()
		t.mu.Unlock()
		select {
		case <-changed:
			q = time.After(quiet)
		case <-q:
			return
		case <-deadline.C:
			return
		case <-exited:
			return
		}
	}
}

// fileSig identifies a version of a file cheaply: one stat per event.
type fileSig struct {
	ino, dev    uint64
	size        int64
	mtime, ctim int64
}

// newest is when the file last changed (content or inode).
func (s fileSig) newest() time.Time { return time.Unix(0, max(s.mtime, s.ctim)) }

// settle is how long a changed file must stay unchanged before it is
// loaded: an editor saving in place truncates, then writes.
var settle = 100 * time.Millisecond

// watched is a file a worker's version of the hook was loaded from.
type watched struct {
	path string
	sig  fileSig
}

// addWatch adds the files the worker reports having loaded, as they are
// now, to the ones it watches. A nil list means no change.
func (w *worker) addWatch(files []string) {
	for _, f := range files {
		known := false
		for _, x := range w.watch {
			known = known || x.path == f
		}
		if known || len(w.watch) >= maxWatch {
			continue
		}
		if sig, err := statSig(f); err == nil {
			w.watch = append(w.watch, watched{path: f, sig: sig})
		}
	}
}

// maxWatch bounds the files stat'ed before each run.
const maxWatch = 64

// changed stats the watched files: whether any changed since the load,
// whether all the changed ones have been stable for settle (a missing one
// is not), and a key naming the current versions.
func (w *worker) changed() (changed, stable bool, key string) {
	stable = true
	now := time.Now()
	sigs := make([]fileSig, 0, 8)
	for _, x := range w.watch {
		sig, err := statSig(x.path)
		sigs = append(sigs, sig)
		if err != nil {
			changed, stable = true, false
			continue
		}
		if sig != x.sig {
			changed = true
			if now.Sub(sig.newest()) < settle {
				stable = false
			}
		}
	}
	if !changed {
		return false, true, "" // the key is only needed for a change: not built
	}
	var b strings.Builder
	for i, x := range w.watch {
		fmt.Fprintf(&b, "%s %v\n", x.path, sigs[i])
	}
	return changed, stable, b.String()
}
