package daemon

import (
	"bytes"
	"context"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"hookctl.dev/hookctl/api"
	"hookctl.dev/hookctl/config"
	"hookctl.dev/hookctl/internal/testcert"
	"hookctl.dev/hookctl/internal/xmpptest"
)

// syncBuffer is a bytes.Buffer safe for the daemon's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestTLSFailuresAreClearInStatusAndLog: a profile whose ca_file does not
// verify the server's certificate, one whose server offers no STARTTLS,
// and one that verifies: status and the log say which is which, and the
// failing ones never log in.
func TestTLSFailuresAreClearInStatusAndLog(t *testing.T) {
	ca, err := testcert.NewCA("hookctl test CA")
	if err != nil {
		t.Fatal(err)
	}
	certPEM, keyPEM, err := ca.Issue("localhost", "pubsub.localhost")
	if err != nil {
		t.Fatal(err)
	}
	other, err := testcert.NewCA("another CA")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	caFile, otherFile := filepath.Join(dir, "ca.pem"), filepath.Join(dir, "other.pem")
	if err := ca.WriteCAFile(caFile); err != nil {
		t.Fatal(err)
	}
	if err := other.WriteCAFile(otherFile); err != nil {
		t.Fatal(err)
	}
	srv := xmpptest.Start(t, xmpptest.Prosody, xmpptest.Options{TLS: true, CertPEM: certPEM, KeyPEM: keyPEM})
	plain := xmpptest.Start(t, xmpptest.Prosody, xmpptest.Options{NoStartTLS: true})
	cfg := testConfig(t, srv, "bot", "untrusted", "stripped")
	plain.Register(t, "stripped", "pw")
	set := func(name string, f func(*config.Profile)) {
		p := cfg.Profiles[name]
		p.TLS = config.TLSStartTLS
		f(&p)
		cfg.Profiles[name] = p
	}
	set("default", func(p *config.Profile) { p.CAFile = caFile })
	set("untrusted", func(p *config.Profile) { p.CAFile = otherFile })
	set("stripped", func(p *config.Profile) { p.CAFile, p.Server = caFile, plain.Addr })

	var logs syncBuffer
	d, err := New(Options{Config: cfg, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	runUntilEnd(t, d)
	client, err := api.NewClient(api.ClientOptions{Socket: cfg.Socket})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"untrusted": "not signed by a trusted authority (set ca_file to the CA that signed it)",
		"stripped":  "did not offer STARTTLS (tls: starttls): refusing to log in over plain TCP",
	}
	waitUntil(t, 15*time.Second, "status of the three profiles", func() (bool, string) {
		st, err := client.Status(context.Background())
		if err != nil {
			return false, err.Error()
		}
		for _, p := range st.Profiles {
			if p.Name == "default" && p.State != "connected" {
				return false, "default is " + p.State + ": " + p.LastError
			}
			if w, ok := want[p.Name]; ok && (p.State == "connected" || !strings.Contains(p.LastError, w)) {
				return false, p.Name + " is " + p.State + ": " + p.LastError
			}
		}
		return true, ""
	})
	for name, w := range want {
		if !strings.Contains(logs.String(), w) {
			t.Errorf("log lacks %s's error %q", name, w)
		}
	}
	if !strings.Contains(logs.String(), "sasl=SCRAM-SHA-1 tls=\"TLS 1.3\"") {
		t.Errorf("connect log line lacks the mechanism and TLS version:\n%s", logs.String())
	}
}
