package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"hookctl.dev/hookctl"
	"hookctl.dev/hookctl/api"
	"hookctl.dev/hookctl/internal/gitinfo"
	"hookctl.dev/hookctl/reconcile"
)

func newApplyCmd(g *globals) *cobra.Command {
	var (
		pf                       planFlags
		output                   string
		noColor, dryRun, verbose bool
	)
	c := &cobra.Command{
		Use:   "apply -f PATH... [-R] [--dry-run] [--prune=false] [--prune-unowned] [--adopt] [--allow-empty] [--allow-mass-delete] [--git] [-o json]",
		Short: "Make the live registry match the hooks files",
		Long: `Compute the plan (as diff shows it) and send it to the backend as one
atomic batch, planned against the registry's revision; if the registry
changed meanwhile, plan again (a few times). Applying twice changes nothing
the second time. Hooks made by hand or owned by other sets are left alone;
a desired hook whose key is taken by one is a conflict, not applied (exit
status 1), unless --adopt takes over hand-made ones; a hand-made hook on a
key the set owned (the inventory says) is put back as declared.

Each set is judged on its own; a refused set's changes are not sent, the
other sets' are. Refused: a set that declares no hooks, or that this
source applied before and the files no longer declare, while it still has
live hooks (unless --allow-empty); a set that would lose more than
--mass-delete-share of its hooks (unless --allow-mass-delete); a set
another source manages (the inventory names it). Exit status: 0 applied,
1 conflicts left, 2 error or a set refused.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if output != "simple" && output != "json" {
				return exitCode(2, fmt.Errorf("%w: -o %q (want simple or json)", hookctl.ErrInvalid, output))
			}
			ctx := api.WithSource(cmd.Context(), gitinfo.Describe(cmd.Context(), "apply", pf.files)) // for the audit trail
			_, res, refused, err := pf.apply(ctx, g, reconcile.ApplyOptions{DryRun: dryRun})
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			cnt := res.Plan.Counts()
			sent := res.Plan.Sent()
			if output == "json" {
				doc := res.Plan.Document()
				doc.Applied, doc.NewRevision = &res.Applied, &res.Revision
				err = writeJSON(out, doc)
			} else {
				// The same text as diff, so that --dry-run shows what diff shows.
				err = res.Plan.WriteText(out, reconcile.TextOptions{Color: useColor(out, noColor), LeftAlone: true, Verbose: verbose})
				noteSuspended(cmd, g, res.Plan.Sets)
				switch {
				case err != nil:
				case dryRun:
					_, err = fmt.Fprintln(out, "Dry run: nothing changed.")
				case res.Applied:
					_, err = fmt.Fprintf(out, "Applied: %d created, %d updated, %d deleted (revision %d).\n",
						sent.Create, sent.Update, sent.Delete, res.Revision)
				default:
					_, err = fmt.Fprintln(out, "Nothing to do.")
				}
			}
			if err != nil {
				return exitCode(2, err)
			}
			if refused != nil {
				return exitCode(2, fmt.Errorf("%w\n(the other sets' changes were applied)", refused))
			}
			if cnt.Conflict > 0 {
				return exitCode(1, fmt.Errorf("%d desired hook(s) not applied: their key is taken by a hook made by hand (--adopt takes it over) or owned by another set", cnt.Conflict))
			}
			return nil
		},
	}
	pf.bind(c)
	f := c.Flags()
	f.BoolVar(&dryRun, "dry-run", false, "show the plan against the live registry, change nothing")
	f.StringVarP(&output, "output", "o", "simple", "output format: simple or json")
	f.BoolVar(&noColor, "no-color", false, "no colours even on a terminal (also env NO_COLOR)")
	f.BoolVarP(&verbose, "verbose", "v", false, "list every attribute of the hooks to create, defaults too")
	return c
}
