package daemon

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"hookctl.dev/hookctl/api"
	"hookctl.dev/hookctl/config"
	"hookctl.dev/hookctl/internal/etcdtest"
	"hookctl.dev/hookctl/internal/testcert"
)

// writePair writes a certificate and key issued by ca for names.
func writePair(t *testing.T, ca *testcert.CA, dir, name string, names ...string) (cert, key string) {
	t.Helper()
	c, k, err := ca.Issue(names...)
	if err != nil {
		t.Fatal(err)
	}
	cert, key = filepath.Join(dir, name+".crt"), filepath.Join(dir, name+".key")
	if err := os.WriteFile(cert, c, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(key, k, 0o600); err != nil {
		t.Fatal(err)
	}
	return cert, key
}

// clusterOnly is a backend config with a cluster section and no profile.
func clusterOnly(t *testing.T, cc config.Cluster) config.Config {
	dir, err := os.MkdirTemp("", "hkt")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	cfg := config.Config{DataDir: filepath.Join(dir, "data"), Socket: filepath.Join(dir, "s"), Cluster: cc}
	cfg.Cluster.Replica = "r1"
	cfg.Defaults()
	return cfg
}

// startErr runs a backend until it answers on its socket (nil) or fails.
func startErr(t *testing.T, cfg config.Config) error {
	t.Helper()
	d, err := New(Options{Config: cfg})
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		select {
		case err := <-done:
			done <- err
			return err
		default:
		}
		if _, err := os.Stat(cfg.Socket); err == nil {
			return nil
		}
	}
	t.Fatal("backend neither failed nor answered within 15s")
	return nil
}

// TestClusterTLS: etcd over TLS with client certificates. A backend with
// the cluster's CA and a client certificate joins and reports etcd in its
// status; one that trusts another CA, or has no client certificate, does
// not start, and says why.
func TestClusterTLS(t *testing.T) {
	dir := t.TempDir()
	ca, err := testcert.NewCA("etcd test CA")
	if err != nil {
		t.Fatal(err)
	}
	caFile := filepath.Join(dir, "ca.pem")
	if err := ca.WriteCAFile(caFile); err != nil {
		t.Fatal(err)
	}
	srvCert, srvKey := writePair(t, ca, dir, "server", "127.0.0.1", "localhost")
	cliCert, cliKey := writePair(t, ca, dir, "client", "hookctl")
	etcd := etcdtest.StartWith(t, etcdtest.Options{CertFile: srvCert, KeyFile: srvKey, ClientCA: caFile})

	good := config.Cluster{Endpoints: []string{etcd.Endpoint()}, CAFile: caFile, CertFile: cliCert, KeyFile: cliKey}
	cfg := clusterOnly(t, good)
	if err := startErr(t, cfg); err != nil {
		t.Fatalf("with the CA and a client certificate: %v", err)
	}

	other, _ := testcert.NewCA("another CA")
	otherFile := filepath.Join(dir, "other.pem")
	other.WriteCAFile(otherFile)
	untrusted := good
	untrusted.CAFile = otherFile
	err = startErr(t, clusterOnly(t, untrusted))
	if err == nil || !strings.Contains(err.Error(), "certificate signed by unknown authority") {
		t.Fatalf("trusting another CA: %v, want the certificate named", err)
	}
	t.Logf("untrusted CA: %v", err)
	noCert := good
	noCert.CertFile, noCert.KeyFile = "", ""
	err = startErr(t, clusterOnly(t, noCert))
	if err == nil || !strings.Contains(err.Error(), "bad certificate") {
		t.Fatalf("without a client certificate: %v, want the server's refusal named", err)
	}
	t.Logf("no client certificate: %v", err)
}

// TestClusterAuth: etcd with authentication on. The backend joins with
// its user and password file; a wrong password stops it with etcd's
// refusal.
func TestClusterAuth(t *testing.T) {
	etcd := etcdtest.Start(t)
	ctx, cancel := etcdtest.Wait()
	defer cancel()
	admin, err := clientv3.New(clientv3.Config{Endpoints: []string{etcd.Endpoint()}, DialTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	for _, step := range []func() error{
		func() error { _, err := admin.UserAdd(ctx, "root", "rootpw"); return err },
		func() error { _, err := admin.UserGrantRole(ctx, "root", "root"); return err },
		func() error { _, err := admin.UserAdd(ctx, "hookctl", "s3cret"); return err },
		func() error { _, err := admin.UserGrantRole(ctx, "hookctl", "root"); return err },
		func() error { _, err := admin.AuthEnable(ctx); return err },
	} {
		if err := step(); err != nil {
			t.Fatal(err)
		}
	}
	dir := t.TempDir()
	pw := filepath.Join(dir, "pw")
	os.WriteFile(pw, []byte("s3cret\n"), 0o600)
	bad := filepath.Join(dir, "bad")
	os.WriteFile(bad, []byte("wrong\n"), 0o600)
	cc := config.Cluster{Endpoints: []string{etcd.Endpoint()}, Username: "hookctl", PasswordFile: pw}
	cfg := clusterOnly(t, cc)
	if err := startErr(t, cfg); err != nil {
		t.Fatalf("with the right password: %v", err)
	}
	// The password shows nowhere: not in status, not in metrics.
	client, err := api.NewClient(api.ClientOptions{Socket: cfg.Socket})
	if err != nil {
		t.Fatal(err)
	}
	st, err := client.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := json.Marshal(st); strings.Contains(string(b), "s3cret") || st.Cluster == nil || st.Cluster.Error != "" {
		t.Fatalf("status: %s", b)
	}
	cc.PasswordFile = bad
	err = startErr(t, clusterOnly(t, cc))
	if err == nil || !strings.Contains(err.Error(), "authentication failed") {
		t.Fatalf("wrong password: %v, want etcd's authentication failure", err)
	}
	t.Logf("wrong password: %v", err)
}
