package runner

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"
)

// TailWriter is an io.Writer that keeps only the last max bytes written to
// it, so a hook that floods its output costs a fixed amount of memory. It
// is safe for concurrent use.
type TailWriter struct {
	mu  sync.Mutex
	max int
	buf []byte // at most max bytes, the newest at the end
	cut bool   // bytes were dropped from the front
}

// NewTailWriter returns a TailWriter keeping max bytes. Its buffer grows
// with what is written: most runs write a line or nothing, and max bytes
// made and cleared for every run cost more than the run of an expr hook.
func NewTailWriter(max int) *TailWriter {
	return &TailWriter{max: max}
}

// Write keeps the end of p; it never fails, so a writer is never stopped
// by a full buffer.
func (t *TailWriter) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := len(p)
	if len(p) >= t.max {
		t.buf = append(t.buf[:0], p[len(p)-t.max:]...)
		t.cut = true
		return n, nil
	}
	if over := len(t.buf) + len(p) - t.max; over > 0 {
		t.buf = t.buf[:copy(t.buf, t.buf[over:])]
		t.cut = true
	}
	t.buf = append(t.buf, p...)
	return n, nil
}

// WriteString writes s.
func (t *TailWriter) WriteString(s string) { _, _ = t.Write([]byte(s)) }

// String returns the kept bytes, cut at a rune boundary.
func (t *TailWriter) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	b := t.buf
	// Drop a rune split by the cut (at most 3 continuation bytes).
	for i := 0; t.cut && i < 3 && len(b) > 0 && b[0]&0xC0 == 0x80; i++ {
		b = b[1:]
	}
	return string(b)
}

// WithDeadline returns ctx unchanged when it has a deadline (dispatch
// always sets one), else ctx bounded by timeout, or DefaultTimeout when
// timeout is zero, so direct callers cannot run a hook forever.
func WithDeadline(ctx context.Context, timeout time.Duration) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return ctx, func() {}
	}
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	return context.WithTimeout(ctx, timeout)
}

// Stopped turns res into the result of a run ended by ctx: Timeout on the
// deadline, Failed on cancellation.
func Stopped(ctx context.Context, res Result) Result {
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		res.Outcome = Timeout
		res.Err = fmt.Errorf("stopped after timeout: %w", ctx.Err())
	} else {
		res.Outcome = Failed
		res.Err = fmt.Errorf("stopped: %w", ctx.Err())
	}
	return res
}
