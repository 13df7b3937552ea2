package api

import (
	"bytes"
	"context"
	"log"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"
)

// Limits of every HTTP server of the backend (control API on the socket and
// on TCP, the `listen` health and metrics server). A peer that connects and
// then sends nothing, or a header and then a body byte per minute, holds a
// connection for at most ReadHeaderTimeout or ReadTimeout; at most MaxConns
// connections are served at once, so that a flood on one listener cannot
// exhaust the process's file descriptors and starve the others.
const (
	ReadHeaderTimeout = 5 * time.Second
	// ReadTimeout covers the whole request, body included: a 32 MiB batch
	// takes milliseconds on loopback, seconds on a slow link.
	ReadTimeout = 60 * time.Second
	// WriteTimeout runs from the end of the request's headers to the end
	// of the answer, so it bounds the handler too: above the longest
	// request (a big batch with Python checks, a PubSub request and its
	// XMPP deadline).
	WriteTimeout = 10 * time.Minute
	IdleTimeout  = 60 * time.Second
	// MaxHeaderBytes is far above any real client's header.
	MaxHeaderBytes = 16 << 10
	// MaxConns bounds the connections served at once per listener.
	MaxConns = 256
)

// NewHTTPServer returns an http.Server for h with the limits above. Its
// error log goes to logger: failures to accept (out of file descriptors)
// at WARN, the rest (a client's TLS or protocol mistakes) at DEBUG.
func NewHTTPServer(h http.Handler, logger *slog.Logger) *http.Server {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: ReadHeaderTimeout,
		ReadTimeout:       ReadTimeout,
		WriteTimeout:      WriteTimeout,
		IdleTimeout:       IdleTimeout,
		MaxHeaderBytes:    MaxHeaderBytes,
		ErrorLog:          log.New(serverLog{logger}, "", 0),
	}
}

// serverLog routes http.Server's log lines to slog by what they say.
type serverLog struct{ log *slog.Logger }

func (l serverLog) Write(p []byte) (int, error) {
	msg := string(bytes.TrimSpace(p))
	level := slog.LevelDebug
	if bytes.Contains(p, []byte("Accept error")) {
		level = slog.LevelWarn
	}
	l.log.Log(context.Background(), level, "http server: "+msg)
	return len(p), nil
}

// LimitListener returns a listener that accepts at most n connections at
// once: Accept waits while n are open. Connections beyond n wait in the
// kernel's backlog and hold no file descriptor of the process.
func LimitListener(l net.Listener, n int) net.Listener {
	return &limitListener{Listener: l, sem: make(chan struct{}, n), done: make(chan struct{})}
}

type limitListener struct {
	net.Listener
	sem       chan struct{}
	done      chan struct{}
	closeOnce sync.Once
}

func (l *limitListener) Accept() (net.Conn, error) {
	select {
	case l.sem <- struct{}{}:
	case <-l.done:
		return nil, net.ErrClosed
	}
	c, err := l.Listener.Accept()
	if err != nil {
		<-l.sem
		return nil, err
	}
	return &limitConn{Conn: c, release: func() { <-l.sem }}, nil
}

func (l *limitListener) Close() error {
	l.closeOnce.Do(func() { close(l.done) })
	return l.Listener.Close()
}

type limitConn struct {
	net.Conn
	once    sync.Once
	release func()
}

func (c *limitConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.release)
	return err
}

// RefuseBody answers 413 and closes the connection for a request that
// announces a body, without reading it: for servers whose every route is a
// GET (health, metrics), so that a slow body cannot hold a connection.
func RefuseBody(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ContentLength != 0 {
			dropBody(w)
			http.Error(w, "request body not accepted", http.StatusRequestEntityTooLarge)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// dropBody makes the server close the connection after the answer without
// reading the request's body: net/http would otherwise drain up to 256 KiB
// of it, waiting on a client that sends nothing for as long as ReadTimeout.
func dropBody(w http.ResponseWriter) {
	w.Header().Set("Connection", "close")
	_ = http.NewResponseController(w).SetReadDeadline(time.Now())
}
