package subscription

import (
	"context"
	"errors"
	"slices"

	"hookctl.dev/hookctl/xmppsession"
)

// lostConditions are the service's answers to a subscriptions listing that
// mean the session is not subscribed: the node is gone, or the session may
// no longer see it (an access model changed, which on Prosody removes the
// subscription silently).
var lostConditions = []string{"item-not-found", "forbidden", "not-authorized", "registration-required", "unexpected-request"}

// check compares the subscriptions believed live with the service's list;
// those the service no longer has are forgotten, so that sync makes them
// again. It returns how many were lost. A node whose state cannot be read
// (a timeout, a service that cannot list) is left as it is.
//
// Each service is asked for its whole list in one request, bounded by
// CheckTimeout: one request per node was 10,000 requests a minute for
// 10,000 nodes, the backend's (and the server's) main work when idle.
// When that listing fails, the service's nodes are asked one at a time,
// because Prosody 0.12 cannot list every node once a subscribed node was
// deleted (see xmppsession.Session.SubscribedNodes).
func (m *Manager) check(ctx context.Context) int {
	m.mu.Lock()
	var live []nodeRef
	for ref := range m.want {
		if m.have[ref] {
			live = append(live, ref)
		}
	}
	m.mu.Unlock()
	slices.SortFunc(live, compareRefs)
	lost := 0
	for len(live) > 0 && ctx.Err() == nil {
		n := 1
		for n < len(live) && live[n].Service == live[0].Service {
			n++
		}
		lost += m.checkService(ctx, live[:n])
		live = live[n:]
	}
	return lost
}

// checkService checks the live subscriptions of one service: one listing
// of every node when there are several and it answers, else one listing
// per node.
func (m *Manager) checkService(ctx context.Context, live []nodeRef) int {
	if len(live) > 1 {
		cctx, cancel := context.WithTimeout(ctx, m.opts.CheckTimeout)
		subs, err := m.opts.Session.SubscribedNodes(cctx, live[0].Service, "")
		cancel()
		if err == nil {
			lost := 0
			for _, ref := range live {
				if !subs[ref.Node] && m.lose(ref, errors.New("not in the service's list of subscriptions")) {
					lost++
				}
			}
			return lost
		}
		m.log.Debug("subscription check: cannot list the service's subscriptions; asking node by node", "service", live[0].Service, "err", err)
	}
	lost := 0
	for _, ref := range live {
		if ctx.Err() != nil {
			break
		}
		cctx, cancel := context.WithTimeout(ctx, m.opts.CheckTimeout)
		subs, err := m.opts.Session.SubscribedNodes(cctx, ref.Service, ref.Node)
		cancel()
		var se *xmppsession.StanzaError
		switch {
		case err == nil && subs[ref.Node]:
			continue
		case err == nil:
			err = errors.New("not in the service's list of subscriptions")
		case errors.As(err, &se) && slices.Contains(lostConditions, se.Condition):
		default:
			m.log.Debug("subscription check: cannot read the node's subscriptions", "service", ref.Service, "node", ref.Node, "err", err)
			continue
		}
		if m.lose(ref, err) {
			lost++
		}
	}
	return lost
}

// lose forgets a subscription the service no longer has, so that sync
// makes it again; it reports whether it was still believed live.
func (m *Manager) lose(ref nodeRef, why error) bool {
	m.mu.Lock()
	was := m.have[ref]
	if was {
		delete(m.have, ref)
		m.errors[ref] = "subscription lost (" + why.Error() + "): subscribing again"
	}
	m.mu.Unlock()
	if was {
		m.log.Warn("subscription lost: subscribing again", "service", ref.Service, "node", ref.Node, "err", why)
	}
	return was
}
