package main

import (
	"errors"
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"hookctl.dev/hookctl"
	"hookctl.dev/hookctl/api"
	"hookctl.dev/hookctl/spec"
)

// newValidateCmd builds `hookctl validate -f PATH… [-R]`: it reads hooks
// files without talking to the backend and reports every problem.
func newValidateCmd(g *globals) *cobra.Command {
	var (
		paths      []string
		recursive  bool
		skipChecks bool
	)
	cmd := &cobra.Command{
		Use:   "validate -f PATH... [-R]",
		Short: "Check hooks files without applying them",
		Long: `Validate reads hooks files (a file, or the *.yaml and *.yml files of a
directory; -R for subdirectories) and checks them strictly: unknown fields,
wrong types, malformed JIDs and durations, duplicate hooks, missing scripts,
filters that do not compile. Every problem is printed on stderr as
FILE:LINE:COL: PATH: MESSAGE and the exit code is 1; a valid set prints a
summary on stdout and exits 0. The backend is not contacted.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			opts := spec.DefaultOptions()
			opts.Recursive = recursive
			opts.CheckPaths = !skipChecks
			set, err := spec.Load(paths, opts)
			if err != nil {
				var ds spec.Diagnostics
				if !errors.As(err, &ds) {
					return err
				}
				fmt.Fprintln(cmd.ErrOrStderr(), ds.Error())
				return exitCode(1, nil)
			}
			// What validate accepts, apply must be able to send.
			if err := api.CheckBatchSize(hookctl.Batch{Create: set.Hooks}); err != nil {
				fmt.Fprintln(cmd.ErrOrStderr(), err)
				return exitCode(1, nil)
			}
			fmt.Fprintln(cmd.OutOrStdout(), validSummary(set))
			return nil
		},
	}
	f := cmd.Flags()
	f.StringArrayVarP(&paths, "filename", "f", nil, "hooks file or directory (repeatable)")
	f.BoolVarP(&recursive, "recursive", "R", false, "read the subdirectories of directories too")
	f.BoolVar(&skipChecks, "no-path-check", false, "do not require python_file and exec paths to exist (e.g. in CI without the scripts)")
	_ = cmd.MarkFlagRequired("filename") // the flag exists: cannot fail
	return cmd
}

// validSummary is the one-line result, e.g.
// "3 hooks in 2 files are valid (sets: blog)".
func validSummary(s *spec.Set) string {
	verb := "are"
	if len(s.Hooks) == 1 {
		verb = "is"
	}
	label := "sets"
	if len(s.Sets) == 1 {
		label = "set"
	}
	return fmt.Sprintf("%s in %s %s valid (%s: %s)",
		plural(len(s.Hooks), "hook"), plural(len(s.Files), "file"), verb, label, strings.Join(s.Sets, ", "))
}

func plural(n int, word string) string {
	if n == 1 {
		return "1 " + word
	}
	return fmt.Sprintf("%d %ss", n, word)
}
