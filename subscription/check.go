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

// check compares the subscriptions believed live with the service's list,
// one request per node, each bounded by CheckTimeout; those the service
// no longer has are forgotten, so that sync makes them again. It returns
// how many were lost. A node whose state cannot be read (a timeout, a
// service that cannot list) is left as it is.
//
// One node at a time, because Prosody 0.12 cannot list every node once a
// subscribed node was deleted (see xmppsession.Session.SubscribedNodes).
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
		m.mu.Lock()
		if m.have[ref] {
			delete(m.have, ref)
			m.errors[ref] = "subscription lost (" + err.Error() + "): subscribing again"
			lost++
		}
		m.mu.Unlock()
		m.log.Warn("subscription lost: subscribing again", "service", ref.Service, "node", ref.Node, "err", err)
	}
	return lost
}
