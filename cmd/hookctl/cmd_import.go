package main

import (
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/spf13/cobra"

	"hookctl.dev/hookctl"
	"hookctl.dev/hookctl/api"
	"hookctl.dev/hookctl/libervia"
	"hookctl.dev/hookctl/reconcile"
	"hookctl.dev/hookctl/rules"
	"hookctl.dev/hookctl/spec"
)

func newImportCmd(g *globals) *cobra.Command {
	c := &cobra.Command{Use: "import", Short: "Bring hooks over from another system"}
	c.AddCommand(newImportLiberviaCmd(g))
	return c
}

// importFlags are `import libervia`'s flags.
type importFlags struct {
	db, set, pathMap, output string
	apply, dryRun            bool
}

func newImportLiberviaCmd(g *globals) *cobra.Command {
	var f importFlags
	c := &cobra.Command{
		Use:   "libervia --db PATH [-p PROFILE] [--set S] [--path-map OLD=NEW] [-o FILE | --apply [--dry-run]]",
		Short: "Write (or apply) the persistent hooks of a Libervia backend's database",
		Long: `Read the persistent PubSub hooks a Libervia (SàT) backend stored in its
SQLite database (usually ~/.local/share/libervia/libervia.db; read-only,
Libervia may keep running) and write them as a hooks file of set --set
(default "libervia"), or apply them to the backend with --apply.

Every profile's hooks, or only -p PROFILE's; each becomes a persistent
hook of the hookctl profile of the same name, with the same service (left
out when it is the profile's own JID: own PEP), node, type and arg.
Libervia allowed the same hook twice; the duplicates are dropped and named
on stderr. --path-map OLD=NEW rewrites python_file paths under OLD to NEW
(the scripts moved with the hooks).

The stored values are Python pickles: they are decoded as data only, never
run; one that names any code (os.system, …) is refused, and so is the
whole import, naming the profile and node. Nothing is written or applied
unless every hook converts and passes hookctl's rules.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			profile := ""
			if cmd.Flags().Changed("profile") {
				profile = g.profile
			}
			return runImportLibervia(cmd, g, f, profile)
		},
	}
	fl := c.Flags()
	fl.StringVar(&f.db, "db", "", "the Libervia database (libervia.db, or sat.db of older versions)")
	fl.StringVar(&f.set, "set", "libervia", "the set the hooks are declared in")
	fl.StringVar(&f.pathMap, "path-map", "", "OLD=NEW: python_file paths under directory OLD are taken under NEW")
	fl.StringVarP(&f.output, "output", "o", "", "write the hooks file here (default stdout)")
	fl.BoolVar(&f.apply, "apply", false, "apply the hooks to the backend (as apply does with a file) instead of writing a file")
	fl.BoolVar(&f.dryRun, "dry-run", false, "with --apply: show the plan, change nothing")
	return c
}

// check refuses bad flag values before the database is opened.
func (f importFlags) check() (from, to string, err error) {
	bad := func(format string, a ...any) error {
		return exitCode(2, fmt.Errorf("%w: "+format, append([]any{hookctl.ErrInvalid}, a...)...))
	}
	switch {
	case f.db == "":
		return "", "", bad("no database: give --db PATH (Libervia's libervia.db)")
	case f.apply && f.output != "":
		return "", "", bad("--apply and -o: either apply the hooks or write them to a file")
	}
	if !rules.ValidName(f.set) {
		return "", "", bad("--set %q is not a simple name (letters, digits, '.', '_', '-')", f.set)
	}
	if f.dryRun && !f.apply {
		return "", "", bad("--dry-run goes with --apply")
	}
	if f.pathMap != "" {
		var ok bool
		from, to, ok = strings.Cut(f.pathMap, "=")
		if !ok || !filepath.IsAbs(from) || !filepath.IsAbs(to) {
			return "", "", bad("--path-map %q: want OLD=NEW, two absolute directories", f.pathMap)
		}
	}
	return from, to, nil
}

func runImportLibervia(cmd *cobra.Command, g *globals, f importFlags, profile string) error {
	from, to, err := f.check()
	if err != nil {
		return err
	}
	db, err := libervia.Read(cmd.Context(), f.db, profile)
	if err != nil {
		return exitCode(2, fmt.Errorf("import libervia: %w", err))
	}
	hooks, notes, err := libervia.Convert(db, libervia.ConvertOptions{Set: f.set, PathFrom: from, PathTo: to})
	for _, n := range notes {
		fmt.Fprintln(cmd.ErrOrStderr(), "note:", n)
	}
	if err != nil {
		return exitCode(2, fmt.Errorf("import libervia: %w", err))
	}
	if len(hooks) == 0 {
		return exitCode(2, fmt.Errorf("import libervia: no persistent hooks in %s%s", f.db, profileNote(profile)))
	}
	warnMissingScripts(cmd, hooks)
	if f.apply {
		return applyImported(cmd, g, hooks, f)
	}
	data, err := spec.Write(hooks, spec.WriteOptions{Set: f.set, OwnJIDs: db.OwnJIDs(),
		Header: "Imported from the Libervia database " + filepath.Base(f.db) + " by hookctl import libervia."})
	if err != nil {
		return exitCode(2, err)
	}
	return writeExport(cmd.OutOrStdout(), f.output, map[string][]byte{f.set: data})
}

// warnMissingScripts names the python_file scripts that are not here:
// the file is still written (they may be copied later), but validate and
// the backend will refuse them until they are.
func warnMissingScripts(cmd *cobra.Command, hooks []hookctl.Hook) {
	for _, h := range hooks {
		if h.Type != hookctl.TypePythonFile {
			continue
		}
		if fi, err := os.Stat(h.Arg); err != nil || !fi.Mode().IsRegular() {
			fmt.Fprintf(cmd.ErrOrStderr(), "warning: script %s is not a file here (copy it, or use --path-map OLD=NEW)\n", h.Arg)
		}
	}
}

// applyImported applies the imported hooks as `apply` applies a file's:
// one atomic batch, the plan printed, conflicts exit 1.
func applyImported(cmd *cobra.Command, g *globals, hooks []hookctl.Hook, f importFlags) error {
	ctx := api.WithSource(cmd.Context(), "import libervia "+filepath.Base(f.db)) // for the audit trail
	client, err := g.client()
	if err != nil {
		return exitCode(2, err)
	}
	defer client.Close()
	jids, err := profileJIDs(ctx, client)
	if err != nil {
		return exitCode(2, err)
	}
	for _, h := range hooks {
		if _, ok := jids[h.Profile]; !ok {
			return exitCode(2, fmt.Errorf("%w: profile %q of the imported hooks is not one of this backend's (%s): declare it in the backend's config, or import another with -p", hookctl.ErrInvalid, h.Profile, strings.Join(slices.Sorted(maps.Keys(jids)), ", ")))
		}
	}
	desired, err := reconcile.NormalizeServices(hooks, jids)
	if err != nil {
		return exitCode(2, err)
	}
	res, err := reconcile.Apply(ctx, client, desired, reconcile.ApplyOptions{
		Options: reconcile.Options{Sets: []string{f.set}}, DryRun: f.dryRun})
	if err != nil {
		return exitCode(2, err)
	}
	out := cmd.OutOrStdout()
	if err := res.Plan.WriteText(out, reconcile.TextOptions{LeftAlone: false}); err != nil {
		return exitCode(2, err)
	}
	sent := res.Plan.Sent()
	switch {
	case f.dryRun:
		fmt.Fprintln(out, "Dry run: nothing changed.")
	case res.Applied:
		fmt.Fprintf(out, "Applied: %d created, %d updated, %d deleted (revision %d).\n", sent.Create, sent.Update, sent.Delete, res.Revision)
	default:
		fmt.Fprintln(out, "Nothing to do.")
	}
	if c := res.Plan.Counts().Conflict; c > 0 {
		return exitCode(1, fmt.Errorf("%d imported hook(s) not applied: their key is taken by a hook made by hand or owned by another set", c))
	}
	return nil
}
