package main

import (
	"context"
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"

	"hookctl.dev/hookctl"
	"hookctl.dev/hookctl/api"
	"hookctl.dev/hookctl/reconcile"
	"hookctl.dev/hookctl/spec"
)

// planFlags are the flags diff, apply and watch share.
type planFlags struct {
	files        []string
	recursive    bool
	prune        bool
	pruneUnowned bool
	adopt        bool
	followExt    bool
}

func (p *planFlags) bind(c *cobra.Command) {
	f := c.Flags()
	f.StringArrayVarP(&p.files, "file", "f", nil, "hooks file or directory (repeatable)")
	f.BoolVarP(&p.recursive, "recursive", "R", false, "read subdirectories of directories too")
	f.BoolVar(&p.prune, "prune", true, "delete hooks of the declared sets that the files no longer declare")
	f.BoolVar(&p.pruneUnowned, "prune-unowned", false, "also delete hooks made by hand that the files do not declare")
	f.BoolVar(&p.adopt, "adopt", false, "take over hooks made by hand that have the key of a declared hook")
	f.BoolVar(&p.followExt, "follow-external-symlinks", false, "read files that symlinks in a directory lead to outside it (refused by default)")
}

// specOptions are how the files are read.
func (p *planFlags) specOptions() spec.Options {
	opts := spec.DefaultOptions()
	opts.Recursive, opts.FollowExternalSymlinks = p.recursive, p.followExt
	return opts
}

func (p *planFlags) options(sets []string) reconcile.Options {
	return reconcile.Options{Sets: sets, NoPrune: !p.prune, PruneUnowned: p.pruneUnowned, Adopt: p.adopt}
}

// load reads and validates the files; problems exit 2 before the backend
// is contacted.
func (p *planFlags) load(ctx context.Context) (reconcile.Desired, error) {
	if len(p.files) == 0 {
		return reconcile.Desired{}, exitCode(2, fmt.Errorf("%w: no hooks files: give -f PATH", hookctl.ErrInvalid))
	}
	d, err := reconcile.SpecLoaderWith(p.files, p.specOptions())(ctx)
	if err != nil {
		return d, exitCode(2, err)
	}
	return d, nil
}

// apply reads the files, then plans them against the backend the flags
// name and applies the plan (DryRun for diff). Every error exits 2.
func (p *planFlags) apply(ctx context.Context, g *globals, opts reconcile.ApplyOptions) (reconcile.Desired, reconcile.Result, error) {
	d, err := p.load(ctx)
	if err != nil {
		return d, reconcile.Result{}, err
	}
	client, err := g.client()
	if err != nil {
		return d, reconcile.Result{}, exitCode(2, err)
	}
	defer client.Close()
	jids, err := profileJIDs(ctx, client)
	if err != nil {
		return d, reconcile.Result{}, exitCode(2, err)
	}
	opts.Options = p.options(d.Sets)
	desired, err := reconcile.NormalizeServices(d.Hooks, jids)
	if err != nil {
		return d, reconcile.Result{}, exitCode(2, err)
	}
	res, err := reconcile.Apply(ctx, client, desired, opts)
	if err != nil {
		return d, res, exitCode(2, err)
	}
	return d, res, nil
}

// profileJIDs asks the backend for its profiles' JIDs, which own-PEP hooks
// (empty service) are stored under.
func profileJIDs(ctx context.Context, c *api.Client) (map[string]string, error) {
	st, err := c.Status(ctx)
	if err != nil {
		return nil, err
	}
	jids := make(map[string]string, len(st.Profiles))
	for _, p := range st.Profiles {
		jids[p.Name] = p.JID
	}
	return jids, nil
}

// useColor: only on a terminal, unless --no-color or NO_COLOR say no.
func useColor(w io.Writer, noColor bool) bool {
	if noColor || os.Getenv("NO_COLOR") != "" {
		return false
	}
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

func newDiffCmd(g *globals) *cobra.Command {
	var (
		pf      planFlags
		output  string
		noColor bool
	)
	c := &cobra.Command{
		Use:   "diff -f PATH... [-R] [-o json]",
		Short: "Show how the live registry differs from the hooks files",
		Long: `Show what apply would do: + create, ~ update (with the attributes that
change), - delete, ! conflict (a live hook with the same key belongs to
someone else), = left alone (made by hand, or kept by --prune=false;
hooks of other sets are only counted), then a summary line. Exit status: 0 in sync, 1 differences,
2 error (invalid files are reported without contacting the backend).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if output != "simple" && output != "json" {
				return exitCode(2, fmt.Errorf("%w: -o %q (want simple or json)", hookctl.ErrInvalid, output))
			}
			d, res, err := pf.apply(cmd.Context(), g, reconcile.ApplyOptions{DryRun: true, AllowEmpty: true})
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if output == "json" {
				err = writeJSON(out, res.Plan.Document())
			} else {
				// Hooks left alone are listed too: diff is where a user looks
				// for what the files do not manage.
				err = res.Plan.WriteText(out, reconcile.TextOptions{Color: useColor(out, noColor), LeftAlone: true})
				noteSuspended(cmd, g, res.Plan.Sets)
			}
			if err != nil {
				return exitCode(2, err)
			}
			if empty := reconcile.EmptySets(d.Hooks, listed(res.Plan), res.Plan.Sets); len(empty) > 0 {
				fmt.Fprintf(cmd.ErrOrStderr(), "warning: set %v declares no hooks: apply will refuse to delete its live hooks without --allow-empty\n", empty)
			}
			if !res.Plan.InSync() {
				return exitCode(1, nil)
			}
			return nil
		},
	}
	pf.bind(c)
	c.Flags().StringVarP(&output, "output", "o", "simple", "output format: simple or json")
	c.Flags().BoolVar(&noColor, "no-color", false, "no colours even on a terminal (also env NO_COLOR)")
	return c
}

// listed returns the live hooks a plan saw.
func listed(p reconcile.Changeset) []hookctl.Hook {
	var out []hookctl.Hook
	for _, e := range p.Entries {
		if e.Live != nil {
			out = append(out, *e.Live)
		}
	}
	return out
}
