// Command hookctl runs actions on XMPP PubSub events: `hookctl serve` is the
// backend, the other commands talk to it through the control API.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/spf13/cobra"
)

func main() { os.Exit(Main(os.Args[1:], os.Stdin, os.Stdout, os.Stderr)) }

// Main runs the CLI with args and returns the exit code. It is what main and
// the testscript scenarios call.
func Main(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	// After the first signal, restore the default handlers: a second
	// SIGINT or SIGTERM then ends the process at once.
	go func() { <-ctx.Done(); stop() }()
	root := newRootCmd(stdin, stdout, stderr)
	root.SetArgs(args)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return 0
	}
	var ee *exitError
	if errors.As(err, &ee) {
		if ee.err != nil {
			fmt.Fprintln(stderr, ee.err)
		}
		return ee.code
	}
	fmt.Fprintln(stderr, err)
	if strings.HasPrefix(err.Error(), "unknown command") {
		return 2 // a usage error, like a bad flag
	}
	return 1
}

// exitError carries a command's exit code to Main, which alone maps errors
// to codes. A nil err exits silently with code.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string {
	if e.err == nil {
		return fmt.Sprintf("exit status %d", e.code)
	}
	return e.err.Error()
}

func (e *exitError) Unwrap() error { return e.err }

// exitCode returns an error that makes Main exit with code, printing err
// (when non-nil) on stderr as it is.
func exitCode(code int, err error) error { return &exitError{code: code, err: err} }

func newRootCmd(stdin io.Reader, stdout, stderr io.Writer) *cobra.Command {
	g := &globals{}
	root := &cobra.Command{
		Use:           "hookctl",
		Short:         "Run actions on XMPP PubSub events",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetIn(stdin)
	root.SetOut(stdout)
	root.SetErr(stderr)
	g.bind(root)

	pubsub := &cobra.Command{Use: "pubsub", Short: "PubSub hooks, items and nodes"}
	pubsub.AddCommand(newHookCmd(g))
	for _, c := range pubsubCommands(g) {
		pubsub.AddCommand(c)
	}
	root.AddCommand(pubsub)
	// `hookctl hook …` is an alias of `hookctl pubsub hook …`.
	root.AddCommand(newHookCmd(g))
	for _, c := range topCommands(g) {
		root.AddCommand(c)
	}
	root.AddCommand(newVersionCmd(), newSchemaCmd(), newManCmd())
	root.Version = readBuildInfo().String()
	root.SetVersionTemplate("{{.Version}}\n")
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return exitCode(2, err) })
	refuseUnknownSubcommands(root)
	registerCompletions(root, g)
	return root
}
