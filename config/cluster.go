package config

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"hookctl.dev/hookctl"
)

// Cluster runs the backend as one replica of several sharing one registry
// on etcd (docs/CLUSTER.md). Empty Endpoints: the embedded, single-machine
// store.
type Cluster struct {
	// Endpoints are etcd's client URLs (http:// or https://).
	Endpoints []string `yaml:"endpoints"`
	// Prefix is the key prefix of this cluster in etcd (default /hookctl/).
	Prefix string `yaml:"prefix"`
	// Replica names this backend in the cluster (default: host name).
	Replica string `yaml:"replica"`
	// Lease is how long a replica that stops answering keeps its
	// profiles (default 5s, 2s to 60s, whole seconds).
	Lease hookctl.Duration `yaml:"lease"`
	// CAFile, CertFile and KeyFile are for etcd over TLS.
	CAFile   string `yaml:"ca_file"`
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
	// Username and PasswordFile are etcd's own authentication.
	Username     string `yaml:"username"`
	PasswordFile string `yaml:"password_file"`
}

// Enabled reports whether the backend runs clustered.
func (c Cluster) Enabled() bool { return len(c.Endpoints) > 0 }

// ParseClusterURL reads serve --cluster: etcd://HOST:PORT,HOST:PORT (or
// etcds:// for TLS) into etcd client URLs.
func ParseClusterURL(s string) ([]string, error) {
	scheme, hosts, ok := strings.Cut(s, "://")
	if !ok || (scheme != "etcd" && scheme != "etcds") || hosts == "" {
		return nil, fmt.Errorf("--cluster %q: want etcd://HOST:PORT[,HOST:PORT…] (etcds:// for TLS)", s)
	}
	web := map[string]string{"etcd": "http", "etcds": "https"}[scheme]
	var out []string
	for _, h := range strings.Split(hosts, ",") {
		if err := checkHostPort(h); err != nil {
			return nil, fmt.Errorf("--cluster %q: %s: %v", s, h, err)
		}
		out = append(out, web+"://"+h)
	}
	return out, nil
}

// CheckReplicaName is the rule of a replica's name (cluster.replica,
// serve --replica): it names the replica's keys in etcd.
func CheckReplicaName(s string) error {
	if !validSinkName(s) {
		return errors.New("a replica name is 1 to 64 letters, digits, '_', '-' or '.'")
	}
	return nil
}

// checkEndpoint accepts an etcd client URL: http(s)://HOST:PORT.
func checkEndpoint(s string) error {
	u, err := url.Parse(s)
	if err != nil || u.Scheme != "http" && u.Scheme != "https" {
		return errors.New("want http://HOST:PORT or https://HOST:PORT")
	}
	if _, _, err := net.SplitHostPort(u.Host); err != nil || (u.Path != "" && u.Path != "/") {
		return errors.New("want http://HOST:PORT or https://HOST:PORT")
	}
	if u.User != nil {
		return errors.New("no credentials in the URL (they would show in status and logs): use username and password_file")
	}
	return nil
}

// checkCluster validates the cluster section, each error at its value.
func (c *Config) checkCluster(path string, data []byte) error {
	cl := c.Cluster
	if !cl.Enabled() && cl.Prefix == "" && cl.Replica == "" && cl.Lease == 0 {
		return nil
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil || doc.Kind == 0 {
		return nil // reported by decodeFile
	}
	p := positions{path: path}
	root := child(doc.Content[0], "cluster")
	eps := child(root, "endpoints")
	if !cl.Enabled() {
		p.bad(cmpNode(eps, root), "cluster.endpoints", "at least one etcd endpoint is needed")
	}
	for i, e := range cl.Endpoints {
		if err := checkEndpoint(e); err != nil {
			p.bad(item(eps, i), fmt.Sprintf("cluster.endpoints[%d]", i), "%q: %v", e, err)
		}
	}
	if cl.Prefix != "" && !strings.HasPrefix(cl.Prefix, "/") {
		p.bad(child(root, "prefix"), "cluster.prefix", "%q: must start with /", cl.Prefix)
	}
	if err := CheckReplicaName(cl.Replica); cl.Replica != "" && err != nil {
		p.bad(child(root, "replica"), "cluster.replica", "%v", err)
	}
	p.duration(root, "lease", "cluster.lease", cl.Lease, 2*time.Second, time.Minute)
	if cl.Lease != 0 && time.Duration(cl.Lease)%time.Second != 0 {
		p.bad(child(root, "lease"), "cluster.lease", "%v: etcd leases are whole seconds", time.Duration(cl.Lease))
	}
	if (cl.CertFile == "") != (cl.KeyFile == "") {
		p.bad(root, "cluster.cert_file", "cert_file and key_file go together")
	}
	return errors.Join(p.errs...)
}
