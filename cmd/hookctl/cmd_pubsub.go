package main

import (
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"hookctl.dev/hookctl/api"
)

// maxPayload bounds what `pubsub publish` reads, well under the API's limit.
const maxPayload = 4 << 20

func newPublishCmd(g *globals) *cobra.Command {
	var service, node, itemID string
	c := &cobra.Command{
		Use:   "publish -n NODE [-s SERVICE] [-i ID] [FILE|-]",
		Short: "Publish an item (XML payload from FILE or stdin) through a profile's session",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var r io.Reader = cmd.InOrStdin()
			if len(args) == 1 && args[0] != "-" {
				f, err := os.Open(args[0])
				if err != nil {
					return fmt.Errorf("can't publish: %w", err)
				}
				defer f.Close()
				r = f
			}
			payload, err := io.ReadAll(io.LimitReader(r, maxPayload+1))
			if err != nil {
				return fmt.Errorf("can't publish: reading payload: %w", err)
			}
			if len(payload) > maxPayload {
				return fmt.Errorf("can't publish: payload over %d bytes", maxPayload)
			}
			res, err := pubsubOp(cmd, g, api.PubSubRequest{Op: api.OpPublish, Service: service, Node: node, ItemID: itemID, Payload: strings.TrimSpace(string(payload))})
			if err != nil {
				return fmt.Errorf("can't publish: %w", err)
			}
			fmt.Fprintln(cmd.OutOrStdout(), res.ItemID)
			return nil
		},
	}
	f := c.Flags()
	f.StringVarP(&service, "service", "s", "", "PubSub service JID (default: the profile's own PEP)")
	f.StringVarP(&node, "node", "n", "", "node to publish to (required)")
	f.StringVarP(&itemID, "item", "i", "", "item id (default: the service's choice)")
	_ = c.MarkFlagRequired("node")
	return c
}

func newRetractCmd(g *globals) *cobra.Command {
	var service, node, itemID string
	var noNotify bool
	c := &cobra.Command{
		Use:   "retract -n NODE [-s SERVICE] -i ID",
		Short: "Retract an item (subscribers are notified)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			notify := !noNotify
			if _, err := pubsubOp(cmd, g, api.PubSubRequest{Op: api.OpRetract, Service: service, Node: node, ItemID: itemID, Notify: &notify}); err != nil {
				return fmt.Errorf("can't retract: %w", err)
			}
			return nil
		},
	}
	f := c.Flags()
	f.StringVarP(&service, "service", "s", "", "PubSub service JID (default: the profile's own PEP)")
	f.StringVarP(&node, "node", "n", "", "node of the item (required)")
	f.StringVarP(&itemID, "item", "i", "", "item id (required)")
	f.BoolVar(&noNotify, "no-notify", false, "do not notify subscribers")
	_ = c.MarkFlagRequired("node")
	_ = c.MarkFlagRequired("item")
	return c
}

func newNodeCmd(g *globals) *cobra.Command {
	c := &cobra.Command{
		Use:   "node",
		Short: "Create or delete PubSub nodes",
		Long: `Create or delete PubSub nodes.

"pubsub node hook create|delete|list" is "pubsub hook create|delete|list"
under the other spelling the reference's documentation uses.`,
	}
	c.AddCommand(newNodeHookCmd(g))
	for _, op := range []struct{ name, op, short string }{
		{"create", api.OpNodeCreate, "Create a node"},
		{"delete", api.OpNodeDelete, "Delete a node (subscribers are notified)"},
	} {
		var service, node string
		sub := &cobra.Command{
			Use:   op.name + " -n NODE [-s SERVICE]",
			Short: op.short,
			Args:  cobra.NoArgs,
			RunE: func(cmd *cobra.Command, args []string) error {
				if _, err := pubsubOp(cmd, g, api.PubSubRequest{Op: op.op, Service: service, Node: node}); err != nil {
					return fmt.Errorf("can't %s node: %w", op.name, err)
				}
				return nil
			},
		}
		sub.Flags().StringVarP(&service, "service", "s", "", "PubSub service JID (default: the profile's own PEP)")
		sub.Flags().StringVarP(&node, "node", "n", "", "node (required)")
		_ = sub.MarkFlagRequired("node")
		c.AddCommand(sub)
	}
	return c
}

// newNodeHookCmd is `pubsub node hook`: the reference's documentation
// writes its create and delete examples so (and its list example as
// `pubsub hook list`), so both spellings run the same commands, with the
// same flags. Hidden: help shows one spelling.
func newNodeHookCmd(g *globals) *cobra.Command {
	c := newHookCmd(g)
	c.Hidden = true
	return c
}

func pubsubOp(cmd *cobra.Command, g *globals, r api.PubSubRequest) (api.PubSubResult, error) {
	client, err := g.client()
	if err != nil {
		return api.PubSubResult{}, err
	}
	r.Profile = g.profile
	return client.PubSub(cmd.Context(), r)
}
