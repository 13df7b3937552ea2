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
	configFile string // --config, env HOOKCTL_CONFIG, then /etc/hookctl/config.yaml
	socket     string // --socket, env HOOKCTL_SOCKET
	profile    string // -p/--profile
	server     string // --server URL of a TCP control API
	tokenFile  string // --token-file for --server
	timeout    time.Duration
}

func (g *globals) bind(root *cobra.Command) {
	f := root.PersistentFlags()
	f.StringVar(&g.configFile, "config", "", "backend config file (YAML; env HOOKCTL_CONFIG; default "+config.SystemConfigFile+" if it exists): serve reads it, other commands take the socket from it")
	f.StringVar(&g.socket, "socket", "", "control socket of the backend (env HOOKCTL_SOCKET; default DATA_DIR/hookctl.sock)")
	f.StringVarP(&g.profile, "profile", "p", "default", "profile (XMPP account) to act on")
	f.StringVar(&g.server, "server", "", "URL of a TCP control API, e.g. http://127.0.0.1:9091 (needs --token-file)")
	f.StringVar(&g.tokenFile, "token-file", "", "file holding the bearer token for --server")
	f.DurationVar(&g.timeout, "timeout", api.DefaultClientTimeout, "how long to wait for each answer of the backend")
}

// socketPath is the control socket to dial: the flag, the environment, the
// backend's config (as serve finds it), then the default under the data
// dir. A config that does not load is an error, not a silent default.
func (g *globals) socketPath() (string, error) {
	if g.socket != "" {
		return g.socket, nil
	}
	if s := os.Getenv("HOOKCTL_SOCKET"); s != "" {
		return s, nil
	}
	if path := config.Find(g.configFile, os.Getenv); path != "" {
		cfg, err := config.Load(path)
		if err != nil {
			return "", exitCode(2, err)
		}
		cfg.ApplyEnv(os.Getenv)
		cfg.Defaults()
		return cfg.Socket, nil
	}
	return config.DefaultSocket(config.DefaultDataDir()), nil
}

// backendSecrets returns the secrets the backend's config declares (as
// serve finds the config), so that files naming others are refused before
// apply; nil when no config is found.
func (g *globals) backendSecrets() (*config.Secrets, error) {
	path := config.Find(g.configFile, os.Getenv)
	if path == "" {
		return nil, nil
	}
	cfg, err := config.Load(path)
	if err != nil {
		return nil, exitCode(2, err)
	}
	return cfg.Secrets(os.Getenv), nil
}

// client returns a control API client for the backend these flags name.
func (g *globals) client() (*api.Client, error) {
	if g.timeout <= 0 {
		return nil, exitCode(2, fmt.Errorf("%w: --timeout %v: want a positive duration", hookctl.ErrInvalid, g.timeout))
	}
	socket := ""
	if g.server == "" {
		var err error
		if socket, err = g.socketPath(); err != nil {
			return nil, err
		}
		if err := api.CheckSocketOwner(socket); err != nil {
			return nil, err
		}
	}
	return api.NewClient(api.ClientOptions{Socket: socket, Server: g.server, TokenFile: g.tokenFile, Timeout: g.timeout})
}
