package daemon

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"hookctl.dev/hookctl"
	"hookctl.dev/hookctl/api"
)

var _ api.ManualRunner = (*Daemon)(nil)

// manualFetchTimeout bounds the fetch of the item to trigger a hook on.
const manualFetchTimeout = 30 * time.Second

// Trigger fetches item r.ItemID from the node of the hook r.Hook names and
// runs the hook once on it, through the hook's queue, as a publish event
// (its filter is not applied: the operator chose the item); the run is
// recorded as "trigger".
func (d *Daemon) Trigger(ctx context.Context, r api.TriggerRequest) (hookctl.Run, error) {
	if r.ItemID == "" {
		return hookctl.Run{}, fmt.Errorf("%w: item id is required", hookctl.ErrInvalid)
	}
	h, err := d.findHook(r.Profile, r.Hook)
	if err != nil {
		return hookctl.Run{}, err
	}
	if !h.FiresOn(hookctl.EventPublish) {
		return hookctl.Run{}, fmt.Errorf("%w: hook %s does not take publish events (events: %v)", hookctl.ErrInvalid, r.Hook, h.EffectiveEvents())
	}
	p, ok := d.profileByName[h.Profile]
	if !ok {
		return hookctl.Run{}, fmt.Errorf("%w: profile %q of hook %s is not configured", hookctl.ErrNotFound, h.Profile, r.Hook)
	}
	fctx, cancel := context.WithTimeout(ctx, manualFetchTimeout)
	defer cancel()
	if err := p.session.WaitConnected(fctx); err != nil {
		return hookctl.Run{}, fmt.Errorf("%w: profile %s is not connected: %v", hookctl.ErrUnavailable, h.Profile, err)
	}
	items, err := p.session.Items(fctx, h.Service, h.Node, 0)
	if err != nil {
		return hookctl.Run{}, fmt.Errorf("fetching item %s of %s: %w", r.ItemID, h.Node, err)
	}
	for _, it := range items {
		if it.ID != r.ItemID {
			continue
		}
		ev := hookctl.Event{Profile: h.Profile, Service: h.Service, Node: h.Node, Kind: hookctl.EventPublish,
			ItemID: it.ID, Publisher: it.Publisher, Payload: it.Payload, ItemXML: it.XML, Received: time.Now()}
		return d.recorded(d.dispatcher.RunNow(ctx, h.Key, ev, "trigger"))
	}
	return hookctl.Run{}, fmt.Errorf("%w: node %s holds no item %q (of %d)", hookctl.ErrNotFound, h.Node, r.ItemID, len(items))
}

// Replay runs the hook of a recorded run again on the run's event,
// through the hook's queue; the new run is recorded as "replay of ID".
func (d *Daemon) Replay(ctx context.Context, id uint64) (hookctl.Run, error) {
	old, err := d.GetRun(ctx, id)
	if err != nil {
		return hookctl.Run{}, err
	}
	switch {
	case old.Input == nil:
		return hookctl.Run{}, fmt.Errorf("%w: run %d has no recorded event to replay", hookctl.ErrInvalid, id)
	case old.InputTruncated:
		return hookctl.Run{}, fmt.Errorf("%w: run %d's item was over %d bytes and not kept: use hookctl trigger --item %s", hookctl.ErrInvalid, id, hookctl.MaxRunInput, old.ItemID)
	}
	ev := *old.Input
	ev.Received = time.Now()
	ev.Catchup = false
	return d.recorded(d.dispatcher.RunNow(ctx, old.Hook, ev, "replay of "+strconv.FormatUint(id, 10)))
}

// recorded returns a run as the history gives it (with its attempt
// number), or as it is when the history cannot say.
func (d *Daemon) recorded(r hookctl.Run, err error) (hookctl.Run, error) {
	if err != nil || d.runlog == nil {
		return r, err
	}
	if full, err := d.runlog.Get(r.ID); err == nil {
		return full, nil
	}
	return r, nil
}
