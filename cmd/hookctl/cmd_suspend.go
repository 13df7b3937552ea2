package main

import (
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/spf13/cobra"

	"hookctl.dev/hookctl"
	"hookctl.dev/hookctl/api"
	"hookctl.dev/hookctl/rules"
)

// newSuspendCmd is `hook suspend|resume NAME` (kind hook) or `set
// suspend|resume NAME` (kind set).
func newSuspendCmd(g *globals, kind string, suspend bool) *cobra.Command {
	verb, what := "resume", "Run a suspended hook again"
	if suspend {
		verb, what = "suspend", "Stop running a hook (its events are recorded as skipped runs)"
	}
	use := verb + " NAME|SET/NAME|ARG"
	if kind == hookctl.SuspendSet {
		use = verb + " SET"
		what = "Resume a declared set: its hooks run and the watcher applies its files again"
		if suspend {
			what = "Suspend a declared set: its hooks run nothing and the watcher leaves it alone"
		}
	}
	return &cobra.Command{
		Use:   use,
		Short: what,
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			client, err := g.client()
			if err != nil {
				return err
			}
			req := api.SuspendRequest{Kind: kind, Name: args[0], Suspend: suspend}
			if kind == hookctl.SuspendHook {
				req.Profile = g.profile
			}
			res, err := client.Suspend(cmd.Context(), req)
			if err != nil {
				return err
			}
			done := map[bool]string{true: "suspended", false: "resumed"}[suspend]
			if !res.Changed {
				done = "was not suspended"
				if suspend {
					done = "was already suspended"
				}
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s %s %s\n", kind, safeLine(res.Name), done)
			return nil
		},
	}
}

// newSetCmd groups the commands about a declared set as a whole.
func newSetCmd(g *globals) *cobra.Command {
	c := &cobra.Command{
		Use:   "set",
		Short: "Suspend or resume a declared set of hooks",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return fmt.Errorf("%w: missing subcommand (suspend or resume)", hookctl.ErrInvalid)
		},
	}
	c.AddCommand(newSuspendCmd(g, hookctl.SuspendSet, true), newSuspendCmd(g, hookctl.SuspendSet, false))
	return c
}

// markSuspended fills the Suspended column of listed hooks from the
// backend's suspensions (those of the hooks, and of their sets).
func markSuspended(rows []listedHook, hooks []hookctl.Hook, list []hookctl.Suspension) {
	sets, ids := map[string]string{}, map[string]string{}
	for _, s := range list {
		if s.Kind == hookctl.SuspendSet {
			sets[s.Name] = "set " + s.Name + " suspended"
		} else {
			ids[s.Name] = "suspended"
			if s.By != "" {
				ids[s.Name] += " by " + s.By
			}
		}
	}
	for i, h := range hooks {
		if why, ok := ids[rules.IDOf(h).String()]; ok {
			rows[i].Suspended = why
		} else if why, ok := sets[h.Owner]; ok && h.Owner != "" {
			rows[i].Suspended = why
		}
	}
}

// printSuspensions writes one line per suspension, for status.
func printSuspensions(w io.Writer, list []hookctl.Suspension) {
	for _, s := range list {
		line := "suspended: " + s.Kind + " " + s.Name
		if s.By != "" {
			line += " (by " + s.By
			if !s.At.IsZero() {
				line += ", " + s.At.Local().Format("2006-01-02 15:04:05")
			}
			line += ")"
		}
		fmt.Fprintln(w, safeLine(line))
	}
}

// noteSuspended tells on stderr, after a plan, which of its sets and of
// their hooks are suspended: apply and the watcher leave a suspended set
// as it is, and a suspended hook stays suspended whatever the files say.
func noteSuspended(cmd *cobra.Command, g *globals, sets []string) {
	client, err := g.client()
	if err != nil {
		return
	}
	list, err := client.Suspensions(cmd.Context())
	if err != nil {
		return
	}
	w := cmd.ErrOrStderr()
	for _, s := range list {
		switch {
		case s.Kind == hookctl.SuspendSet && slices.Contains(sets, s.Name):
			fmt.Fprintf(w, "note: set %s is suspended: apply and the watcher leave its hooks as they are (hookctl set resume %s)\n", safeLine(s.Name), safeLine(s.Name))
		case s.Kind == hookctl.SuspendHook && slices.ContainsFunc(sets, func(set string) bool { return strings.HasPrefix(s.Name, set+"/") }):
			by := ""
			if s.By != "" {
				by = " by " + s.By
			}
			fmt.Fprintf(w, "note: hook %s is suspended%s\n", safeLine(s.Name), safeLine(by))
		}
	}
}
