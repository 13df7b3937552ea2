package api

import (
	"context"
	"net"
	"net/http"
	"os/user"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// callerKey is the context key of the caller's identity.
type callerKey struct{}

// Caller says who made the request in ctx, for the audit trail and
// suspensions: "uid 1000 (alice)" over the Unix socket (the kernel's
// SO_PEERCRED, which the client cannot forge), "token" over TCP, "" when
// unknown (a request not served by Serve).
func Caller(ctx context.Context) string {
	s, _ := ctx.Value(callerKey{}).(string)
	return s
}

// WithCaller returns ctx carrying who as the caller, for in-process doors
// (the watcher inside the backend) that do not come through Serve.
func WithCaller(ctx context.Context, who string) context.Context {
	return context.WithValue(ctx, callerKey{}, who)
}

// connContext records each connection's caller in its requests' context.
func connContext(ctx context.Context, c net.Conn) context.Context {
	if lc, ok := c.(*limitConn); ok {
		c = lc.Conn // the connection cap's wrapper
	}
	switch conn := c.(type) {
	case *net.UnixConn:
		if uid, ok := peerUID(conn); ok {
			who := "uid " + strconv.Itoa(uid)
			if u, err := user.LookupId(strconv.Itoa(uid)); err == nil {
				who += " (" + u.Username + ")"
			}
			return WithCaller(ctx, who)
		}
		return WithCaller(ctx, "local socket")
	case *net.TCPConn:
		return WithCaller(ctx, "token")
	}
	return ctx
}

// sourceHeader carries what a client says its change comes from (the
// `hookctl watch` sidecar: its paths and commit), added to its verified
// identity as "… via SOURCE".
const sourceHeader = "Hookctl-Source"

// maxSource bounds the source a client may claim.
const maxSource = 512

type sourceKey struct{}

// WithSource returns ctx whose requests through Client tell the backend
// where their changes come from, for the audit trail.
func WithSource(ctx context.Context, src string) context.Context {
	return context.WithValue(ctx, sourceKey{}, src)
}

func sourceOf(ctx context.Context) string {
	s, _ := ctx.Value(sourceKey{}).(string)
	return s
}

// validSource reports whether src is a source worth recording: short,
// printable UTF-8 (it ends up in tables and logs).
func validSource(src string) bool {
	return src != "" && len(src) <= maxSource && utf8.ValidString(src) && !strings.ContainsFunc(src, unicode.IsControl)
}

// withSource adds a request's claimed source to its caller. A source that
// is not short, printable UTF-8 is ignored: it ends up in tables.
func withSource(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if src := r.Header.Get(sourceHeader); validSource(src) {
			r = r.WithContext(WithCaller(r.Context(), Caller(r.Context())+" via "+src))
		}
		next.ServeHTTP(w, r)
	})
}
