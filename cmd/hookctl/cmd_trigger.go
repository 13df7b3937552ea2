package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"hookctl.dev/hookctl"
	"hookctl.dev/hookctl/api"
)

// newTriggerCmd runs a hook once, by hand, on an item of its node.
func newTriggerCmd(g *globals) *cobra.Command {
	var (
		item   string
		output string
	)
	c := &cobra.Command{
		Use:   "trigger HOOK --item ID [-o text|json]",
		Short: "Run a hook once on an item fetched from its node",
		Long: `Fetch item ID from the hook's node and run the hook on it once, through
the hook's queue (after the runs already waiting, within its concurrency
and timeout). HOOK is the hook's name, set/name, arg or key. The run is
recorded as "trigger" and printed as runs show prints it. Exit status: 0
when the run succeeded, 1 when it did not, 2 when it could not start.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if item == "" {
				return exitCode(2, fmt.Errorf("%w: --item is required", hookctl.ErrInvalid))
			}
			client, err := g.client()
			if err != nil {
				return exitCode(2, err)
			}
			r, err := client.Trigger(cmd.Context(), api.TriggerRequest{Hook: args[0], Profile: g.profile, ItemID: item})
			if err != nil {
				return exitCode(2, err)
			}
			return printManualRun(cmd, r, output)
		},
	}
	c.Flags().StringVar(&item, "item", "", "id of the item of the hook's node to run it on")
	c.Flags().StringVarP(&output, "output", "o", "text", "output format: text or json")
	return c
}

// newRunsReplayCmd runs a recorded run's event again.
func newRunsReplayCmd(g *globals) *cobra.Command {
	var output string
	c := &cobra.Command{
		Use:   "replay RUN-ID [-o text|json]",
		Short: "Run a recorded run's hook again on the same event",
		Long: `Run the hook of a recorded run again on the event that run received
(after fixing a bug in the hook), through the hook's queue. The new run is
recorded as "replay of RUN-ID" and printed. Exit status: 0 when it
succeeded, 1 when it did not, 2 when it could not start.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			id, err := parseRunID(args[0])
			if err != nil {
				return exitCode(2, err)
			}
			client, err := g.client()
			if err != nil {
				return exitCode(2, err)
			}
			r, err := client.Replay(cmd.Context(), id)
			if err != nil {
				return exitCode(2, err)
			}
			return printManualRun(cmd, r, output)
		},
	}
	c.Flags().StringVarP(&output, "output", "o", "text", "output format: text or json")
	return c
}

// printManualRun prints a run asked by hand; a run that did not succeed
// is exit status 1.
func printManualRun(cmd *cobra.Command, r hookctl.Run, output string) error {
	var err error
	if output == "json" {
		err = writeJSON(cmd.OutOrStdout(), r)
	} else {
		err = printRun(cmd.OutOrStdout(), r)
	}
	if err != nil {
		return exitCode(2, err)
	}
	if r.Outcome != "ok" {
		return exitCode(1, nil)
	}
	return nil
}
