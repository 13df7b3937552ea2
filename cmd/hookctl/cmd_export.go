package main

import (
	"cmp"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/spf13/cobra"

	"hookctl.dev/hookctl"
	"hookctl.dev/hookctl/api"
	"hookctl.dev/hookctl/rules"
	"hookctl.dev/hookctl/spec"
)

// exportHeader heads every exported file: where relative paths resolve.
const exportHeader = "Written by hookctl export. Relative script paths are relative to the\nhooks root: keep this file at the root of the directory given to -f."

// exportFlags select what `hookctl export` writes.
type exportFlags struct {
	set     string
	unowned bool
	adopt   string
	output  string
}

func newExportCmd(g *globals) *cobra.Command {
	var f exportFlags
	c := &cobra.Command{
		Use:   "export [--set S | --adopt S [--unowned]] [-p PROFILE] [-o FILE|DIR]",
		Short: "Write the live registry's hooks as hooks files",
		Long: `Write the live hooks as a hooks file that apply reads back unchanged:
'hookctl export --set blog > repo/hooks.yaml' then 'hookctl diff -f repo'
plans nothing. A file declares one set, and declares it whole (applying it
deletes the set's hooks it lacks), so:
  (default)          every set; one set to stdout or -o FILE, several
                     sets with -o DIR (one DIR/SET.yaml each).
  --set S            set S only.
  --adopt S          set S and every hook made by hand, all as set S:
                     'hookctl apply --adopt' on the file then takes the
                     hand-made ones over (an update of their owner, never
                     a delete and create).
  --unowned          with --adopt S: only the hooks made by hand, into a
                     set S that has no hooks yet.
  -p/--profile P     only profile P's hooks (refused for a set that also
                     has hooks of other profiles).
Hooks made by hand are only exported with --adopt. Script paths are
written as the registry stores them: relative to the hooks root (keep the
file at that root) or absolute. Hooks declared enabled: false are written
so; an operator's 'hook suspend' is not part of the file.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			profile := ""
			if cmd.Flags().Changed("profile") {
				profile = g.profile
			}
			return runExport(cmd, g, f, profile)
		},
	}
	fl := c.Flags()
	fl.StringVar(&f.set, "set", "", "export only this set")
	fl.StringVar(&f.adopt, "adopt", "", "export this set with the hooks made by hand in it (apply --adopt takes them over)")
	fl.BoolVar(&f.unowned, "unowned", false, "with --adopt S: only the hooks made by hand")
	fl.StringVarP(&f.output, "output", "o", "", "write to this file, or one SET.yaml per set in this existing directory (default stdout)")
	return c
}

// check refuses flags that contradict each other, before the backend is
// asked anything.
func (f exportFlags) check() error {
	bad := func(format string, a ...any) error {
		return exitCode(2, fmt.Errorf("%w: "+format, append([]any{hookctl.ErrInvalid}, a...)...))
	}
	switch {
	case f.unowned && f.adopt == "":
		return bad("--unowned: hooks made by hand belong to no set; name the set their file declares with --adopt SET")
	case f.set != "" && f.adopt != "" && f.set != f.adopt:
		return bad("--set %s and --adopt %s: a file declares one set", f.set, f.adopt)
	}
	for _, s := range []string{f.set, f.adopt} {
		if s != "" && !rules.ValidName(s) {
			return bad("set %q is not a simple name (letters, digits, '.', '_', '-')", s)
		}
	}
	return nil
}

// selection is what export writes: hooks by the set their file declares.
type selection struct {
	sets        map[string][]hookctl.Hook
	handSkipped int
}

// selectHooks sorts the live hooks into the files' sets, refusing a
// selection whose file would not declare its set whole.
func (f exportFlags) selectHooks(live []hookctl.Hook, profile string) (selection, error) {
	sel := selection{sets: map[string][]hookctl.Hook{}}
	profilesOf := map[string]map[string]bool{} // set → profiles it has hooks on
	for _, h := range live {
		if h.Owner != "" {
			if profilesOf[h.Owner] == nil {
				profilesOf[h.Owner] = map[string]bool{}
			}
			profilesOf[h.Owner][h.Profile] = true
		}
		if profile != "" && h.Profile != profile {
			continue
		}
		switch into := f.into(h); {
		case into != "":
			sel.sets[into] = append(sel.sets[into], h)
		case h.Owner == "":
			sel.handSkipped++
		}
	}
	if f.unowned && len(profilesOf[f.adopt]) > 0 {
		return sel, exitCode(2, fmt.Errorf("%w: set %s already has hooks: export it with --adopt %s (without --unowned) so that its file keeps them", hookctl.ErrInvalid, f.adopt, f.adopt))
	}
	if profile != "" {
		for set := range sel.sets {
			if others := len(profilesOf[set]) - boolInt(profilesOf[set][profile]); others > 0 {
				return sel, exitCode(2, fmt.Errorf("%w: set %s also has hooks of other profiles: a file declares its set whole (applying it would delete the others); export the set without -p", hookctl.ErrInvalid, set))
			}
		}
	}
	if want := cmp.Or(f.set, f.adopt); want != "" && len(sel.sets[want]) == 0 && !f.unowned {
		return sel, exitCode(2, fmt.Errorf("%w: no live hooks of set %s%s", hookctl.ErrInvalid, want, profileNote(profile)))
	}
	if len(sel.sets) == 0 {
		return sel, exitCode(2, fmt.Errorf("%w: no hooks to export%s", hookctl.ErrInvalid, profileNote(profile)))
	}
	return sel, nil
}

// into is the set whose file hook h goes in ("" = not exported).
func (f exportFlags) into(h hookctl.Hook) string {
	switch {
	case h.Owner == "":
		return f.adopt
	case f.unowned:
		return ""
	case f.set != "" && h.Owner != f.set, f.adopt != "" && h.Owner != f.adopt:
		return ""
	}
	return h.Owner
}

func runExport(cmd *cobra.Command, g *globals, f exportFlags, profile string) error {
	if err := f.check(); err != nil {
		return err
	}
	ctx := cmd.Context()
	client, err := g.client()
	if err != nil {
		return exitCode(2, err)
	}
	defer client.Close()
	live, _, err := client.List(ctx, "")
	if err != nil {
		return exitCode(2, err)
	}
	jids, err := profileJIDs(ctx, client)
	if err != nil {
		return exitCode(2, err)
	}
	sel, err := f.selectHooks(live, profile)
	if err != nil {
		return err
	}
	files := map[string][]byte{}
	for set, hs := range sel.sets {
		data, err := spec.Write(hs, spec.WriteOptions{Set: set, OwnJIDs: jids, Header: exportHeader})
		if err != nil {
			return exitCode(2, err)
		}
		files[set] = data
	}
	if err := writeExport(cmd.OutOrStdout(), f.output, files); err != nil {
		return err
	}
	exportNotes(cmd, client, sel)
	return nil
}

// writeExport writes one file to stdout or -o FILE, or one SET.yaml per
// set into the directory -o names. A file is replaced whole (written
// beside it, then renamed), so a reader never sees half of it and a
// symlink at its place is replaced, not followed.
func writeExport(stdout io.Writer, output string, files map[string][]byte) error {
	sets := slices.Sorted(maps.Keys(files))
	if fi, err := os.Stat(output); output != "" && err == nil && fi.IsDir() {
		for _, s := range sets {
			if err := replaceFile(filepath.Join(output, s+".yaml"), files[s]); err != nil {
				return exitCode(2, err)
			}
		}
		return nil
	}
	if len(sets) > 1 {
		return exitCode(2, fmt.Errorf("%w: the hooks are in %d sets (%s) and a hooks file declares one: give --set S, or -o DIR for one file per set", hookctl.ErrInvalid, len(sets), strings.Join(sets, ", ")))
	}
	if output == "" || output == "-" {
		_, err := stdout.Write(files[sets[0]])
		return err
	}
	if err := replaceFile(output, files[sets[0]]); err != nil {
		return exitCode(2, err)
	}
	return nil
}

func replaceFile(path string, data []byte) error {
	// A device or FIFO at the place (-o /dev/null) would be replaced by
	// the rename: refused. A symlink is replaced, never written through.
	if fi, err := os.Lstat(path); err == nil && !fi.Mode().IsRegular() && fi.Mode()&os.ModeSymlink == 0 {
		return fmt.Errorf("%w: %s is not a regular file (write to stdout and redirect instead)", hookctl.ErrInvalid, path)
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".hookctl-export-*")
	if err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	defer os.Remove(tmp.Name()) // after a failure; gone after the rename
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err := tmp.Chmod(0o644); err != nil {
		tmp.Close()
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return nil
}

// exportNotes tells on stderr what the files do not say: hand-made
// hooks left out, quarantined hooks (their file will not validate), and
// sets another source manages (diff and apply of the new files need
// --take-over, or that source's name).
func exportNotes(cmd *cobra.Command, client *api.Client, sel selection) {
	w := cmd.ErrOrStderr()
	if sel.handSkipped > 0 {
		fmt.Fprintf(w, "note: %d hook(s) made by hand not exported (--adopt SET exports them into a set)\n", sel.handSkipped)
	}
	for _, set := range slices.Sorted(maps.Keys(sel.sets)) {
		for _, h := range sel.sets[set] {
			if h.Quarantined != "" {
				fmt.Fprintf(w, "warning: hook %s is quarantined (%s): the file will not validate until it is fixed\n", rules.IDOf(h), h.Quarantined)
			}
		}
	}
	recs, _, err := client.Inventory(cmd.Context())
	if err != nil {
		return
	}
	for _, r := range recs {
		if _, ok := sel.sets[r.Set]; ok && r.Source != "" {
			fmt.Fprintf(w, "note: set %s was applied from %s; diff and apply the file from another place with --take-over\n", r.Set, r.Source)
		}
	}
}

func profileNote(profile string) string {
	if profile == "" {
		return ""
	}
	return " of profile " + profile
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}
