// Package xmpptest starts a real XMPP server of a given kind (Prosody or
// ejabberd) for the integration tests, so that one test runs against
// each server instead of being copied.
//
// Which servers the parametrised tests use is HOOKCTL_TEST_SERVERS, a
// comma-separated list of kinds ("prosody,ejabberd"); by default every
// kind. A kind whose server is not installed is skipped, or fails under
// CI=true.
package xmpptest

import (
	"os"
	"slices"
	"strings"
	"testing"

	"hookctl.dev/hookctl/internal/ejabberdtest"
	"hookctl.dev/hookctl/internal/prosodytest"
)

// Kind names a server implementation.
type Kind string

// The server kinds.
const (
	Prosody  Kind = "prosody"
	Ejabberd Kind = "ejabberd"
)

// AllKinds lists every kind, Prosody first.
var AllKinds = []Kind{Prosody, Ejabberd}

// EnvServers is the environment variable that chooses the kinds.
const EnvServers = "HOOKCTL_TEST_SERVERS"

// Options choose how the server is configured; both kinds honour each
// field (see prosodytest.Options and ejabberdtest.Options).
type Options struct {
	// TLS requires STARTTLS, with CertPEM/KeyPEM or a self-signed
	// certificate for localhost.
	TLS bool
	// DirectTLS also opens a direct TLS (XEP-0368) port.
	DirectTLS bool
	// NoStartTLS: the plain port offers no STARTTLS.
	NoStartTLS bool
	// CertPEM and KeyPEM are the server's certificate chain and key.
	CertPEM, KeyPEM []byte
	// MemoryStorage keeps PubSub items in memory where that is not the
	// default already (Prosody).
	MemoryStorage bool
	// Admins are the bare JIDs allowed to create nodes on the PubSub
	// service; with none, nobody may.
	Admins []string
}

// impl is what the tests call on either server.
type impl interface {
	Register(tb testing.TB, user, password string) string
	LogTail() string
	PID() int
	Stop()
	Kill()
	Restart(tb testing.TB)
}

// Server is a running server of some kind.
type Server struct {
	// Kind is the server's kind.
	Kind Kind
	// Addr is the c2s listener (plain or STARTTLS), "127.0.0.1:port".
	Addr string
	// DirectTLSAddr is the direct TLS listener when Options.DirectTLS.
	DirectTLSAddr string
	// Domain is the virtual host ("localhost").
	Domain string
	// PubSub is the PubSub service's JID ("pubsub.localhost").
	PubSub string
	// Dir holds the server's config and data; Config is its config file.
	Dir, Config string

	impl impl
}

// Start runs a server of kind for the test and stops it when the test
// ends; a kind that is not installed skips the test (fails under CI).
func Start(tb testing.TB, kind Kind, opts Options) *Server {
	tb.Helper()
	switch kind {
	case Prosody:
		s := prosodytest.Start(tb, prosodytest.Options{TLS: opts.TLS, DirectTLS: opts.DirectTLS,
			NoStartTLS: opts.NoStartTLS, CertPEM: opts.CertPEM, KeyPEM: opts.KeyPEM,
			MemoryStorage: opts.MemoryStorage, Admins: opts.Admins})
		return &Server{Kind: kind, Addr: s.Addr, DirectTLSAddr: s.DirectTLSAddr, Domain: s.Domain,
			PubSub: s.PubSub, Dir: s.Dir, Config: s.Config, impl: s}
	case Ejabberd:
		s := ejabberdtest.Start(tb, ejabberdtest.Options{TLS: opts.TLS, DirectTLS: opts.DirectTLS,
			NoStartTLS: opts.NoStartTLS, CertPEM: opts.CertPEM, KeyPEM: opts.KeyPEM,
			MemoryStorage: opts.MemoryStorage, Admins: opts.Admins})
		return &Server{Kind: kind, Addr: s.Addr, DirectTLSAddr: s.DirectTLSAddr, Domain: s.Domain,
			PubSub: s.PubSub, Dir: s.Dir, Config: s.Config, impl: s}
	}
	tb.Fatalf("xmpptest: unknown server kind %q", kind)
	return nil
}

// Register creates (or resets) an account and returns its bare JID.
func (s *Server) Register(tb testing.TB, user, password string) string {
	tb.Helper()
	return s.impl.Register(tb, user, password)
}

// LogTail returns the last lines of the server's log, for test failures.
func (s *Server) LogTail() string { return s.impl.LogTail() }

// PID returns the server's process id, or 0 when it is not running.
func (s *Server) PID() int { return s.impl.PID() }

// Stop ends the server for good; it is idempotent.
func (s *Server) Stop() { s.impl.Stop() }

// Kill ends the server abruptly (SIGKILL); Restart brings it back.
func (s *Server) Kill() { s.impl.Kill() }

// Restart stops the server gracefully and starts it again on the same
// ports with the same data.
func (s *Server) Restart(tb testing.TB) {
	tb.Helper()
	s.impl.Restart(tb)
}

// Kinds returns the kinds chosen by HOOKCTL_TEST_SERVERS (default all).
// An unknown name fails the test.
func Kinds(tb testing.TB) []Kind {
	tb.Helper()
	v := strings.TrimSpace(os.Getenv(EnvServers))
	if v == "" {
		return AllKinds
	}
	var kinds []Kind
	for _, f := range strings.Split(v, ",") {
		k := Kind(strings.TrimSpace(f))
		if !slices.Contains(AllKinds, k) {
			tb.Fatalf("%s=%q: unknown server %q (want a list of %v)", EnvServers, v, k, AllKinds)
		}
		if !slices.Contains(kinds, k) {
			kinds = append(kinds, k)
		}
	}
	return kinds
}

// Each runs fn as a subtest named after each chosen kind: the test's body
// is written once and runs against every server.
func Each(t *testing.T, fn func(t *testing.T, kind Kind)) {
	t.Helper()
	for _, k := range Kinds(t) {
		t.Run(string(k), func(t *testing.T) { fn(t, k) })
	}
}

// Quirks are the differences between the servers that hookctl meets, each
// asserted by a test and listed in docs/SERVERS.md.
type Quirks struct {
	// ClosedNodeCondition is the error condition of a subscribe refused
	// by the node's access model (whitelist).
	ClosedNodeCondition string
	// ReplaysLastItem: the server sends a node's last item again to a
	// subscriber on subscribe and on available presence
	// (pubsub#send_last_published_item on_sub_and_presence, ejabberd's
	// default; Prosody's is never).
	ReplaysLastItem bool
	// EchoesOwnPEP: the account owner gets a copy of each publication to
	// its own PEP node, addressed to the bare JID, besides the
	// notification of its subscription.
	EchoesOwnPEP bool
	// MissingNodeHasNoSubscriptions: listing the subscriptions of a node
	// that does not exist answers an empty list instead of item-not-found.
	MissingNodeHasNoSubscriptions bool
	// NotifiesDeleteByDefault: a node created without configuration tells
	// its subscribers of its deletion (ejabberd's pubsub#notify_delete
	// default is false).
	NotifiesDeleteByDefault bool
	// AccessChangeDropsSubscriptions: closing a node's access model
	// (open to whitelist) silently removes the subscriptions it no longer
	// allows (Prosody 0.12); ejabberd keeps them.
	AccessChangeDropsSubscriptions bool
}

// QuirksOf returns the quirks of kind.
func QuirksOf(kind Kind) Quirks {
	if kind == Ejabberd {
		return Quirks{ClosedNodeCondition: "not-allowed", ReplaysLastItem: true, EchoesOwnPEP: true,
			MissingNodeHasNoSubscriptions: true}
	}
	return Quirks{ClosedNodeCondition: "forbidden", NotifiesDeleteByDefault: true, AccessChangeDropsSubscriptions: true}
}

// Quirks returns the server's quirks.
func (s *Server) Quirks() Quirks { return QuirksOf(s.Kind) }
