package exprrunner

import "sync"

// tail is an io.Writer that keeps only the last max bytes written to it, so
// a program that floods its output costs a fixed amount of memory.
type tail struct {
	mu  sync.Mutex
	max int
	buf []byte // at most max bytes, the newest at the end
	cut bool   // bytes were dropped from the front
}

func newTail(max int) *tail { return &tail{max: max, buf: make([]byte, 0, max)} }

// Write keeps the end of p; it never fails, so the program is never stopped
// by a full buffer.
func (t *tail) Write(p []byte) (int, error) {
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

// String returns the kept bytes, cut at a rune boundary.
func (t *tail) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	b := t.buf
	// Drop a rune split by the cut (at most 3 continuation bytes).
	for i := 0; t.cut && i < 3 && len(b) > 0 && b[0]&0xC0 == 0x80; i++ {
		b = b[1:]
	}
	return string(b)
}

// WriteString writes s.
func (t *tail) WriteString(s string) { _, _ = t.Write([]byte(s)) }
