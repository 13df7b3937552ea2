// Package servertest holds what the test XMPP servers (prosodytest,
// ejabberdtest) share: free loopback ports, the login that proves a server
// ready, and their TLS certificate.
package servertest

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"time"

	"mellium.im/sasl"
	"mellium.im/xmpp"
	"mellium.im/xmpp/jid"

	"hookctl.dev/hookctl/internal/testcert"
)

// FreePorts returns n distinct free loopback ports.
func FreePorts(n int) ([]int, error) {
	var ports []int
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		defer l.Close() // held until all are chosen, so they differ
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// ProbeLogin logs user in at addr (with STARTTLS when startTLS, trusting
// any certificate: it is a readiness probe of a test server) and closes
// the session: a server that answers it is ready.
func ProbeLogin(addr, domain, user, password string, startTLS bool) error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	conn, err := (&net.Dialer{}).DialContext(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	defer conn.Close()
	origin := jid.MustParse(user + "@" + domain)
	var features []xmpp.StreamFeature
	state := xmpp.Secure
	if startTLS {
		state = 0
		features = append(features,
			xmpp.StartTLS(&tls.Config{ServerName: domain, InsecureSkipVerify: true})) // #nosec G402 -- readiness probe of a test server
	}
	features = append(features, xmpp.SASL("", password, sasl.ScramSha1, sasl.Plain), xmpp.BindResource())
	sess, err := xmpp.NewSession(ctx, origin.Domain(), origin, conn, state,
		xmpp.NewNegotiator(func(*xmpp.Session, *xmpp.StreamConfig) xmpp.StreamConfig {
			return xmpp.StreamConfig{Features: features}
		}))
	if err != nil {
		return err
	}
	return sess.Close()
}

// Certificate returns certPEM and keyPEM checked as a pair, or, when
// certPEM is empty, a new self-signed pair for names (from a CA named
// caName).
func Certificate(caName string, certPEM, keyPEM []byte, names ...string) ([]byte, []byte, error) {
	if len(certPEM) == 0 {
		ca, err := testcert.NewCA(caName)
		if err != nil {
			return nil, nil, err
		}
		if certPEM, keyPEM, err = ca.Issue(names...); err != nil {
			return nil, nil, err
		}
	}
	if _, err := tls.X509KeyPair(certPEM, keyPEM); err != nil {
		return nil, nil, fmt.Errorf("certificate and key: %w", err)
	}
	return certPEM, keyPEM, nil
}
