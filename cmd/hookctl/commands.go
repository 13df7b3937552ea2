package main

import "github.com/spf13/cobra"

// topCommands are the commands directly under hookctl (besides hook).
// Each lives in its own file as newXxxCmd(g).
func topCommands(g *globals) []*cobra.Command {
	return []*cobra.Command{
		// serve, validate, diff, apply, watch, status, runs: added as they land.
	}
}

// pubsubCommands are the commands under `hookctl pubsub` besides hook.
func pubsubCommands(g *globals) []*cobra.Command {
	return []*cobra.Command{
		// publish, retract, node: added as they land.
	}
}
