package main

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"hookctl.dev/hookctl"
	"hookctl.dev/hookctl/api"
)

func newStatusCmd(g *globals) *cobra.Command {
	var output string
	c := &cobra.Command{
		Use:   "status [-o simple|json]",
		Short: "Show the backend's profiles, sessions, watched nodes and hook problems",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkOutput(output, "simple", "json"); err != nil {
				return err
			}
			client, err := g.client()
			if err != nil {
				return err
			}
			st, err := client.Status(cmd.Context())
			if err != nil {
				return err
			}
			if output == "json" {
				return writeJSON(cmd.OutOrStdout(), st)
			}
			printStatus(cmd.OutOrStdout(), st)
			return nil
		},
	}
	c.Flags().StringVarP(&output, "output", "o", "simple", "output format: simple or json")
	return c
}

func printStatus(w io.Writer, st api.Status) {
	fmt.Fprintf(w, "hookctl %s, up %s, revision %d, %d hook(s)\n", st.Version, time.Since(st.Started).Round(time.Second), st.Revision, st.Hooks)
	if len(st.Profiles) == 0 {
		fmt.Fprintln(w, "No profile configured: hooks are kept but nothing fires.")
	} else {
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "PROFILE\tJID\tSTATE\tHOOKS\tSUBSCRIPTIONS\tEVENTS\tRECONNECTS\tLAST ERROR")
		for _, p := range st.Profiles {
			lastErr := p.LastError
			if lastErr == "" {
				lastErr = "-"
			}
			state := p.State
			if c := st.Cluster; c != nil && c.Holders[p.Name] != c.Replica {
				state = "held by " + valueOr(c.Holders[p.Name], "nobody")
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%d\t%d\t%s\n", cell(p.Name), cell(p.JID), cell(state), p.Hooks, p.Subscriptions, p.Events, p.Reconnects, cell(lastErr))
		}
		tw.Flush()
		for _, p := range st.Profiles {
			if p.Conflicts > 0 {
				fmt.Fprintf(w, "conflict: profile %s: the server closed its session %d time(s) because another session bound %s; reconnects back off\n",
					cell(p.Name), p.Conflicts, cell(p.BoundJID))
			}
		}
	}
	if len(st.Nodes) > 0 {
		fmt.Fprintln(w, "\nWatched nodes:")
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "PROFILE\tSERVICE\tNODE\tHOOKS\tSUBSCRIBED\tFINISHED\tLAST CATCH-UP\tCAUGHT UP\tGAPS")
		for _, n := range st.Nodes {
			last := "-"
			if !n.LastCatchup.IsZero() {
				last = n.LastCatchup.Local().Format(time.DateTime)
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%t\t%d\t%s\t%d\t%d\n", cell(n.Profile), cell(n.Service), cell(n.Node), n.Hooks, n.Subscribed, n.Finished, last, n.CaughtUp, n.Gaps)
		}
		tw.Flush()
		for _, n := range st.Nodes {
			if n.SubscribeError != "" {
				fmt.Fprintf(w, "not subscribed: %s %s %s: %s\n", n.Profile, n.Service, n.Node, n.SubscribeError)
			}
			if n.MaybeMissed != "" {
				fmt.Fprintf(w, "maybe missed: %s %s %s: %s\n", cell(n.Profile), cell(n.Service), cell(n.Node), cell(n.MaybeMissed))
			}
		}
	}
	for _, e := range st.HookErrors {
		fmt.Fprintf(w, "problem: %s: %s\n", cell(e.Hook.String()), cell(e.Error))
	}
	printSuspensions(w, st.Suspended)
	printWatchStatus(w, st.Watch)
	printClusterStatus(w, st.Cluster)
}

// printClusterStatus shows serve --cluster's view: this replica, etcd, the
// live replicas and the profiles each holds.
func printClusterStatus(w io.Writer, c *hookctl.ClusterStatus) {
	if c == nil {
		return
	}
	etcd := "etcd " + c.EtcdVersion
	if c.Error != "" {
		etcd = "etcd unreachable: " + c.Error
	}
	fmt.Fprintf(w, "\nCluster: replica %s, lease %s (valid for %s), %s at %s, holder changes %d\n",
		cell(c.Replica), time.Duration(c.Lease), time.Duration(c.LeaseValidFor), cell(etcd), cell(strings.Join(c.Endpoints, ",")), c.HolderChanges)
	held := map[string][]string{}
	for _, p := range slices.Sorted(maps.Keys(c.Holders)) {
		held[c.Holders[p]] = append(held[c.Holders[p]], p)
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "REPLICA\tAPI\tSINCE\tPROFILES")
	for _, m := range c.Members {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", cell(m.Name), cell(valueOr(m.API, "-")), m.Since.Local().Format(time.DateTime), cell(valueOr(strings.Join(held[m.Name], ","), "-")))
	}
	tw.Flush()
	if len(held[""]) > 0 {
		fmt.Fprintf(w, "held by no replica: %s\n", cell(strings.Join(held[""], ",")))
	}
}

// printWatchStatus shows serve --watch's reconciler: ready or not, and
// each set whose changes are refused, with why.
func printWatchStatus(w io.Writer, ws *hookctl.WatchStatus) {
	if ws == nil {
		return
	}
	state := "ready"
	if !ws.Ready {
		state = "not ready"
	}
	fmt.Fprintf(w, "\nGitOps (serve --watch): %s, files at %s, drift %d\n", state, valueOr(ws.Revision, "-"), ws.Drift)
	if ws.LastError != "" && len(ws.SetErrors) == 0 {
		fmt.Fprintf(w, "last round failed: %s\n", ws.LastError)
	}
	if ws.FilesError != "" {
		fmt.Fprintf(w, "files invalid (last good set kept): %s\n", ws.FilesError)
	}
	for _, set := range slices.Sorted(maps.Keys(ws.SetErrors)) {
		fmt.Fprintf(w, "set %s refused: %s\n", set, ws.SetErrors[set])
	}
}

func valueOr(s, dflt string) string {
	if s == "" {
		return dflt
	}
	return s
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
