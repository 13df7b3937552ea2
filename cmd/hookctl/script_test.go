package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rogpeppe/go-internal/testscript"

	"hookctl.dev/hookctl/internal/prosodytest"
)

func TestMain(m *testing.M) {
	testscript.Main(m, map[string]func(){
		"hookctl": func() { os.Exit(Main(os.Args[1:], os.Stdin, os.Stdout, os.Stderr)) },
	})
}

// TestScripts runs testdata/script/*.txtar: the real hookctl binary, as a
// user runs it, against a real backend (and a real Prosody where a script
// starts one with `prosody start`).
func TestScripts(t *testing.T) {
	testscript.Run(t, testscript.Params{
		// HOOKCTL_UPDATE_SCRIPTS=1 rewrites the files that cmp compares
		// against with what the commands printed (review the diff).
		UpdateScripts: os.Getenv("HOOKCTL_UPDATE_SCRIPTS") == "1",
		Dir:           "testdata/script",
		Setup: func(env *testscript.Env) error {
			// Unix socket paths are limited to 108 bytes: keep them short.
			dir, err := os.MkdirTemp("", "hk")
			if err != nil {
				return err
			}
			env.Defer(func() { os.RemoveAll(dir) })
			env.Setenv("SOCKDIR", dir)
			env.Setenv("HOOKCTL_SOCKET", filepath.Join(dir, "hookctl.sock"))
			env.Setenv("HOOKCTL_DATA_DIR", filepath.Join(env.WorkDir, "data"))
			env.Setenv("HOME", env.WorkDir)
			env.Setenv("NO_COLOR", "1")
			// Fixtures too large or binary for a .txtar (import libervia's database).
			testdata, err := filepath.Abs("testdata")
			if err != nil {
				return err
			}
			env.Setenv("TESTDATA", testdata)
			// A -race binary sleeps 1s at exit by default; every hookctl
			// call in a script is one.
			env.Setenv("GORACE", "atexit_sleep_ms=0")
			return nil
		},
		Cmds: map[string]func(ts *testscript.TestScript, neg bool, args []string){
			"waitsock": cmdWaitSock,
			"prosody":  cmdProsody,
			"waitfor":  cmdWaitFor,
			"poll":     cmdPoll,     // script_cmds_gitops_test.go
			"httpget":  cmdHTTPGet,  // script_cmds_gitops_test.go
			"freeport": cmdFreePort, // script_cmds_gitops_test.go
			"apireq":   cmdAPIRequest,
			// script_cmds_hardening_test.go
			"flood":      cmdFlood,
			"backendfds": cmdBackendFDs,
			"backendpid": cmdBackendPID,
			// script_cmds_alerts_test.go
			"alertsink": cmdAlertSink,
			"etcd":      cmdEtcd, // script_cmds_cluster_test.go
			"xmppinbox": cmdXMPPInbox,
		},
		RequireExplicitExec: true,
		// [race]: the binary has the race detector (harden_bigapply
		// scales down under it).
		Condition: func(cond string) (bool, error) {
			if cond == "race" {
				return raceEnabled, nil
			}
			if cond == "etcd" {
				return hasEtcd(), nil
			}
			return false, fmt.Errorf("unknown condition %q", cond)
		},
	})
}

// waitsock [PATH]: wait until the backend answers on its control socket
// (default $HOOKCTL_SOCKET), or, negated, until nothing does.
func cmdWaitSock(ts *testscript.TestScript, neg bool, args []string) {
	path := ts.Getenv("HOOKCTL_SOCKET")
	if len(args) > 0 {
		path = args[0]
	}
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		c, err := net.DialTimeout("unix", path, 200*time.Millisecond)
		if err == nil {
			c.Close()
			if !neg {
				return
			}
		} else if neg {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	if neg {
		ts.Fatalf("backend still answers on %s", path)
	}
	ts.Fatalf("no backend answered on %s within 15s", path)
}

// waitfor FILE TEXT: wait until FILE exists and contains TEXT (hooks write
// files asynchronously).
func cmdWaitFor(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 2 {
		ts.Fatalf("usage: waitfor FILE TEXT")
	}
	path := ts.MkAbs(args[0])
	deadline := time.Now().Add(15 * time.Second)
	var last string
	for time.Now().Before(deadline) {
		b, _ := os.ReadFile(path)
		last = string(b)
		if strings.Contains(last, args[1]) != neg {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	ts.Fatalf("waitfor %s %q: not met within 15s; file holds:\n%s", args[0], args[1], last)
}

// apireq METHOD PATH [BODY]: a raw control API request over the socket, as
// a misbehaving client would send it; prints the status code, then the body.
func cmdAPIRequest(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) < 2 || len(args) > 3 {
		ts.Fatalf("usage: apireq METHOD PATH [BODY]")
	}
	sock := ts.Getenv("HOOKCTL_SOCKET")
	client := &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", sock)
		},
	}}
	var body io.Reader
	if len(args) == 3 {
		body = strings.NewReader(args[2])
	}
	req, err := http.NewRequest(args[0], "http://hookctl"+args[1], body)
	ts.Check(err)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := client.Do(req)
	ts.Check(err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	ts.Check(err)
	fmt.Fprintf(ts.Stdout(), "%d\n%s\n", resp.StatusCode, b)
	if neg != (resp.StatusCode >= 400) {
		ts.Fatalf("apireq: status %d", resp.StatusCode)
	}
}

var prosodyServers sync.Map // *testscript.TestScript → *prosodytest.Server

// prosody start [memory] | register USER PASS | restart | stop: a private
// Prosody for the script. start sets $XMPP_ADDR and $PUBSUB, and is
// stopped when the script ends.
func cmdProsody(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) == 0 {
		ts.Fatalf("usage: prosody start|register|restart|stop")
	}
	get := func() *prosodytest.Server {
		v, ok := prosodyServers.Load(ts)
		if !ok {
			ts.Fatalf("prosody: not started")
		}
		return v.(*prosodytest.Server)
	}
	switch args[0] {
	case "start":
		if _, ok := prosodyServers.Load(ts); ok {
			ts.Fatalf("prosody: already started")
		}
		opts := prosodytest.Options{Admins: []string{"bot@localhost", "pub@localhost"}}
		for _, a := range args[1:] {
			if a == "memory" {
				opts.MemoryStorage = true
			}
		}
		dir, err := os.MkdirTemp("", "hkp")
		ts.Check(err)
		srv, err := prosodytest.StartProcess(dir, opts)
		if err != nil {
			os.RemoveAll(dir)
			ts.Fatalf("prosody: %v", err)
		}
		prosodyServers.Store(ts, srv)
		ts.Defer(func() {
			srv.Close()
			prosodyServers.Delete(ts)
			os.RemoveAll(dir)
		})
		ts.Setenv("XMPP_ADDR", srv.Addr)
		ts.Setenv("PUBSUB", srv.PubSub)
	case "register":
		if len(args) != 3 {
			ts.Fatalf("usage: prosody register USER PASS")
		}
		if _, err := get().RegisterUser(args[1], args[2]); err != nil {
			ts.Fatalf("prosody register: %v", err)
		}
	case "restart":
		ts.Check(get().RestartProcess())
	case "stop":
		get().Stop()
	default:
		ts.Fatalf("prosody: unknown subcommand %q", args[0])
	}
}
