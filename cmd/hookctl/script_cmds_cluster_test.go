package main

import (
	"os"
	"os/exec"
	"sync"

	"github.com/rogpeppe/go-internal/testscript"

	"hookctl.dev/hookctl/internal/etcdtest"
)

var etcdServers sync.Map // *testscript.TestScript → *etcdtest.Server

// cmdEtcd starts (etcd start: sets $ETCD to HOST:PORT), stops and restarts
// a private etcd for the script. Scripts begin with `[!etcd] skip`: the
// condition holds when etcd is installed, and always under CI=true, where
// a missing etcd fails the script.
func cmdEtcd(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 1 {
		ts.Fatalf("usage: etcd start|stop|restart")
	}
	get := func() *etcdtest.Server {
		v, ok := etcdServers.Load(ts)
		if !ok {
			ts.Fatalf("etcd: not started")
		}
		return v.(*etcdtest.Server)
	}
	switch args[0] {
	case "start":
		dir, err := os.MkdirTemp("", "hke")
		ts.Check(err)
		srv, err := etcdtest.StartProcess(dir, etcdtest.Options{})
		ts.Defer(func() {
			if srv != nil {
				srv.Stop()
			}
			etcdServers.Delete(ts)
			os.RemoveAll(dir)
		})
		if err != nil {
			ts.Fatalf("etcd: %v", err)
		}
		etcdServers.Store(ts, srv)
		ts.Setenv("ETCD", srv.Addr())
	case "stop":
		get().Stop()
	case "restart":
		ts.Check(get().Restart())
	default:
		ts.Fatalf("usage: etcd start|stop|restart")
	}
}

// hasEtcd is the [etcd] condition.
func hasEtcd() bool {
	_, err := exec.LookPath("etcd")
	return err == nil || os.Getenv("CI") == "true"
}
