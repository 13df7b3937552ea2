package main

import (
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"hookctl.dev/hookctl"
	"hookctl.dev/hookctl/api"
)

func newRunsCmd(g *globals) *cobra.Command {
	var (
		q      api.RunQuery
		output string
		all    bool
		since  string
	)
	c := &cobra.Command{
		Use:   "runs [-n NODE] [--hook NAME|ARG] [--set SET] [--failed] [--since 1h] [-o simple|json]",
		Short: "List recent hook runs, newest first",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkOutput(output, "simple", "json"); err != nil {
				return err
			}
			client, err := g.client()
			if err != nil {
				return err
			}
			if !all {
				q.Profile = g.profile
			}
			if since != "" {
				if q.Since, err = parseSince(since, time.Now()); err != nil {
					return err
				}
			}
			runs, err := client.Runs(cmd.Context(), q)
			if err != nil {
				return err
			}
			if output == "json" {
				if runs == nil {
					runs = []hookctl.Run{}
				}
				return writeJSON(cmd.OutOrStdout(), runs)
			}
			if len(runs) == 0 {
				fmt.Fprintln(cmd.ErrOrStderr(), "No run found.")
				return nil
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tTIME\tNODE\tHOOK\tEVENT\tITEM\tDURATION\tOUTCOME\tRESULT\tOUTPUT")
			for _, r := range runs {
				name := r.HookName
				if name == "" {
					name = string(r.Hook.Type) + ":" + r.Hook.Arg
				}
				event := string(r.Event)
				if r.Catchup {
					event += " (catch-up)"
				}
				out := r.Output
				if r.Error != "" {
					out = r.Error + " " + out
				}
				if r.Manual != "" {
					event += " (" + r.Manual + ")"
				}
				fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.ID,
					r.Started.Format("15:04:05.000"), cell(r.Hook.Node), cell(name), event, cell(r.ItemID),
					roundDuration(time.Duration(r.Duration)), cell(r.Outcome), runResult(r), cell(strings.TrimSpace(out)))
			}
			return tw.Flush()
		},
	}
	f := c.Flags()
	f.StringVarP(&q.Node, "node", "n", "", "only runs of hooks on this node")
	f.StringVar(&q.Hook, "hook", "", "only runs of the hook with this name or arg")
	f.StringVar(&q.Set, "set", "", "only runs of hooks owned by this declared set")
	f.StringVar(&since, "since", "", "only runs started since: a duration back from now (1h) or an RFC 3339 time")
	f.BoolVar(&q.FailedOnly, "failed", false, "only runs that did not succeed")
	f.IntVar(&q.Limit, "limit", 50, "at most this many runs")
	f.BoolVarP(&all, "all-profiles", "A", false, "runs of every profile")
	f.StringVarP(&output, "output", "o", "simple", "output format: simple or json")
	c.AddCommand(newRunsShowCmd(g), newRunsReplayCmd(g))
	return c
}

// roundDuration keeps three significant digits or so: 125.751236ms → 125.8ms.
func roundDuration(d time.Duration) time.Duration {
	switch {
	case d >= time.Second:
		return d.Round(10 * time.Millisecond)
	case d >= time.Millisecond:
		return d.Round(100 * time.Microsecond)
	}
	return d.Round(time.Microsecond)
}
