package daemon

import (
	"fmt"
	"maps"
	"slices"

	"hookctl.dev/hookctl"
	"hookctl.dev/hookctl/alert"
	"hookctl.dev/hookctl/config"
	"hookctl.dev/hookctl/dispatch"
	"hookctl.dev/hookctl/registry"
	"hookctl.dev/hookctl/xmppsession"
)

// newAlerts builds the alert manager from the config's sinks (nil when
// there is none): XMPP sinks send through their profile's session.
func (d *Daemon) newAlerts() (*alert.Manager, error) {
	a := d.cfg.Alerts
	if len(a.Sinks) == 0 {
		return nil, nil
	}
	var routes []alert.Route
	for _, name := range slices.Sorted(maps.Keys(a.Sinks)) {
		s := a.Sinks[name]
		r := alert.Route{Name: name, Kinds: s.On, Timeout: alert.DefaultTimeout}
		switch {
		case s.XMPP != nil:
			if d.profileByName[s.XMPP.Profile] == nil { // config.Load refuses it; a Config built in code may not
				return nil, fmt.Errorf("alerts.sinks.%s.xmpp.profile: unknown profile %q", name, s.XMPP.Profile)
			}
			r.Sink = alert.XMPP{Session: d.profileByName[s.XMPP.Profile].session, To: s.XMPP.To}
		case s.Webhook != nil:
			r.Sink = alert.Webhook{URL: s.Webhook.URL, Headers: s.Webhook.Headers, Expand: d.expandSecrets}
			r.Timeout = s.Webhook.RequestTimeout()
		}
		routes = append(routes, r)
	}
	sessions := map[string]func() (bool, string){}
	for _, p := range d.profiles {
		sessions[p.name] = func() (bool, string) {
			st := p.session.State()
			return st.State == xmppsession.StateConnected, st.LastError
		}
	}
	return alert.New(alert.Options{
		Window:           a.AlertWindow(),
		SessionDownAfter: a.DownAfter(),
		Routes:           routes,
		Sessions:         sessions,
		Redact:           d.redact,
		Logger:           d.log,
		Metrics:          d.metrics,
	}), nil
}

// expandSecrets resolves ${NAME} in a webhook header at each send.
func (d *Daemon) expandSecrets(s string) (string, error) {
	return config.ExpandSecrets(s, d.secrets.Read)
}

// wireAlerts has the dispatcher's runs, catch-up's gaps and the watcher's
// rounds feed the alerts (no-op without sinks).
func (d *Daemon) wireAlerts(o *dispatch.Options) {
	if d.alerts == nil {
		return
	}
	prev := o.OnRun
	o.OnRun = func(r hookctl.Run) {
		if prev != nil {
			prev(r)
		}
		d.alerts.HookRun(r)
	}
}

// alertGap tells the alerts of a catch-up gap.
func (d *Daemon) alertGap(ref registry.NodeRef, detail string) {
	svc := ref.Service
	if svc == "" {
		svc = "own PEP"
	}
	d.alerts.Signal(alert.Signal{Kind: alert.CatchupGap, Subject: fmt.Sprintf("node %s on %s (profile %s)", ref.Node, svc, ref.Profile), Detail: detail})
}

// alertRound tells the alerts how a round of the hooks files ended.
func (d *Daemon) alertRound(err error) {
	sig := alert.Signal{Kind: alert.FilesFailing, Subject: "hooks files", OK: err == nil}
	if err != nil {
		sig.Detail = err.Error()
	}
	d.alerts.Signal(sig)
}
