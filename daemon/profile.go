package daemon

import (
	"cmp"
	"context"
	"sync/atomic"
	"time"

	"mellium.im/xmpp/jid"

	"hookctl.dev/hookctl"
	"hookctl.dev/hookctl/api"
	"hookctl.dev/hookctl/catchup"
	"hookctl.dev/hookctl/config"
	"hookctl.dev/hookctl/registry"
	"hookctl.dev/hookctl/subscription"
	"hookctl.dev/hookctl/xmppsession"
)

// profile is one configured account: its session and its subscriptions.
type profile struct {
	name    string
	jid     string // bare
	session *xmppsession.Session
	subs    *subscription.Manager // set by Run, once the store is open
	// heldSince is when this replica's current holding of the profile
	// began (cluster mode; nil while it does not hold it).
	heldSince atomic.Pointer[time.Time]
}

func (d *Daemon) newProfile(name string, pc config.Profile, password string) (*profile, error) {
	j, err := jid.Parse(pc.JID)
	if err != nil {
		return nil, err
	}
	p := &profile{name: name, jid: j.Bare().String()}
	tls := xmppsession.TLSMode(pc.TLS)
	if tls == "" {
		tls = xmppsession.TLSStartTLS
	}
	p.session, err = xmppsession.New(xmppsession.Config{
		Profile:            name,
		JID:                pc.JID,
		Password:           password,
		Server:             pc.Server,
		TLS:                tls,
		InsecureSkipVerify: pc.InsecureSkipVerify,
		CAFile:             pc.CAFile,
		RequestTimeout:     time.Duration(pc.RequestTimeout),
		Resource:           cmp.Or(pc.Resource, xmppsession.ResourceFor(d.cfg.DataDir)),
		Logger:             d.log,
		OnEvent:            d.onEvent,
		OnSkip:             d.onSkip,
		OnReady:            func() { d.catchup.Hold(name) },
		OnConnect:          func(ctx context.Context, _ bool) { p.subs.OnConnect(ctx) },
	})
	if err != nil {
		return nil, err
	}
	return p, nil
}

// openSubscriptions builds the profile's subscription manager on the open
// store, importing the subscriptions file of older versions.
func (p *profile) openSubscriptions(d *Daemon) (err error) {
	p.subs, err = subscription.New(subscription.Options{
		Profile:    p.name,
		JID:        p.jid,
		Session:    p.session,
		Store:      d.subscriptionStore(),
		Catchup:    profileCatchup{d.catchup, p.session, p.name},
		Logger:     d.log,
		LegacyFile: subscription.LegacyFile(d.cfg.DataDir, p.name),
		// Zero: the default (1m); tests shorten it.
		CheckInterval: d.subscriptionCheck,
	})
	return err
}

// onEvent hands a notification to catch-up, which dispatches it, and to
// the profile's subscriptions (a deleted node must be subscribed again);
// node notices go to the subscriptions only. It must not block.
func (d *Daemon) onEvent(ev hookctl.Event) {
	if ev.Kind != hookctl.EventConfiguration && ev.Kind != hookctl.EventSubscription {
		d.catchup.Event(ev)
	}
	if p := d.profileByName[ev.Profile]; p != nil {
		p.subs.Event(ev)
	}
}

// profileCatchup binds catch-up to one profile's session.
type profileCatchup struct {
	t       *catchup.Tracker
	session *xmppsession.Session
	profile string
}

func (c profileCatchup) Hold() { c.t.Hold(c.profile) }
func (c profileCatchup) BeforeSubscribe(ctx context.Context, ref registry.NodeRef) {
	c.t.BeforeSubscribe(ctx, c.session, ref)
}
func (c profileCatchup) AfterSubscribe(ctx context.Context, ref registry.NodeRef, err error) {
	c.t.AfterSubscribe(ctx, c.session, ref, err)
}

func (p *profile) status() api.ProfileStatus {
	st := p.session.State()
	return api.ProfileStatus{
		Name:          p.name,
		JID:           p.jid,
		State:         string(st.State),
		LastError:     st.LastError,
		Since:         st.Since,
		Subscriptions: p.subs.Count(),
		Events:        st.Events,
		Reconnects:    st.Reconnects,
		Conflicts:     st.Conflicts,
		BoundJID:      st.JID,
	}
}
