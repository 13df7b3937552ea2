package config

import (
	"slices"
	"strings"
	"testing"
	"time"
)

func TestLoadCluster(t *testing.T) {
	p := writeFile(t, "hookctl.yaml", `
cluster:
  endpoints: [http://127.0.0.1:2379, https://etcd.example.org:2379]
  replica: node-1
  lease: 10s
  ca_file: ca.pem
  cert_file: c.pem
  key_file: c.key
  username: hookctl
  password_file: pw
`)
	c, err := Load(p)
	if err != nil {
		t.Fatal(err)
	}
	cl := c.Cluster
	if !cl.Enabled() || cl.Replica != "node-1" || time.Duration(cl.Lease) != 10*time.Second || !strings.HasSuffix(cl.CAFile, "/ca.pem") || !strings.HasSuffix(cl.PasswordFile, "/pw") {
		t.Fatalf("cluster %+v", cl)
	}
}

// Each bad cluster setting is named at its line and column.
func TestClusterErrors(t *testing.T) {
	for _, tc := range []struct{ yaml, want string }{
		{"cluster:\n  replica: a\n", "hookctl.yaml:2:3: cluster.endpoints: at least one etcd endpoint is needed"},
		{"cluster:\n  endpoints: [127.0.0.1:2379]\n", "hookctl.yaml:2:15: cluster.endpoints[0]: \"127.0.0.1:2379\": want http://HOST:PORT"},
		{"cluster:\n  endpoints: [ftp://h:1]\n", "cluster.endpoints[0]: \"ftp://h:1\": want http://HOST:PORT"},
		{"cluster:\n  endpoints: [http://h:1]\n  lease: 1s\n", "hookctl.yaml:3:10: cluster.lease: 1s is out of range (2s to 1m0s)"},
		{"cluster:\n  endpoints: [http://h:1]\n  lease: 2500ms\n", "cluster.lease: 2.5s: etcd leases are whole seconds"},
		{"cluster:\n  endpoints: [http://h:1]\n  replica: 'a b'\n", "hookctl.yaml:3:12: cluster.replica: a replica name is 1 to 64"},
		{"cluster:\n  endpoints: [http://h:1]\n  prefix: hookctl\n", "cluster.prefix: \"hookctl\": must start with /"},
		{"cluster:\n  endpoints: [http://h:1]\n  cert_file: c.pem\n", "cluster.cert_file: cert_file and key_file go together"},
		{"cluster:\n  endpoints: [http://u:secret@h:1]\n", "no credentials in the URL"},
	} {
		_, err := Load(writeFile(t, "hookctl.yaml", tc.yaml))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: got %v, want %q", tc.yaml, err, tc.want)
		}
	}
}

func TestParseClusterURL(t *testing.T) {
	eps, err := ParseClusterURL("etcd://a:1,b:2")
	if err != nil || !slices.Equal(eps, []string{"http://a:1", "http://b:2"}) {
		t.Fatalf("%v %v", eps, err)
	}
	eps, err = ParseClusterURL("etcds://a:1")
	if err != nil || !slices.Equal(eps, []string{"https://a:1"}) {
		t.Fatalf("%v %v", eps, err)
	}
	for _, bad := range []string{"", "a:1", "http://a:1", "etcd://", "etcd://a", "etcd://a:1,,b:2"} {
		if _, err := ParseClusterURL(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}
