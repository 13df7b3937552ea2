package api

import (
	"bytes"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"
)

// Accept errors (out of descriptors) reach the log above DEBUG; a client's
// protocol mistakes stay at DEBUG.
func TestServerLogLevels(t *testing.T) {
	var buf bytes.Buffer
	srv := NewHTTPServer(nil, slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug})))
	srv.ErrorLog.Printf("http: Accept error: accept tcp 127.0.0.1:1: accept4: too many open files; retrying in 5ms")
	srv.ErrorLog.Printf("http: TLS handshake error from 127.0.0.1:2: EOF")
	out := buf.String()
	if !strings.Contains(out, `level=WARN msg="http server: http: Accept error: accept tcp 127.0.0.1:1: accept4: too many open files`) {
		t.Errorf("accept error not at WARN:\n%s", out)
	}
	if !strings.Contains(out, `level=DEBUG msg="http server: http: TLS handshake error`) {
		t.Errorf("handshake error not at DEBUG:\n%s", out)
	}
}

// LimitListener holds at most n connections open: the (n+1)th is accepted
// only once one of the first n closes.
func TestLimitListener(t *testing.T) {
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l := LimitListener(inner, 2)
	defer l.Close()
	accepted := make(chan net.Conn, 3)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			accepted <- c
		}
	}()
	for range 3 {
		c, err := net.Dial("tcp", inner.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
	}
	first, second := <-accepted, <-accepted
	select {
	case <-accepted:
		t.Fatal("a third connection was accepted while two were open")
	case <-time.After(200 * time.Millisecond):
	}
	first.Close()
	select {
	case c := <-accepted:
		c.Close()
	case <-time.After(5 * time.Second):
		t.Fatal("the third connection was not accepted after one closed")
	}
	second.Close()
}
