package main

import (
	"fmt"
	"os"
	"time"

	"github.com/spf13/cobra"

	"hookctl.dev/hookctl"
	"hookctl.dev/hookctl/api"
	"hookctl.dev/hookctl/config"
)

// globals are the flags every command shares.
type globals struct {
	socket    string // --socket, env HOOKCTL_SOCKET
	profile   string // -p/--profile
	server    string // --server URL of a TCP control API
	tokenFile string // --token-file for --server
	timeout   time.Duration
}

func (g *globals) bind(root *cobra.Command) {
	f := root.PersistentFlags()
	f.StringVar(&g.socket, "socket", "", "control socket of the backend (env HOOKCTL_SOCKET; default DATA_DIR/hookctl.sock)")
	f.StringVarP(&g.profile, "profile", "p", "default", "profile (XMPP account) to act on")
	f.StringVar(&g.server, "server", "", "URL of a TCP control API, e.g. http://127.0.0.1:9091 (needs --token-file)")
	f.StringVar(&g.tokenFile, "token-file", "", "file holding the bearer token for --server")
	f.DurationVar(&g.timeout, "timeout", api.DefaultClientTimeout, "how long to wait for each answer of the backend")
}

// socketPath is the control socket to dial: the flag, the environment, then
// the default under the data dir.
func (g *globals) socketPath() string {
	if g.socket != "" {
		return g.socket
	}
	if s := os.Getenv("HOOKCTL_SOCKET"); s != "" {
		return s
	}
	return config.DefaultSocket(config.DefaultDataDir())
}

// client returns a control API client for the backend these flags name.
func (g *globals) client() (*api.Client, error) {
	if g.timeout <= 0 {
		return nil, exitCode(2, fmt.Errorf("%w: --timeout %v: want a positive duration", hookctl.ErrInvalid, g.timeout))
	}
	if g.server == "" {
		if err := api.CheckSocketOwner(g.socketPath()); err != nil {
			return nil, err
		}
	}
	return api.NewClient(api.ClientOptions{Socket: g.socketPath(), Server: g.server, TokenFile: g.tokenFile, Timeout: g.timeout})
}
