package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"
	"gopkg.in/yaml.v3"

	"hookctl.dev/hookctl"
)

// newHookCmd is the reference's `pubsub hook` group: create, delete, list,
// with the same short flags as Libervia's CLI.
func newHookCmd(g *globals) *cobra.Command {
	c := &cobra.Command{
		Use:   "hook",
		Short: "Create, delete and list hooks by hand (the reference's commands)",
	}
	c.AddCommand(newHookCreateCmd(g), newHookDeleteCmd(g), newHookListCmd(g))
	c.AddCommand(newSuspendCmd(g, hookctl.SuspendHook, true), newSuspendCmd(g, hookctl.SuspendHook, false))
	return c
}

func newHookCreateCmd(g *globals) *cobra.Command {
	var (
		service, node, typ, filter, name, timeout string
		persistent                                bool
		events                                    []string
	)
	c := &cobra.Command{
		Use:   "create -n NODE [-s SERVICE] [-t TYPE] [-P] ARG [-- ARGS...]",
		Short: "Create a hook on a node",
		Long: `Create a hook of the given type on a node. ARG depends on the type: a script
path (python_file), a module (python), Python code (python_code), a program path
(exec; its arguments follow --), an expr-lang program (expr) or a URL (http).
Hooks are temporary unless -P/--persistent: they are lost when the profile
disconnects or the backend stops.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			fail := func(err error) error { return fmt.Errorf("can't create hook: %w", err) }
			t, err := hookctl.ParseType(typ)
			if err != nil {
				return fail(err)
			}
			arg := args[0]
			if t.TakesPath() {
				if arg, err = existingFile(arg); err != nil {
					return fail(err)
				}
			}
			if len(args) > 1 && t != hookctl.TypeExec {
				return fail(fmt.Errorf("%w: only exec hooks take arguments after ARG", hookctl.ErrInvalid))
			}
			h := hookctl.Hook{
				Key:        hookctl.Key{Profile: g.profile, Service: service, Node: node, Type: t, Arg: arg},
				Args:       args[1:],
				Persistent: persistent,
				Name:       name,
				Filter:     filter,
				Source:     "cli",
			}
			for _, e := range events {
				h.Events = append(h.Events, hookctl.EventKind(e))
			}
			if h.Timeout, err = hookctl.ParseDuration(timeout); err != nil {
				return fail(err)
			}
			client, err := g.client()
			if err != nil {
				return fail(err)
			}
			if _, err := client.Create(cmd.Context(), h); err != nil {
				return fail(err)
			}
			return nil
		},
	}
	f := c.Flags()
	f.StringVarP(&service, "service", "s", "", "PubSub service JID (default: the profile's own PEP)")
	f.StringVarP(&node, "node", "n", "", "node to hook (required)")
	f.StringVarP(&typ, "type", "t", string(hookctl.TypePythonFile), "hook type: python, python_file, python_code, exec, expr, http")
	f.BoolVarP(&persistent, "persistent", "P", false, "keep the hook across reconnections and restarts")
	f.StringSliceVarP(&events, "events", "e", nil, "event kinds to fire on: publish, retract, purge, delete (default publish,retract)")
	f.StringVar(&filter, "filter", "", "expr-lang condition on event and item, e.g. 'item.id startsWith \"post-\"'")
	f.StringVar(&timeout, "timeout", "", "time limit of one run, e.g. 30s (default: the backend's)")
	f.StringVar(&name, "name", "", "a label for the hook")
	_ = c.MarkFlagRequired("node")
	return c
}

// existingFile makes path absolute and checks that it is a regular file,
// with the reference's message when it is not.
func existingFile(path string) (string, error) {
	abs, err := filepath.Abs(expandHome(path))
	if err != nil {
		return "", err
	}
	st, err := os.Stat(abs)
	if err != nil || !st.Mode().IsRegular() {
		return "", fmt.Errorf("%w: %s is not a file", hookctl.ErrInvalid, abs)
	}
	return abs, nil
}

func expandHome(path string) string {
	if path == "~" || strings.HasPrefix(path, "~/") {
		if home, err := os.UserHomeDir(); err == nil {
			return filepath.Join(home, path[1:])
		}
	}
	return path
}

func newHookDeleteCmd(g *globals) *cobra.Command {
	var service, node, typ, arg string
	c := &cobra.Command{
		Use:   "delete -n NODE [-s SERVICE] [-t TYPE] [-a ARG]",
		Short: "Delete the hooks of a node that match a type and argument",
		Long: `Delete one hook or several, as the reference's delete does: the hooks of
the node (and service) whose type is --type and whose argument is --arg,
exactly as create stored it. An empty --type or --arg matches any, so
"delete -n NODE" (or --type '' --arg '') removes every hook of the node.
With --type python_file or exec, --arg is made absolute (~ expanded) as
create does; unlike the reference's, the file need not exist any more.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			fail := func(err error) error { return fmt.Errorf("can't delete hook: %w", err) }
			m := hookctl.Match{Profile: g.profile, Service: service, Node: node, Arg: arg}
			if typ != "" {
				t, err := hookctl.ParseType(typ)
				if err != nil {
					return fail(err)
				}
				m.Type = t
				if t.TakesPath() && arg != "" {
					abs, err := filepath.Abs(expandHome(arg))
					if err != nil {
						return fail(err)
					}
					m.Arg = abs
				}
			}
			client, err := g.client()
			if err != nil {
				return fail(err)
			}
			n, err := client.Remove(cmd.Context(), m)
			if err != nil {
				return fail(err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%d hook(s) have been deleted\n", n)
			return nil
		},
	}
	f := c.Flags()
	f.StringVarP(&service, "service", "s", "", "PubSub service JID (default: the profile's own PEP)")
	f.StringVarP(&node, "node", "n", "", "node of the hooks (required)")
	f.StringVarP(&typ, "type", "t", "", "type of the hooks to delete (empty: any)")
	f.StringVarP(&arg, "arg", "a", "", "argument of the hooks to delete (empty: any)")
	_ = c.MarkFlagRequired("node")
	return c
}

// listedHook is a hook as `hook list` prints it: the reference's fields as
// strings, plus profile and owner.
type listedHook struct {
	Service    string `json:"service" yaml:"service"`
	Node       string `json:"node" yaml:"node"`
	Type       string `json:"type" yaml:"type"`
	Arg        string `json:"arg" yaml:"arg"`
	Persistent string `json:"persistent" yaml:"persistent"`
	Profile    string `json:"profile" yaml:"profile"`
	Owner      string `json:"owner" yaml:"owner"`
	Name       string `json:"name,omitempty" yaml:"name,omitempty"`
	// Set is Owner under the name hooks files use.
	Set     string   `json:"set,omitempty" yaml:"set,omitempty"`
	Events  []string `json:"events" yaml:"events"`
	Filter  string   `json:"filter,omitempty" yaml:"filter,omitempty"`
	Timeout string   `json:"timeout,omitempty" yaml:"timeout,omitempty"`
	// Env and Secrets are the hook's own environment: literal values, and
	// the names (never the values) of the backend's secrets.
	Env     map[string]string `json:"env,omitempty" yaml:"env,omitempty"`
	Secrets []string          `json:"secrets,omitempty" yaml:"secrets,omitempty"`
	// Quarantined says why a stored hook is not run (see registry).
	Quarantined string `json:"quarantined,omitempty" yaml:"quarantined,omitempty"`
	// Suspended says who suspended the hook (cmd_suspend.go).
	Suspended string `json:"suspended,omitempty" yaml:"suspended,omitempty"`
}

func newHookListCmd(g *globals) *cobra.Command {
	var output string
	var all bool
	c := &cobra.Command{
		Use:   "list [-O simple|json|json_raw|yaml]",
		Short: "List the hooks of a profile",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			fail := func(err error) error { return fmt.Errorf("can't list hooks: %w", err) }
			if !slices.Contains([]string{"simple", "json", "json_raw", "yaml"}, output) {
				return fail(fmt.Errorf("%w: unknown output %q (want simple, json, json_raw or yaml)", hookctl.ErrInvalid, output))
			}
			client, err := g.client()
			if err != nil {
				return fail(err)
			}
			profile := g.profile
			if all {
				profile = ""
			}
			hooks, _, err := client.List(cmd.Context(), profile)
			if err != nil {
				return fail(err)
			}
			// Persistent hooks first, as the reference lists them.
			slices.SortStableFunc(hooks, func(a, b hookctl.Hook) int {
				if a.Persistent != b.Persistent {
					if a.Persistent {
						return -1
					}
					return 1
				}
				return a.Key.Compare(b.Key)
			})
			rows := make([]listedHook, len(hooks))
			for i, h := range hooks {
				rows[i] = listedHook{Service: h.Service, Node: h.Node, Type: string(h.Type), Arg: h.Arg,
					Persistent: fmt.Sprint(h.Persistent), Profile: h.Profile, Owner: h.Owner,
					Name: h.Name, Set: h.Owner, Events: eventNames(h.EffectiveEvents()), Filter: h.Filter,
					Timeout: h.Timeout.String(), Env: h.Env, Secrets: h.Secrets, Quarantined: h.Quarantined}
			}
			if list, err := client.Suspensions(cmd.Context()); err == nil {
				markSuspended(rows, hooks, list)
			}
			if len(rows) == 0 {
				// On stderr, so that -O json stays valid JSON.
				fmt.Fprintln(cmd.ErrOrStderr(), "No hook found.")
			}
			return printHooks(cmd, output, rows)
		},
	}
	c.Flags().StringVarP(&output, "output", "O", "simple", "output format: simple, json, json_raw or yaml (also -o)")
	// -o, as on every other command that prints; -O is the reference's.
	c.Flags().StringVarP(&output, "output-o", "o", "simple", "")
	_ = c.Flags().MarkHidden("output-o")
	c.Flags().BoolVarP(&all, "all-profiles", "A", false, "list the hooks of every profile")
	return c
}

func printHooks(cmd *cobra.Command, output string, rows []listedHook) error {
	out := cmd.OutOrStdout()
	switch output {
	case "json", "json_raw":
		enc := json.NewEncoder(out)
		if output == "json" {
			enc.SetIndent("", "  ")
		}
		return enc.Encode(rows)
	case "yaml":
		if len(rows) == 0 {
			_, err := fmt.Fprintln(out, "[]")
			return err
		}
		return yaml.NewEncoder(out).Encode(rows)
	}
	if len(rows) == 0 {
		return nil
	}
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SERVICE\tNODE\tTYPE\tARG\tPERSISTENT\tPROFILE\tSET\tNAME\tEVENTS\tTIMEOUT\tFILTER")
	for _, r := range rows {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", cell(r.Service), cell(r.Node), r.Type, oneLine(r.Arg), r.Persistent,
			cell(r.Profile), cell(orDash(r.Owner)), cell(orDash(r.Name)), strings.Join(r.Events, ","), orDash(r.Timeout), orDash(shorten(oneLine(r.Filter), 40)))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, r := range rows {
		if r.Quarantined != "" {
			fmt.Fprintf(out, "quarantined (not run): %s %s %s %s: %s\n", r.Service, r.Node, r.Type, oneLine(r.Arg), oneLine(r.Quarantined))
		}
		if r.Suspended != "" {
			fmt.Fprintf(out, "%s: %s %s %s %s\n", r.Suspended, r.Service, r.Node, r.Type, oneLine(r.Arg))
		}
	}
	return nil
}

// oneLine keeps multi-line args (python_code, expr) on one table row.
func oneLine(s string) string { return cell(s) }

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// shorten cuts s to n runes with an ellipsis: -O json has it whole.
func shorten(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n-1]) + "…"
}

func eventNames(ev []hookctl.EventKind) []string {
	out := make([]string, len(ev))
	for i, e := range ev {
		out[i] = string(e)
	}
	return out
}
