package daemon

import (
	"context"
	"slices"
	"strings"
	"time"

	"hookctl.dev/hookctl"
	"hookctl.dev/hookctl/api"
	"hookctl.dev/hookctl/internal/gitinfo"
	"hookctl.dev/hookctl/registry"
	"hookctl.dev/hookctl/rules"
)

var _ api.Auditor = (*Daemon)(nil)

// Audit actions.
const (
	auditCreate  = "create"
	auditRemove  = "remove"
	auditApply   = "apply"
	auditSuspend = "suspend"
	auditResume  = "resume"
)

// audit records one registry change, made by ctx's caller, that led to
// revision rev. A failure to record is logged: the change is made.
func (d *Daemon) audit(ctx context.Context, rev uint64, action, subject string, changes []hookctl.AuditChange) {
	ev := hookctl.AuditEvent{Time: time.Now(), Action: action, Who: api.Caller(ctx), Revision: rev, Subject: subject}
	if ev.Who == "" {
		ev.Who = "backend"
	}
	if len(changes) > hookctl.MaxAuditChanges {
		ev.Omitted = len(changes) - hookctl.MaxAuditChanges
		changes = changes[:hookctl.MaxAuditChanges]
	}
	ev.Changes = changes
	lim := registry.RunLimits{Keep: d.cfg.EventsKeep, MaxAge: time.Duration(d.cfg.EventsMaxAge)}
	if err := d.store.AppendAudit(&ev, lim); err != nil {
		d.log.Error("audit trail: recording a registry change", "action", action, "who", ev.Who, "err", err)
	}
}

// Events returns the audit trail, newest first.
func (d *Daemon) Events(ctx context.Context, since time.Time, limit int) ([]hookctl.AuditEvent, error) {
	return d.store.Audit(since, limit)
}

func created(h hookctl.Hook) hookctl.AuditChange {
	return hookctl.AuditChange{Op: "create", Hook: rules.IDOf(h).String(), Key: h.Key, After: &h}
}

func deleted(h hookctl.Hook) hookctl.AuditChange {
	return hookctl.AuditChange{Op: "delete", Hook: rules.IDOf(h).String(), Key: h.Key, Before: &h}
}

// removedBetween lists the hooks of before that after no longer has.
func removedBetween(before, after []hookctl.Hook) []hookctl.AuditChange {
	left := make(map[hookctl.Key]bool, len(after))
	for _, h := range after {
		left[h.Key] = true
	}
	var out []hookctl.AuditChange
	for _, h := range before {
		if !left[h.Key] {
			out = append(out, deleted(h))
		}
	}
	return out
}

// batchChanges describes b against the hooks live before it, and names
// the sets it touched.
func batchChanges(before []hookctl.Hook, b hookctl.Batch) ([]hookctl.AuditChange, string) {
	live := make(map[hookctl.Key]hookctl.Hook, len(before))
	for _, h := range before {
		live[h.Key] = h
	}
	var out []hookctl.AuditChange
	var sets []string
	set := func(s string) {
		if s != "" && !slices.Contains(sets, s) {
			sets = append(sets, s)
		}
	}
	for _, h := range b.Create {
		out = append(out, created(h))
		set(h.Owner)
	}
	for _, h := range b.Update {
		old := live[h.Key]
		out = append(out, hookctl.AuditChange{Op: "update", Hook: rules.IDOf(h).String(), Key: h.Key, Attributes: old.AttributeChanges(h)})
		set(h.Owner)
		set(old.Owner)
	}
	for _, k := range b.Delete {
		old, ok := live[k]
		if !ok {
			old = hookctl.Hook{Key: k}
		}
		out = append(out, deleted(old))
		set(old.Owner)
	}
	slices.Sort(sets)
	subject := ""
	if len(sets) > 0 {
		subject = "set " + strings.Join(sets, ", ")
	}
	return out, subject
}

// watchCaller says who the backend's own watcher is, for the audit trail:
// the paths it watches and, when they are in a git work tree, its commit.
func (d *Daemon) watchCaller(ctx context.Context) string {
	return gitinfo.Describe(ctx, "watch", d.watch.Paths)
}

// watchRegistry is the daemon as its watcher sees it: changes are
// recorded as the watcher's.
type watchRegistry struct{ *Daemon }

func (w watchRegistry) Apply(ctx context.Context, b hookctl.Batch) (uint64, error) {
	return w.Daemon.Apply(api.WithCaller(ctx, w.watchCaller(ctx)), b)
}
