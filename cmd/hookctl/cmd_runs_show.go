package main

import (
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/spf13/cobra"

	"hookctl.dev/hookctl"
)

// newRunsShowCmd prints one run in full: everything `runs` cuts to one
// line (output, traceback, error) and what it does not show (the event,
// timings, attempt).
func newRunsShowCmd(g *globals) *cobra.Command {
	var output string
	c := &cobra.Command{
		Use:   "show RUN-ID [-o text|json]",
		Short: "Print one run in full: output, traceback, event, timings",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			id, err := parseRunID(args[0])
			if err != nil {
				return err
			}
			if output != "text" && output != "json" {
				return fmt.Errorf("%w: unknown output format %q (want text or json)", hookctl.ErrInvalid, output)
			}
			client, err := g.client()
			if err != nil {
				return err
			}
			r, err := client.GetRun(cmd.Context(), id)
			if err != nil {
				return err
			}
			if output == "json" {
				return writeJSON(cmd.OutOrStdout(), r)
			}
			return printRun(cmd.OutOrStdout(), r)
		},
	}
	c.Flags().StringVarP(&output, "output", "o", "text", "output format: text or json")
	return c
}

func parseRunID(s string) (uint64, error) {
	id, err := strconv.ParseUint(strings.TrimPrefix(s, "#"), 10, 64)
	if err != nil || id == 0 {
		return 0, fmt.Errorf("%w: run id %q is not a positive integer (see hookctl runs)", hookctl.ErrInvalid, s)
	}
	return id, nil
}

// printRun writes r as labelled lines; multi-line values follow their
// label, indented.
func printRun(w io.Writer, r hookctl.Run) error {
	var b strings.Builder
	line := func(label, v string) {
		if v != "" {
			fmt.Fprintf(&b, "%-10s %s\n", label+":", safeLine(v))
		}
	}
	block := func(label, v string) {
		v = strings.TrimRight(v, "\n")
		if v == "" {
			return
		}
		fmt.Fprintf(&b, "%s:\n", label)
		for l := range strings.SplitSeq(v, "\n") {
			fmt.Fprintf(&b, "  %s\n", safeLine(l))
		}
	}
	fmt.Fprintf(&b, "Run %d\n", r.ID)
	line("Hook", runHookName(r))
	line("Key", r.Hook.String())
	line("Set", r.Set)
	ev := string(r.Event)
	if r.ItemID != "" {
		ev += " item " + r.ItemID
	}
	if r.Catchup {
		ev += " (catch-up)"
	}
	line("Event", ev)
	line("Manual", r.Manual)
	line("Started", r.Started.Local().Format("2006-01-02 15:04:05.000 MST"))
	line("Queued", roundDuration(time.Duration(r.Queued)).String())
	line("Duration", roundDuration(time.Duration(r.Duration)).String())
	if r.Attempt > 0 {
		line("Attempt", strconv.Itoa(r.Attempt))
	}
	line("Outcome", r.Outcome)
	if res := runResult(r); res != "-" {
		line("Result", res)
	}
	block("Error", r.Error)
	block("Output", r.Output)
	if in := r.Input; in != nil {
		line("Service", in.Service)
		line("Publisher", in.Publisher)
		if !in.Received.IsZero() {
			line("Received", in.Received.Local().Format("2006-01-02 15:04:05.000 MST"))
		}
		if r.InputTruncated {
			line("Item", "(not kept: over "+strconv.Itoa(hookctl.MaxRunInput)+" bytes)")
		}
		block("Item", in.ItemXML)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// runHookName is how runs name a hook: its name, else type and arg.
func runHookName(r hookctl.Run) string {
	if r.HookName != "" {
		return r.HookName
	}
	return string(r.Hook.Type) + ":" + r.Hook.Arg
}

// runResult is the outcome detail that makes sense for the run's type:
// an exec program's exit status, an http hook's answer, nothing else.
func runResult(r hookctl.Run) string {
	ran := r.Outcome == "ok" || r.Outcome == "failed" || r.Outcome == "timeout"
	switch {
	case r.Hook.Type == hookctl.TypeExec && ran && r.ExitCode < 0:
		return "killed"
	case r.Hook.Type == hookctl.TypeExec && ran:
		return "exit " + strconv.Itoa(r.ExitCode)
	case r.Hook.Type == hookctl.TypeHTTP && r.ExitCode > 0:
		return "HTTP " + strconv.Itoa(r.ExitCode)
	case r.ExitCode > 0: // a Python worker that died
		return "worker exit " + strconv.Itoa(r.ExitCode)
	}
	return "-"
}

// safeLine shows control characters (other than tab) as Go escapes, so
// that a hook's output cannot move the terminal's cursor or forge lines.
func safeLine(s string) string {
	if strings.IndexFunc(s, func(r rune) bool { return r != '\t' && unicode.IsControl(r) }) < 0 {
		return s
	}
	var b strings.Builder
	for _, r := range s {
		if r != '\t' && unicode.IsControl(r) {
			q := strconv.QuoteRune(r)
			b.WriteString(q[1 : len(q)-1])
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}

// parseSince reads --since: a duration back from now ("1h") or an RFC 3339
// time.
func parseSince(s string, now time.Time) (time.Time, error) {
	if d, err := time.ParseDuration(s); err == nil && d > 0 {
		return now.Add(-d), nil
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	return time.Time{}, fmt.Errorf("%w: --since %q is neither a duration (1h, 30m) nor an RFC 3339 time", hookctl.ErrInvalid, s)
}
