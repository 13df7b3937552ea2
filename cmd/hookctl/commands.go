package main

import (
	"fmt"
	"slices"
	"strings"

	"github.com/spf13/cobra"

	"hookctl.dev/hookctl"
)

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
		newExportCmd(g),
		newImportCmd(g),
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

// checkOutput refuses an -o format that is not one of allowed, with exit
// status 2, before anything is asked of the backend.
func checkOutput(output string, allowed ...string) error {
	if slices.Contains(allowed, output) {
		return nil
	}
	return exitCode(2, fmt.Errorf("%w: -o %q (want %s)", hookctl.ErrInvalid, output, strings.Join(allowed, " or ")))
}
