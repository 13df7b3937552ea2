package main

import (
	"encoding/json"
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
		followExt  bool
		output     string
	)
	cmd := &cobra.Command{
		Use:   "validate -f PATH... [-R]",
		Short: "Check hooks files without applying them",
		Long: `Validate reads hooks files (a file, or the *.yaml and *.yml files of a
directory; -R for subdirectories) and checks them strictly: unknown fields,
wrong types, malformed JIDs and durations, duplicate hooks, missing scripts,
filters that do not compile. When a backend config is found (--config,
HOOKCTL_CONFIG, or the system config, as serve finds it), the secrets hooks
name must be declared in it. Every problem is printed on stderr as
FILE:LINE:COL: PATH: MESSAGE and the exit code is 1; a valid set prints a
summary on stdout and exits 0. The backend is not contacted.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			opts := spec.DefaultOptions()
			opts.Recursive = recursive
			opts.CheckPaths = !skipChecks
			opts.FollowExternalSymlinks = followExt
			secrets, err := g.backendSecrets()
			if err != nil {
				return err
			}
			if secrets != nil { // a nil *config.Secrets is not a nil interface
				opts.Secrets = secrets
			}
			if output != "text" && output != "json" {
				return exitCode(2, fmt.Errorf("%w: unknown output %q (want text or json)", hookctl.ErrInvalid, output))
			}
			set, err := spec.Load(paths, opts)
			var ds spec.Diagnostics
			if err != nil && !errors.As(err, &ds) {
				return err
			}
			// What validate accepts, apply must be able to send.
			if err == nil {
				if berr := api.CheckBatchSize(hookctl.Batch{Create: set.Hooks}); berr != nil {
					ds = spec.Diagnostics{{File: strings.Join(set.Files, ","), Message: berr.Error()}}
					err = ds
				}
			}
			if output == "json" {
				if err := printValidateJSON(cmd, set, ds); err != nil {
					return err
				}
			} else if err != nil {
				fmt.Fprintln(cmd.ErrOrStderr(), ds.Error())
			} else {
				fmt.Fprintln(cmd.OutOrStdout(), validSummary(set))
			}
			if err != nil {
				return exitCode(1, nil)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringArrayVarP(&paths, "file", "f", nil, "hooks file or directory (repeatable)")
	// --filename was this command's name for it; diff, apply and watch say --file.
	f.StringArrayVar(&paths, "filename", nil, "")
	_ = f.MarkHidden("filename")
	f.StringVarP(&output, "output", "o", "text", "output format: text or json")
	f.BoolVarP(&recursive, "recursive", "R", false, "read the subdirectories of directories too")
	f.BoolVar(&skipChecks, "no-path-check", false, "do not require python_file and exec paths to exist (e.g. in CI without the scripts)")
	f.BoolVar(&followExt, "follow-external-symlinks", false, "read files that symlinks in a directory lead to outside it (refused by default)")
	cmd.MarkFlagsOneRequired("file", "filename")
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

// validateReport is `validate -o json`: versioned like diff's plan.
type validateReport struct {
	FormatVersion int               `json:"format_version"`
	Valid         bool              `json:"valid"`
	Hooks         int               `json:"hooks"`
	Files         []string          `json:"files"`
	Sets          []string          `json:"sets"`
	Problems      []spec.Diagnostic `json:"problems"`
}

func printValidateJSON(cmd *cobra.Command, set *spec.Set, ds spec.Diagnostics) error {
	r := validateReport{FormatVersion: 1, Valid: len(ds) == 0, Problems: ds, Files: []string{}, Sets: []string{}}
	if r.Problems == nil {
		r.Problems = []spec.Diagnostic{}
	}
	if set != nil {
		r.Hooks, r.Files, r.Sets = len(set.Hooks), set.Files, set.Sets
	}
	enc := json.NewEncoder(cmd.OutOrStdout())
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}
