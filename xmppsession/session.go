// Package xmppsession keeps one XMPP client session per hookctl profile:
// it connects, reconnects with backoff, decodes PubSub notifications into
// hookctl events and offers the PubSub requests the backend needs
// (subscribe, publish, retract, node management, item fetch).
package xmppsession

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"hookctl.dev/hookctl"
	"mellium.im/sasl"
	"mellium.im/xmlstream"
	"mellium.im/xmpp"
	"mellium.im/xmpp/jid"
	"mellium.im/xmpp/mux"
	"mellium.im/xmpp/ping"
	"mellium.im/xmpp/stanza"
	"mellium.im/xmpp/stream"
)

// TLSMode says how the connection to the server is secured.
type TLSMode string

// TLS modes.
const (
	TLSStartTLS TLSMode = "starttls" // plain TCP upgraded with STARTTLS (default)
	TLSDirect   TLSMode = "direct"   // TLS from the first byte (XEP-0368)
	TLSNone     TLSMode = "none"     // no TLS at all: test servers only
)

// Connection states reported by State.
const (
	StateDisconnected = "disconnected"
	StateConnecting   = "connecting"
	StateConnected    = "connected"
	StateStopped      = "stopped"
)

// DefaultResource is the resource bound when Config.Resource is empty. A
// fixed resource keeps full-JID subscriptions valid across reconnects.
const DefaultResource = "hookctl"

// Config describes one profile's account and connection.
type Config struct {
	// Profile names the account in events and logs.
	Profile string
	// JID is the account, bare or full (a resource here overrides Resource).
	JID string
	// Password is the account's password.
	Password string
	// Server is host:port to dial; default the JID's domain, port 5222
	// (5223 for direct TLS).
	Server string
	// TLS is the TLS mode; default starttls.
	TLS TLSMode
	// InsecureSkipVerify accepts any server certificate: for test servers
	// only, never in production (it allows a man in the middle).
	InsecureSkipVerify bool
	// CAFile is a PEM file of the certificate authorities that verify the
	// server's certificate instead of the system's pool.
	CAFile string
	// Resource is the resource to bind; default DefaultResource.
	Resource string
	// Logger receives connection events; default discards.
	Logger *slog.Logger
	// OnEvent is called for each decoded PubSub event, from the session's
	// read goroutine: it must not block (enqueue and return).
	OnEvent func(hookctl.Event)
	// OnSkip is called, like OnEvent, for each item of a notification that
	// could not be decoded (too large, nested too deep), with what is known
	// of it and why, so that the skip can be recorded.
	OnSkip func(hookctl.Event, error)
	// OnReady, if set, is called after each login, before the available
	// presence that makes some servers replay notifications (ejabberd
	// sends each subscribed node's last item), so that a caller can start
	// holding events first. It must not block.
	OnReady func()
	// OnConnect is called in a goroutine owned by the session after each
	// successful connect; reconnect is false the first time. Its context
	// ends when that connection ends, and Run waits for it to return.
	OnConnect func(ctx context.Context, reconnect bool)
	// Backoff bounds the reconnect delay: exponential from Min to Max, each
	// delay drawn uniformly in [Min, current cap]. Defaults 500ms and 30s.
	Backoff struct{ Min, Max time.Duration }
	// PingInterval is how often a XEP-0199 ping checks the connection;
	// default 30s. PingTimeout bounds each ping; default 10s.
	PingInterval, PingTimeout time.Duration
	// RequestTimeout bounds requests whose context has no deadline;
	// default 30s.
	RequestTimeout time.Duration
}

// State is a snapshot of a session's connection.
type State struct {
	// State is one of StateDisconnected, StateConnecting, StateConnected,
	// StateStopped.
	State string `json:"state"`
	// LastError is the last connection error, kept after recovery.
	LastError string `json:"last_error,omitempty"`
	// Since is when State last changed.
	Since time.Time `json:"since"`
	// Reconnects counts successful connections after the first.
	Reconnects uint64 `json:"reconnects"`
	// Conflicts counts connections closed by the server because another
	// session bound the same full JID.
	Conflicts uint64 `json:"conflicts"`
	// Events counts events delivered to OnEvent.
	Events uint64 `json:"events"`
	// JID is the bound full JID while connected, else the configured JID.
	JID string `json:"jid"`
	// SASL is the mechanism of the last successful login, TLS its TLS
	// version ("" for plain TCP).
	SASL string `json:"sasl,omitempty"`
	TLS  string `json:"tls,omitempty"`
}

// Session is one profile's XMPP client session. Run owns the connection;
// the request methods may be called from any goroutine while it runs.
type Session struct {
	cfg    Config
	origin jid.JID // with resource
	log    *slog.Logger
	roots  *x509.CertPool // from CAFile; nil: the system's
	// mechanisms restricts SASL to these names, strongest first (tests).
	mechanisms []string

	running atomic.Bool
	events  atomic.Uint64

	mu        sync.Mutex
	state     State
	conn      *conn         // nil while not connected
	connected chan struct{} // closed while connected
}

// conn is one live connection.
type conn struct {
	xs   *xmpp.Session
	ctx  context.Context // ends when the connection ends
	full jid.JID
	// drop closes the connection (Run then reconnects): after a write that
	// failed or was cut short by its deadline, the stream may hold half a
	// stanza, and the server then answers nothing more on it.
	drop func()
	// writeFailed reports whether a write on the connection failed.
	writeFailed func() bool
}

// watchedConn remembers that a write failed: mellium cuts a write short
// (a deadline in the past) when a request's context ends during it, and
// the request then reports only its context's error.
type watchedConn struct {
	net.Conn
	failed atomic.Bool
}

func (w *watchedConn) Write(p []byte) (int, error) {
	n, err := w.Conn.Write(p)
	if err != nil {
		w.failed.Store(true)
	}
	return n, err
}

// writeFailedOf finds the watchedConn under nc (itself, or under TLS).
func writeFailedOf(nc net.Conn) func() bool {
	if tc, ok := nc.(*tls.Conn); ok {
		nc = tc.NetConn()
	}
	if w, ok := nc.(*watchedConn); ok {
		return w.failed.Load
	}
	return func() bool { return false }
}

// New checks cfg and returns a session; Run connects it.
func New(cfg Config) (*Session, error) {
	j, err := jid.Parse(cfg.JID)
	if err != nil {
		return nil, fmt.Errorf("%w: profile %q: jid %q: %v", hookctl.ErrInvalid, cfg.Profile, cfg.JID, err)
	}
	if j.Localpart() == "" {
		return nil, fmt.Errorf("%w: profile %q: jid %q has no local part", hookctl.ErrInvalid, cfg.Profile, cfg.JID)
	}
	switch cfg.TLS {
	case "":
		cfg.TLS = TLSStartTLS
	case TLSStartTLS, TLSDirect, TLSNone:
	default:
		return nil, fmt.Errorf("%w: profile %q: tls mode %q (want starttls, direct or none)", hookctl.ErrInvalid, cfg.Profile, cfg.TLS)
	}
	if cfg.Resource == "" {
		cfg.Resource = DefaultResource
	}
	if j.Resourcepart() == "" {
		if j, err = j.WithResource(cfg.Resource); err != nil {
			return nil, fmt.Errorf("%w: profile %q: resource %q: %v", hookctl.ErrInvalid, cfg.Profile, cfg.Resource, err)
		}
	}
	if cfg.Server == "" {
		port := "5222"
		if cfg.TLS == TLSDirect {
			port = "5223"
		}
		cfg.Server = net.JoinHostPort(j.Domainpart(), port)
	} else if _, _, err := net.SplitHostPort(cfg.Server); err != nil {
		return nil, fmt.Errorf("%w: profile %q: server %q: %v", hookctl.ErrInvalid, cfg.Profile, cfg.Server, err)
	}
	if cfg.Backoff.Min <= 0 {
		cfg.Backoff.Min = 500 * time.Millisecond
	}
	if cfg.Backoff.Max < cfg.Backoff.Min {
		cfg.Backoff.Max = max(30*time.Second, cfg.Backoff.Min)
	}
	if cfg.PingInterval <= 0 {
		cfg.PingInterval = 30 * time.Second
	}
	if cfg.PingTimeout <= 0 {
		cfg.PingTimeout = 10 * time.Second
	}
	if cfg.RequestTimeout <= 0 {
		cfg.RequestTimeout = 30 * time.Second
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Session{
		cfg:       cfg,
		origin:    j,
		log:       log.With("profile", cfg.Profile),
		connected: make(chan struct{}),
	}
	s.state = State{State: StateDisconnected, Since: time.Now(), JID: j.String()}
	if cfg.InsecureSkipVerify && cfg.TLS != TLSNone {
		s.log.Warn("insecure_skip_verify: the server's certificate is not checked; for test servers only")
	}
	if cfg.CAFile != "" {
		if s.roots, err = LoadCAFile(cfg.CAFile); err != nil {
			return nil, fmt.Errorf("%w: profile %q: %v", hookctl.ErrInvalid, cfg.Profile, err)
		}
	}
	return s, nil
}

// LoadCAFile reads a PEM file of CA certificates into a pool; a file
// without any certificate is an error.
func LoadCAFile(path string) (*x509.CertPool, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("ca_file: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("ca_file %s: no PEM certificate in it", path)
	}
	return pool, nil
}

// Bare returns the account's bare JID.
func (s *Session) Bare() string { return s.origin.Bare().String() }

// State returns a snapshot of the connection state.
func (s *Session) State() State {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.state
	st.Events = s.events.Load()
	return st
}

// WaitConnected blocks until the session is connected or ctx ends.
func (s *Session) WaitConnected(ctx context.Context) error {
	s.mu.Lock()
	ch := s.connected
	s.mu.Unlock()
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (s *Session) setState(state string, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.state.State, s.state.Since = state, time.Now()
	if err != nil {
		s.state.LastError = err.Error()
	}
}

// Run connects, serves and reconnects with backoff until ctx ends; it then
// closes the stream cleanly, waits for every goroutine it started and
// returns nil. It returns an error only when called twice concurrently.
func (s *Session) Run(ctx context.Context) error {
	if !s.running.CompareAndSwap(false, true) {
		return fmt.Errorf("profile %q: session already running", s.cfg.Profile)
	}
	defer s.running.Store(false)
	defer s.setState(StateStopped, nil)

	everConnected := false
	failures, conflicts := 0, 0
	for ctx.Err() == nil {
		s.setState(StateConnecting, nil)
		xs, nc, err := s.dial(ctx)
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			failures++
			s.setState(StateDisconnected, err)
			delay := s.backoff(failures)
			s.log.Warn("xmpp connect failed", "err", err, "retry_in", delay)
			if !sleep(ctx, delay) {
				break
			}
			continue
		}
		failures = 0
		if everConnected {
			s.mu.Lock()
			s.state.Reconnects++
			s.mu.Unlock()
		}
		began := time.Now()
		err = s.serve(ctx, xs, nc, everConnected)
		everConnected = true
		if ctx.Err() != nil {
			break
		}
		if err == nil {
			err = errors.New("stream closed by server")
		}
		delay := s.backoff(1)
		if isConflict(err) {
			// Another session bound our full JID and the server closed
			// ours: reconnecting at once would close that one in turn,
			// for ever. Back off more each time, without the usual
			// jitter floor, until a connection lasts.
			if time.Since(began) > s.cfg.Backoff.Max {
				conflicts = 0
			}
			conflicts++
			delay = s.conflictBackoff(conflicts)
			s.mu.Lock()
			s.state.Conflicts++
			s.mu.Unlock()
			err = fmt.Errorf("conflict: another session bound %s and the server closed this one "+
				"(another backend on this account with the same resource?); retry %d in %v",
				s.origin, conflicts, delay.Round(time.Millisecond))
		} else {
			conflicts = 0
		}
		s.setState(StateDisconnected, err)
		s.log.Warn("xmpp connection lost", "err", err, "retry_in", delay)
		if !sleep(ctx, delay) {
			break
		}
	}
	return nil
}

// backoff returns the delay before attempt n (1-based): full jitter over
// [Min, min(Max, Min·2^(n-1))].
func (s *Session) backoff(n int) time.Duration {
	lo, hi := s.cfg.Backoff.Min, s.cfg.Backoff.Max
	ceil := lo
	for i := 1; i < n && ceil < hi; i++ {
		ceil *= 2
	}
	ceil = min(ceil, hi)
	if ceil <= lo {
		return lo
	}
	return lo + rand.N(ceil-lo+1)
}

// conflictBackoff returns the delay after the nth conflict in a row:
// uniformly in [cap/2, cap], cap = min(Max, Min·2^n).
func (s *Session) conflictBackoff(n int) time.Duration {
	ceil := s.cfg.Backoff.Min
	for i := 0; i < n && ceil < s.cfg.Backoff.Max; i++ {
		ceil *= 2
	}
	ceil = min(ceil, s.cfg.Backoff.Max)
	return ceil/2 + rand.N(ceil/2+1)
}

// isConflict reports whether err is the server's <conflict/> stream error:
// another session took over this full JID.
func isConflict(err error) bool {
	var se stream.Error
	return errors.As(err, &se) && se.Err == stream.Conflict.Err
}

// ResourceFor returns the default resource of a backend keeping its data
// in dataDir: "hookctl-" and 8 hex digits of the host name and the data
// directory. It is stable across restarts (so that full-JID subscriptions
// survive them) and differs between two backends on one account, which a
// fixed resource made close each other's session every half second.
func ResourceFor(dataDir string) string {
	host, _ := os.Hostname()
	if abs, err := filepath.Abs(dataDir); err == nil {
		dataDir = abs
	}
	sum := sha256.Sum256([]byte(host + "\x00" + dataDir))
	return DefaultResource + "-" + hex.EncodeToString(sum[:4])
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// dial opens the TCP connection and negotiates the stream.
func (s *Session) dial(ctx context.Context) (*xmpp.Session, net.Conn, error) {
	dctx, cancel := context.WithTimeout(ctx, s.cfg.RequestTimeout)
	defer cancel()
	raw, err := (&net.Dialer{KeepAlive: 30 * time.Second}).DialContext(dctx, "tcp", s.cfg.Server)
	if err != nil {
		return nil, nil, fmt.Errorf("dialing %s: %w", s.cfg.Server, err)
	}
	var nc net.Conn = &watchedConn{Conn: raw}
	tlsCfg := &tls.Config{
		ServerName:         s.origin.Domainpart(),
		RootCAs:            s.roots,
		InsecureSkipVerify: s.cfg.InsecureSkipVerify, // #nosec G402 -- opt-in, for test servers
		MinVersion:         tls.VersionTLS12,
	}
	var state xmpp.SessionState
	var features []xmpp.StreamFeature
	startTLSOffered := false
	switch s.cfg.TLS {
	case TLSDirect:
		tc := tls.Client(nc, tlsCfg)
		if err := tc.HandshakeContext(dctx); err != nil {
			nc.Close()
			return nil, nil, fmt.Errorf("tls handshake with %s: %w", s.cfg.Server, tlsError(err))
		}
		nc, state = tc, xmpp.Secure
	case TLSNone:
		// Claim the stream is secure so that mellium goes on to SASL: the
		// config chose no TLS explicitly.
		state = xmpp.Secure
	default:
		st := xmpp.StartTLS(tlsCfg)
		parse := st.Parse // called for a <starttls/> among the server's features
		st.Parse = func(ctx context.Context, d *xml.Decoder, start *xml.StartElement) (bool, any, error) {
			startTLSOffered = true
			return parse(ctx, d, start)
		}
		features = append(features, st)
	}
	mech := ""
	features = append(features,
		xmpp.SASL("", s.cfg.Password, s.saslMechanisms(&mech)...),
		bindResource(s.origin))
	xs, err := xmpp.NewSession(dctx, s.origin.Domain(), s.origin, nc, state,
		xmpp.NewNegotiator(func(*xmpp.Session, *xmpp.StreamConfig) xmpp.StreamConfig {
			return xmpp.StreamConfig{Features: features}
		}))
	if err != nil {
		nc.Close()
		if s.cfg.TLS == TLSStartTLS && !startTLSOffered && ctx.Err() == nil {
			// mellium would go on to report "features advertised out of
			// order": SASL is never tried on the plain stream.
			return nil, nil, fmt.Errorf("%s did not offer STARTTLS (tls: starttls): refusing to log in over plain TCP (%w)", s.cfg.Server, err)
		}
		return nil, nil, fmt.Errorf("negotiating stream with %s: %w", s.cfg.Server, tlsError(err))
	}
	s.mu.Lock()
	s.state.SASL, s.state.TLS = mech, ""
	if cs := xs.ConnectionState(); cs.Version != 0 {
		s.state.TLS = tls.VersionName(cs.Version)
	}
	s.mu.Unlock()
	return xs, nc, nil
}

// saslMechanisms lists the mechanisms to offer, strongest first, each
// recording its name in *used when it starts. PLAIN is last: over TLS it
// is safe, and without TLS it is only reachable because the config said
// tls: none. (The -PLUS variants are not offered: see docs/SERVERS.md.)
func (s *Session) saslMechanisms(used *string) []sasl.Mechanism {
	all := []sasl.Mechanism{sasl.ScramSha256, sasl.ScramSha1, sasl.Plain}
	if s.mechanisms != nil {
		all = nil
		for _, name := range s.mechanisms {
			for _, m := range []sasl.Mechanism{sasl.ScramSha256Plus, sasl.ScramSha1Plus, sasl.ScramSha256, sasl.ScramSha1, sasl.Plain} {
				if m.Name == name {
					all = append(all, m)
				}
			}
		}
	}
	for i := range all {
		name, start := all[i].Name, all[i].Start
		all[i].Start = func(n *sasl.Negotiator) (bool, []byte, any, error) {
			*used = name
			return start(n)
		}
	}
	return all
}

// tlsError makes a certificate failure say what is wrong in words a user
// can act on; other errors are returned as they are.
func tlsError(err error) error {
	var hostErr x509.HostnameError
	var authErr x509.UnknownAuthorityError
	var invalid x509.CertificateInvalidError
	var verifyErr *tls.CertificateVerificationError
	switch {
	case errors.As(err, &hostErr):
		return fmt.Errorf("the server's TLS certificate is not valid for this domain (wrong host name): %w", err)
	case errors.As(err, &authErr):
		return fmt.Errorf("the server's TLS certificate is not signed by a trusted authority (set ca_file to the CA that signed it): %w", err)
	case errors.As(err, &invalid):
		return fmt.Errorf("the server's TLS certificate is invalid: %w", err)
	case errors.As(err, &verifyErr):
		return fmt.Errorf("the server's TLS certificate failed verification: %w", err)
	}
	return err
}

// bindResource binds origin's resource. xmpp.BindResource cannot be used:
// mellium v0.22.0 sends an empty <resource/> (it encodes the JID field
// instead), so the server picks a random resource and full-JID
// subscriptions would not survive a reconnect.
func bindResource(origin jid.JID) xmpp.StreamFeature {
	f := xmpp.BindResource()
	f.Negotiate = func(ctx context.Context, session *xmpp.Session, _ any) (xmpp.SessionState, io.ReadWriter, error) {
		w := session.TokenWriter()
		defer w.Close()
		r := session.TokenReader()
		defer r.Close()
		id := strconv.FormatInt(time.Now().UnixNano(), 36)
		req := stanza.IQ{XMLName: xml.Name{Space: stanza.NSClient, Local: "iq"}, ID: id, Type: stanza.SetIQ}.Wrap(
			elem(nsBind, "bind", elem("", "resource", xmlstream.Token(xml.CharData(origin.Resourcepart())))))
		if _, err := xmlstream.Copy(w, req); err != nil {
			return 0, nil, err
		}
		if err := w.Flush(); err != nil {
			return 0, nil, err
		}
		var resp struct {
			XMLName xml.Name      `xml:"iq"`
			ID      string        `xml:"id,attr"`
			Type    string        `xml:"type,attr"`
			JID     string        `xml:"urn:ietf:params:xml:ns:xmpp-bind bind>jid"`
			Err     *stanza.Error `xml:"error"`
		}
		if err := xml.NewTokenDecoder(r).Decode(&resp); err != nil {
			return 0, nil, fmt.Errorf("binding resource: %w", err)
		}
		switch {
		case resp.ID != id:
			return 0, nil, fmt.Errorf("binding resource: reply to %q, want %q", resp.ID, id)
		case resp.Type == "error" && resp.Err != nil:
			return 0, nil, fmt.Errorf("binding resource: %w", *resp.Err)
		case resp.Type != "result":
			return 0, nil, fmt.Errorf("binding resource: reply of type %q", resp.Type)
		}
		bound, err := jid.Parse(resp.JID)
		if err != nil {
			return 0, nil, fmt.Errorf("binding resource: bound jid %q: %w", resp.JID, err)
		}
		session.UpdateAddr(bound)
		return xmpp.Ready, nil, nil
	}
	return f
}

const nsBind = "urn:ietf:params:xml:ns:xmpp-bind"

// serve runs one connection until it fails or ctx ends.
func (s *Session) serve(ctx context.Context, xs *xmpp.Session, nc net.Conn, reconnect bool) error {
	cctx, cancelConn := context.WithCancel(ctx)
	defer cancelConn()
	var wg sync.WaitGroup
	defer wg.Wait()
	defer nc.Close()

	served := make(chan error, 1)
	wg.Go(func() { served <- xs.Serve(s.handler()) })

	if s.cfg.OnReady != nil {
		s.cfg.OnReady()
	}
	// Available presence, so that bare-JID subscriptions deliver too.
	if err := xs.Send(cctx, stanza.Presence{}.Wrap(nil)); err != nil {
		nc.Close()
		<-served
		return fmt.Errorf("sending presence: %w", err)
	}

	c := &conn{xs: xs, ctx: cctx, full: xs.LocalAddr(), drop: func() { nc.Close() }, writeFailed: writeFailedOf(nc)}
	s.mu.Lock()
	s.conn = c
	s.state.State, s.state.Since, s.state.JID = StateConnected, time.Now(), c.full.String()
	mech, tlsVersion := s.state.SASL, s.state.TLS
	close(s.connected)
	s.mu.Unlock()
	s.log.Info("xmpp connected", "jid", c.full.String(), "reconnect", reconnect, "sasl", mech, "tls", tlsVersion)
	defer func() {
		s.mu.Lock()
		s.conn = nil
		s.connected = make(chan struct{})
		s.state.JID = s.origin.String()
		s.mu.Unlock()
	}()

	if s.cfg.OnConnect != nil {
		wg.Go(func() { s.cfg.OnConnect(cctx, reconnect) })
	}
	wg.Go(func() { s.keepalive(cctx, xs, nc) })

	select {
	case err := <-served:
		cancelConn()
		return err
	case <-ctx.Done():
	}
	// Clean shutdown: end our stream and give the server a moment to end
	// its own, which makes Serve return.
	cancelConn()
	_ = nc.SetWriteDeadline(time.Now().Add(2 * time.Second))
	_ = xs.Close()
	_ = nc.SetReadDeadline(time.Now().Add(2 * time.Second))
	<-served
	return nil
}

// keepalive pings the server; a failed ping closes the connection so that
// Serve returns and Run reconnects, instead of waiting on a dead TCP link.
func (s *Session) keepalive(ctx context.Context, xs *xmpp.Session, nc net.Conn) {
	t := time.NewTicker(s.cfg.PingInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		pctx, cancel := context.WithTimeout(ctx, s.cfg.PingTimeout)
		err := ping.Send(pctx, xs, s.origin.Domain())
		cancel()
		if err != nil && ctx.Err() == nil {
			s.log.Warn("xmpp ping failed, closing connection", "err", err)
			nc.Close()
			return
		}
	}
}

// handler decodes messages into events and answers pings.
func (s *Session) handler() xmpp.Handler {
	iqs := mux.New(stanza.NSClient, ping.Handle())
	return xmpp.HandlerFunc(func(t xmlstream.TokenReadEncoder, start *xml.StartElement) error {
		if start.Name.Local != "message" {
			return iqs.HandleXMPP(t, start)
		}
		switch stanza.MessageType(attrValue(start.Attr, "type")) {
		case "", stanza.NormalMessage, stanza.HeadlineMessage:
		default:
			return nil // chat, groupchat, error: not PubSub notifications
		}
		// from is stripped by the stream layer when it is our own bare JID
		// (own PEP): hence the fallback.
		events, err := DecodeEvent(s.cfg.Profile, s.origin.Bare().String(),
			xmlstream.MultiReader(xmlstream.Token(start.Copy()), t))
		if err != nil {
			s.log.Warn("pubsub event partly undecodable", "err", err, "events", len(events))
			for _, si := range SkippedItems(err) {
				if s.cfg.OnSkip != nil {
					s.cfg.OnSkip(hookctl.Event{Profile: s.cfg.Profile, Service: si.Service, Node: si.Node,
						Kind: hookctl.EventPublish, ItemID: si.ItemID, Received: time.Now()}, si.Err)
				}
			}
		}
		for _, ev := range events {
			s.events.Add(1)
			if s.cfg.OnEvent != nil {
				s.cfg.OnEvent(ev)
			}
		}
		// Never fail here: an error would end Serve and the connection.
		return nil
	})
}

// current returns the live connection and a request context that also
// ends with the connection (pending IQs are not released otherwise).
func (s *Session) current(ctx context.Context) (*conn, context.Context, context.CancelFunc, error) {
	s.mu.Lock()
	c := s.conn
	s.mu.Unlock()
	if c == nil {
		return nil, nil, nil, fmt.Errorf("profile %q: not connected: %w", s.cfg.Profile, hookctl.ErrUnavailable)
	}
	rctx, cancel := context.WithCancel(ctx)
	if _, ok := ctx.Deadline(); !ok {
		rctx, cancel = context.WithTimeout(ctx, s.cfg.RequestTimeout)
	}
	stop := context.AfterFunc(c.ctx, cancel)
	return c, rctx, func() { stop(); cancel() }, nil
}

// reqErr gives a request error its context: stanza errors become
// *StanzaError, a connection lost mid-request wraps hookctl.ErrUnavailable.
func (s *Session) reqErr(ctx context.Context, c *conn, what string, err error) error {
	if err == nil {
		return nil
	}
	var se stanza.Error
	if errors.As(err, &se) {
		return fmt.Errorf("%s: %w", what, newStanzaError(se))
	}
	if brokenWrite(err) || c.writeFailed() {
		s.log.Warn("xmpp write failed; reconnecting", "request", what, "err", err)
		c.drop()
		return fmt.Errorf("%s: %w: writing to the XMPP server failed (%v); reconnecting "+
			"(the request may or may not have been carried out)", what, hookctl.ErrUnavailable, err)
	}
	// ctx is the request's own context (see current): it also ends when
	// the connection does, so the connection is asked first.
	switch {
	case c.ctx.Err() != nil:
		return fmt.Errorf("%s: %w: the connection to the XMPP server was lost before it answered "+
			"(the request may or may not have been carried out)", what, hookctl.ErrUnavailable)
	case errors.Is(ctx.Err(), context.DeadlineExceeded):
		return fmt.Errorf("%s: %w: no answer from the XMPP server within the request deadline (request_timeout, %v unless the caller set less): "+
			"it may have dropped the request (a payload nested too deep, say) or be overloaded",
			what, ErrTimeout, s.cfg.RequestTimeout)
	}
	return fmt.Errorf("%s: %w", what, err)
}

// brokenWrite reports whether err is a failed or interrupted write on the
// connection, after which the XML stream cannot be trusted.
func brokenWrite(err error) bool {
	var oe *net.OpError
	return errors.Is(err, os.ErrDeadlineExceeded) || (errors.As(err, &oe) && oe.Op == "write")
}

// ErrTimeout is a request the server did not answer in time. It wraps
// hookctl.ErrUnavailable: trying again later may work.
var ErrTimeout error = timeoutError{}

type timeoutError struct{}

func (timeoutError) Error() string { return "timed out" }
func (timeoutError) Unwrap() error { return hookctl.ErrUnavailable }

// StanzaError is an error returned by the server for a request.
type StanzaError struct {
	// Condition is the defined condition, e.g. "item-not-found", "forbidden".
	Condition string
	// Type is the error type: cancel, continue, modify, auth or wait.
	Type string
	// Text is the server's human-readable text, if any.
	Text string
	err  stanza.Error
}

func newStanzaError(se stanza.Error) *StanzaError {
	e := &StanzaError{Condition: string(se.Condition), Type: string(se.Type), err: se}
	if len(se.Text) > 0 {
		e.Text = se.Error()
	}
	return e
}

// Error returns the condition, followed by the text when there is one.
func (e *StanzaError) Error() string {
	if e.Text != "" && e.Text != e.Condition {
		return e.Condition + ": " + e.Text
	}
	return e.Condition
}

// Unwrap returns the underlying mellium stanza.Error.
func (e *StanzaError) Unwrap() error { return e.err }

// Is maps item-not-found to hookctl.ErrNotFound, so that callers need not
// know XMPP conditions.
func (e *StanzaError) Is(target error) bool {
	return target == hookctl.ErrNotFound && e.Condition == string(stanza.ItemNotFound)
}

// readAll drains r so that the session's input lock is released promptly.
func readAll(r xml.TokenReader) error {
	for {
		if _, err := r.Token(); err != nil {
			if err == io.EOF {
				return nil
			}
			return err
		}
	}
}
