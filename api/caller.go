package api

import (
	"context"
	"net"
	"os/user"
	"strconv"
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
