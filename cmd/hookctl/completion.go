package main

import (
	"slices"

	"github.com/spf13/cobra"

	"hookctl.dev/hookctl"
)

// registerCompletions gives shell completion values to the flags that name
// things: hook types (known), and profiles, nodes and sets (asked of the
// running backend, with the flags given so far; nothing when it does not
// answer). Walks the whole tree, so new commands get them too.
func registerCompletions(c *cobra.Command, g *globals) {
	for _, sub := range c.Commands() {
		registerCompletions(sub, g)
	}
	complete := func(flag string, f cobra.CompletionFunc) {
		if c.Flags().Lookup(flag) != nil || (c == c.Root() && c.PersistentFlags().Lookup(flag) != nil) {
			_ = c.RegisterFlagCompletionFunc(flag, f) // the flag exists: cannot fail
		}
	}
	complete("type", func(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
		names := make([]string, len(hookctl.Types))
		for i, t := range hookctl.Types {
			names[i] = string(t)
		}
		return names, cobra.ShellCompDirectiveNoFileComp
	})
	complete("profile", g.completeFromHooks(func(h hookctl.Hook) string { return h.Profile }))
	complete("node", g.completeFromHooks(func(h hookctl.Hook) string { return h.Node }))
	complete("set", g.completeFromHooks(func(h hookctl.Hook) string { return h.Owner }))
	complete("hook", g.completeFromHooks(func(h hookctl.Hook) string { return h.Name }))
}

// completeFromHooks completes with the distinct values field takes over
// the live hooks of every profile.
func (g *globals) completeFromHooks(field func(hookctl.Hook) string) cobra.CompletionFunc {
	return func(cmd *cobra.Command, _ []string, _ string) ([]string, cobra.ShellCompDirective) {
		client, err := g.client()
		if err != nil {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		hooks, _, err := client.List(cmd.Context(), "")
		if err != nil {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		var out []string
		for _, h := range hooks {
			if v := field(h); v != "" {
				out = append(out, v)
			}
		}
		slices.Sort(out)
		return slices.Compact(out), cobra.ShellCompDirectiveNoFileComp
	}
}
