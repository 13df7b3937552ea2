package main

import (
	"encoding/json"
	"fmt"
	"os"
	"runtime"
	"runtime/debug"

	"github.com/spf13/cobra"
	"github.com/spf13/cobra/doc"

	"hookctl.dev/hookctl"
	"hookctl.dev/hookctl/schema"
)

// buildInfo is what `hookctl version` prints: the version set at build time
// (make build), else the module's, and the VCS stamp Go records.
type buildInfo struct {
	Version  string `json:"version"`
	Commit   string `json:"commit,omitempty"`
	Date     string `json:"date,omitempty"`
	Modified bool   `json:"modified,omitempty"`
	Go       string `json:"go"`
	Platform string `json:"platform"`
}

// readBuildInfo gathers buildInfo from the binary itself.
func readBuildInfo() buildInfo {
	b := buildInfo{Version: version, Go: runtime.Version(), Platform: runtime.GOOS + "/" + runtime.GOARCH}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return b
	}
	if b.Version == "dev" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		b.Version = bi.Main.Version
	}
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			b.Commit = s.Value
		case "vcs.time":
			b.Date = s.Value
		case "vcs.modified":
			b.Modified = s.Value == "true"
		}
	}
	return b
}

// String is the one-line form of --version.
func (b buildInfo) String() string {
	s := "hookctl " + b.Version
	if b.Commit != "" {
		c := b.Commit
		if len(c) > 12 {
			c = c[:12]
		}
		if b.Modified {
			c += "-dirty"
		}
		s += " (" + c
		if b.Date != "" {
			s += ", " + b.Date
		}
		s += ")"
	}
	return s + " " + b.Go + " " + b.Platform
}

// newVersionCmd builds `hookctl version [-o json]`.
func newVersionCmd() *cobra.Command {
	var output string
	c := &cobra.Command{
		Use:   "version [-o text|json]",
		Short: "Print the version, commit, build date and Go version",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			b := readBuildInfo()
			switch output {
			case "text":
				_, err := fmt.Fprintln(cmd.OutOrStdout(), b)
				return err
			case "json":
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				return enc.Encode(b)
			}
			return exitCode(2, fmt.Errorf("%w: unknown output %q (want text or json)", hookctl.ErrInvalid, output))
		},
	}
	c.Flags().StringVarP(&output, "output", "o", "text", "output format: text or json")
	return c
}

// refuseUnknownSubcommands makes every command that only groups others
// (pubsub, hook, node, …) refuse an unknown subcommand with exit 2 and a
// suggestion, instead of printing its help and exiting 0: a script must
// tell a typo from success.
func refuseUnknownSubcommands(c *cobra.Command) {
	for _, sub := range c.Commands() {
		refuseUnknownSubcommands(sub)
	}
	if !c.HasSubCommands() || c.Run != nil || c.RunE != nil {
		return
	}
	c.Args = cobra.ArbitraryArgs
	c.RunE = func(cmd *cobra.Command, args []string) error {
		if len(args) == 0 {
			return cmd.Help()
		}
		msg := fmt.Sprintf("unknown command %q for %q", args[0], cmd.CommandPath())
		if s := cmd.SuggestionsFor(args[0]); len(s) > 0 {
			msg += fmt.Sprintf(" (did you mean %q?)", s[0])
		}
		return exitCode(2, fmt.Errorf("%s; see %q", msg, cmd.CommandPath()+" --help"))
	}
}

// newSchemaCmd builds `hookctl schema`: the JSON Schema of hooks files,
// for editors (see the README).
func newSchemaCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "schema",
		Short: "Print the JSON Schema of hooks files (for editors)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			_, err := cmd.OutOrStdout().Write(schema.Hooks)
			return err
		},
	}
}

// newManCmd builds the hidden `hookctl man DIR`, which `make man` runs: one
// man page (section 1) per command, from the CLI itself, so the pages
// never drift from the flags.
func newManCmd() *cobra.Command {
	return &cobra.Command{
		Use:    "man DIR",
		Short:  "Write the man pages into DIR",
		Hidden: true,
		Args:   cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := os.MkdirAll(args[0], 0o755); err != nil {
				return err
			}
			root := cmd.Root()
			root.DisableAutoGenTag = true // reproducible: no generation date
			hdr := &doc.GenManHeader{Title: "HOOKCTL", Section: "1", Source: "hookctl " + readBuildInfo().Version, Manual: "hookctl manual"}
			return doc.GenManTree(root, hdr, args[0])
		},
	}
}
