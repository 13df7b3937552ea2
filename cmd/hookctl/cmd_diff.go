package main

import (
	"context"
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"hookctl.dev/hookctl"
	"hookctl.dev/hookctl/api"
	"hookctl.dev/hookctl/reconcile"
	"hookctl.dev/hookctl/spec"
)

// planFlags are the flags diff, apply and watch share.
type planFlags struct {
	files           []string
	recursive       bool
	prune           bool
	pruneUnowned    bool
	adopt           bool
	allowEmpty      bool
	allowMassDelete bool
	massDeleteShare float64
	source          string
	takeOver        bool
	git             bool
	gitRef          string
	followExt       bool
}

func (p *planFlags) bind(c *cobra.Command) {
	f := c.Flags()
	f.StringArrayVarP(&p.files, "file", "f", nil, "hooks file or directory (repeatable)")
	f.BoolVarP(&p.recursive, "recursive", "R", false, "read subdirectories of directories too")
	p.bindPlan(f)
}

// bindPlan binds the flags that say what a plan may do (serve --watch
// takes them too, beside its own --watch and -R).
func (p *planFlags) bindPlan(f *pflag.FlagSet) {
	f.BoolVar(&p.prune, "prune", true, "delete hooks of the declared sets (and of sets gone from the files) that the files no longer declare")
	f.BoolVar(&p.pruneUnowned, "prune-unowned", false, "also delete hooks made by hand that the files do not declare, only on the profiles' nodes (profile, service, node) the files declare hooks on")
	f.BoolVar(&p.adopt, "adopt", false, "take over hooks made by hand that have the key of a declared hook")
	f.BoolVar(&p.allowEmpty, "allow-empty", false, "let a set without hooks, or gone from the files, delete its live hooks")
	f.BoolVar(&p.allowMassDelete, "allow-mass-delete", false, "let a set lose more than --mass-delete-share of its hooks in one round (deletions minus creations)")
	f.Float64Var(&p.massDeleteShare, "mass-delete-share", reconcile.DefaultMassDeleteShare, "share of a set's hooks (0-1] one round may delete without --allow-mass-delete")
	f.StringVar(&p.source, "source", "", "name of the files' source in the inventory (default: the git repository and path, else the absolute path)")
	f.BoolVar(&p.takeOver, "take-over", false, "manage here the declared sets another source manages (their files moved); without it they are refused")
	f.BoolVar(&p.git, "git", false, "read the files from the committed tree of --git-ref, not the work tree (watch and serve --watch do so by themselves in a git work tree; --git=false reads the work tree)")
	f.StringVar(&p.gitRef, "git-ref", "HEAD", "with --git: the commit, branch or tag to read")
	f.BoolVar(&p.followExt, "follow-external-symlinks", false, "read files that symlinks in a directory lead to outside it (refused by default)")
}

// specOptions are how the files are read.
func (p *planFlags) specOptions() spec.Options {
	opts := spec.DefaultOptions()
	opts.Recursive, opts.FollowExternalSymlinks = p.recursive, p.followExt
	return opts
}

func (p *planFlags) options(sets []string) reconcile.Options {
	return reconcile.Options{Sets: sets, NoPrune: !p.prune, PruneUnowned: p.pruneUnowned, Adopt: p.adopt,
		Guards:   reconcile.Guards{AllowEmpty: p.allowEmpty, AllowMassDelete: p.allowMassDelete, MassDeleteShare: p.massDeleteShare},
		TakeOver: p.takeOver}
}

// check refuses flag values that make no sense, before anything is read.
func (p *planFlags) check() error {
	if len(p.files) == 0 {
		return exitCode(2, fmt.Errorf("%w: no hooks files: give -f PATH", hookctl.ErrInvalid))
	}
	if !(p.massDeleteShare > 0 && p.massDeleteShare <= 1) {
		return exitCode(2, fmt.Errorf("%w: --mass-delete-share %g (want a share in (0, 1], e.g. 0.5)", hookctl.ErrInvalid, p.massDeleteShare))
	}
	return nil
}

// loader is how the files are read: from the committed tree with --git,
// else from the work tree.
func (p *planFlags) loader() reconcile.Loader {
	if p.git {
		return reconcile.GitLoader(p.files, p.recursive, p.gitRef)
	}
	return reconcile.SpecLoaderWith(p.files, p.specOptions())
}

// sourceName is --source, else the name SourceOf derives.
func (p *planFlags) sourceName(ctx context.Context) string {
	if p.source != "" {
		return p.source
	}
	return reconcile.SourceOf(ctx, p.files)
}

// load reads and validates the files; problems exit 2 before the backend
// is contacted.
func (p *planFlags) load(ctx context.Context) (reconcile.Desired, error) {
	if err := p.check(); err != nil {
		return reconcile.Desired{}, err
	}
	d, err := p.loader()(ctx)
	if err != nil {
		return d, exitCode(2, err)
	}
	return d, nil
}

// apply reads the files, then plans them against the backend the flags
// name and applies the plan (DryRun for diff). Every error exits 2; when
// only some sets are refused (guards, another source's set) the result is
// complete and refused is why.
func (p *planFlags) apply(ctx context.Context, g *globals, opts reconcile.ApplyOptions) (d reconcile.Desired, res reconcile.Result, refused, err error) {
	d, err = p.load(ctx)
	if err != nil {
		return d, res, nil, err
	}
	client, err := g.client()
	if err != nil {
		return d, res, nil, exitCode(2, err)
	}
	defer client.Close()
	jids, err := profileJIDs(ctx, client)
	if err != nil {
		return d, res, nil, exitCode(2, err)
	}
	opts.Options = p.options(d.Sets)
	opts.Source, opts.SourceRevision = p.sourceName(ctx), d.Revision
	desired, err := reconcile.NormalizeServices(d.Hooks, jids)
	if err != nil {
		return d, res, nil, exitCode(2, err)
	}
	res, err = reconcile.Apply(ctx, client, desired, opts)
	if err != nil && err == res.Refused {
		return d, res, err, nil
	}
	if err != nil {
		return d, res, nil, exitCode(2, err)
	}
	return d, res, nil, nil
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
		pf               planFlags
		output           string
		noColor, verbose bool
	)
	c := &cobra.Command{
		Use:   "diff -f PATH... [-R] [--git] [-o json]",
		Short: "Show how the live registry differs from the hooks files",
		Long: `Show what apply would do: + create, ~ update (with the attributes that
change), - delete, ! conflict (a live hook with the same key belongs to
someone else), = left alone (made by hand, or kept by --prune=false;
hooks of other sets are only counted), then a summary line. A set this
source applied before and the files no longer declare is shown deleted
("set no longer in the files"); a set apply would refuse (--allow-empty,
--allow-mass-delete, a set another source manages) is named on stderr.
Exit status: 0 in sync, 1 differences, 2 error (invalid files are reported
without contacting the backend).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if output != "simple" && output != "json" {
				return exitCode(2, fmt.Errorf("%w: -o %q (want simple or json)", hookctl.ErrInvalid, output))
			}
			_, res, refused, err := pf.apply(cmd.Context(), g, reconcile.ApplyOptions{DryRun: true})
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if output == "json" {
				err = writeJSON(out, res.Plan.Document())
			} else {
				// Hooks left alone are listed too: diff is where a user looks
				// for what the files do not manage.
				err = res.Plan.WriteText(out, reconcile.TextOptions{Color: useColor(out, noColor), LeftAlone: true, Verbose: verbose})
				noteSuspended(cmd, g, res.Plan.Sets)
			}
			if err != nil {
				return exitCode(2, err)
			}
			if refused != nil {
				fmt.Fprintf(cmd.ErrOrStderr(), "warning: apply would refuse these sets' changes (the others' go ahead):\n%v\n", refused)
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
	c.Flags().BoolVarP(&verbose, "verbose", "v", false, "list every attribute of the hooks to create, defaults too")
	return c
}
