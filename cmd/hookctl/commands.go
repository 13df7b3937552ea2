package main

import "github.com/spf13/cobra"

// topCommands are the commands directly under hookctl (besides hook).
// Each lives in its own file as newXxxCmd(g).
func topCommands(g *globals) []*cobra.Command {
	return []*cobra.Command{
		newServeCmd(g),
		newValidateCmd(g),
		newDiffCmd(g),
		newApplyCmd(g),
		newWatchCmd(g),
		newStatusCmd(g),
		newRunsCmd(g),
		newSetCmd(g),
		newTriggerCmd(g),
		newEventsCmd(g),
	}
}

// pubsubCommands are the commands under `hookctl pubsub` besides hook.
func pubsubCommands(g *globals) []*cobra.Command {
	return []*cobra.Command{
		newPublishCmd(g),
		newRetractCmd(g),
		newNodeCmd(g),
	}
}
