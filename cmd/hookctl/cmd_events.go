package main

import (
	"context"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"hookctl.dev/hookctl"
	"hookctl.dev/hookctl/api"
	"hookctl.dev/hookctl/internal/gitinfo"
)

// eventLines bounds the hooks listed under one event in text output.
const eventLines = 20

// newEventsCmd lists the audit trail: every registry change, who made it.
func newEventsCmd(g *globals) *cobra.Command {
	var (
		output string
		since  string
		limit  int
	)
	c := &cobra.Command{
		Use:   "events [--since 1h] [--limit N] [-o simple|json]",
		Short: "List the registry's changes, newest first: when, who, what",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if output != "simple" && output != "json" {
				return fmt.Errorf("%w: unknown output format %q (want simple or json)", hookctl.ErrInvalid, output)
			}
			var t time.Time
			if since != "" {
				var err error
				if t, err = parseSince(since, time.Now()); err != nil {
					return err
				}
			}
			client, err := g.client()
			if err != nil {
				return err
			}
			evs, err := client.Events(cmd.Context(), t, limit)
			if err != nil {
				return err
			}
			if output == "json" {
				if evs == nil {
					evs = []hookctl.AuditEvent{}
				}
				return writeJSON(cmd.OutOrStdout(), evs)
			}
			if len(evs) == 0 {
				fmt.Fprintln(cmd.ErrOrStderr(), "No event found.")
				return nil
			}
			return printEvents(cmd.OutOrStdout(), evs)
		},
	}
	f := c.Flags()
	f.StringVar(&since, "since", "", "only events since: a duration back from now (1h) or an RFC 3339 time")
	f.IntVar(&limit, "limit", 50, "at most this many events")
	f.StringVarP(&output, "output", "o", "simple", "output format: simple or json")
	return c
}

// printEvents writes one line per event, then its hooks: + created,
// ~ updated (with the attributes before and after), - deleted.
func printEvents(w io.Writer, evs []hookctl.AuditEvent) error {
	for _, ev := range evs {
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		subject := ev.Subject
		if subject == "" {
			subject = "-"
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\trevision %d\t%s\n", ev.ID, ev.Time.Local().Format("2006-01-02 15:04:05"),
			safeLine(ev.Action), safeLine(subject), ev.Revision, safeLine("by "+ev.Who))
		if err := tw.Flush(); err != nil {
			return err
		}
		for i, c := range ev.Changes {
			if i == eventLines {
				fmt.Fprintf(w, "    … %d more\n", len(ev.Changes)-i+ev.Omitted)
				break
			}
			mark := map[string]string{"create": "+", "update": "~", "delete": "-"}[c.Op]
			fmt.Fprintf(w, "    %s %s\n", mark, safeLine(oneLine(c.Hook)))
			for _, a := range c.Attributes {
				fmt.Fprintf(w, "        %s: %s → %s\n", a.Field, safeLine(oneLine(a.Old)), safeLine(oneLine(a.New)))
			}
		}
		if ev.Omitted > 0 && len(ev.Changes) <= eventLines {
			fmt.Fprintf(w, "    … %d more\n", ev.Omitted)
		}
	}
	return nil
}

// watchSource is the API client as the watch sidecar uses it: each batch
// tells the backend, for the audit trail, the paths watched and their
// commit.
type watchSource struct {
	*api.Client
	paths []string
}

func (w watchSource) Apply(ctx context.Context, b hookctl.Batch) (uint64, error) {
	return w.Client.Apply(api.WithSource(ctx, gitinfo.Describe(ctx, "watch", w.paths)), b)
}
