package xmppsession

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"testing"

	"hookctl.dev/hookctl"
)

// TestBrokenWriteDropsTheConnection: after a write that failed or was cut
// short (mellium sets a past deadline when a request's context ends during
// its write), the stream may hold half a stanza; every later write failed
// with "i/o timeout" on that connection and the session never reconnected
// (seen in CI). A request error after such a write now drops the
// connection, so that Run reconnects; an ordinary timeout does not.
func TestBrokenWriteDropsTheConnection(t *testing.T) {
	s := &Session{log: slog.New(slog.DiscardHandler)}
	ioTimeout := &net.OpError{Op: "write", Net: "tcp", Err: os.ErrDeadlineExceeded}
	for _, tc := range []struct {
		name        string
		err         error
		writeFailed bool
		wantDrop    bool
	}{
		{"write i/o timeout", fmt.Errorf("publishing: %w", ioTimeout), false, true},
		{"context ended after a cut write", context.DeadlineExceeded, true, true},
		{"no answer, stream intact", context.DeadlineExceeded, false, false},
	} {
		dropped := false
		cctx, cancel := context.WithCancel(context.Background())
		c := &conn{ctx: cctx, drop: func() { dropped = true }, writeFailed: func() bool { return tc.writeFailed }}
		rctx, rcancel := context.WithTimeout(context.Background(), 0)
		err := s.reqErr(rctx, c, "publishing", tc.err)
		rcancel()
		cancel()
		if dropped != tc.wantDrop || !errors.Is(err, hookctl.ErrUnavailable) {
			t.Errorf("%s: dropped=%v err=%v; want dropped=%v and ErrUnavailable", tc.name, dropped, err, tc.wantDrop)
		}
	}
}

// TestWatchedConnRecordsFailedWrites: the flag reqErr reads.
func TestWatchedConnRecordsFailedWrites(t *testing.T) {
	a, b := net.Pipe()
	defer b.Close()
	w := &watchedConn{Conn: a}
	if writeFailedOf(w)() {
		t.Fatal("failed before any write")
	}
	a.Close()
	if _, err := w.Write([]byte("x")); err == nil {
		t.Fatal("write on a closed pipe succeeded")
	}
	if !writeFailedOf(w)() {
		t.Error("a failed write was not recorded")
	}
}
