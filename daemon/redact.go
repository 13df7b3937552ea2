package daemon

import (
	"context"
	"fmt"
	"log/slog"

	"hookctl.dev/hookctl"
)

// redact hides secrets in text the backend shows (runs, status): the
// values of the config's secrets, and URL credentials.
func (d *Daemon) redact(s string) string {
	if d.secrets != nil {
		s = d.secrets.Redact(s)
	}
	return hookctl.RedactURLCredentials(s)
}

// redactRun returns r with its secrets hidden. The history keeps the
// original, so that `runs --hook ARG` still matches the real arg.
func (d *Daemon) redactRun(r hookctl.Run) hookctl.Run {
	r.Hook.Arg = d.redact(r.Hook.Arg)
	r.HookName = d.redact(r.HookName)
	r.ItemID = d.redact(r.ItemID)
	r.Output = d.redact(r.Output)
	r.Error = d.redact(r.Error)
	return r
}

// redactHandler hides secrets in every log record: the message and every
// string, error or Stringer attribute go through redact.
type redactHandler struct {
	h      slog.Handler
	redact func(string) string
}

func (r redactHandler) Enabled(ctx context.Context, l slog.Level) bool { return r.h.Enabled(ctx, l) }

func (r redactHandler) Handle(ctx context.Context, rec slog.Record) error {
	out := slog.NewRecord(rec.Time, rec.Level, r.redact(rec.Message), rec.PC)
	rec.Attrs(func(a slog.Attr) bool {
		out.AddAttrs(r.attr(a))
		return true
	})
	return r.h.Handle(ctx, out)
}

func (r redactHandler) WithAttrs(as []slog.Attr) slog.Handler {
	red := make([]slog.Attr, len(as))
	for i, a := range as {
		red[i] = r.attr(a)
	}
	return redactHandler{h: r.h.WithAttrs(red), redact: r.redact}
}

func (r redactHandler) WithGroup(name string) slog.Handler {
	return redactHandler{h: r.h.WithGroup(name), redact: r.redact}
}

func (r redactHandler) attr(a slog.Attr) slog.Attr {
	v := a.Value.Resolve()
	switch v.Kind() {
	case slog.KindString:
		return slog.String(a.Key, r.redact(v.String()))
	case slog.KindGroup:
		g := v.Group()
		red := make([]any, len(g))
		for i, ga := range g {
			red[i] = r.attr(ga)
		}
		return slog.Group(a.Key, red...)
	case slog.KindAny:
		switch x := v.Any().(type) {
		case error:
			return slog.String(a.Key, r.redact(x.Error()))
		case fmt.Stringer:
			return slog.String(a.Key, r.redact(x.String()))
		}
	}
	return slog.Attr{Key: a.Key, Value: v}
}
